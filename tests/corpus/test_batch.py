"""`salcli predict` over corpora: folders, stdin, mirrored output trees, re-runs, killed
runs, shards, JSON lines and exit codes.

Most tests use ``fast_model``: the real CLI, checkpoint file, decoding, windowing and
writers, with ViNet's forward pass replaced by a cheap stand-in (the map is the last
frame's brightness) and the checkpoint read once per session. One test runs the real
network at the small test input size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from helpers import (
    CLI_INPUT_SIZE,
    JSONL_KEYS,
    errors,
    h5_frames,
    lines,
    predict,
    runner,
    temps,
    write_video,
)

from salcli.cli import app
from salcli.corpus.inputs import expand_inputs, in_shard, select_shard
from salcli.media.writers import H5Writer

# --- the real network, once ---------------------------------------------------------------


def test_many_files_real_model_jsonl(tmp_path, vinet_checkpoint):
    a = write_video(tmp_path / "a.mp4", n_frames=2)
    b = write_video(tmp_path / "b.mkv", n_frames=1, size=(32, 48))
    out = tmp_path / "out"
    r = predict(a, b, "-o", out, "-f", "png,h5", "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 0, r.output
    got = lines(r)
    assert [d["path"] for d in got] == [str(a), str(b)]
    for d, n, shape in zip(got, (2, 1), ((48, 64), (32, 48)), strict=True):
        assert set(d) == JSONL_KEYS and d["status"] == "done" and d["error"] is None
        assert d["frames"] == n and d["fps"] == 25.0 and d["seconds"] > 0
        assert all(Path(p).exists() for p in d["outputs"]) and len(d["outputs"]) == 2
        stem = Path(d["path"]).stem
        with h5py.File(out / f"{stem}.h5") as f:
            maps = f["saliency"][:]
        assert maps.shape == (n, *shape) and 0.0 <= maps.min() and maps.max() <= 1.0
        assert len(list((out / stem).glob("*.png"))) == n
    assert not temps(out)


# --- folders, globs, stdin, output trees ----------------------------------------------------


@pytest.fixture
def tree(tmp_path) -> Path:
    """root/top.mp4, root/a/clip.mp4, root/b/clip.mp4 (another size), root/b/deep/x.avi,
    plus files that are not videos or are hidden."""
    root = tmp_path / "corpus"
    for sub in ("a", "b/deep"):
        (root / sub).mkdir(parents=True)
    write_video(root / "top.mp4", n_frames=1)
    write_video(root / "a" / "clip.mp4", n_frames=1)
    write_video(root / "b" / "clip.mp4", n_frames=1, size=(32, 48))
    write_video(root / "b" / "deep" / "x.avi", n_frames=2)
    (root / "notes.txt").write_text("not a video")
    write_video(root / ".hidden.mp4", n_frames=1)
    return root


def test_folder_alone_takes_its_own_videos(tree, tmp_path, vinet_checkpoint, fast_model):
    out = tmp_path / "out"
    r = predict(tree, "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 0, r.output
    assert [d["path"] for d in lines(r)] == [str(tree / "top.mp4")]
    assert sorted(p.name for p in out.iterdir()) == ["top.h5", "top.salcli.json"]


def test_recursive_output_tree_mirrors_the_input_tree(tree, tmp_path, vinet_checkpoint, fast_model):
    out = tmp_path / "out"
    r = predict(tree, "-r", "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 0, r.output
    assert sorted(d["path"] for d in lines(r)) == sorted(
        str(tree / p) for p in ("top.mp4", "a/clip.mp4", "b/clip.mp4", "b/deep/x.avi")
    )
    # equal names in different folders: both kept, each with its own maps
    assert h5_frames(out / "a" / "clip.h5") == (1, 48, 64)
    assert h5_frames(out / "b" / "clip.h5") == (1, 32, 48)
    assert h5_frames(out / "b" / "deep" / "x.h5") == (2, 48, 64)
    assert (out / "top.h5").exists() and not temps(out)


def test_glob_filters_by_name(tree, tmp_path, vinet_checkpoint, fast_model):
    out = tmp_path / "out"
    r = predict(
        tree, "-r", "--glob", "*.avi", "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint
    )
    assert r.exit_code == 0, r.output
    assert [d["path"] for d in lines(r)] == [str(tree / "b" / "deep" / "x.avi")]


def test_default_output_inside_the_tree_is_not_read_back(tree, vinet_checkpoint, fast_model):
    args = (tree, "-r", "-f", "h5,mp4", "--jsonl")
    first = predict(*args, weights=vinet_checkpoint)
    assert first.exit_code == 0, first.output
    assert (tree / "saliency" / "b" / "deep" / "x_saliency.mp4").exists()
    # outputs of an earlier run elsewhere in the tree are not inputs either
    sub = predict(tree / "a" / "clip.mp4", "-f", "mp4", weights=vinet_checkpoint)
    assert sub.exit_code == 0 and (tree / "a" / "saliency" / "clip_saliency.mp4").exists()
    again = predict(*args, weights=vinet_checkpoint)
    assert again.exit_code == 0, again.output
    got = lines(again)
    assert len(got) == 4 and {d["status"] for d in got} == {"skipped"}


@pytest.mark.parametrize("sep", ["\n", "\0"])
def test_paths_from_stdin_like_find(tree, tmp_path, vinet_checkpoint, fast_model, sep):
    found = [tree / "a" / "clip.mp4", tree / "b" / "clip.mp4", tree / "b" / "deep" / "x.avi"]
    out = tmp_path / "out"
    text = sep.join(str(p) for p in found) + sep
    r = predict("-", "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint, input=text)
    assert r.exit_code == 0, r.output
    assert [d["path"] for d in lines(r)] == [str(p) for p in found]
    # files named one by one from several folders: mirrored below the folder they share
    assert h5_frames(out / "a" / "clip.h5") == (1, 48, 64)
    assert h5_frames(out / "b" / "clip.h5") == (1, 32, 48)
    assert (out / "b" / "deep" / "x.h5").exists()


def test_explicit_files_never_overwrite_each_other(tree, tmp_path, vinet_checkpoint, fast_model):
    twin = write_video(tree / "a" / "clip.mkv", n_frames=2)  # same stem, same folder
    out = tmp_path / "out"
    r = predict(
        tree / "a" / "clip.mp4", tree / "b" / "clip.mp4", twin, "-o", out, "-f", "h5",
        weights=vinet_checkpoint,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert h5_frames(out / "a" / "clip.mp4" / "clip.h5") == (1, 48, 64)
    assert h5_frames(out / "a" / "clip.mkv" / "clip.h5") == (2, 48, 64)
    assert h5_frames(out / "b" / "clip.h5") == (1, 32, 48)
    # files from one folder go straight into -o
    flat = tmp_path / "flat"
    r = predict(tree / "top.mp4", tree / "a" / "clip.mp4", "-o", flat, "-f", "h5",
                weights=vinet_checkpoint)  # fmt: skip
    assert r.exit_code == 0 and (flat / "top.h5").exists() and (flat / "a" / "clip.h5").exists()


def test_another_runs_outputs_are_not_taken_for_this_video(
    tree, tmp_path, vinet_checkpoint, fast_model
):
    out = tmp_path / "out"
    assert (
        predict(tree / "a" / "clip.mp4", "-o", out, "-f", "h5", weights=vinet_checkpoint).exit_code
        == 0
    )
    r = predict(tree / "b" / "clip.mp4", "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 1
    [err] = errors(r)
    assert "belong to" in err and str(tree / "a" / "clip.mp4") in err
    assert lines(r)[0]["status"] == "failed" and h5_frames(out / "clip.h5") == (1, 48, 64)
    r = predict(
        tree / "b" / "clip.mp4", "-o", out, "-f", "h5", "--overwrite", weights=vinet_checkpoint
    )
    assert r.exit_code == 0 and h5_frames(out / "clip.h5") == (1, 32, 48)


# --- re-runs, killed runs -----------------------------------------------------------------


def test_rerun_skips_finished_videos_and_overwrite_redoes(tmp_path, vinet_checkpoint, fast_model):
    video = write_video(tmp_path / "v.mp4", n_frames=2)
    out = tmp_path / "out"
    first = predict(video, "-o", out, "-f", "png,h5", "--jsonl", weights=vinet_checkpoint)
    assert first.exit_code == 0 and lines(first)[0]["status"] == "done"
    record = json.loads((out / "v.salcli.json").read_text())
    assert record["source"] == str(video.resolve()) and record["frames"] == 2
    again = predict(video, "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint)
    [skipped] = lines(again)
    assert again.exit_code == 0 and skipped["status"] == "skipped"
    assert skipped["frames"] == 2 and len(skipped["outputs"]) == 2
    # a format not yet written: the video is redone
    more = predict(video, "-o", out, "-f", "h5,mp4", "--jsonl", weights=vinet_checkpoint)
    assert lines(more)[0]["status"] == "done" and (out / "v_saliency.mp4").exists()
    # an output removed by hand: redone
    (out / "v.h5").unlink()
    redo = predict(video, "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint)
    assert lines(redo)[0]["status"] == "done" and (out / "v.h5").exists()
    forced = predict(
        video, "-o", out, "-f", "h5", "--overwrite", "--jsonl", weights=vinet_checkpoint
    )
    assert lines(forced)[0]["status"] == "done"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_run_are_cleaned_and_the_video_redone(
    tmp_path, vinet_checkpoint, fast_model
):
    video = write_video(tmp_path / "v.mp4", n_frames=2)
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [
            out / f".v.h5.{dead}-0a1b2c.tmp",  # a half-written HDF5 file
            out / f".v_saliency.mp4.{dead}-0a1b2c.tmp",
            out / f".v.salcli.json.{dead}-0a1b2c.tmp",
        ]
        for p in stale:
            p.write_bytes(b"partial")
        png_tmp = out / f".v.{dead}-0a1b2c.tmp"  # a half-filled PNG folder
        png_tmp.mkdir()
        (png_tmp / "0001.png").write_bytes(b"partial")
        busy = out / f".v.h5.{live.pid}-0d0e0f.tmp"  # a run still working: left alone
        busy.write_bytes(b"in progress")
        other = out / f".other.h5.{dead}-0a1b2c.tmp"  # not this video's: left alone
        other.write_bytes(b"x")
        (out / "v.h5").write_bytes(b"older junk, no record")  # never counts as finished
        r = predict(video, "-o", out, "-f", "png,h5,mp4", "--jsonl", weights=vinet_checkpoint)
        assert r.exit_code == 0, r.output
        assert lines(r)[0]["status"] == "done"
        assert not any(p.exists() for p in [*stale, png_tmp])
        assert busy.exists() and other.exists()
        assert h5_frames(out / "v.h5") == (2, 48, 64)
        assert len(list((out / "v").glob("*.png"))) == 2
    finally:
        live.kill()
        live.wait()


def test_a_run_that_fails_mid_video_resumes(tmp_path, vinet_checkpoint, fast_model, monkeypatch):
    videos = [write_video(tmp_path / f"{n}.mp4", n_frames=3) for n in "abc"]
    out = tmp_path / "out"
    real_write = H5Writer._write

    def crash_on_b(self, index, saliency, time, rgb):
        if self.meta.stem == "b" and index == 1:
            raise OSError(28, "No space left on device")
        real_write(self, index, saliency, time, rgb)

    monkeypatch.setattr(H5Writer, "_write", crash_on_b)
    first = predict(*videos, "-o", out, "-f", "png,h5", "--jsonl", weights=vinet_checkpoint)
    assert first.exit_code == 1
    assert [d["status"] for d in lines(first)] == ["done", "failed", "done"]
    [err] = errors(first)
    assert "disk full" in err and "b" in err
    assert not (out / "b").exists() and not (out / "b.h5").exists() and not temps(out)
    monkeypatch.setattr(H5Writer, "_write", real_write)
    second = predict(*videos, "-o", out, "-f", "png,h5", "--jsonl", weights=vinet_checkpoint)
    assert second.exit_code == 0
    assert [d["status"] for d in lines(second)] == ["skipped", "done", "skipped"]
    assert h5_frames(out / "b.h5") == (3, 48, 64)


def test_sigterm_stops_the_batch_cleanly(tmp_path, vinet_checkpoint, fast_model, monkeypatch):
    videos = [write_video(tmp_path / f"{n}.mp4", n_frames=3) for n in "ab"]
    out = tmp_path / "out"
    real_write = H5Writer._write

    def term_on_b(self, index, saliency, time, rgb):
        if self.meta.stem == "b" and index == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler's time limit does
        real_write(self, index, saliency, time, rgb)

    monkeypatch.setattr(H5Writer, "_write", term_on_b)
    before = signal.getsignal(signal.SIGTERM)
    r = predict(*videos, "-o", out, "-f", "png,h5", weights=vinet_checkpoint)
    assert r.exit_code == 143 and "interrupted" in r.stderr
    assert (out / "a.h5").exists() and not (out / "b.h5").exists() and not (out / "b").exists()
    assert not temps(out)
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the batch's only


# --- shards ---------------------------------------------------------------------------------


def test_shards_partition_the_inputs_exactly(tmp_path):
    names = [str(tmp_path / f"d{i % 7}" / f"video_{i:03d}.mp4") for i in range(200)]
    everything = expand_inputs(names, tmp_path / "out")
    assert len(everything) == 200
    for n in (1, 2, 3, 8):
        shards = [select_shard(everything, (k, n)) for k in range(1, n + 1)]
        sources = [[j.source for j in s] for s in shards]
        assert sorted(p for s in sources for p in s) == sorted(j.source for j in everything)
        assert sum(len(s) for s in sources) == 200  # disjoint
        assert sources == [  # deterministic
            [j.source for j in select_shard(expand_inputs(names, tmp_path / "out"), (k, n))]
            for k in range(1, n + 1)
        ]
        # each shard keeps the output folder the whole run would give
        whole = {j.source: j.out_dir for j in everything}
        assert all(whole[j.source] == j.out_dir for s in shards for j in s)
    assert all(4 <= len(select_shard(everything, (k, 8))) for k in range(1, 9))  # spread


def test_shards_on_the_command_line(tree, tmp_path, vinet_checkpoint, fast_model):
    all_jobs = expand_inputs([str(tree)], tmp_path / "o", recursive=True)
    seen: list[str] = []
    for k in (1, 2):
        r = predict(tree, "-r", "--shard", f"{k}/2", "-o", tmp_path / "o", "-f", "h5", "--jsonl",
                    weights=vinet_checkpoint)  # fmt: skip
        assert r.exit_code == 0, r.output
        got = [d["path"] for d in lines(r)]
        assert got == [str(j.source) for j in all_jobs if in_shard(j.source, (k, 2))]
        seen += got
    assert sorted(seen) == sorted(str(j.source) for j in all_jobs)
    assert h5_frames(tmp_path / "o" / "b" / "clip.h5") == (1, 32, 48)
    # more shards than inputs: some are empty, which is not an error
    empty = next(k for k in range(1, 50) if not select_shard(all_jobs, (k, 50)))
    r = predict(tree, "-r", "--shard", f"{empty}/50", "-o", tmp_path / "o", "--jsonl",
                weights=vinet_checkpoint)  # fmt: skip
    assert r.exit_code == 0 and r.stdout == ""


# --- exit codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--shard", "0/3"], "--shard"),
        (["--shard", "two"], "--shard"),
        (["--format", "gif"], "--format"),
        (["--h5-dtype", "int8"], "--h5-dtype"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path, args, needle):
    video = write_video(tmp_path / "v.mp4", n_frames=1)
    r = runner.invoke(app, ["predict", str(video), *args])
    assert r.exit_code == 2 and needle in r.stderr
    assert not (tmp_path / "saliency").exists()


def test_nothing_to_do_exits_2(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    write_video(empty / "sub" / "v.mp4", n_frames=1)
    r = runner.invoke(app, ["predict", str(empty)])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        f"salcli: error: no videos found in {empty}; --recursive descends into sub-folders"
    ]
    r = runner.invoke(app, ["predict", "-"], input="\n")
    assert r.exit_code == 2 and "no inputs" in r.stderr


def test_exit_1_when_some_fail_and_0_when_all_are_done(tmp_path, vinet_checkpoint, fast_model):
    good = write_video(tmp_path / "good.mp4", n_frames=1)
    r = predict(
        tmp_path / "missing.mp4", good, "-o", tmp_path / "o", "-f", "h5", weights=vinet_checkpoint
    )
    assert r.exit_code == 1
    assert errors(r) == [f"salcli: error: {tmp_path / 'missing.mp4'}: no such file"]
    assert "1 of 2 inputs failed" in r.stderr
    r = predict(good, "-o", tmp_path / "o", "-f", "h5", weights=vinet_checkpoint)
    assert r.exit_code == 0 and h5_frames(tmp_path / "o" / "good.h5") == (1, 48, 64)


def test_a_moved_corpus_is_still_finished(tmp_path, vinet_checkpoint, fast_model):
    (tmp_path / "old").mkdir()
    video = write_video(tmp_path / "old" / "v.mp4", n_frames=1)
    out = tmp_path / "out"
    assert predict(video, "-o", out, "-f", "h5", weights=vinet_checkpoint).exit_code == 0
    moved = tmp_path / "new" / "v.mp4"
    moved.parent.mkdir()
    video.rename(moved)
    r = predict(moved, "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 0 and lines(r)[0]["status"] == "skipped"


def test_outputs_of_other_settings_are_not_taken_for_finished(
    tmp_path, vinet_checkpoint, fast_model
):
    video = write_video(tmp_path / "v.mp4", n_frames=1)
    out = tmp_path / "out"
    assert predict(video, "-o", out, "-f", "h5", weights=vinet_checkpoint).exit_code == 0
    r = predict(video, "-o", out, "-f", "h5", "--warmup", "reference", weights=vinet_checkpoint)
    assert r.exit_code == 1
    [err] = errors(r)
    assert "another warmup" in err and "--overwrite" in err
    r = predict(video, "-o", out, "-f", "h5", "--warmup", "reference", "--overwrite", "--jsonl",
                weights=vinet_checkpoint)  # fmt: skip
    assert r.exit_code == 0 and lines(r)[0]["status"] == "done"
    assert json.loads((out / "v.salcli.json").read_text())["warmup"] == "reference"


# --- every setting that shapes the maps is recorded; formats add up ----------------------


@pytest.mark.parametrize(
    "first, second, name",
    [
        (["--stride", "2"], [], "stride"),
        (["--precision", "bf16"], ["--precision", "fp32"], "precision"),
        (["--warmup", "reference"], ["--warmup", "mirror"], "warmup"),
    ],
)
def test_a_rerun_with_another_map_setting_is_not_skipped(
    tmp_path, vinet_checkpoint, fast_model, first, second, name
):
    video = write_video(tmp_path / "v.mp4", n_frames=3)
    out = tmp_path / "out"
    assert predict(video, "-o", out, "-f", "h5", *first, weights=vinet_checkpoint).exit_code == 0
    record = json.loads((out / "v.salcli.json").read_text())
    with h5py.File(out / "v.h5") as f:
        attrs = dict(f.attrs)
    for key in ("stride", "precision", "warmup", "input_size"):
        assert key in record and str(attrs[key]) == str(record[key])
    r = predict(video, "-o", out, "-f", "h5", *second, weights=vinet_checkpoint)
    assert r.exit_code == 1
    [err] = errors(r)
    assert f"another {name}" in err and "--overwrite" in err


def test_a_folder_rate_is_a_map_setting(tmp_path, vinet_checkpoint, fast_model):
    frames = tmp_path / "shot"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i + 1:04d}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    out = tmp_path / "out"
    assert (
        predict(frames, "-o", out, "-f", "h5", "--fps", "10", weights=vinet_checkpoint).exit_code
        == 0
    )
    with h5py.File(out / "shot.h5") as f:
        assert f.attrs["fps"] == 10.0 and f["timestamps"][2] == pytest.approx(0.2)
    r = predict(frames, "-o", out, "-f", "h5", "--fps", "25", weights=vinet_checkpoint)
    assert r.exit_code == 1 and "another fps" in errors(r)[0]


def test_formats_of_earlier_runs_stay_finished(tmp_path, vinet_checkpoint, fast_model):
    video = write_video(tmp_path / "v.mp4", n_frames=2)
    out = tmp_path / "out"
    for fmt in ("h5", "png"):
        assert predict(video, "-o", out, "-f", fmt, weights=vinet_checkpoint).exit_code == 0
    record = json.loads((out / "v.salcli.json").read_text())
    assert sorted(record["formats"]) == ["h5", "png"] and len(record["outputs"]) == 2
    for fmt in ("h5", "png", "png,h5"):
        r = predict(video, "-o", out, "-f", fmt, "--jsonl", weights=vinet_checkpoint)
        assert r.exit_code == 0 and lines(r)[0]["status"] == "skipped", fmt
    (out / "v.h5").unlink()  # a format whose output went is not finished any more
    r = predict(video, "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint)
    assert lines(r)[0]["status"] == "done"


def test_a_failed_run_leaves_no_output_folder(tmp_path, vinet_checkpoint, fast_model, monkeypatch):
    video = write_video(tmp_path / "v.mp4", n_frames=4)
    real_write = H5Writer._write

    def crash(self, index, saliency, time, rgb):
        if index == 2:
            raise OSError(5, "Input/output error")
        real_write(self, index, saliency, time, rgb)

    monkeypatch.setattr(H5Writer, "_write", crash)
    out = tmp_path / "new" / "deeper" / "out"
    r = predict(video, "-o", out, "-f", "h5,png", weights=vinet_checkpoint)
    assert r.exit_code == 1 and "Input/output error" in errors(r)[0]
    assert not (tmp_path / "new").exists()  # every folder the run made is gone again


def test_an_empty_shard_says_so(tmp_path, vinet_checkpoint, fast_model):
    videos = [write_video(tmp_path / f"v{i}.mp4", n_frames=1) for i in range(3)]
    empty = next(
        k for k in range(1, 9) if not select_shard(expand_inputs(map(str, videos), None), (k, 8))
    )
    r = predict(*videos, "--shard", f"{empty}/8", weights=vinet_checkpoint)
    assert r.exit_code == 0
    assert f"shard {empty}/8 holds none of the 3 inputs" in r.stderr


# --- option values ----------------------------------------------------------------------------


@pytest.mark.parametrize("fps", ["-3", "0", "1e6"])
def test_bad_frame_rates_are_refused(tmp_path, fps):
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0001.png"), np.zeros((8, 8, 3), np.uint8))
    r = runner.invoke(app, ["predict", str(frames), "--fps", fps])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        f"salcli: error: --fps must be in (0, 1000] frames/s, got {float(fps)!r}"
    ]


def test_a_frame_rate_for_a_video_file_is_a_warning(tmp_path, vinet_checkpoint, fast_model):
    video = write_video(tmp_path / "v.mp4", n_frames=2, fps=25)
    r = predict(video, "-o", tmp_path / "o", "-f", "h5", "--fps", "10", weights=vinet_checkpoint)
    assert r.exit_code == 0
    assert "a frame rate of 10 is for folders of frames" in r.stderr
    with h5py.File(tmp_path / "o" / "v.h5") as f:
        assert f.attrs["fps"] == 25.0


def test_a_folder_of_frame_folders_is_expanded(tmp_path, vinet_checkpoint, fast_model):
    root = tmp_path / "video_frames" / "DIEM"
    for name in ("clip_a", "clip_b"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(root / name / f"img_{i + 1:05d}.jpg"), np.zeros((48, 64, 3), np.uint8))
    dhf1k = tmp_path / "DHF1K" / "val" / "0601"  # images/ is the video; maps/ is not
    for sub in ("images", "maps", "fixation"):
        (dhf1k / sub).mkdir(parents=True)
        cv2.imwrite(str(dhf1k / sub / "0001.png"), np.zeros((48, 64, 3), np.uint8))
    for flags in ([], ["-r"]):
        jobs = expand_inputs([str(root)], tmp_path / "o", recursive=bool(flags))
        assert sorted(j.stem for j in jobs) == ["clip_a", "clip_b"]
    jobs = expand_inputs([str(tmp_path / "DHF1K")], tmp_path / "o", recursive=True)
    assert [(j.source.name, j.stem) for j in jobs] == [("images", "0601")]
    r = predict(root, "-r", "-o", tmp_path / "out", "-f", "h5", "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 0 and [d["status"] for d in lines(r)] == ["done", "done"]


def test_input_size_is_documented():
    r = runner.invoke(app, ["predict", "--help"])
    assert "--input-size" in r.stdout and "--compile" in r.stdout


def test_soundnet_alone_gets_one_message(tmp_path):
    from salcli.models.soundnet import SoundNet8

    video = write_video(tmp_path / "v.mp4", n_frames=1, audio_rate=22050)
    path = tmp_path / "soundnet8_final.pth"
    torch.save(SoundNet8().state_dict(), path)
    said = set()
    for flags in ([], ["--audio"]):
        r = runner.invoke(app, ["predict", str(video), "--weights", str(path), *flags])
        assert r.exit_code == 3
        [line] = r.stderr.strip().splitlines()
        said.add(line)
    [line] = said  # the same with and without --audio
    assert "SoundNet-8" in line and "not a saliency model" in line and "AViNet" in line


def test_predict_many_runs_a_folder_and_skips_it_the_second_time(tmp_path, vinet_checkpoint):
    import salcli

    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    write_video(corpus / "a.mp4", n_frames=2)
    write_video(corpus / "sub" / "b.mp4", n_frames=1)
    opts = dict(recursive=True, formats="h5", weights=vinet_checkpoint, input_size=CLI_INPUT_SIZE,
                precision="fp32", device="cpu")  # fmt: skip
    first = list(salcli.predict_many([corpus], tmp_path / "out", **opts))
    assert [(Path(r.source).name, r.status, r.frames) for r in first] == [
        ("a.mp4", "done", 2),
        ("b.mp4", "done", 1),
    ]
    assert h5_frames(tmp_path / "out" / "sub" / "b.h5") == (1, 48, 64)
    second = list(salcli.predict_many([corpus], tmp_path / "out", **opts))
    assert [r.status for r in second] == ["skipped", "skipped"]
    assert [r.outputs for r in second] == [r.outputs for r in first]
    with pytest.raises(salcli.errors.UsageError, match="batch_size"):
        list(salcli.predict_many([corpus], tmp_path / "out", batch_size=0))
