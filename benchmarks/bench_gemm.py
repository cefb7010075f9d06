"""Matrix-product rates of this machine per precision: the ceiling under salcli's speed.

    .venv/bin/python benchmarks/bench_gemm.py [--n 2048] [--repeats 3]

A map costs 229 GFLOP, 86 % of its CPU time in convolutions that run as GEMMs, so
the fp32 rate printed here bounds what any fp32 pipeline can do on this machine:
seconds per map >= 229 / rate. bf16 pays off only where the CPU multiplies bf16
natively (AVX512-BF16 or AMX); elsewhere PyTorch falls back to a slow path, which
this shows. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

MAP_GFLOP = 229.0  # ViNet at 224x384, T = 32: 123 backbone + 106 decoder
SLOW_PATH_N = 256  # matrix side for precisions that may lack native support


def rate(dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best GFLOP/s of an (n, n) @ (n, n) product in ``dtype``."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2048, help="matrix side for fp32")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_predict import machine

    print(f"machine: {machine()}")
    fp32 = rate(torch.float32, args.n, args.repeats)
    print(f"fp32 GEMM {args.n}^2: {fp32:.1f} GFLOP/s -> a map >= {MAP_GFLOP / fp32:.2f} s")
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        # a probe at a small size first: an emulated product of 2048^2 takes minutes
        n, r = SLOW_PATH_N, rate(dtype, SLOW_PATH_N, 1)
        if r > fp32 / 2:  # looks native: measure at the full size
            n, r = args.n, rate(dtype, args.n, args.repeats)
        print(f"{name} GEMM {n}^2: {r:.2f} GFLOP/s -> a map >= {MAP_GFLOP / r:.2f} s")


if __name__ == "__main__":
    main()
