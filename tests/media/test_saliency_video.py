"""``predict --format video``: the maps as a grey video (the NTIRE 2026 submission format).
Read back as the challenge's bench.py reads a submission (the FFmpeg binary's extraction
to PNG: 8-bit RGB frames), every frame is the map written, round(255 x) on all three
channels, at the source's frame count and rate."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from helpers import predict, use_fast_model, write_video

from salcli.errors import OutputError
from salcli.media.decode import png_frames, probe
from salcli.media.writers import RunInfo, make_writer, to_uint8

RUN = RunInfo("vinet", "0" * 64, 32, "mirror", "test")
NTSC = Fraction(30000, 1001)  # frames/s: a rate that is not an integer


def bench_extraction(path: Path) -> tuple[list[np.ndarray], Fraction]:
    """(frames, rate): the frames as ``ffmpeg -v error -i path %03d.png`` writes them and
    bench.py reads them back (``cv2.imread(..., IMREAD_UNCHANGED)``: (H, W, 3) uint8 BGR),
    by the FFmpeg binary imageio-ffmpeg ships; the rate as the container states it."""
    folder = path.parent / f"{path.stem}_frames"
    folder.mkdir()
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([ffmpeg, "-v", "error", "-i", str(path), f"{folder}/%03d.png"], check=True)
    frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.iterdir())]
    with av.open(str(path)) as container:
        return frames, container.streams.video[0].average_rate


def write_maps(folder: Path, source: Path, maps: list[np.ndarray]) -> Path:
    meta = probe(source)
    with make_writer("video", folder, meta, RUN) as writer:
        for i, m in enumerate(maps):
            writer.write(i, m, i / meta.fps)
    return writer.paths[0]


@pytest.mark.parametrize("size", [(48, 64), (33, 47)])  # an odd size too (4:4:4)
def test_every_frame_reads_back_exactly(tmp_path, size):
    source = tmp_path / "clip.avi"
    with av.open(str(source), "w") as out:  # NTSC rate, odd sizes: mpeg4 in AVI takes both
        vs = out.add_stream("mpeg4", rate=NTSC)
        vs.width, vs.height, vs.pix_fmt = size[1], size[0], "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), 9 * i, np.uint8), "rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
    rng = np.random.default_rng(1)
    maps = [rng.random(size).astype(np.float32) for _ in range(12)]  # (H, W) in [0, 1)
    maps[3][:] = 0.0  # an all-zero map and the extremes survive
    maps[4][0, 0], maps[4][-1, -1] = 0.0, 1.0
    path = write_maps(tmp_path / "out", source, maps)
    assert path == tmp_path / "out" / "clip.mp4"
    frames, rate = bench_extraction(path)
    assert rate == NTSC and len(frames) == len(maps)
    for k, (frame, m) in enumerate(zip(frames, maps, strict=True)):
        want = to_uint8(m)
        for c in range(3):
            assert np.array_equal(frame[..., c], want), (k, c)
    # salcli's own reading of it (evaluate's route, RGB) gives the same frames
    for (k, img), frame in zip(png_frames(path), frames, strict=True):
        assert np.array_equal(img, frame[..., ::-1]), k


def test_the_source_itself_is_not_overwritten(tmp_path):
    source = write_video(tmp_path / "clip.mp4", 3)
    with pytest.raises(OutputError, match="is the source video"):
        write_maps(tmp_path, source, [np.zeros((48, 64), np.float32)] * 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_an_aborted_video_leaves_nothing(tmp_path):
    source = write_video(tmp_path / "clip.mp4", 5)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with make_writer("video", out, probe(source), RUN) as writer:
            writer.write(0, np.zeros((48, 64), np.float32), 0.0)
            raise RuntimeError("stopped")
    assert not list(out.glob("*")) and not list(out.glob(".*"))


def test_predict_format_video_holds_the_maps_written(tmp_path, monkeypatch, vinet_checkpoint):
    use_fast_model(monkeypatch)
    source = write_video(tmp_path / "clip.mp4", 14, (40, 56), audio_rate=22050)
    out = tmp_path / "out"
    r = predict(source, "-o", out, "--format", "png,video", "-q", weights=vinet_checkpoint)
    assert r.exit_code == 0, r.output
    frames, rate = bench_extraction(out / "clip.mp4")
    assert rate == 25 and len(frames) == 14
    with av.open(str(out / "clip.mp4")) as container:
        assert not container.streams.audio  # the maps only
    for k, frame in enumerate(frames, 1):
        png = cv2.imread(str(out / "clip" / f"{k:04d}.png"), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(frame[..., 0], png), k
