"""Claims (salcli.corpus.claims): several runs over one corpus compute each video once,
dead runs' claims and temporaries are taken over (same host: pid and start time; another
host: the lease), a run killed at any point is finished by the next, `salcli status`.

Runs in other processes use the fast model (``helpers.fast_cli``: the real CLI, decoding
and writers, a stand-in forward pass) with its hooks: a log of the videos each process
starts computing (the model runs), a start line, a delay per map, and
``SALCLI_TEST_KILL`` (``salcli.files.kill_point``: ``kill -9`` at a named point).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import (
    GO_ENV,
    MEET_ENV,
    RUN_LOG_ENV,
    fast_cli,
    lines,
    predict,
    runner,
    temps,
    write_video,
)

from salcli import identity
from salcli.cli import app
from salcli.corpus.claims import Claim, ClaimLost, Claims, read_claim
from salcli.defaults import DEFAULT_LEASE_S
from salcli.files import KILL_ENV
from salcli.media.records import claim_path, clean_stale_temps

FRAMES = 3  # per video
PROCESSES = 4  # runs started together
RUN_TIMEOUT_S = 120  # a run of the small corpus, at most (a bound, not a timing)
RACE_ROUNDS = 12  # stale claims raced for by RACERS processes
RACERS = 3


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in "abcdef":
        write_video(folder / f"{name}.mp4", n_frames=FRAMES)
    return folder


@pytest.fixture
def single(corpus, tmp_path, vinet_checkpoint, fast_model) -> Path:
    """The corpus predicted by one run, here."""
    out = tmp_path / "single"
    r = predict(corpus, "-o", out, "-f", "h5,png", weights=vinet_checkpoint)
    assert r.exit_code == 0, r.output
    return out


def run_args(corpus: Path, out: Path, weights: Path, *more) -> list:
    return ["predict", corpus, "-o", out, "-f", "h5,png", "--jsonl", "--weights", weights, *more]


def stems(folder: Path) -> list[str]:
    return sorted(p.name[: -len(".mp4")] for p in folder.glob("*.mp4"))


def assert_same_outputs(out: Path, single: Path, names) -> None:
    for name in names:
        with h5py.File(out / f"{name}.h5") as f, h5py.File(single / f"{name}.h5") as g:
            np.testing.assert_array_equal(f["saliency"][()], g["saliency"][()])
        pngs = sorted((single / name).glob("*.png"))
        assert len(pngs) == FRAMES
        assert [(out / name / p.name).read_bytes() for p in pngs] == [p.read_bytes() for p in pngs]


def model_runs(log: Path) -> Counter:
    """How many times each video was computed (the fast CLI's log)."""
    return Counter(line.split()[1] for line in log.read_text().splitlines())


def write_claim(out: Path, stem: str, *, host: str, pid: int, start: int = 0, age: float = 0):
    """A claim as another process would have made it, its heartbeat ``age`` s old."""
    out.mkdir(parents=True, exist_ok=True)
    path = claim_path(out, stem)
    since = time.time() - age
    data = {"host": host, "pid": pid, "start": start, "run": "other", "since": since,
            "token": "0123456789abcdef", "source": None}  # fmt: skip
    path.write_text(json.dumps(data))
    os.utime(path, (since, since))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- runs started together ----------------------------------------------------------------


@pytest.mark.slow
def test_runs_started_together_compute_each_video_once(corpus, single, tmp_path, vinet_checkpoint):
    out, log, go = tmp_path / "out", tmp_path / "runs.log", tmp_path / "go"
    argv, env = fast_cli(*run_args(corpus, out, vinet_checkpoint))
    # each run computes its first video only once every run holds one: all PROCESSES
    # claims are live at once, however the processes are scheduled
    env.update({RUN_LOG_ENV: str(log), GO_ENV: str(go), MEET_ENV: str(PROCESSES)})
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while len(list(tmp_path.glob("go.*"))) < PROCESSES:  # every process is ready
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        go.touch()
        results = [p.communicate(timeout=RUN_TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0] * PROCESSES, [e for _, e in results]
    assert model_runs(log) == Counter(stems(corpus))  # each video computed exactly once
    reports = [[json.loads(x) for x in o.splitlines()] for o, _ in results]
    done = Counter(Path(d["path"]).stem for r in reports for d in r if d["status"] == "done")
    assert done == Counter(stems(corpus))
    for report in reports:  # each run reports every video once: done here, or skipped
        assert sorted(Path(d["path"]).stem for d in report) == stems(corpus)
        assert {d["status"] for d in report} <= {"done", "skipped"}
    assert len({pid for pid, _ in (x.split() for x in log.read_text().splitlines())}) == PROCESSES
    assert_same_outputs(out, single, stems(corpus))
    assert temps(out) == []  # no claims, no temporaries


# --- kill -9 anywhere -------------------------------------------------------------------------

KILL_POINTS = {  # SALCLI_TEST_KILL: where b's run dies
    "claimed": "claimed:b",  # claimed, nothing written
    "mid-video": "map2:b",  # after two maps: temporaries half written
    "before outputs": "outputs:b",  # every map written, nothing renamed yet
    "before record": "record:b",  # outputs renamed, no record
    "record rename": "rename:b.salcli.json",  # the record's temporary written
    "before release": "release:b",  # the record written, the claim still there
    "take-over": "takeover:.b.salcli.claim",  # under the take-over lock of a dead run's claim
}


@pytest.mark.slow
def test_a_run_killed_anywhere_is_finished_by_the_next(
    corpus, single, tmp_path, vinet_checkpoint, fast_model
):
    procs = {}
    for name, point in KILL_POINTS.items():
        out = tmp_path / name.replace(" ", "-")
        if name == "take-over":
            write_claim(out, "b", host=identity.host_name(), pid=dead_pid())
        argv, env = fast_cli(*run_args(corpus, out, vinet_checkpoint), **{KILL_ENV: point})
        procs[out] = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    for out, proc in procs.items():
        stdout, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        assert proc.returncode == -signal.SIGKILL, (out.name, stdout)
        assert [Path(d["path"]).stem for d in map(json.loads, stdout.splitlines())] == ["a"]
        left = [p.name for p in out.iterdir() if p.name.startswith((".b.", "..b."))]
        assert left, out.name  # b's claim, temporaries, or the claim set aside
        r = runner.invoke(app, [*map(str, run_args(corpus, out, vinet_checkpoint)),
                                "--input-size", "32x64"])  # fmt: skip
        assert r.exit_code == 0, (out.name, r.output)
        want = "skipped" if out.name == "before-release" else "done"
        assert {Path(d["path"]).stem: d["status"] for d in lines(r)} == {
            "a": "skipped", "b": want, **dict.fromkeys("cdef", "done")
        }, out.name  # fmt: skip
        assert_same_outputs(out, single, stems(corpus))
        assert temps(out) == [], out.name  # the dead run's claim and temporaries are gone


# --- dead, live and far holders -------------------------------------------------------------


def test_a_dead_claim_on_this_host_is_taken_over_at_once(tmp_path, vinet_checkpoint, fast_model):
    video = write_video(tmp_path / "v.mp4", n_frames=2)
    out = tmp_path / "out"
    write_claim(out, "v", host=identity.host_name(), pid=dead_pid())
    # its temporaries: this host's, the dead pid's
    holder = read_claim(claim_path(out, "v")).holder
    tag = f"{holder.pid}-0-{identity.host_tag(identity.host_name())}"
    (out / f".v.h5.{tag}-0a1b2c.tmp").write_bytes(b"partial")
    r = predict(video, "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 0 and lines(r)[0]["status"] == "done"
    assert temps(out) == []


def test_a_reused_pid_does_not_keep_a_claim_alive(tmp_path, vinet_checkpoint, fast_model):
    video = write_video(tmp_path / "v.mp4", n_frames=2)
    out = tmp_path / "out"
    other = subprocess.Popen(["sleep", "60"])  # a live process, not the claim's
    try:
        start = identity.start_ticks(other.pid)
        if start is None:
            pytest.skip("no process start times here (/proc)")
        write_claim(out, "v", host=identity.host_name(), pid=other.pid, start=start)
        args = (video, "-o", out, "-f", "h5", "--jsonl", "--no-wait")
        held = predict(*args, weights=vinet_checkpoint)
        [line] = lines(held)  # the very process: its claim is respected
        assert held.exit_code == 0 and line["status"] == "claimed"
        assert line["holder"]["pid"] == other.pid and line["holder"]["run"] == "other"
        assert "held by" in predict(video, "-o", out, "-f", "h5", "--no-wait",
                                    weights=vinet_checkpoint).stderr  # fmt: skip
        # the same pid, another start: the claim's process died, the pid was given again
        write_claim(out, "v", host=identity.host_name(), pid=other.pid, start=start + 1)
        r = predict(*args, weights=vinet_checkpoint)
        assert r.exit_code == 0 and lines(r)[0]["status"] == "done"
        assert temps(out) == []
    finally:
        other.kill()
        other.wait()


def test_another_hosts_claim_holds_until_its_lease_expires(
    tmp_path, vinet_checkpoint, fast_model, monkeypatch
):
    video = write_video(tmp_path / "v.mp4", n_frames=2)
    out = tmp_path / "out"
    lease = 60.0
    write_claim(out, "v", host="node-7.cluster", pid=os.getpid(), age=lease / 2)
    tmp = out / ".v.h5.4242-99-node-7_cluster-0a1b2c.tmp"  # its temporary, being written
    tmp.write_bytes(b"partial")
    args = ("-o", out, "-f", "h5", "--jsonl", "--no-wait", "--lease", str(lease))
    r = predict(video, *args, weights=vinet_checkpoint)
    [line] = lines(r)
    assert line["status"] == "claimed" and line["holder"]["host"] == "node-7.cluster"
    assert clean_stale_temps(out, "v", lease) == [] and tmp.exists()
    # the clock moves on past the lease without a heartbeat: the claim is taken over
    real_now = identity.now
    monkeypatch.setattr(identity, "now", lambda: real_now() + lease)
    r = predict(video, *args, weights=vinet_checkpoint)
    assert r.exit_code == 0 and lines(r)[0]["status"] == "done"
    assert temps(out) == []  # its temporary went with it


def test_with_wait_a_run_comes_back_to_a_claimed_video(
    tmp_path, vinet_checkpoint, fast_model, monkeypatch
):
    """A live holder that gives a video up (fails it) leaves it to the waiting run."""
    videos = [write_video(tmp_path / f"{n}.mp4", n_frames=2) for n in "ab"]
    out = tmp_path / "out"
    holder = Claims("holder")
    claim = holder.acquire(out, "a")
    assert isinstance(claim, Claim)
    import salcli.corpus.local as local

    def give_up(seconds):  # the run waits for "a": its holder gives it up (fails it)
        assert claim_path(out, "a").exists() and (out / "b.h5").exists()
        holder.release(claim)

    monkeypatch.setattr(local, "wait_for_claims", give_up)
    r = predict(*videos, "-o", out, "-f", "h5", "--jsonl", weights=vinet_checkpoint)
    assert r.exit_code == 0, r.output
    assert [(Path(d["path"]).stem, d["status"]) for d in lines(r)] == [("b", "done"), ("a", "done")]
    assert temps(out) == []
    holder.close()


def test_overwrite_claims_too(tmp_path, vinet_checkpoint, fast_model):
    video = write_video(tmp_path / "v.mp4", n_frames=2)
    out = tmp_path / "out"
    assert predict(video, "-o", out, "-f", "h5", weights=vinet_checkpoint).exit_code == 0
    holder = Claims("holder")
    claim = holder.acquire(out, "v")
    args = (video, "-o", out, "-f", "h5", "--jsonl", "--overwrite", "--no-wait")
    r = predict(*args, weights=vinet_checkpoint)
    assert lines(r)[0]["status"] == "claimed"
    holder.release(claim)
    holder.close()
    r = predict(*args, weights=vinet_checkpoint)
    assert lines(r)[0]["status"] == "done" and temps(out) == []


# --- the claim itself -------------------------------------------------------------------------


def _race(path: str, barrier, results) -> None:
    """One racer: wait for the others, take the stale claim over, say if it won, and
    live until every racer has said (a winner that died would leave a stale claim)."""
    barrier.wait()
    got = Claims("racer").acquire(Path(path).parent, "v")
    results.put((os.getpid(), isinstance(got, Claim)))
    results.close()
    results.join_thread()
    barrier.wait()
    os._exit(0)  # keep the claim: the test reads who holds it


def test_runs_racing_for_one_claim_one_wins(tmp_path):
    """Odd rounds: a stale claim to take over; even rounds: no claim yet."""
    ctx = multiprocessing.get_context("fork")
    out = tmp_path / "out"
    out.mkdir()
    path = claim_path(out, "v")
    for round_ in range(RACE_ROUNDS):
        if round_ % 2:
            write_claim(out, "v", host=identity.host_name(), pid=dead_pid())
        barrier, results = ctx.Barrier(RACERS), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(str(path), barrier, results))
                 for _ in range(RACERS)]  # fmt: skip
        for p in procs:
            p.start()
        outcome = [results.get(timeout=RUN_TIMEOUT_S) for _ in procs]
        for p in procs:
            p.join(timeout=RUN_TIMEOUT_S)
        winners = [pid for pid, won in outcome if won]
        assert len(winners) == 1, outcome
        assert read_claim(path).holder.pid == winners[0]
        assert [p.name for p in out.iterdir()] == [path.name]  # nothing set aside is left
        path.unlink()


def test_the_heartbeat_refreshes_a_claim_and_notices_its_loss(tmp_path):
    claims = Claims("beating", lease_s=0.4)  # a heartbeat every 0.02 s
    claim = claims.acquire(tmp_path, "v")
    assert isinstance(claim, Claim)
    old = time.time() - 3600
    os.utime(claim.path, (old, old))
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while claim.path.stat().st_mtime == old:  # refreshed by the thread
        assert time.monotonic() < deadline
        time.sleep(0.01)
    claims.check(claim)
    mine = claim.path.read_text()
    claim.path.write_text(mine.replace(claim.token, "f" * len(claim.token)))  # taken over
    while not claim.lost.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(ClaimLost):
        claims.check(claim)
    claims.close()
    assert claim.path.exists()  # someone else's now: left alone


def test_a_claim_lost_mid_video_stops_it_cleanly(
    tmp_path, vinet_checkpoint, fast_model, monkeypatch
):
    video = write_video(tmp_path / "v.mp4", n_frames=3)
    out = tmp_path / "out"
    real_check = Claims.check

    def taken_over(self, claim):  # another host took the claim over after map 1
        if not claim.lost.is_set() and claim.path.exists():
            write_claim(out, "v", host="far", pid=1)
            claim.lost.set()
        real_check(self, claim)

    monkeypatch.setattr(Claims, "check", taken_over)
    r = predict(video, "-o", out, "-f", "h5,png", "--jsonl", "--no-wait", weights=vinet_checkpoint)
    [line] = lines(r)
    assert line["status"] == "claimed" and line["holder"]["host"] == "far"
    assert sorted(p.name for p in out.iterdir()) == [".v.salcli.claim"]  # nothing of ours


# --- salcli status -----------------------------------------------------------------------------


def test_status_counts_a_corpus(corpus, tmp_path, vinet_checkpoint, fast_model):
    out = tmp_path / "out"
    a_b = [corpus / "a.mp4", corpus / "b.mp4"]
    assert predict(*a_b, "-o", out, "-f", "h5", weights=vinet_checkpoint).exit_code == 0
    holder = Claims("busy")
    holder.acquire(out, "c", str(corpus / "c.mp4"))
    write_claim(out, "d", host=identity.host_name(), pid=dead_pid())  # a dead run's
    runs = tmp_path / "runs.jsonl"
    runs.write_text(json.dumps({"path": str(corpus / "e.mp4"), "status": "failed",
                                "error": "e.mp4: broken"}) + "\n")  # fmt: skip
    r = runner.invoke(app, ["status", str(out), "--corpus", str(corpus), "--runs", str(runs),
                            "--jsonl"])  # fmt: skip
    assert r.exit_code == 0, r.output
    *videos, summary = [json.loads(x) for x in r.stdout.splitlines()]
    states = {Path(v["path"]).stem: v["state"] for v in videos}
    assert states == {"a": "finished", "b": "finished", "c": "claimed", "d": "missing",
                      "e": "failed", "f": "missing"}  # fmt: skip
    by = {Path(v["path"]).stem: v for v in videos}
    assert by["c"]["holder"]["run"] == "busy" and by["c"]["holder"]["pid"] == os.getpid()
    assert by["d"]["stale_claim"]["run"] == "other" and by["e"]["error"] == "e.mp4: broken"
    assert summary == {"counts": {"finished": 2, "claimed": 1, "failed": 1, "missing": 2,
                                  "stale_claims": 1}}  # fmt: skip
    text = runner.invoke(app, ["status", str(out)])  # no corpus: what the folder knows of
    assert text.exit_code == 0
    assert "4 videos: 2 finished, 1 claimed, 0 failed, 1 missing; 1 stale claim" in text.stderr
    assert f"claimed {corpus / 'c.mp4'}: held by" in text.stderr
    holder.close()
    assert not claim_path(out, "c").exists()
    assert runner.invoke(app, ["status", str(tmp_path / "nowhere")]).exit_code == 2


def test_the_default_lease_is_well_above_the_heartbeat():
    assert Claims().heartbeat_s * 10 <= DEFAULT_LEASE_S
