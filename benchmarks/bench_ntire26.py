"""How fast ``salcli evaluate --dataset ntire26`` scores a FullHD video, and that its memory
does not grow with the video's length (the saliency video and the prediction are decoded
side by side, a frame at a time, nothing written to disk).

For each length in ``--frames`` a child process builds one FullHD video in the NTIRE 2026
layout (tests/helpers.py's ``make_ntire26``: 10-bit crf-0 ground truth, fixations JSON)
and its prediction as ``salcli predict --format video`` writes it; another child times
``evaluate("ntire26", predictions=..., jobs=1)`` and reports frames/s and its peak
resident memory (the same for every length when memory is bounded by a frame).

    .venv/bin/python benchmarks/bench_ntire26.py [--frames 20 60] [--height 1080 --width 1920]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

KIB = 1024  # bytes: ru_maxrss is in KiB on Linux
MIB = 2**20
SHIFT = 2  # pixels the prediction is the ground truth shifted by (to the right)
SPLITS = {"public_test": ["big"], "private_test": [], "train": []}


def build(folder: Path, n: int, h: int, w: int) -> float:
    """One ``n``-frame video and its prediction under ``folder``; the seconds it took."""
    from helpers import make_ntire26

    from salcli.media.decode import probe
    from salcli.media.writers import RunInfo, make_writer

    t0 = time.perf_counter()
    truth = make_ntire26(folder / "NTIRE26", {"big": (n, (h, w), True)}, SPLITS)
    meta = probe(folder / "NTIRE26" / "Videos" / "big.mp4")
    run = RunInfo("bench", "0" * 64, 32, "mirror", "bench")
    with make_writer("video", folder / "pred", meta, run) as writer:
        for i, m in enumerate(truth["big"][1]):  # the truth, shifted
            writer.write(i, np.roll(m, SHIFT, axis=1).astype(np.float32), i / meta.fps)
    return time.perf_counter() - t0


def score(folder: Path) -> dict:
    """Score the video under ``folder`` in this process: time and peak memory."""
    from salcli.evaluation.evaluate import evaluate

    t0 = time.perf_counter()
    res = evaluate("ntire26", root=folder / "NTIRE26", predictions=folder / "pred", jobs=1)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB / MIB
    return {"seconds": seconds, "frames": res.videos[0].frames, "rss_mib": rss, **res.overall}


def _child(*args: str) -> str:
    cmd = [sys.executable, __file__, *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[15, 45])
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--score", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.build:
        print(build(a.build, a.frames[0], a.height, a.width))
        return
    if a.score:
        print(json.dumps(score(a.score)))
        return
    print(f"ntire26 scoring of one {a.width}x{a.height} video in one process (jobs=1):")
    for n in a.frames:
        with tempfile.TemporaryDirectory() as tmp:
            built = float(_child("--build", tmp, "--frames", str(n), "--height", str(a.height),
                                 "--width", str(a.width)))  # fmt: skip
            r = json.loads(_child("--score", tmp).splitlines()[-1])
        print(
            f"  {r['frames']:4d} frames: {r['seconds']:6.2f} s, "
            f"{r['frames'] / r['seconds']:5.2f} frames/s, peak RSS {r['rss_mib']:.0f} MiB "
            f"(CC {r['cc']:.3f}, AUC-J {r['auc_j']:.3f}; built in {built:.0f} s)"
        )


if __name__ == "__main__":
    main()
