"""Output writers (png, h5, mp4) on tiny videos the tests encode with PyAV."""

from __future__ import annotations

import errno
import json
import os
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import h5py
import numpy as np
import pytest

import salcli.media.writers as W
import salcli.media.writers.mp4
import salcli.media.writers.png
from salcli.errors import InputError, OutputError, UsageError
from salcli.media.decode import VideoMeta, open_video
from salcli.media.writers import RunInfo, make_writer, output_paths
from salcli.media.writers.mp4 import AAC_FRAME
from salcli.models.registry import VINET

FPS = 24  # frames/s of the test videos
N_FRAMES = 24
RUN = RunInfo(
    model="vinet",
    weights_sha256="0f" * 32,
    clip_len=32,
    warmup="mirror",
    salcli_version="0.1.0",
    postprocess=VINET.postprocess_doc,
    extra={"precision": "fp32", "device": "cpu", "batch_size": 4},
)


def encode_video(
    path: Path,
    width: int = 64,
    height: int = 48,
    n: int = N_FRAMES,
    audio: str | None = None,
    rate: int = 22_050,
) -> Path:
    """A small H.264 video (moving bars) of ``n / FPS`` s, with a mono tone in ``audio``."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=FPS)
    vs.width, vs.height = width, height
    vs.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    aout = None
    if audio:
        aout = out.add_stream(audio, rate=rate)
        aout.layout = "mono"
    for i in range(n):
        rgb = np.zeros((height, width, 3), np.uint8)
        rgb[..., 0] = 10 * i % 256
        rgb[:, : (3 * i) % width, 1] = 200
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = i
        out.mux(vs.encode(frame))
    out.mux(vs.encode())
    if aout is not None:
        n_samples = rate * n // FPS
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n_samples) / rate)
        fmt = aout.format.name
        for start in range(0, n_samples, 1024):
            chunk = tone[start : start + 1024]
            if fmt.startswith("s16"):
                arr = (chunk * 32767).astype(np.int16)[None]  # (1, n) mono
            elif fmt.startswith("s32"):
                arr = (chunk * 2**31).astype(np.int32)[None]
            else:
                arr = chunk.astype(np.float32)[None]  # (1, n) planar mono
            frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            out.mux(aout.encode(frame))
        out.mux(aout.encode())
    out.close()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {
        "plain": encode_video(root / "plain.mp4"),
        "aac": encode_video(root / "aac.mp4", audio="aac"),
        "pcm": encode_video(root / "pcm.mkv", audio="pcm_s16le"),
        "odd": encode_video(root / "odd.mp4", width=63, height=47),
    }


def meta_of(path: Path) -> VideoMeta:
    with open_video(path) as reader:
        return reader.meta


def fake_meta(width: int = 64, height: int = 48, n: int | None = N_FRAMES) -> VideoMeta:
    return VideoMeta(
        path=Path("/videos/clip.mp4"), width=width, height=height, fps=25.0,
        n_frames=n, duration=None,
    )  # fmt: skip


def saliency_maps(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((height, width), dtype=np.float32) for _ in range(n)]


def write_all(writer: W.Writer, maps: list[np.ndarray], fps: float = FPS) -> list[Path]:
    for i, m in enumerate(maps):
        writer.write(i, m, i / fps)
    return writer.close()


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def png_text(path: Path) -> dict:
    """The JSON of the ``salcli`` tEXt chunk of a PNG file."""
    data = path.read_bytes()
    pos = 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc = int.from_bytes(data[pos + 8 + length : pos + 12 + length], "big")
        assert crc == zlib.crc32(kind + body)
        if kind == b"tEXt" and body.startswith(b"salcli\0"):
            return json.loads(body[len(b"salcli\0") :])
        pos += 12 + length
    raise AssertionError("no salcli tEXt chunk")


# --- paths and factory ------------------------------------------------------------------


def test_output_paths_create_nothing(tmp_path):
    out = tmp_path / "out"
    assert output_paths("png", out, "clip") == [out / "clip"]
    assert output_paths("h5", out, "clip") == [out / "clip.h5"]
    assert output_paths("MP4", out, "clip") == [out / "clip_saliency.mp4"]
    assert not out.exists()
    with pytest.raises(UsageError, match="unknown output format 'gif'"):
        output_paths("gif", out, "clip")
    with pytest.raises(UsageError):
        make_writer("gif", out, fake_meta(), RUN)
    assert not out.exists()


def test_options_checked_before_anything_is_created(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="unknown writer option 'h5_level'"):
        make_writer("h5", out, fake_meta(), RUN, h5_level=3)
    with pytest.raises(UsageError, match="h5_dtype"):
        make_writer("h5", out, fake_meta(), RUN, h5_dtype="int8")
    with pytest.raises(UsageError, match="mp4_odd"):
        make_writer("mp4", out, fake_meta(), RUN, mp4_odd="crop")
    assert not out.exists()
    # options of the other formats are accepted and ignored
    writer = make_writer("png", out, fake_meta(), RUN, h5_dtype="float32", mp4_crf=30)
    writer.abort()
    assert listing(out) == []


# --- png --------------------------------------------------------------------------------------


def test_png_files_values_and_run_record(tmp_path):
    maps = saliency_maps(N_FRAMES, 64, 48)
    maps[0][0, :4] = [0.0, 1.0, 0.5 / 255, 1.7 / 255]  # rounding: 0, 255, 0 (half to even), 2
    out = tmp_path / "out"
    writer = make_writer("png", out, fake_meta(), RUN)
    assert writer.paths == [out / "clip"]
    assert write_all(writer, maps, fps=25.0) == [out / "clip"]
    assert listing(out) == ["clip"]  # no temporary left
    names = listing(out / "clip")
    assert names == [f"{i:04d}.png" for i in range(1, N_FRAMES + 1)]
    for i in (0, 7, N_FRAMES - 1):
        img = cv2.imread(str(out / "clip" / names[i]), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (48, 64)
        np.testing.assert_array_equal(img, np.rint(maps[i] * 255).astype(np.uint8))
    assert list(cv2.imread(str(out / "clip" / "0001.png"), cv2.IMREAD_UNCHANGED)[0, :4]) == [
        0, 255, 0, 2,
    ]  # fmt: skip
    record = png_text(out / "clip" / "0008.png")
    assert record["frame"] == 7 and record["time"] == pytest.approx(7 / 25.0)
    assert record["model"] == "vinet" and record["weights_sha256"] == "0f" * 32
    assert record["extra"]["precision"] == "fp32"
    assert record["source"] == os.path.abspath("/videos/clip.mp4")


def test_png_numbering_follows_the_real_frame_count(tmp_path):
    # the container said 5 frames, there are 12: written with 1 digit, renumbered to 2
    writer = make_writer("png", tmp_path, fake_meta(8, 6, n=5), RUN, png_digits=1)
    write_all(writer, saliency_maps(12, 8, 6))
    assert listing(tmp_path / "clip") == [f"{i:02d}.png" for i in range(1, 13)]
    # the container said 20000 frames (5 digits), there are 3: the 4-digit minimum holds
    writer = make_writer("png", tmp_path / "b", fake_meta(8, 6, n=20_000), RUN)
    write_all(writer, saliency_maps(3, 8, 6))
    assert listing(tmp_path / "b" / "clip") == ["0001.png", "0002.png", "0003.png"]
    writer = make_writer("png", tmp_path / "c", fake_meta(8, 6), RUN, png_digits=6)
    write_all(writer, saliency_maps(2, 8, 6))
    assert listing(tmp_path / "c" / "clip") == ["000001.png", "000002.png"]


# --- h5 ----------------------------------------------------------------------------------------


def test_h5_layout_attributes_and_values(tmp_path):
    maps = saliency_maps(N_FRAMES, 64, 48)
    times = [i / 25.0 + 0.001 * (i % 3) for i in range(N_FRAMES)]  # not quite regular
    writer = make_writer("h5", tmp_path, fake_meta(), RUN)
    for i, m in enumerate(maps):
        writer.write(i, m, times[i])
    assert writer.close() == [tmp_path / "clip.h5"]
    assert listing(tmp_path) == ["clip.h5"]
    with h5py.File(tmp_path / "clip.h5", "r") as f:
        sal, ts = f["saliency"], f["timestamps"]
        assert sal.shape == (N_FRAMES, 48, 64) and sal.dtype == np.float16
        assert sal.chunks == (1, 48, 64) and sal.maxshape == (None, 48, 64)
        assert sal.compression == "gzip"
        np.testing.assert_allclose(sal[:], np.stack(maps), atol=1e-3)
        assert ts.dtype == np.float64 and ts.maxshape == (None,)
        np.testing.assert_array_equal(ts[:], times)
        a = f.attrs
        assert a["fps"] == 25.0 and a["source"] == os.path.abspath("/videos/clip.mp4")
        assert a["model"] == "vinet" and a["weights_sha256"] == "0f" * 32
        assert a["clip_len"] == 32 and a["warmup"] == "mirror" and a["salcli_version"] == "0.1.0"
        assert a["n_frames"] == N_FRAMES and a["width"] == 64 and a["height"] == 48
        assert list(a["value_range"]) == [0.0, 1.0]
        assert "11x11 Gaussian" in a["postprocess"] and "min-max" in a["postprocess"]
        assert a["precision"] == "fp32" and a["device"] == "cpu" and a["batch_size"] == 4


def test_h5_float32_uncompressed(tmp_path):
    maps = saliency_maps(3, 8, 6)
    meta = fake_meta(8, 6, n=None)
    writer = make_writer("h5", tmp_path, meta, RUN, h5_dtype="float32", h5_gzip=0)
    write_all(writer, maps)
    with h5py.File(tmp_path / "clip.h5", "r") as f:
        assert f["saliency"].dtype == np.float32 and f["saliency"].compression is None
        np.testing.assert_array_equal(f["saliency"][:], np.stack(maps))
        assert f.attrs["n_frames"] == 3


# --- mp4 -----------------------------------------------------------------------------------------


def read_mp4(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {
            "rate": v.average_rate,
            "audio": [s.codec_context.codec.canonical_name for s in c.streams.audio],
            "comment": c.metadata.get("comment", ""),
        }
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
    info["frames"] = frames
    if info["audio"]:
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            info["audio_rate"] = a.codec_context.sample_rate
            info["audio_samples"] = sum(f.samples for f in c.decode(a))
    return info


def source_frames(path: Path) -> list[np.ndarray]:
    with open_video(path) as reader:
        return [f.rgb for f in reader]


def test_mp4_overlay_without_audio(tmp_path, videos):
    meta = meta_of(videos["plain"])
    maps = saliency_maps(N_FRAMES, 64, 48)
    maps = [cv2.GaussianBlur(m, (11, 11), 0) for m in maps]  # smooth, as real maps are
    writer = make_writer("mp4", tmp_path, meta, RUN)
    assert write_all(writer, maps) == [tmp_path / "plain_saliency.mp4"]
    assert listing(tmp_path) == ["plain_saliency.mp4"]
    info = read_mp4(tmp_path / "plain_saliency.mp4")
    assert len(info["frames"]) == N_FRAMES and info["frames"][0].shape == (48, 64, 3)
    assert info["rate"] == FPS and info["audio"] == []
    assert json.loads(info["comment"])["model"] == "vinet"
    src = source_frames(videos["plain"])
    for i in (0, 13, N_FRAMES - 1):
        expected = W.overlay(src[i], W.to_uint8(maps[i]))
        err = np.abs(info["frames"][i].astype(int) - expected.astype(int)).mean()
        assert err < 8, err  # lossy H.264 of the expected overlay


def test_mp4_copies_aac_audio(tmp_path, videos):
    meta = meta_of(videos["aac"])
    assert meta.has_audio
    writer = make_writer("mp4", tmp_path, meta, RUN)
    write_all(writer, saliency_maps(N_FRAMES, 64, 48))
    info = read_mp4(tmp_path / "aac_saliency.mp4")
    assert len(info["frames"]) == N_FRAMES and info["rate"] == FPS
    assert info["audio"] == ["aac"] and info["audio_rate"] == 22_050
    assert abs(info["audio_samples"] - 22_050) <= 2 * AAC_FRAME  # one second of audio


def test_mp4_transcodes_pcm_audio_to_aac(tmp_path, videos):
    meta = meta_of(videos["pcm"])
    writer = make_writer("mp4", tmp_path, meta, RUN)
    write_all(writer, saliency_maps(N_FRAMES, 64, 48))
    info = read_mp4(tmp_path / "pcm_saliency.mp4")
    assert len(info["frames"]) == N_FRAMES
    assert info["audio"] == ["aac"] and info["audio_rate"] == 22_050
    assert abs(info["audio_samples"] - 22_050) <= 2 * AAC_FRAME


@pytest.mark.parametrize(
    ("encoder", "rate", "codec"),
    [("libmp3lame", 22_050, "mp3"), ("libopus", 48_000, "opus"), ("alac", 22_050, "alac")],
)
def test_mp4_copies_other_mp4_audio_codecs(tmp_path, encoder, rate, codec):
    if encoder not in av.codecs_available:
        pytest.skip(f"no {encoder} encoder in this FFmpeg")
    src = encode_video(tmp_path / f"src_{codec}.mkv", audio=encoder, rate=rate)
    write_all(make_writer("mp4", tmp_path, meta_of(src), RUN), saliency_maps(N_FRAMES, 64, 48))
    info = read_mp4(tmp_path / f"src_{codec}_saliency.mp4")
    assert len(info["frames"]) == N_FRAMES
    assert info["audio"] == [codec] and info["audio_rate"] == rate
    assert abs(info["audio_samples"] - rate) <= 2 * AAC_FRAME  # one second of audio


def test_mp4_from_a_frame_folder(tmp_path):
    folder = tmp_path / "take1"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"img_{i + 1:05d}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    with open_video(folder, fps=10) as reader:
        meta = reader.meta
    write_all(make_writer("mp4", tmp_path / "out", meta, RUN), saliency_maps(3, 64, 48), fps=10)
    info = read_mp4(tmp_path / "out" / "take1_saliency.mp4")
    assert len(info["frames"]) == 3 and info["rate"] == 10 and info["audio"] == []


def test_mp4_source_missing(tmp_path):
    # given no frames, the overlay writer decodes the source itself: a missing one fails
    # at the first map and leaves nothing behind
    writer = make_writer("mp4", tmp_path, fake_meta(), RUN)
    with pytest.raises(InputError, match="no such file"):
        writer.write(0, np.zeros((48, 64), np.float32), 0.0)
    assert listing(tmp_path) == []


def test_mp4_takes_the_frames_it_is_given(tmp_path, videos, monkeypatch):
    """With the decoded frames handed in, the overlay never decodes the source again."""
    meta = meta_of(videos["plain"])
    frames = source_frames(videos["plain"])

    def no_decoding(*args, **kwargs):
        raise AssertionError("the source was decoded a second time")

    monkeypatch.setattr(salcli.media.writers.mp4, "open_video", no_decoding)
    maps = [cv2.GaussianBlur(m, (11, 11), 0) for m in saliency_maps(len(frames), 64, 48)]
    writer = make_writer("mp4", tmp_path, meta, RUN)
    assert writer.needs_frames
    for i, (m, rgb) in enumerate(zip(maps, frames, strict=True)):
        writer.write(i, m, i / FPS, rgb=rgb)
    (path,) = writer.close()
    shown = read_mp4(path)["frames"]
    assert len(shown) == len(frames)
    expected = W.overlay(frames[5], W.to_uint8(maps[5]))
    assert np.abs(shown[5].astype(int) - expected.astype(int)).mean() < 8  # lossy H.264


def test_odd_frame_size(tmp_path, videos):
    meta = meta_of(videos["odd"])
    assert (meta.width, meta.height) == (63, 47)
    maps = saliency_maps(N_FRAMES, 63, 47)
    for fmt in ("png", "h5", "mp4"):
        write_all(make_writer(fmt, tmp_path / "exact", meta, RUN), maps)
    assert cv2.imread(str(tmp_path / "exact/odd/0001.png"), cv2.IMREAD_UNCHANGED).shape == (47, 63)
    with h5py.File(tmp_path / "exact/odd.h5", "r") as f:
        assert f["saliency"].shape == (N_FRAMES, 47, 63)
    info = read_mp4(tmp_path / "exact/odd_saliency.mp4")
    assert len(info["frames"]) == N_FRAMES and info["frames"][0].shape == (47, 63, 3)
    write_all(make_writer("mp4", tmp_path / "pad", meta, RUN, mp4_odd="pad"), maps)
    info = read_mp4(tmp_path / "pad/odd_saliency.mp4")
    assert len(info["frames"]) == N_FRAMES and info["frames"][0].shape == (48, 64, 3)


def test_mp4_mpeg4_fallback(tmp_path, videos, monkeypatch):
    monkeypatch.setattr(salcli.media.writers.mp4, "VIDEO_CODECS", ("mpeg4",))
    meta = meta_of(videos["odd"])
    writer = make_writer("mp4", tmp_path, meta, RUN)
    write_all(writer, saliency_maps(N_FRAMES, 63, 47))
    assert writer.video_codec == "mpeg4"
    with av.open(str(tmp_path / "odd_saliency.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    info = read_mp4(tmp_path / "odd_saliency.mp4")
    assert len(info["frames"]) == N_FRAMES and info["frames"][0].shape == (47, 63, 3)


# --- atomicity and errors ----------------------------------------------------------------------


def test_abort_leaves_nothing(tmp_path, videos):
    meta = meta_of(videos["aac"])
    out = tmp_path / "out"
    writers = [make_writer(fmt, out, meta, RUN) for fmt in ("png", "h5", "mp4")]
    for i, m in enumerate(saliency_maps(5, 64, 48)):
        for w in writers:
            w.write(i, m, i / FPS)
    assert len(listing(out)) == 3  # the temporaries, hidden
    assert all(name.startswith(".") for name in listing(out))
    for w in writers:
        w.abort()
        w.abort()  # idempotent
    assert listing(out) == []
    # as a context manager: an exception aborts
    with pytest.raises(KeyboardInterrupt):
        with make_writer("h5", out, meta, RUN) as w:
            w.write(0, saliency_maps(1, 64, 48)[0], 0.0)
            raise KeyboardInterrupt
    assert listing(out) == []


def test_rewrite_replaces_only_at_close(tmp_path):
    meta = fake_meta(8, 6)
    old = [np.zeros((6, 8), np.float32)] * 3
    new = [np.ones((6, 8), np.float32)] * 2
    for fmt in ("png", "h5"):
        write_all(make_writer(fmt, tmp_path, meta, RUN), old)
    # a second run: until it closes, the first run's outputs stay whole
    writers = [make_writer(fmt, tmp_path, meta, RUN) for fmt in ("png", "h5")]
    for w in writers:
        for i, m in enumerate(new):
            w.write(i, m, i / 25)
    assert listing(tmp_path / "clip") == ["0001.png", "0002.png", "0003.png"]
    with h5py.File(tmp_path / "clip.h5", "r") as f:
        assert f["saliency"].shape[0] == 3
    for w in writers:
        w.close()
    assert listing(tmp_path) == ["clip", "clip.h5"]
    assert listing(tmp_path / "clip") == ["0001.png", "0002.png"]
    assert cv2.imread(str(tmp_path / "clip" / "0001.png"), cv2.IMREAD_UNCHANGED).max() == 255
    with h5py.File(tmp_path / "clip.h5", "r") as f:
        assert f["saliency"].shape[0] == 2 and f["saliency"][0].min() == 1.0
    # a third run that fails leaves the second run's outputs alone
    writers = [make_writer(fmt, tmp_path, meta, RUN) for fmt in ("png", "h5")]
    for w in writers:
        w.write(0, old[0], 0.0)
        w.abort()
    assert listing(tmp_path) == ["clip", "clip.h5"]
    assert listing(tmp_path / "clip") == ["0001.png", "0002.png"]


def test_output_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    for fmt in ("png", "h5"):
        with pytest.raises(OutputError) as err:
            make_writer(fmt, blocker, fake_meta(), RUN)
        assert "cannot create the output folder" in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(OutputError):
        make_writer("png", blocker / "below", fake_meta(), RUN)
    assert listing(tmp_path) == ["out"]
    # the PNG folder's own name taken by a file
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "clip").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        make_writer("png", tmp_path / "dir", fake_meta(), RUN)
    assert listing(tmp_path / "dir") == ["clip"]


def test_disk_full_while_writing_png(tmp_path, monkeypatch):
    writer = make_writer("png", tmp_path, fake_meta(8, 6), RUN)
    writer.write(0, np.zeros((6, 8), np.float32), 0.0)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(salcli.media.writers.png, "open", full, raising=False)
    with pytest.raises(OutputError, match=r"clip: cannot write \(disk full\)"):
        writer.write(1, np.zeros((6, 8), np.float32), 0.04)
    assert listing(tmp_path) == []
    writer.abort()  # already aborted: no error


@pytest.mark.parametrize("fmt", ["png", "h5", "mp4"])
def test_disk_full_at_close(tmp_path, videos, monkeypatch, fmt):
    meta = meta_of(videos["plain"])
    writer = make_writer(fmt, tmp_path, meta, RUN)
    for i, m in enumerate(saliency_maps(3, 64, 48)):
        writer.write(i, m, i / FPS)

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match="disk full"):
        writer.close()
    monkeypatch.undo()
    assert listing(tmp_path) == []


def test_bad_calls(tmp_path):
    writer = make_writer("h5", tmp_path, fake_meta(8, 6), RUN)
    with pytest.raises(ValueError, match="frame 1 given, frame 0 expected"):
        writer.write(1, np.zeros((6, 8), np.float32), 0.0)
    assert listing(tmp_path) == []  # an error aborts
    writer = make_writer("h5", tmp_path, fake_meta(8, 6), RUN)
    with pytest.raises(InputError, match="map is 6x8, the video is 8x6"):
        writer.write(0, np.zeros((8, 6), np.float32), 0.0)
    assert listing(tmp_path) == []
    writer = make_writer("png", tmp_path, fake_meta(8, 6), RUN)
    with pytest.raises(OutputError, match="no saliency maps were written"):
        writer.close()
    assert listing(tmp_path) == []


def test_fraction_rate_is_kept(tmp_path, videos):
    """An NTSC-like rate (29.97) stays the output's frame rate."""
    meta = meta_of(videos["plain"])
    meta.fps = 30_000 / 1001
    write_all(make_writer("mp4", tmp_path, meta, RUN), saliency_maps(4, 64, 48))
    with av.open(str(tmp_path / "plain_saliency.mp4")) as c:
        assert c.streams.video[0].average_rate == Fraction(30_000, 1001)
