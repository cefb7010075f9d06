"""A folder of videos predicted by one local process and by a local Ray run, and the
per-video overhead Ray adds.

    .venv/bin/python benchmarks/bench_cluster.py [--videos 6] [--frames 40]
        [--input-size 128x224] [--workers 2] [--tiny 16] [--weights PATH]

Each phase runs in its own process on the same generated folder (360x640 videos,
``-f h5``, fp32, ``--warmup mirror``):

- throughput: one local process (torch's threads: all cores) against ``--ray local``
  with ``--workers`` workers of one CPU each; for each, the start and end (model
  loaded; Ray: Ray started, the first worker's model loaded, and Ray shut down), the
  time over the videos (to the last result), maps/s over the videos and end to end;
- overhead: ``--tiny`` tiny videos (8 frames, 48x64 at the 32x64 input) by one local
  process and by one Ray worker with as many CPUs (the same threads), so that the
  difference of their times over the videos, per video, is what Ray adds: scheduling,
  the job and result across processes, the record checks on both sides; and the round
  trip of an empty call to a warm worker.

Needs the ray extra. Prints figures and the machine's load; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "tests")]
from bench_predict import checkpoint_file, machine  # noqa: E402

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only

TINY_FRAMES = 8  # frames of an overhead video
TINY_SIZE = (48, 64)  # (H, W) of an overhead video
TINY_INPUT = "32x64"  # model input of the overhead runs
VIDEO_SIZE = (360, 640)  # (H, W) of a throughput video
ROUND_TRIPS = 50  # empty calls timed on a warm worker


def _phase(args: argparse.Namespace) -> None:
    """One measurement, in this process: prints one JSON line."""
    from salcli.corpus.local import BatchRun
    from salcli.options import ClusterOptions

    opts = dict(
        formats="h5",
        precision="fp32",
        input_size=args.input_size,
        weights=args.weights,
        overwrite=True,
    )
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    run = BatchRun([args.folder], args.out, **opts)
    trips: list[float] = []
    if args.mode == "local":
        run.predictor  # noqa: B018 - the model loaded: the start-up
        results = run
    else:
        from salcli.corpus.cluster import ClusterBatch

        cluster = ClusterOptions(ray="local", workers=args.workers, cpus_per_worker=args.cpus)
        results = ClusterBatch(run, cluster)
        trips = _round_trips()
    t1 = time.perf_counter()
    done = []
    for result in results:  # the last result's time: Ray's shutdown comes after
        done.append(result)
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    bad = [r.error for r in done if r.status != "done"]
    if bad:
        raise SystemExit(f"bench_cluster: {bad[0]}")
    print(json.dumps({
        "mode": args.mode, "workers": args.workers, "cpus": args.cpus, "load": load,
        "startup": t1 - t0 + t3 - t2, "videos": t2 - t1, "maps": sum(r.frames for r in done),
        "n": len(done), "write": sum(r.seconds for r in done),
        "trip_ms": statistics.median(trips) * 1e3 if trips else None,
    }))  # fmt: skip


def _round_trips() -> list[float]:
    """Seconds of empty calls to a warm actor (``ROUND_TRIPS`` of them)."""
    import ray

    @ray.remote(num_cpus=0)
    class Echo:
        def ping(self) -> None:
            return None

    echo = Echo.remote()
    ray.get(echo.ping.remote())  # started
    trips = []
    for _ in range(ROUND_TRIPS):
        t = time.perf_counter()
        ray.get(echo.ping.remote())
        trips.append(time.perf_counter() - t)
    ray.kill(echo)
    return trips


def _run(folder: Path, out: Path, mode: str, args: argparse.Namespace, **kw) -> dict:
    cmd = [sys.executable, __file__, "--phase", mode, "--folder", str(folder), "--out",
           str(out), "--weights", str(args.weights)]  # fmt: skip
    for k, v in {"input-size": args.input_size, "workers": args.workers, "cpus": 1, **kw}.items():
        cmd += [f"--{k}", str(v)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    line = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(line.strip().splitlines()[-1])


def _corpus(folder: Path, n: int, frames: int, size: tuple[int, int]) -> Path:
    from helpers import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_video(folder / f"v{i:03d}.mp4", n_frames=frames, size=size)
    return folder


def _row(label: str, r: dict) -> str:
    total = r["startup"] + r["videos"]
    return (
        f"{label:<40} {r['startup']:>11.1f} {r['videos']:>9.1f} {r['maps']:>6} "
        f"{r['maps'] / r['videos']:>11.3f} {r['maps'] / total:>11.3f} {r['load']:>6.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--input-size", default="128x224")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tiny", type=int, default=16, help="videos of the overhead runs (0: none)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cpus", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        args.mode = args.phase
        _phase(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        tmp = Path(tmp)
        args.weights = checkpoint_file(tmp, args.weights)
        cores = os.cpu_count() or 1
        print(f"machine: {machine()}")
        print(f"throughput: {args.videos} videos x {args.frames} frames, "
              f"{VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, input {args.input_size}, fp32, -f h5")  # fmt: skip
        folder = _corpus(tmp / "corpus", args.videos, args.frames, VIDEO_SIZE)
        head = (f"{'':<40} {'start+end s':>11} {'videos s':>9} {'maps':>6} "
                f"{'maps/s':>11} {'end to end':>11} {'load':>6}")  # fmt: skip
        print(head)
        local = _run(folder, tmp / "out-local", "local", args)
        print(_row(f"one local process ({cores} threads)", local))
        ray = _run(folder, tmp / "out-ray", "ray", args)
        print(_row(f"--ray local, {args.workers} workers x 1 CPU", ray))
        whole = (local["startup"] + local["videos"]) / (ray["startup"] + ray["videos"])
        print(f"ray / local, over the videos: {local['videos'] / ray['videos']:.2f}x; "
              f"end to end: {whole:.2f}x")  # fmt: skip

        if not args.tiny:
            return
        print(f"\noverhead: {args.tiny} videos x {TINY_FRAMES} frames, {TINY_SIZE[0]}x"
              f"{TINY_SIZE[1]}, input {TINY_INPUT}; one worker of {cores} CPUs")  # fmt: skip
        tiny = _corpus(tmp / "tiny", args.tiny, TINY_FRAMES, TINY_SIZE)
        small = argparse.Namespace(**{**vars(args), "input_size": TINY_INPUT, "workers": 1})
        t_local = _run(tiny, tmp / "tiny-local", "local", small)
        t_ray = _run(tiny, tmp / "tiny-ray", "ray", small, cpus=cores)
        print(head)
        print(_row(f"one local process ({cores} threads)", t_local))
        print(_row(f"--ray local, 1 worker x {cores} CPUs", t_ray))
        # the time over the videos outside Predictor.write (the job's record checks,
        # and with Ray its dispatch and result), per video: less exposed to the machine's
        # load than the difference of two whole runs
        gap = {k: (r["videos"] - r["write"]) / args.tiny * 1e3 for k, r in
               (("local", t_local), ("ray", t_ray))}  # fmt: skip
        print(f"per video outside Predictor.write: local {gap['local']:.1f} ms, Ray "
              f"{gap['ray']:.1f} ms: Ray adds {gap['ray'] - gap['local']:.1f} ms "
              f"(whole runs: {(t_ray['videos'] - t_local['videos']) / args.tiny * 1e3:+.0f} "
              f"ms per video); an empty call to a warm actor: {t_ray['trip_ms']:.2f} ms "
              f"(median of {ROUND_TRIPS})")  # fmt: skip


if __name__ == "__main__":
    main()
