"""A corpus of bad and awkward inputs, generated here, through `salcli predict`.

Every input gives correct outputs, or one clear line and a failed status for that file;
never a traceback, never a partial output; the batch goes on. The network is the cheap
stand-in of ``test_batch.fast_model`` (the map is the last frame's brightness, so a map
shows where the picture is bright: that is how the rotation test sees which way is up).
"""

from __future__ import annotations

import errno
from pathlib import Path

import av
import cv2
import h5py
import numpy as np
import pytest
from helpers import (
    MARK,
    bright_corner,
    encode,
    errors,
    h5_frames,
    lines,
    marked,
    moving_frames,
    predict,
    temps,
    use_fast_model,
    write_audio_only,
    write_video,
)

import salcli.media.records
from salcli.media.writers import H5Writer, PngWriter

FORMATS = "png,h5,mp4"


def _scramble_middle(path: Path, out: Path, first: int, last: int) -> Path:
    """A copy of ``path`` whose video packets ``first`` .. ``last - 1`` are garbage."""
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    for pos, size in packets[first:last]:
        for i in range(pos + 4, pos + size):
            data[i] ^= 0x5A
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """name -> file named after it; each tiny."""
    d = tmp_path_factory.mktemp("corpus")
    c: dict[str, Path] = {}
    c["good"] = write_video(d / "good.mp4", n_frames=2)
    full = write_video(d / "full.mp4", n_frames=10).read_bytes()
    (d / "truncated.mp4").write_bytes(full[: len(full) // 2])
    c["truncated"] = d / "truncated.mp4"
    (d / "full.mp4").unlink()
    c["random"] = d / "random.mp4"
    c["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    c["zero"] = d / "zero.mp4"
    c["zero"].write_bytes(b"")
    c["audio_only"] = write_audio_only(d / "audio_only.m4a")
    c["one_frame"] = write_video(d / "one_frame.mp4", n_frames=1)
    c["short"] = write_video(d / "short.mp4", n_frames=3)  # fewer than T = 32
    c["odd"] = encode(d / "odd.mkv", moving_frames(2, 47, 63), codec="ffv1")
    c["ten_bit"] = encode(
        d / "ten_bit.mkv", moving_frames(2, 48, 64), codec="libx264", pix_fmt="yuv420p10le"
    )
    c["yuv444"] = encode(
        d / "yuv444.mkv", moving_frames(2, 48, 64), codec="libx264", pix_fmt="yuv444p"
    )
    c["rotated"] = encode(d / "rotated.mp4", marked(2), rotation=-90)  # shown turned clockwise
    c["vfr"] = encode(
        d / "vfr.mkv", moving_frames(4, 48, 64), codec="libx264", pts_ms=[0, 40, 50, 200]
    )
    clean = encode(d / "clean.avi", moving_frames(30, 48, 64), container="avi")
    c["corrupt"] = _scramble_middle(clean, d / "corrupt.avi", 10, 20)
    clean.unlink()
    ts = encode(d / "whole.ts", moving_frames(30, 48, 64), container="mpegts")
    c["truncated_ts"] = d / "truncated_ts.ts"
    c["truncated_ts"].write_bytes(ts.read_bytes()[: ts.stat().st_size // 2])
    ts.unlink()
    c["huge"] = d / "huge.y4m"  # a header announcing 9000x8000 frames (72 megapixels)
    c["huge"].write_bytes(b"YUV4MPEG2 W9000 H8000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 64)
    return c


# name -> (status, frames, (H, W) of the maps) or ("failed", words of the error line)
EXPECTED = {
    "good": ("done", 2, (48, 64)),
    "truncated": ("failed", "not a readable video"),
    "random": ("failed", "not a readable video"),
    "zero": ("failed", "empty file"),
    "audio_only": ("failed", "no video stream"),
    "one_frame": ("done", 1, (48, 64)),
    "short": ("done", 3, (48, 64)),
    "odd": ("done", 2, (47, 63)),
    "ten_bit": ("done", 2, (48, 64)),
    "yuv444": ("done", 2, (48, 64)),
    "rotated": ("done", 2, (64, 48)),  # upright: width and height swapped
    "vfr": ("done", 4, (48, 64)),
    "corrupt": ("done", None, (48, 64)),  # the frames that decode
    "truncated_ts": ("done", None, (48, 64)),
    "huge": ("failed", "9000x8000 are too large"),
}


@pytest.fixture(scope="module")
def corpus_run(corpus, tmp_path_factory, vinet_checkpoint):
    """One batch over the whole corpus (the bad files first, so the batch must go on)."""
    mp = pytest.MonkeyPatch()
    try:
        use_fast_model(mp)
        out = tmp_path_factory.mktemp("out")
        order = sorted(corpus, key=lambda k: EXPECTED[k][0] != "failed")
        r = predict(
            *(corpus[k] for k in order), "-o", out, "-f", FORMATS, "--jsonl",
            weights=vinet_checkpoint,
        )  # fmt: skip
    finally:
        mp.undo()
    return r, out


def test_corpus_exit_status_and_no_traceback(corpus_run):
    r, _ = corpus_run
    assert r.exit_code == 1
    assert "Traceback" not in r.output and "Traceback" not in r.stderr
    n_failed = sum(1 for v in EXPECTED.values() if v[0] == "failed")
    assert len(errors(r)) == n_failed
    assert f"{n_failed} of {len(EXPECTED)} inputs failed" not in r.stderr  # --jsonl: no summary


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_input(corpus_run, corpus, name):
    r, out = corpus_run
    results = {d["path"]: d for d in lines(r)}
    path = corpus[name]
    got = results[str(path)]
    expected = EXPECTED[name]
    stem = path.stem
    if expected[0] == "failed":
        assert got["status"] == "failed" and expected[1] in got["error"]
        [line] = [e for e in errors(r) if str(path) in e]
        assert expected[1] in line and "\n" not in got["error"]
        names = {stem, f"{stem}.h5", f"{stem}_saliency.mp4", f"{stem}.salcli.json"}
        assert not [p for p in out.iterdir() if p.name in names]
        return
    assert got["status"] == "done" and got["error"] is None, got
    frames = got["frames"]
    if expected[1] is not None:
        assert frames == expected[1]
    h, w = expected[2]
    assert h5_frames(out / f"{stem}.h5") == (frames, h, w)
    pngs = sorted((out / stem).glob("*.png"))
    assert len(pngs) == frames and cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE).shape == (h, w)
    with av.open(str(out / f"{stem}_saliency.mp4")) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.height, stream.codec_context.width) == (h, w)
        assert sum(1 for _ in c.decode(stream)) == frames


def test_no_partial_or_temporary_files_anywhere(corpus_run):
    _, out = corpus_run
    assert not temps(out)
    done = [k for k, v in EXPECTED.items() if v[0] == "done"]
    assert sorted(p.name for p in out.glob("*.salcli.json")) == sorted(
        f"{k}.salcli.json" for k in done
    )


def test_rotated_maps_are_upright(corpus_run):
    _, out = corpus_run
    with h5py.File(out / "rotated.h5") as f:
        maps = f["saliency"][:]
    assert maps.shape[1:] == (64, 48)
    # the bright square was stored top-left; shown turned clockwise it is top-right
    heat = np.repeat((maps[0] * 255).astype(np.uint8)[..., None], 3, axis=2)
    assert bright_corner(heat) == "tr"
    assert maps[0][:MARK, -MARK:].mean() > 0.5 > maps[0][-MARK:, :MARK].mean()


def test_variable_rate_keeps_the_frame_times(corpus_run):
    _, out = corpus_run
    with h5py.File(out / "vfr.h5") as f:
        assert np.allclose(f["timestamps"][:], [0.0, 0.04, 0.05, 0.2], atol=1e-3)


def test_damaged_streams_warn_and_keep_what_decodes(corpus_run, corpus):
    r, _ = corpus_run
    results = {d["path"]: d for d in lines(r)}
    warnings_ = [x for x in r.stderr.splitlines() if x.startswith("salcli: warning:")]
    corrupt = results[str(corpus["corrupt"])]
    assert 10 <= corrupt["frames"] < 30
    assert any(str(corpus["corrupt"]) in w and "of the 30 frames" in w for w in warnings_)
    assert 5 <= results[str(corpus["truncated_ts"])]["frames"] < 30


# --- outputs that cannot be written ---------------------------------------------------------


@pytest.mark.parametrize("where", ["a_file", "proc"])
def test_unwritable_output_folder(tmp_path, vinet_checkpoint, fast_model, where):  # noqa: F811
    videos = [write_video(tmp_path / f"{n}.mp4", n_frames=1) for n in "ab"]
    if where == "a_file":
        out = tmp_path / "taken"
        out.write_text("a regular file where the output folder should be")
    else:
        out = Path("/proc/salcli-test/out")  # nothing can be created under /proc
    r = predict(*videos, "-o", out, "-f", "png,h5", "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert [d["status"] for d in lines(r)] == ["failed", "failed"]
    errs = errors(r)
    assert len(errs) == 2 and all("cannot create the output folder" in e for e in errs)
    assert all(str(v) in e for v, e in zip(videos, errs, strict=True))


def test_full_disk_fails_that_video_only(tmp_path, vinet_checkpoint, fast_model, monkeypatch):  # noqa: F811
    videos = [write_video(tmp_path / f"{n}.mp4", n_frames=3) for n in "abc"]
    out = tmp_path / "out"
    real_write = PngWriter._write

    def full_on_a(self, index, saliency, time, rgb):
        if self.meta.stem == "a" and index == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, index, saliency, time, rgb)

    monkeypatch.setattr(PngWriter, "_write", full_on_a)
    # the completion record of c cannot be written either
    real_replace = salcli.media.records.os.replace

    def full_on_c_record(src, dst):
        if Path(dst).name == "c.salcli.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(salcli.media.records.os, "replace", full_on_c_record)
    r = predict(*videos, "-o", out, "-f", "png,h5", "--jsonl", weights=vinet_checkpoint)
    monkeypatch.undo()
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert [d["status"] for d in lines(r)] == ["failed", "done", "failed"]
    err_a, err_c = errors(r)
    assert str(videos[0]) in err_a and "disk full" in err_a
    assert str(videos[2]) in err_c and "disk full" in err_c
    assert not (out / "a").exists() and not (out / "a.h5").exists()
    assert not (out / "c.salcli.json").exists() and not temps(out)
    assert h5_frames(out / "b.h5") == (3, 48, 64)


def test_ctrl_c_leaves_no_partial_files(tmp_path, vinet_checkpoint, fast_model, monkeypatch):  # noqa: F811
    videos = [write_video(tmp_path / f"{n}.mp4", n_frames=3) for n in "abc"]
    out = tmp_path / "out"
    real_write = H5Writer._write

    def interrupt_on_b(self, index, saliency, time, rgb):
        if self.meta.stem == "b" and index == 1:
            raise KeyboardInterrupt
        real_write(self, index, saliency, time, rgb)

    monkeypatch.setattr(H5Writer, "_write", interrupt_on_b)
    r = predict(*videos, "-o", out, "-f", FORMATS, weights=vinet_checkpoint)
    assert r.exit_code == 130
    assert r.stderr.splitlines()[-1] == "salcli: interrupted; partial outputs removed"
    assert sorted(p.name for p in out.iterdir()) == [
        "a",
        "a.h5",
        "a.salcli.json",
        "a_saliency.mp4",
    ]
    assert not temps(out)
