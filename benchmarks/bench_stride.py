"""What ``--stride K`` saves and what it costs: time per frame and per-frame CC against
stride 1, salcli's defaults otherwise (overlap reuse at stride 1, clip by clip above).

    .venv/bin/python benchmarks/bench_stride.py [--frames 64] [--strides 1,2,4]
        [--precision auto] [--size 224x384]

A synthetic 360x640 H.264 clip (a bright blob moving over texture) and ViNet with
deterministic weights (the reference fill rule), loaded from a file as the CLI loads
one. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--strides", default="1,2,4")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--size", default="224x384")
    args = ap.parse_args()
    sys.path[:0] = [str(HERE), str(ROOT / "tests")]
    from bench_predict import checkpoint_file, machine
    from helpers import write_video

    import salcli

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = checkpoint_file(tmp)  # loaded as the CLI loads a file
        video = write_video(Path(tmp) / "clip.mp4", n_frames=args.frames, size=(360, 640),
                            codec="libx264")  # fmt: skip
        base = None
        for k in (int(v) for v in args.strides.split(",")):
            p = salcli.Predictor(weights, stride=k, precision=args.precision,
                                 input_size=args.size, device="cpu")  # fmt: skip
            start = time.perf_counter()
            maps = p.predict(video)
            seconds = time.perf_counter() - start
            if base is None:
                base = (seconds, maps)
            cc = [
                np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(maps, base[1], strict=True)
            ]
            print(
                f"stride {k}: {seconds / args.frames:.3f} s/frame ({seconds / base[0]:.2f}x the "
                f"time of stride 1), {p.precision}, batch {p.batch_size}, reuse "
                f"{'on' if p.reuse else 'off'}; per-frame CC vs stride 1: mean "
                f"{np.mean(cc):.4f}, min {np.min(cc):.4f}"
            )


if __name__ == "__main__":
    main()
