"""The PyAV reader on awkward inputs: rotation, pixel formats, odd sizes, variable rate,
size changes, truncated and corrupt files. No model runs here."""

from __future__ import annotations

import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import (
    DECODE_SIZE,
    bright_corner,
    encode,
    luma,
    marked,
    moving_frames,
    write_audio_only,
    write_video,
)

from salcli.errors import InputError
from salcli.media import decode
from salcli.media.decode import DecodeWarning, FrameFolderReader, open_video


def read_all(path: Path) -> tuple[decode.VideoMeta, list[decode.Frame]]:
    with open_video(path) as reader:
        return reader.meta, list(reader)


# rotation tags as a phone writes them: the display matrix turns the stored frame
# counter-clockwise by `rotation` degrees (FFmpeg's convention, PyAV's VideoFrame.rotation)
@pytest.mark.parametrize(
    "rotation, corner, swapped",
    [(-90, "tr", True), (90, "bl", True), (180, "br", False), (0, "tl", False)],
)
def test_rotation_metadata_gives_upright_frames(tmp_path, rotation, corner, swapped):
    path = encode(tmp_path / "rot.mp4", marked(), rotation=rotation)
    meta, frames = read_all(path)
    h, w = DECODE_SIZE
    expect = (w, h) if swapped else (h, w)
    assert (meta.height, meta.width) == expect
    assert meta.rotation == rotation % 360
    for f in frames:
        assert f.rgb.shape == (*expect, 3) and f.rgb.flags.c_contiguous
        assert bright_corner(f.rgb) == corner


@pytest.mark.parametrize(
    "codec, pix_fmt, size",
    [
        ("libx264", "yuv420p10le", DECODE_SIZE),  # 10-bit
        ("libx264", "yuv444p", DECODE_SIZE),  # 4:4:4
        ("ffv1", "yuv420p", (47, 63)),  # odd width and height
        ("libx264", "yuv444p", (47, 63)),
    ],
)
def test_pixel_formats_and_odd_sizes_decode_to_rgb(tmp_path, codec, pix_fmt, size):
    src = moving_frames(3, *size)
    lossless = {"qp": "0"} if codec == "libx264" else None
    path = encode(tmp_path / "v.mkv", src, codec=codec, pix_fmt=pix_fmt, codec_options=lossless)
    meta, frames = read_all(path)
    assert (meta.height, meta.width) == size and len(frames) == 3
    for f, rgb in zip(frames, src, strict=True):
        assert f.rgb.dtype == np.uint8 and f.rgb.shape == (*size, 3)
        # the picture encoded (its luma: 4:2:0 chroma of a noisy picture is coarse)
        assert np.abs(luma(f.rgb) - luma(rgb)).mean() < 2.0


def test_variable_frame_rate_keeps_each_frames_time(tmp_path):
    times_ms = [0, 40, 50, 200, 230]
    path = encode(
        tmp_path / "vfr.mkv", moving_frames(5, *DECODE_SIZE), codec="libx264", pts_ms=times_ms
    )
    _, frames = read_all(path)
    assert [f.index for f in frames] == list(range(5))
    assert np.allclose([f.time for f in frames], np.array(times_ms) / 1000, atol=1e-3)


def test_one_frame(tmp_path):
    meta, frames = read_all(write_video(tmp_path / "one.mp4", n_frames=1))
    assert len(frames) == 1 and frames[0].time == 0.0 and meta.n_frames == 1


def test_size_change_mid_stream_is_scaled_to_the_first_size(tmp_path):
    first = encode(tmp_path / "a.ts", moving_frames(3, *DECODE_SIZE), container="mpegts")
    second = encode(tmp_path / "b.ts", moving_frames(3, 24, 32), container="mpegts")
    joined = tmp_path / "joined.ts"  # MPEG-TS files can be concatenated byte for byte
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    meta, frames = read_all(joined)
    assert len(frames) == 6 and (meta.height, meta.width) == DECODE_SIZE
    assert all(f.rgb.shape == (*DECODE_SIZE, 3) for f in frames)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("zero", "empty file"),
        ("random", "not a readable video"),
        ("text", "not a readable video"),
        ("audio_only", "no video stream"),
        ("truncated_mp4", "not a readable video"),  # the index (moov) is at the end
        ("missing", "no such file"),
    ],
)
def test_unreadable_files_raise_one_line_input_errors(tmp_path, kind, message):
    path = tmp_path / f"{kind}.mp4"
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    elif kind == "text":
        path.write_text("not a video\n" * 50)
    elif kind == "audio_only":
        path = write_audio_only(tmp_path / "audio.m4a")
    elif kind == "truncated_mp4":
        data = write_video(tmp_path / "full.mp4", n_frames=10).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        open_video(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text
    assert "Errno" not in text  # FFmpeg's own text, without its error number


def test_truncated_stream_keeps_the_frames_it_has_and_warns(tmp_path):
    full = encode(tmp_path / "full.ts", moving_frames(30, *DECODE_SIZE), container="mpegts")
    cut = tmp_path / "cut.ts"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    _, frames = read_all(cut)
    assert 5 <= len(frames) < 30
    assert np.allclose(np.diff([f.time for f in frames]), 0.04, atol=1e-3)


def test_corrupt_packets_mid_stream_are_skipped_with_a_warning(tmp_path):
    path = encode(tmp_path / "c.avi", moving_frames(30, *DECODE_SIZE), container="avi")
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    for pos, size in packets[10:20]:  # scramble the payload of ten frames in the middle
        for i in range(pos + 4, pos + size):
            data[i] ^= 0x5A
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meta, frames = read_all(bad)
    assert 10 <= len(frames) < 30 and meta.n_frames == 30
    assert [f.index for f in frames] == list(range(len(frames)))
    times = [f.time for f in frames]
    assert times == sorted(times) and times[-1] == pytest.approx(29 * 0.04, abs=1e-3)
    messages = [str(w.message) for w in caught if issubclass(w.category, DecodeWarning)]
    assert messages and all(str(bad) in m for m in messages)
    assert any("of the 30 frames" in m for m in messages)


def test_very_large_frames_are_refused_before_decoding(tmp_path):
    # a raw YUV4MPEG header announcing 9000x8000 frames (72 megapixels), one byte of data
    path = tmp_path / "big.y4m"
    path.write_bytes(b"YUV4MPEG2 W9000 H8000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 64)
    with pytest.raises(InputError, match="9000x8000 are too large"):
        open_video(path)


def test_the_pixel_limit_applies_to_decoded_frames(tmp_path, monkeypatch):
    path = write_video(tmp_path / "v.mp4", n_frames=2)
    monkeypatch.setattr(decode, "MAX_PIXELS", 64 * 48 - 1)
    with pytest.raises(InputError, match="64x48 are too large"):
        open_video(path)


def test_frame_folder_stem_and_mixed_image_sizes(tmp_path):
    import cv2

    folder = tmp_path / "take.v2"  # a dot in a folder name is not a suffix
    folder.mkdir()
    cv2.imwrite(str(folder / "0001.png"), np.zeros((48, 64, 3), np.uint8))
    cv2.imwrite(str(folder / "0002.png"), np.zeros((24, 32, 3), np.uint8))
    reader = open_video(folder, fps=10)
    assert isinstance(reader, FrameFolderReader) and reader.meta.stem == "take.v2"
    frames = list(reader)
    assert [f.rgb.shape for f in frames] == [(48, 64, 3), (48, 64, 3)]
    assert [f.time for f in frames] == [0.0, 0.1]


def test_dataset_frame_folders_take_the_video_name(tmp_path):
    import cv2
    import numpy as np

    from salcli.corpus.inputs import source_stem
    from salcli.media.decode import open_video

    images = tmp_path / "val" / "0601" / "images"
    images.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(images / f"{i + 1:04d}.png"), np.zeros((8, 8, 3), np.uint8))
    assert source_stem(images) == "0601"
    with open_video(images, fps=30) as reader:
        assert reader.meta.stem == "0601"


def test_dataset_frame_folders_land_where_evaluate_reads_them(tmp_path):
    import cv2
    import numpy as np

    from salcli.corpus.inputs import expand_inputs

    folders = []
    for video in ("0601", "0602"):
        images = tmp_path / "val" / video / "images"
        images.mkdir(parents=True)
        cv2.imwrite(str(images / "0001.png"), np.zeros((8, 8, 3), np.uint8))
        folders.append(str(images))
    out = tmp_path / "preds"
    jobs = expand_inputs(folders, out)
    assert [(j.out_dir, j.stem) for j in jobs] == [(out, "0601"), (out, "0602")]
    jobs = expand_inputs(folders[:1], None)
    assert (jobs[0].out_dir, jobs[0].stem) == (tmp_path / "val" / "saliency", "0601")
