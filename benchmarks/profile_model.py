"""Where a forward pass spends its time: an op breakdown of salcli's model per precision.

    .venv/bin/python benchmarks/profile_model.py [--precision bf16] [--mode reuse]
        [--batch 8] [--input-size 224x384] [--top 20] [--repeats 3] [--layers]

Runs ViNet (the deterministic checkpoint of salcli.testing, loaded by
``salcli.inference.predictor.Predictor`` as the CLI loads one: BatchNorm folded, cast for the
precision) clip by clip (``--mode clips``: a batch of ``--batch`` clips of T = 32
frames) or with overlap reuse (``--mode reuse``: the ``--batch`` clips of ``--batch``
+ 31 consecutive frames, ``salcli.inference.overlap``). Prints the best wall time of
``--repeats`` runs, then one profiled run's self time per op and input dtypes (ops
that run in fp32 under bf16 show as such), and the shares per kind of op
(convolution, pooling, casts and copies, concatenation, element-wise, upsampling).
Shares are what to read on a busy machine: they move less than times. ``--layers``
instead times each convolution of one run and prints, per kind of layer (spatial,
temporal, pointwise, decoder), its time, GFLOP per map and GFLOP/s: how close each
kind comes to the machine's convolution rate (``bench_predict.py`` prints that rate).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

T = 32  # frames per clip

# op name fragments -> the kind of work they are
KINDS = (
    ("convolution", ("conv",)),
    ("pooling", ("pool",)),
    ("cast / copy", ("copy_", "_to_copy", "clone", "contiguous")),
    ("concatenation", ("cat",)),
    ("upsampling", ("upsample",)),
    ("element-wise", ("relu", "clamp", "sigmoid", "add", "mul", "maximum", "fill")),
)


def _kind(name: str) -> str:
    for kind, parts in KINDS:
        if any(p in name for p in parts):
            return kind
    return "other"


def _dtypes(ev) -> str:
    short = {"float": "fp32", "c10::BFloat16": "bf16", "c10::Half": "fp16"}
    found = [short.get(d, d) for d in (getattr(ev, "input_dtypes", None) or []) if d]
    return ",".join(dict.fromkeys(found)) or "-"


def _layer_kind(weight_shape: torch.Size, decoder: bool) -> str:
    kt, kh, kw = weight_shape[2:]
    if decoder:
        return "decoder (kt x 3 x 3)"
    if (kt, kh, kw) == (1, 1, 1):
        return "pointwise 1x1x1"
    if kt == 1:
        return f"spatial 1x{kh}x{kw}"
    return f"temporal {kt}x1x1" if kh == kw == 1 else f"{kt}x{kh}x{kw}"


def conv_rates_by_kind(run, model: torch.nn.Module, maps: int) -> None:
    """Time every convolution of one run of ``run`` (salcli.models.layers.conv3d, wherever it is
    called from) and print, per kind of layer, its time, FLOPs per map and rate."""
    import salcli.inference.overlap as O
    import salcli.models.vinet as M

    decoder_weights = {id(m.weight) for m in model.decoder.modules() if hasattr(m, "weight")}
    plain = M.conv3d
    rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

    def timed(x, conv, **kw):
        t = time.perf_counter()
        y = plain(x, conv, **kw)
        dt = time.perf_counter() - t
        w = conv.weight if kw.get("weight") is None else kw["weight"]
        flop = 2 * y.numel() * w[0].numel()  # multiply-adds of each output value
        row = rows[_layer_kind(w.shape, id(conv.weight) in decoder_weights)]
        row[0] += dt
        row[1] += flop
        return y

    M.conv3d = O.conv3d = timed
    try:
        run()
    finally:
        M.conv3d = O.conv3d = plain
    seconds = sum(r[0] for r in rows.values())
    flop = sum(r[1] for r in rows.values())
    print(
        f"convolutions through salcli.models.layers.conv3d: {seconds:.3f} s, "
        f"{flop / 1e9 / maps:.1f} GFLOP/map at {flop / seconds / 1e9:.0f} GFLOP/s"
    )
    for kind, (dt, fl) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
        print(
            f"  {kind:<22} {dt * 1e3:>8.1f} ms {fl / 1e9 / maps:>7.1f} GFLOP/map "
            f"{fl / dt / 1e9:>6.0f} GFLOP/s"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--mode", default="reuse", choices=("clips", "reuse"))
    ap.add_argument("--batch", type=int, default=8, help="clips per forward pass")
    ap.add_argument("--input-size", default="224x384")
    ap.add_argument("--top", type=int, default=20, help="ops listed")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (best of)")
    ap.add_argument(
        "--layers", action="store_true", help="only the convolutions' rates per kind of layer"
    )
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    from bench_predict import checkpoint_file, machine

    from salcli.inference.engine import CHANNELS_LAST
    from salcli.inference.predictor import Predictor

    h, w = (int(v) for v in args.input_size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="profile_model_") as tmp:
        weights = checkpoint_file(tmp)
        p = Predictor(weights, device="cpu", precision=args.precision, input_size=(h, w))
    b = args.batch
    if args.mode == "clips":
        x = torch.randn(b, 3, T, h, w).contiguous(memory_format=CHANNELS_LAST)  # (B, 3, T, H, W)

        def run():
            return p.engine.forward(x)
    else:
        x = torch.randn(1, 3, b + T - 1, h, w).contiguous(memory_format=CHANNELS_LAST)

        def run():
            return p.engine.forward_stream(x, T)

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    if args.layers:
        run()  # warm-up: oneDNN primitives for these shapes
        conv_rates_by_kind(run, p.engine.model, b)
        return
    run()  # warm-up: oneDNN primitives for these shapes
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    best = min(times)
    print(
        f"ViNet {args.precision} {args.mode} batch {b} at {h}x{w}: best {best:.3f} s "
        f"= {best / b:.3f} s/map (runs: {', '.join(f'{t:.2f}' for t in times)} s)"
    )
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    rows: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for ev in prof.events():
        key = (ev.name, _dtypes(ev))
        rows[key][0] += ev.self_cpu_time_total / 1e3  # ms
        rows[key][1] += 1
    total = sum(r[0] for r in rows.values())
    print(f"profiled run: {total / 1e3:.3f} s of op self time")
    print(f"  {'op':<34} {'dtypes':<14} {'ms':>9} {'share':>6} {'calls':>6}")
    for (name, dt), (ms, n) in sorted(rows.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"  {name:<34} {dt:<14} {ms:>9.1f} {ms / total:>6.1%} {n:>6}")
    kinds: dict[str, float] = defaultdict(float)
    for (name, _), (ms, _) in rows.items():
        kinds[_kind(name)] += ms
    print("  by kind: " + ", ".join(f"{k} {v / total:.1%}" for k, v in sorted(
        kinds.items(), key=lambda kv: -kv[1])))  # fmt: skip


if __name__ == "__main__":
    main()
