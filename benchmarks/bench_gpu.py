"""salcli on a CUDA GPU: model-only and end-to-end maps/s, peak memory, CC against fp32.

    python benchmarks/bench_gpu.py [--device cuda] [--quick] [--budget-s 330]
        [--precision bf16]

Steps, each timed and reported on its own (a failing step prints one line and the rest
go on; a step that would start past ``--budget-s`` is skipped, saying so):

1. model only, ViNet, ViNet-S, AViNet (bilinear) and ViNet-A (at its fixed 256x456, no
   overlap reuse) in bf16 (the precision ``auto`` picks on
   CUDA where bf16 is supported), as a ``salcli.inference.predictor.Predictor`` runs a loaded
   checkpoint (BatchNorm folded, convolutions stored in bf16, channels-last), the input
   already on the device: maps/s per batch size through the engine's public forward
   passes, ``Engine.forward`` (each clip on its own) and ``Engine.forward_stream`` (the
   batch's clips consecutive, their shared backbone work done once: overlap reuse), and
   the peak device memory; then at the best batch the same forward pass captured once
   and replayed as a CUDA graph (and, last of all steps, with ``torch.compile``:
   ``Predictor(compile=True)``);
2. end to end: an H.264 file (generated with PyAV's libx264) -> HDF5 maps with salcli's
   defaults on the device (batch fitted to memory, resize on the GPU), in bf16 and in
   fp32: maps/s and peak device memory;
3. the per-frame CC of those bf16 maps against the fp32 maps on the same device (read
   back from the HDF5 files, written in float32).

It ends with a table against the targets of issue 13 for an H100/H200-class GPU:
>= 1000 maps/s model only (ViNet, bf16), >= 500 maps/s end to end, CC >= 0.999; and
ViNet-S's best model-only rate against its authors' claim of over 1000 maps/s (issue 31),
with its ratio to ViNet's.

``--device cpu --quick`` runs every step that needs no CUDA (CUDA graphs do) on the CPU
at a small input size, to check the script itself where no GPU is at hand; its figures
are not comparable with the targets. There AViNet (transformer) stands in for AViNet
(bilinear), whose bilinear layer is tied to the 224x384 input (minutes a clip on a
CPU), and on a CPU without native bf16 (emulated, ~80x slower) the timed steps run in
fp32. Weights: the deterministic checkpoints of salcli.testing, loaded from a file as
the CLI loads one. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch._dynamo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from salcli.models.vinet_procedure import CLIP_LEN, INPUT_H, INPUT_W  # noqa: E402

DATA = ROOT / "tests" / "data"
MANIFESTS = {  # model -> the key manifest its deterministic checkpoint is built from
    "vinet": "vinet.keys.json",
    "bilinear": "avinet_bilinear.keys.json",
    "transformer": "avinet_transformer.keys.json",
    "vinet_s": "vinet_s.keys.json",
    "vinet_a": "vinet_a.keys.json",
}
LABELS = {
    "vinet": "ViNet",
    "bilinear": "AViNet(B)",
    "transformer": "AViNet(T)",
    "vinet_s": "ViNet-S",
    "vinet_a": "ViNet-A",
}
HEARS = ("bilinear", "transformer")  # the benchmarked models that take the sound
VINET_A_SIZE = (256, 456)  # ViNet-A's fixed input (salcli.models.registry)
SOUND_AMPLITUDE = 0.1  # of the random sound input (SoundNet's scale: +-256 at full scale)

TARGET_MODEL_MAPS_S = 1000.0  # ViNet bf16, model only, H100/H200 class
TARGET_E2E_MAPS_S = 500.0  # from an H.264 file
TARGET_CC = 0.999  # per frame, bf16 against fp32
CLAIM_VINET_S_MAPS_S = 1000.0  # the ViNet++ paper's claim for ViNet-S on a GPU (issue 31)

MIN_BATCH_S = 10.0  # seconds of budget left to start timing another batch size

FULL = dict(
    input_size_px=(INPUT_H, INPUT_W),
    avinet="bilinear",
    batches=(8, 16, 32, 64),
    video_frames=600,
    warm_frames=CLIP_LEN + 8,  # the warm-up video's: kernel choice, the allocator
    video_size_px=(360, 640),
    timed_iters=10,
    warmup_iters=2,
)
QUICK = dict(
    input_size_px=(32, 64),
    avinet="transformer",  # AViNet (bilinear) runs at 224x384 only
    batches=(1, 2),
    video_frames=6,
    warm_frames=2,
    video_size_px=(48, 64),
    timed_iters=1,
    warmup_iters=1,
)


class Budget:
    """Seconds left for the run; steps that would start past it are skipped."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _mib(v: float | None) -> str:
    return "n/a (CPU)" if v is None else f"{v:.0f} MiB"


def time_call(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    """Median seconds of ``fn`` over ``iters`` timed calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def checkpoints(folder: Path, models: tuple[str, ...]) -> dict[str, Path]:
    """The deterministic checkpoint of each benchmarked model, written into ``folder``."""
    from salcli.testing import tamed_state_dict

    out = {}
    for arch in models:  # tamed where the manifest says so: moderate logits on real input
        out[arch] = folder / f"{arch}_deterministic.pt"
        torch.save(tamed_state_dict(DATA / MANIFESTS[arch]), out[arch])
    return out


def _predictor(weights: Path, arch: str, args, size, **kw):
    from salcli.inference.predictor import Predictor

    kw.setdefault("precision", args.precision)
    return Predictor(weights, audio=arch in HEARS, device=args.device, input_size=size, **kw)


def _sound(p, batch: int) -> torch.Tensor | None:
    """A random sound input of ``batch`` clips in the family's layout, on the device."""
    if not p.audio:
        return None
    from salcli.media.audio import AudioTrack

    a = p.family.audio
    # the family's excerpt length: that of a silent first clip (at 30 fps)
    buffer = a.excerpt(AudioTrack.silence(), 0, p.family.clip_len - 1, 30.0).shape[-1]
    excerpts = SOUND_AMPLITUDE * np.random.default_rng(0).standard_normal((batch, buffer))
    return a.batch(excerpts).to(p.device)  # e.g. (B, 1, N, 1)


def _on_device(p, x: torch.Tensor) -> torch.Tensor:
    """``x`` (normalized frames) on the predictor's device, in its layout."""
    from salcli.inference.engine import CHANNELS_LAST

    x = x.to(p.device)
    return x.contiguous(memory_format=CHANNELS_LAST) if p.channels_last else x


def _clips(p, batch: int) -> torch.Tensor:
    h, w = p.input_size
    return _on_device(p, torch.randn(batch, 3, CLIP_LEN, h, w))  # (B, 3, T, h, w)


def _stream(p, batch: int) -> torch.Tensor:
    h, w = p.input_size
    return _on_device(p, torch.randn(1, 3, batch + CLIP_LEN - 1, h, w))  # the B clips' frames


def _autocast(p, cache: bool = True):
    """The engine's autocast: none in fp32; ``cache`` False for a CUDA graph, which must
    not capture casts cached before it."""
    if p.dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(p.device.type, dtype=p.dtype, cache_enabled=cache)


def _cuda_graph(p, x: torch.Tensor, sound: torch.Tensor | None) -> Callable[[], torch.Tensor]:
    """The engine's forward pass on ``x`` (the model under its autocast) captured once as
    a CUDA graph; each call replays it on the same input buffers."""
    extra = () if sound is None else (sound,)

    def run() -> torch.Tensor:
        with torch.inference_mode(), _autocast(p, cache=False):
            return p.model(x, *extra)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up outside the capture (cuDNN picks its kernels)
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def _model_setup(arch: str, cfg) -> tuple[tuple[int, int], tuple[int, ...]]:
    """(input size, batch sizes) of one model: AViNet (bilinear) runs at 224x384 only,
    ViNet-A at 256x456 only."""
    size, batches = cfg["input_size_px"], cfg["batches"]
    if arch == "bilinear" and size != (INPUT_H, INPUT_W):  # tied to the 224x384 bottleneck
        size, batches = (INPUT_H, INPUT_W), batches[:1]
    if arch == "vinet_a" and size != VINET_A_SIZE:  # a quick run: its one size, one batch
        size, batches = VINET_A_SIZE, batches[:1]
    return size, batches


def _iters(cfg) -> dict:
    return dict(iters=cfg["timed_iters"], warmup=cfg["warmup_iters"])


def step_model(arch: str, weights: Path, args, cfg, budget: Budget, results: dict) -> None:
    """Maps/s per batch size of ``Engine.forward`` and ``Engine.forward_stream``, then a
    CUDA graph replay of the forward pass at the best batch."""
    device = torch.device(args.device)
    size, batches = _model_setup(arch, cfg)
    p = _predictor(weights, arch, args, size)
    label = LABELS[arch]
    print(f"  {label} {p.precision}, input {size[0]}x{size[1]}, channels-last {p.channels_last}")
    best: dict[str, tuple[float, int]] = {}
    for b in batches:
        if budget.left() < MIN_BATCH_S:
            print(f"  {label} batch {b}: skipped (budget)")
            continue
        sound = _sound(p, b)
        x, frames = _clips(p, b), _stream(p, b)
        modes = {
            "eager": lambda x=x, s=sound: p.engine.forward(x, s),
            "stream": lambda f=frames, s=sound: p.engine.forward_stream(f, CLIP_LEN, s),
        }
        for mode, run in modes.items():
            if mode == "stream" and (b == 1 or arch == "vinet_a"):  # nothing shared
                continue
            try:
                _reset_peak(device)
                s = time_call(run, device, **_iters(cfg))
            except torch.OutOfMemoryError:
                print(f"  {label} {mode:<6} batch {b:>3}: out of memory")
                continue
            rate = b / s
            print(
                f"  {label} {mode:<6} batch {b:>3}: {rate:8.1f} maps/s "
                f"({s * 1e3:8.1f} ms a batch), peak {_mib(_peak_mib(device))}"
            )
            if rate > best.get(mode, (0.0, 0))[0]:
                best[mode] = (rate, b)
        del x, frames, sound
    for mode, found in best.items():
        results[f"{arch} {mode}"] = found
    if "eager" not in best:
        return
    if device.type != "cuda":
        print(f"  {label} CUDA graph: n/a on {device.type}")
        return
    b = best["eager"][1]
    try:
        replay = _cuda_graph(p, _clips(p, b), _sound(p, b))
        s = time_call(replay, device, iters=cfg["timed_iters"], warmup=1)
        results[f"{arch} graph"] = (b / s, b)
        print(f"  {label} graph  batch {b:>3}: {b / s:8.1f} maps/s ({s * 1e3:8.1f} ms a batch)")
    except Exception as exc:  # noqa: BLE001 - reported, the others go on
        print(f"  {label} CUDA graph: FAILED ({type(exc).__name__}: {_first_line(exc)})")


def step_compile(arch: str, weights: Path, args, cfg, budget: Budget, results: dict) -> None:
    """``Predictor(compile=True)`` (torch.compile, default mode): ``Engine.forward`` at
    the best eager batch, when enough budget is left."""
    if budget.left() < args.compile_min_s:
        print(
            f"  skipped: {budget.left():.0f} s left of the budget, {args.compile_min_s:.0f} needed"
        )
        return
    device = torch.device(args.device)
    size, batches = _model_setup(arch, cfg)
    b = results.get(f"{arch} eager", (None, batches[-1]))[1]
    torch._dynamo.reset()
    p = _predictor(weights, arch, args, size, compile=True)
    x, sound = _clips(p, b), _sound(p, b)
    t0 = time.perf_counter()
    p.engine.forward(x, sound)  # compiles
    _sync(device)
    compile_s = time.perf_counter() - t0
    s = time_call(lambda: p.engine.forward(x, sound), device, iters=cfg["timed_iters"], warmup=1)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    results[f"{arch} compile"] = (b / s, b)
    print(
        f"  {LABELS[arch]} compile batch {b:>3}: {b / s:8.1f} maps/s "
        f"(compiled in {compile_s:.0f} s, {graphs} graph(s))"
    )


def _write_video(path: Path, n_frames: int, size: tuple[int, int]) -> Path:
    """An H.264 test video (tests/helpers.py), torch's thread count left as it was."""
    threads = torch.get_num_threads()
    try:
        from helpers import write_video

        return write_video(path, n_frames=n_frames, size=size, codec="libx264")
    finally:
        torch.set_num_threads(threads)


def step_end_to_end(weights: Path, args, cfg, tmp: Path, results: dict) -> None:
    """ViNet from an H.264 file to HDF5 maps, in the bench's precision and in fp32; the
    per-frame CC of the two."""
    import h5py

    from salcli.media.decode import open_video

    device = torch.device(args.device)
    t0 = time.perf_counter()
    video = _write_video(tmp / "bench_h264.mp4", cfg["video_frames"], cfg["video_size_px"])
    warm = _write_video(tmp / "warm.mp4", cfg["warm_frames"], cfg["video_size_px"])
    with open_video(video) as r:
        codec = r.meta.codec
    h, w = cfg["video_size_px"]
    print(
        f"  video: {cfg['video_frames']} frames {h}x{w} {codec}, "
        f"written in {time.perf_counter() - t0:.1f} s"
    )
    maps = {}
    for precision in dict.fromkeys((args.precision, "fp32")):  # once where they are one
        p = _predictor(weights, "vinet", args, cfg["input_size_px"], precision=precision,
                       h5_dtype="float32")  # fmt: skip
        p.write(warm, tmp / f"warm_{precision}", ["h5"])  # kernel choice, the allocator
        _reset_peak(device)
        t = time.perf_counter()
        result = p.write(video, tmp / f"out_{precision}", ["h5"])
        _sync(device)
        s = time.perf_counter() - t
        rate = result.frames / s
        print(
            f"  end to end {precision} (batch {p.batch_size}, gpu resize {p.gpu_resize}, "
            f"reuse {p.reuse}): {result.frames} maps in {s:.2f} s = {rate:.1f} maps/s, "
            f"peak {_mib(_peak_mib(device))}"
        )
        results[f"e2e {precision}"] = (rate, p.batch_size)
        results[f"e2e {precision} peak"] = _peak_mib(device)
        with h5py.File(tmp / f"out_{precision}" / f"{video.stem}.h5") as f:
            maps[precision] = f["saliency"][:]  # (N, H, W) float32
    if len(maps) < 2:
        print("  per-frame CC: not measured (the bench's precision is fp32)")
        return
    ref = maps.pop("fp32")
    (half,) = maps.values()
    cc = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(half, ref, strict=True)]
    results["cc"] = (float(np.mean(cc)), float(np.min(cc)))
    print(
        f"  per-frame CC {args.precision} vs fp32 on {device.type}, {len(cc)} frames: "
        f"mean {np.mean(cc):.6f}, min {min(cc):.6f}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _machine(device: torch.device) -> str:
    line = f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(device)
        line += (
            f", {prop.name} (sm {prop.major}.{prop.minor}, {prop.total_memory / 2**30:.0f} GiB, "
            f"{prop.multi_processor_count} SMs), bf16 {torch.cuda.is_bf16_supported()}"
        )
    return line


MODES = ("eager", "stream", "graph", "compile")


def summary(results: dict, args, avinet: str) -> None:
    def fig(key: str) -> str:
        if key not in results:
            return "not measured"
        rate, b = results[key]
        return f"{rate:.1f} maps/s (batch {b})"

    measured = [(results[f"vinet {m}"][0], m) for m in MODES if f"vinet {m}" in results]
    model_best, model_mode = max(measured, default=(None, None))
    e2e = results.get(f"e2e {args.precision}", (None, None))[0]
    cc = results.get("cc", (None, None))[1]

    def verdict(value, target) -> str:
        if value is None:
            return "not measured"
        if args.quick:
            return "(quick CPU run: not comparable)"
        return "PASS" if value >= target else "FAIL"

    prec = args.precision
    print("\nsummary")
    for arch in ("vinet", "vinet_s", avinet, "vinet_a"):
        for mode in MODES:
            if f"{arch} {mode}" in results or arch in ("vinet", avinet):
                print(f"  {LABELS[arch]} {prec} model only, {mode:<8}: {fig(f'{arch} {mode}')}")
    print(f"  end to end from H.264, {prec}: {fig(f'e2e {prec}')}, fp32: {fig('e2e fp32')}")
    print(f"  peak device memory end to end {prec}: {_mib(results.get(f'e2e {prec} peak'))}")
    best = "not measured" if model_best is None else f"{model_best:.1f} ({model_mode})"
    print(f"  target ViNet model only >= {TARGET_MODEL_MAPS_S:.0f} maps/s: {best} -> "
          f"{verdict(model_best, TARGET_MODEL_MAPS_S)}")  # fmt: skip
    e2e_s = "not measured" if e2e is None else f"{e2e:.1f}"
    print(f"  target end to end >= {TARGET_E2E_MAPS_S:.0f} maps/s: {e2e_s} -> "
          f"{verdict(e2e, TARGET_E2E_MAPS_S)}")  # fmt: skip
    s_best = max((results[k][0] for k in results if k.startswith("vinet_s ")), default=None)
    s_fig = "not measured" if s_best is None else f"{s_best:.1f}"
    ratio = "" if s_best is None or model_best is None else f", {s_best / model_best:.2f}x ViNet"
    print(f"  ViNet-S authors' claim >= {CLAIM_VINET_S_MAPS_S:.0f} maps/s: {s_fig}{ratio} -> "
          f"{verdict(s_best, CLAIM_VINET_S_MAPS_S)}")  # fmt: skip
    cc_s = "not measured" if cc is None else f"{cc:.6f}"
    print(f"  target per-frame CC >= {TARGET_CC}: min {cc_s} -> {verdict(cc, TARGET_CC)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp16"))
    ap.add_argument("--quick", action="store_true", help="small sizes (checks the script)")
    ap.add_argument("--budget-s", type=float, default=330.0, help="seconds for all steps")
    ap.add_argument(
        "--compile-min-s", type=float, default=90.0, help="budget left to try torch.compile"
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device is available (use --device cpu --quick to check)")
        return 2
    from salcli.inference.hardware import DTYPES, emulated_precision

    if args.quick and emulated_precision(DTYPES[args.precision], device):
        print(f"this CPU emulates {args.precision} (~80x slower): the quick run takes fp32")
        args.precision = "fp32"
    cfg = QUICK if args.quick else FULL
    avinet = cfg["avinet"]
    budget = Budget(args.budget_s)
    print(f"machine: {_machine(device)}")
    h, w = cfg["input_size_px"]
    print(f"input {h}x{w}, T = {CLIP_LEN}, {args.precision}, budget {args.budget_s:.0f} s")
    results: dict = {}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        tmp = Path(tmp)
        weights = checkpoints(tmp, ("vinet", "vinet_s", avinet, "vinet_a"))

        def model(arch: str, compile: bool = False):
            fn = step_compile if compile else step_model
            return lambda: fn(arch, weights[arch], args, cfg, budget, results)

        steps = [  # the costliest and least certain (torch.compile) last
            ("model only, ViNet", model("vinet")),
            ("model only, ViNet-S", model("vinet_s")),
            (f"model only, {LABELS[avinet]}", model(avinet)),
            ("model only, ViNet-A", model("vinet_a")),
            ("end to end", lambda: step_end_to_end(weights["vinet"], args, cfg, tmp, results)),
            ("torch.compile, ViNet", model("vinet", compile=True)),
        ]
        if not args.quick:  # a second compile: minutes on a CPU
            steps.append((f"torch.compile, {LABELS[avinet]}", model(avinet, compile=True)))
        for name, step in steps:
            if budget.left() <= 0:
                print(f"\n[{name}] skipped: the {args.budget_s:.0f} s budget is spent")
                continue
            print(f"\n[{name}]")
            t = time.perf_counter()
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - reported, the others go on
                failed += 1
                print(f"  FAILED: {type(exc).__name__}: {_first_line(exc)}")
                traceback.print_exc(limit=3, file=sys.stdout)
            print(f"  ({time.perf_counter() - t:.1f} s)")
    summary(results, args, avinet)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
