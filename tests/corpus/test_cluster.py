"""`salcli predict … --ray` and `evaluate --ray` on a Ray instance the module starts
(2 CPUs, 127.0.0.1 only, no dashboard, its files under the test's temporary folder):
outputs equal to a local run, resume after a killed driver, a failing video and a
worker that dies on every attempt reported while the others are done, a worker killed
mid-video retried, Ctrl-C, evaluate's scores, and the one-line errors.

Faults are set off with salcli.testing's hook (``SALCLI_TEST_FAULT``, read on the
driver, acted on by the workers). The real network runs at the small test input size in
fp32 (never the CPU's "auto"). Without Ray installed the tests that need it are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import SMALL_INPUT, make_av_dataset, make_ntire26, write_video
from typer.testing import CliRunner

from salcli.cli import app
from salcli.identity import pid_alive
from salcli.testing import FAULT_ENV

runner = CliRunner()
SIZE = f"{SMALL_INPUT[0]}x{SMALL_INPUT[1]}"

# Ray takes the loopback address for its node with its multi-machine mode off (its own
# default on macOS / Windows): the test instance listens on 127.0.0.1 only
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
VIDEOS = {"a": 9, "b": 10, "c": 11, "d": 12}  # name: frames (48x64)
RAY_CPUS = 2


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "salcli[ray]"')
    ray.init(
        num_cpus=RAY_CPUS,
        include_dashboard=False,
        object_store_memory=80 * 2**20,  # Ray's least
        log_to_driver=False,
        logging_level=logging.ERROR,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:")
    yield address
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name, n in VIDEOS.items():
        write_video(folder / f"{name}.mp4", n_frames=n)
    return folder


@pytest.fixture(scope="module")
def local(corpus, vinet_checkpoint, tmp_path_factory) -> Path:
    """The corpus predicted locally with one torch thread, a worker's (the threads'
    partition of a convolution changes its float rounding)."""
    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = predict(corpus, "-o", out, "--jsonl", weights=vinet_checkpoint)
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output
    (out / "run.jsonl").write_text(r.stdout)
    return out


def predict(*args, weights: Path | None = None):
    """`salcli predict ARGS -f png,h5 --h5-dtype float32 --input-size 32x64 --precision fp32`."""
    extra = ["-f", "png,h5", "--h5-dtype", "float32", "--input-size", SIZE, "--precision", "fp32"]
    extra += ["--weights", str(weights)] if weights else []
    return runner.invoke(app, ["predict", *map(str, args), *extra])


def cli_args(corpus: Path, out: Path, address: str, weights: Path) -> list[str]:
    return [sys.executable, "-m", "salcli", "predict", str(corpus), "-o", str(out),
            "--ray", address, "--jsonl", "-f", "png,h5", "--h5-dtype", "float32",
            "--input-size", SIZE, "--precision", "fp32", "--weights", str(weights)]  # fmt: skip


def lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def statuses(result) -> dict[str, str]:
    return {Path(d["path"]).stem: d["status"] for d in lines(result.stdout)}


def stack(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["saliency"][()]  # (N, H, W)


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_same_outputs(out: Path, local: Path, names) -> None:
    for name in names:
        np.testing.assert_array_equal(stack(out / f"{name}.h5"), stack(local / f"{name}.h5"))
        pngs = sorted((local / name).glob("*.png"))
        assert len(pngs) == VIDEOS[name]
        for png in pngs:
            assert (out / name / png.name).read_bytes() == png.read_bytes()


@pytest.mark.slow
def test_outputs_equal_a_local_run(ray_address, corpus, local, vinet_checkpoint, tmp_path):
    out = tmp_path / "out"
    r = predict(corpus, "-o", out, "--ray", ray_address, "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 0, r.output
    assert statuses(r) == dict.fromkeys(VIDEOS, "done")
    assert_same_outputs(out, local, VIDEOS)
    here = {d["path"]: d for d in lines((local / "run.jsonl").read_text())}
    for d in lines(r.stdout):  # a local run's lines, but for the time and output folder
        want = here[d["path"]]
        want["outputs"] = [x.replace(str(local), str(out)) for x in want["outputs"]]
        assert {**d, "seconds": 0} == {**want, "seconds": 0}
    record = json.loads((out / "a.salcli.json").read_text())
    assert record["precision"] == "fp32" and record["input_size"] == SIZE
    assert hidden(out) == []
    again = predict(corpus, "-o", out, "--ray", ray_address, "--jsonl", weights=vinet_checkpoint)
    assert again.exit_code == 0 and statuses(again) == dict.fromkeys(VIDEOS, "skipped")
    other = runner.invoke(
        app, ["predict", str(corpus), "-o", str(out), "--ray", ray_address, "-f", "h5",
              "--input-size", "64x64", "--precision", "fp32", "--weights",
              str(vinet_checkpoint), "--jsonl"],
    )  # fmt: skip
    assert other.exit_code == 1  # the records of other settings are refused, as locally
    assert set(statuses(other).values()) == {"failed"}
    assert "made with another input_size" in other.stderr and "--overwrite" in other.stderr


def test_a_killed_run_resumes_without_redoing_finished_videos(
    ray_address, corpus, local, vinet_checkpoint, tmp_path
):
    out = tmp_path / "out"
    env = {**os.environ, FAULT_ENV: "stall:b"}  # b holds its worker until the end
    proc = subprocess.Popen(
        cli_args(corpus, out, ray_address, vinet_checkpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        seen = [json.loads(proc.stdout.readline()) for _ in range(3)]
        assert sorted(Path(d["path"]).stem for d in seen) == ["a", "c", "d"]
        assert any(".b.h5." in name for name in hidden(out))  # b is being written
        proc.kill()  # the driver dies; Ray ends its workers
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stdout.close()
    assert not (out / "b.salcli.json").exists()
    finished = {n: (out / f"{n}.h5").stat().st_mtime_ns for n in "acd"}
    r = predict(corpus, "-o", out, "--ray", ray_address, "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 0, r.output
    assert statuses(r) == {"a": "skipped", "b": "done", "c": "skipped", "d": "skipped"}
    assert {n: (out / f"{n}.h5").stat().st_mtime_ns for n in "acd"} == finished
    assert_same_outputs(out, local, VIDEOS)
    assert hidden(out) == []  # the killed worker's temporaries were swept before b redone


def test_a_ray_run_leaves_a_claimed_video_to_its_holder(
    ray_address, corpus, local, vinet_checkpoint, tmp_path, monkeypatch
):
    """Another run (here: this test) holds b's claim: the Ray run does the others, waits,
    and does b once its holder gives it up (as a run whose video failed does)."""
    from salcli.corpus import cluster
    from salcli.corpus.claims import Claims

    out = tmp_path / "out"
    holder = Claims("holder")
    claim = holder.acquire(out, "b", str(corpus / "b.mp4"))
    seen_waiting = []

    def give_up() -> None:  # the driver waits for b: its holder gives it up
        seen_waiting.append(sorted(p.name for p in out.iterdir() if p.suffix == ".h5"))
        assert (out / ".b.salcli.claim").exists()
        holder.release(claim)

    monkeypatch.setattr(cluster, "wait_for_claims", give_up)
    try:
        r = predict(corpus, "-o", out, "--ray", ray_address, "--jsonl", weights=vinet_checkpoint)
    finally:
        holder.close()
    assert r.exit_code == 0, r.output
    assert seen_waiting == [["a.h5", "c.h5", "d.h5"]]  # the others done, b left to its holder
    assert [(Path(d["path"]).stem, d["status"]) for d in lines(r.stdout)][-1] == ("b", "done")
    assert statuses(r) == dict.fromkeys(VIDEOS, "done")
    assert_same_outputs(out, local, VIDEOS)
    assert hidden(out) == []


@pytest.mark.slow
def test_two_ray_runs_and_a_local_one_compute_each_video_once(
    ray_address, corpus, local, vinet_checkpoint, tmp_path
):
    out = tmp_path / "out"
    argv = [*cli_args(corpus, out, ray_address, vinet_checkpoint), "--workers", "1"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(RAY_CPUS)]  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (and the ``local`` reference) run
    try:
        here = predict(corpus, "-o", out, "--jsonl", weights=vinet_checkpoint)  # meanwhile
    finally:
        torch.set_num_threads(threads)
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * RAY_CPUS, [e for _, e in outputs]
    assert here.exit_code == 0, here.output
    reports = [lines(o) for o, _ in outputs] + [lines(here.stdout)]
    done = sorted(Path(d["path"]).stem for r in reports for d in r if d["status"] == "done")
    assert done == sorted(VIDEOS)  # each computed once, by one of the runs
    for report in reports:
        assert sorted(Path(d["path"]).stem for d in report) == sorted(VIDEOS)
    assert_same_outputs(out, local, VIDEOS)
    assert hidden(out) == []


def test_a_failing_video_and_a_dying_worker_leave_the_others_done(
    ray_address, corpus, local, vinet_checkpoint, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    monkeypatch.setenv(FAULT_ENV, "fail:b,kill:c")  # c kills its worker on every attempt
    r = predict(corpus, "-o", out, "--ray", ray_address, "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 1
    assert statuses(r) == {"a": "done", "b": "failed", "c": "failed", "d": "done"}
    errors = [x for x in r.stderr.splitlines() if x.startswith("salcli: error:")]
    assert len(errors) == 2
    assert any("b.mp4" in e and "unexpected RuntimeError: test fault" in e for e in errors)
    assert any("c.mp4" in e and "its Ray worker died on it 3 times" in e for e in errors)
    assert_same_outputs(out, local, "ad")
    for name in "bc":
        assert not (out / f"{name}.h5").exists() and not (out / name).exists()
        assert not (out / f"{name}.salcli.json").exists()
    # b's writers aborted; each attempt at c swept the last one's temporaries, and the
    # worker restarted after the last attempt swept those
    assert hidden(out) == []


def test_a_worker_killed_mid_video_is_retried(
    ray_address, corpus, local, vinet_checkpoint, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"kill-once:b:{marker}")
    r = predict(corpus, "-o", out, "--ray", ray_address, "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 0, r.output
    assert statuses(r) == dict.fromkeys(VIDEOS, "done")
    # the claim and temporaries b's worker had when it was killed
    left = [name for name in marker.read_text().split() if name.startswith(".b.")]
    assert ".b.salcli.claim" in left and any(name.startswith(".b.h5.") for name in left)
    temporaries = [name for name in left if name.endswith(".tmp")]
    dead = {int(name.rsplit(".", 2)[-2].split("-")[0]) for name in temporaries}
    assert not any(pid_alive(pid) for pid in dead)
    assert hidden(out) == []  # taken over and swept by the retry, in another process
    assert_same_outputs(out, local, VIDEOS)


def test_ctrl_c_stops_the_cluster_cleanly(ray_address, corpus, vinet_checkpoint, tmp_path):
    import ray

    out = tmp_path / "out"
    proc = subprocess.Popen(
        cli_args(corpus, out, ray_address, vinet_checkpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, FAULT_ENV: "stall:b"},
        text=True,
    )
    try:
        for _ in range(3):
            proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1] == "salcli: interrupted; partial outputs removed"
    assert hidden(out) == [] and not (out / "b.h5").exists()  # b's writers aborted
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < RAY_CPUS:  # the workers are gone
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.2)


def evaluate_here(dataset: str, root: Path, checkpoint: Path):
    """``dataset`` scored with the checkpoint run in this process, on one thread."""
    from salcli import Predictor
    from salcli.evaluation import evaluate as E

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = Predictor(checkpoint, precision="fp32", input_size=SMALL_INPUT)
        return E.evaluate(dataset, root=root, predictor=here)
    finally:
        torch.set_num_threads(threads)


def test_evaluate_on_the_cluster_scores_as_locally(ray_address, vinet_checkpoint, tmp_path):
    from salcli.evaluation import evaluate as E
    from salcli.evaluation.cluster import model_source
    from salcli.options import ClusterOptions, PredictOptions

    root = tmp_path / "data"
    make_av_dataset(root, "DIEM", {"film_a": 3, "film_b": 4, "film_c": 2}, wav=False)
    local = evaluate_here("diem", root, vinet_checkpoint)
    maps = tmp_path / "maps"
    source = model_source(
        ClusterOptions(ray=ray_address),
        maps,
        options=PredictOptions(precision="fp32", input_size=SMALL_INPUT),
    )
    remote = E.evaluate("diem", root=root, weights=vinet_checkpoint, model_source=source)
    assert remote.overall == local.overall
    assert [v.scores for v in remote.videos] == [v.scores for v in local.videos]
    assert remote.conventions["predictions"] == local.conventions["predictions"] == "floats"
    assert remote.conventions["source"] == local.conventions["source"]
    assert sorted(p.name for p in maps.glob("*.h5")) == ["film_a.h5", "film_b.h5", "film_c.h5"]
    again = E.evaluate("diem", root=root, weights=vinet_checkpoint, model_source=source)
    assert again.overall == local.overall  # from the maps kept in --maps-dir


@pytest.mark.slow  # ~20 s: the model run twice, here and on Ray
def test_evaluate_ntire26_on_the_cluster_scores_as_locally(ray_address, vinet_checkpoint, tmp_path):
    """The NTIRE 2026 set (video files, bench.py's metrics): the cluster's maps of each
    video file score as the local run's."""
    from salcli.evaluation import evaluate as E
    from salcli.evaluation.cluster import model_source
    from salcli.options import ClusterOptions, PredictOptions

    root = tmp_path / "NTIRE26"
    videos = {"n1": (6, (32, 48), True), "n2": (5, (24, 40), False)}
    make_ntire26(root, videos, {"public_test": ["n1", "n2"], "private_test": [], "train": []})
    local = evaluate_here("ntire26", root, vinet_checkpoint)
    source = model_source(
        ClusterOptions(ray=ray_address),
        tmp_path / "maps",
        options=PredictOptions(precision="fp32", input_size=SMALL_INPUT),
    )
    remote = E.evaluate("ntire26", root=root, weights=vinet_checkpoint, model_source=source)
    assert [v.name for v in remote.videos] == ["n1", "n2"]
    assert [v.frame_scores.tolist() for v in remote.videos] == [
        v.frame_scores.tolist() for v in local.videos
    ]
    assert remote.overall == local.overall and list(remote.overall) == ["cc", "sim", "nss", "auc_j"]


def test_cluster_usage_errors_are_one_line(ray_address, corpus, tmp_path):
    cases = [
        (["predict", str(corpus), "--workers", "2"], 2, "--workers needs --ray"),
        (["predict", str(corpus), "--ray", "corpus/"], 2, "--ray 'corpus/': expected local"),
        (["predict", str(corpus), "--ray", "local", "--workers", "0"], 2, "--workers must be"),
        (["evaluate", "-d", "diem", "--maps-dir", str(tmp_path)], 2, "--maps-dir needs --ray"),
        (["evaluate", "-d", "diem", "--root", str(tmp_path), "--ray", ray_address,
          "--predictions", str(tmp_path)], 2, "--ray runs the model"),
    ]  # fmt: skip
    for args, code, needle in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == code, (args, r.output)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_an_unreachable_cluster_is_one_line(corpus, tmp_path):
    pytest.importorskip("ray", reason='Ray is not installed: pip install "salcli[ray]"')
    r = subprocess.run(
        [sys.executable, "-m", "salcli", "predict", str(corpus / "a.mp4"), "-o",
         str(tmp_path), "--ray", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "salcli: error: --ray 127.0.0.1:1: cannot reach the head node (Connection refused)"
    )


def test_without_ray_installed_the_line_says_how(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is absent
    r = runner.invoke(app, ["predict", str(corpus), "-o", str(tmp_path), "--ray", "local"])
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        'salcli: error: --ray needs Ray, which is not installed: pip install "salcli[ray]"'
    )


def test_evaluate_on_the_cluster_takes_warmup_and_precision(
    ray_address, stavis_checkpoint, tmp_path
):
    """evaluate's --warmup / --precision reach the workers: STAViS's reference warm-up
    leaves the same first frames unscored as a local run, with the same scores."""
    from salcli.evaluation import evaluate as E
    from salcli.evaluation.cluster import model_source
    from salcli.options import ClusterOptions

    root = tmp_path / "data"
    make_av_dataset(root, "DIEM", {"film_a": 10, "film_b": 11}, wav=False)
    run = {"warmup": "reference", "precision": "fp32"}
    local = E.evaluate("diem", root=root, weights=stavis_checkpoint, **run)
    source = model_source(ClusterOptions(ray=ray_address))
    remote = E.evaluate("diem", root=root, weights=stavis_checkpoint, model_source=source, **run)
    assert local.conventions["frames_unmapped"] == 2 * 8  # STAViS maps none of frames 1-8
    assert remote.conventions["frames_unmapped"] == local.conventions["frames_unmapped"]
    assert remote.conventions["warmup"] == local.conventions["warmup"] == "reference"
    for r, h in zip(remote.videos, local.videos, strict=True):  # threads differ: not bit equal
        assert r.scores == pytest.approx(h.scores, rel=1e-4) and r.skipped == h.skipped
