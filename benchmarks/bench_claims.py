"""What a claim (salcli.corpus.claims) costs per video, against a video's model time.

    .venv/bin/python benchmarks/bench_claims.py [--dir FOLDER] [--videos 300]
        [--frames 16] [--input-size 224x384] [--weights PATH] [--no-model]

- the claim's life for one video, as a corpus run lives it: created (the claim written
  under a temporary name, hard-linked to its name), read again before the outputs and
  before the record (``verify``), one heartbeat, released; timed over ``--videos``
  videos in ``--dir`` (default: a temporary folder; point it at the shared file system
  the runs write to, NFS or Lustre, to time it there): per video, median, mean and 99th
  percentile;
- a take-over: a dead process's claim (this host) replaced, per video;
- the model time of one video of ``--frames`` frames (360x640, H.264) at
  ``--input-size`` with salcli's defaults (``Predictor.write``, ``-f h5``), and the
  claim's share of it. ``--no-model`` leaves it out.

Prints figures and the machine's load; asserts nothing.
"""

from __future__ import annotations

import argparse
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

from salcli.corpus.claims import Claim, Claims  # noqa: E402
from salcli.media.records import claim_path  # noqa: E402

VIDEO_SIZE = (360, 640)  # (H, W) of the model phase's video
MS = 1e3  # ms per s


def _claim_life(claims: Claims, folder: Path, stem: str) -> float:
    """Seconds of one video's claim: acquire, verify twice, one heartbeat, release."""
    started = time.perf_counter()
    claim = claims.acquire(folder, stem, f"{stem}.mp4")
    assert isinstance(claim, Claim)
    claims.verify(claim)  # before the outputs
    claims.heartbeat(claim)
    claims.verify(claim)  # before the record
    claims.release(claim)
    return time.perf_counter() - started


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _take_over(claims: Claims, folder: Path, stem: str, dead: int) -> float:
    """Seconds to take a dead process's claim over (and release it)."""
    path = claim_path(folder, stem)
    claim = claims.acquire(folder, stem)
    assert isinstance(claim, Claim)
    text = path.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {dead}')
    claims.release(claim)
    path.write_text(text)  # as the dead process left it
    started = time.perf_counter()
    got = claims.acquire(folder, stem)
    assert isinstance(got, Claim) and got.taken_over is not None
    claims.release(got)
    return time.perf_counter() - started


def _stats(label: str, seconds: list[float]) -> float:
    ms = sorted(s * MS for s in seconds)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    median = statistics.median(ms)
    print(f"{label}: median {median:.3f} ms, mean {statistics.fmean(ms):.3f} ms, "
          f"p99 {p99:.3f} ms over {len(ms)} videos")  # fmt: skip
    return median / MS


def _model_seconds(folder: Path, args: argparse.Namespace) -> float:
    from helpers import write_video

    from salcli.inference.predictor import Predictor

    video = write_video(folder / "clip.mp4", n_frames=args.frames, size=VIDEO_SIZE,
                        codec="libx264")  # fmt: skip
    size = tuple(int(x) for x in args.input_size.split("x"))
    predictor = Predictor(str(checkpoint_file(folder, args.weights)), input_size=size)
    started = time.perf_counter()
    predictor.write(video, folder / "maps", formats=("h5",))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="where the claims are made (default: a temporary folder)")
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--input-size", default="224x384")
    parser.add_argument("--weights")
    parser.add_argument("--no-model", action="store_true")
    args = parser.parse_args()
    print(machine())
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        claims = Claims("bench")
        try:
            life = [_claim_life(claims, folder, f"v{i}") for i in range(args.videos)]
            dead = _dead_pid()
            taken = [_take_over(claims, folder, f"t{i}", dead) for i in range(args.videos)]
        finally:
            claims.close()
        print(f"claims in {folder} ({'given' if args.dir else 'temporary folder'})")
        claim_s = _stats("a video's claim (acquire, 2 verify, heartbeat, release)", life)
        _stats("a take-over of a dead process's claim (and its release)", taken)
        if args.no_model:
            return
        model_s = _model_seconds(folder, args)
    print(f"model: {args.frames} frames of {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} at "
          f"{args.input_size}: {model_s:.2f} s ({model_s / args.frames:.3f} s/map)")  # fmt: skip
    print(f"a claim is {claim_s / model_s:.2e} of this video's time "
          f"({claim_s / (model_s / args.frames):.2e} of one map's)")  # fmt: skip


if __name__ == "__main__":
    main()
