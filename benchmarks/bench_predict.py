"""salcli predict against a re-enactment of the authors' procedure, on the same input.

    .venv/bin/python benchmarks/bench_predict.py [--video PATH] [--frames 36]
        [--size 360x640] [--input-size 224x384] [--batch-sizes 1,2,8,16] [--weights PATH]
        [--rounds 1] [--models vinet,vinet-s,tased]
    .venv/bin/python benchmarks/bench_predict.py --memory [--frames 600,60]

Reports, each phase in its own process (so peak RSS is its own):

- salcli with its default settings (precision, layout, batch size, the writer thread)
  except ``--warmup reference``, so that the first 31 maps are comparable: video file ->
  8-bit PNG maps; maps/s, s/map, peak RSS; the checkpoint is loaded from a file, as the
  CLI loads it (BatchNorm folded, convolutions cast for the precision);
- the same in fp32 where the defaults chose another precision: salcli's own fp32 maps;
- the authors' procedure (benchmarks/authors_pipeline.py: JPEG frames, PIL resize,
  one fp32 clip per frame at batch 1): JPEG files -> 8-bit PNG maps (frame extraction
  timed apart and not counted); maps/s, s/map, peak RSS;
- with ``--rounds`` R > 1, the three end-to-end phases run R times, alternated, and the
  best of each counts (each round's s/map and load average are printed): on a shared
  machine a busy spell then hits every phase instead of one;
- the ratio of the two rates, and the per-frame CC of salcli's maps against salcli's
  own fp32 maps and against the authors' (mean and minimum);
- the machine's convolution rates in fp32 and bf16 (a representative 1x3x3 and 3x1x1
  Conv3d, channels-last), and model-only throughput (fp32 as the authors run it;
  salcli's precision and layout, clip by clip and with overlap reuse over consecutive
  clips) at each batch size, with the FLOPs of a map, the rate they are done at and its
  share of the machine's convolution rate in that precision;
- the bound this machine sets: the fewest FLOPs of a map at the best of those rates,
  nothing else taking any time, as s/map and as a ratio to the authors' procedure (how
  far any speed target on this machine can go), and the share of it salcli reaches.

``--memory`` instead runs salcli (png + h5 outputs) on generated videos of each length
in ``--frames`` at a small size, and reports peak RSS per length.

``--models`` runs all of the above for each model in turn (``vinet``, ``vinet-s``,
``vinet-a``, ``vinet-e``: the ensemble of ViNet-S and ViNet-A, end to end only;
``tased``, ``unisal``; the authors' phase re-enacts each one's own scripts: TASED-Net's
is benchmarks/tased_authors_pipeline.py, lossless PNG frames and OpenCV's resize, its
maps resized to the frame so that the CCs compare frame by frame), then the ratio of each
model's rates to the first one's: end to end (salcli's defaults) and model only (the best
batch). UNISAL (recurrent, one frame a step) has no model-only phase; its authors' phase
is their folder demo (benchmarks/unisal_authors_pipeline.py: PNG frames, 5 interleaved
sequences fed frame by frame), and salcli takes its input size from the frame by the
authors' rule (``--input-size`` does not apply to it).

Weights: ``--weights`` (one model; ``A,B`` for ``vinet-e``) or the deterministic
checkpoint of salcli.testing, from each model's key manifest (the timings and CCs do not
depend on the values much; a real checkpoint gives real-looking maps).
Prints figures; asserts nothing. Needs Pillow for the authors' phase.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "tests")]
from salcli.models.vinet_procedure import CLIP_LEN  # noqa: E402

# model -> its key manifest (the deterministic checkpoint's shapes)
MANIFESTS = {
    "vinet": ROOT / "tests" / "data" / "vinet.keys.json",
    "vinet-s": ROOT / "tests" / "data" / "vinet_s.keys.json",
    "vinet-a": ROOT / "tests" / "data" / "vinet_a.keys.json",
    "unisal": ROOT / "tests" / "data" / "unisal.keys.json",
    "tased": ROOT / "tests" / "data" / "tased.keys.json",
}
# ensembles: name -> its members (ViNet-E: ViNet-S and ViNet-A, averaged at ViNet-A's size)
ENSEMBLES = {"vinet-e": ("vinet-s", "vinet-a")}
RECURRENT = ("unisal",)  # one frame a step: its input size from the frame (the authors' rule)
# each model's input size (--input-size applies to the others); ViNet-A takes only this one
FIXED_INPUT = {"vinet-a": "256x456", "vinet-e": "256x456"}
T = CLIP_LEN  # frames per clip of every model here


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _members(weights: str | None, arch: str) -> list[tuple[str | None, str]]:
    """(file or None, member) of the ensemble ``arch``: ``weights`` is their files joined
    by commas, None for the deterministic checkpoints."""
    files = weights.split(",") if weights else [None] * len(ENSEMBLES[arch])
    return list(zip(files, ENSEMBLES[arch], strict=True))


def _model(weights: str | None, arch: str = "vinet") -> torch.nn.Module | tuple:
    """The model as the authors run it: loaded, not folded, fp32 (an ensemble's: a tuple
    of its members', ``weights`` then their files joined by commas)."""
    from salcli.models.registry import build_model, load_checkpoint

    if arch in ENSEMBLES:
        return tuple(_model(f, m) for f, m in _members(weights, arch))
    if weights:
        return load_checkpoint(weights, audio=False)[2].eval()
    model = build_model(arch).eval()
    model.load_state_dict(_tamed(arch))
    return model


def _tamed(arch: str) -> dict[str, torch.Tensor]:
    """The deterministic checkpoint of ``arch``, tamed for real video."""
    from salcli.testing import load_manifest, tamed_state_dict, unisal_state_dict

    if arch == "unisal":
        return unisal_state_dict(load_manifest(MANIFESTS[arch]), tamed=True)
    return tamed_state_dict(MANIFESTS[arch])


def checkpoint_file(
    folder: str | Path, weights: str | None = None, arch: str = "vinet"
) -> Path | list[Path]:
    """``weights``, or the deterministic checkpoint of ``arch`` written into ``folder``: a
    file that ``Predictor`` loads as the CLI does (BatchNorm folded, cast to the precision);
    an ensemble's: its members' files."""
    if arch in ENSEMBLES:
        return [checkpoint_file(folder, f, m) for f, m in _members(weights, arch)]
    if weights:
        return Path(weights)
    path = Path(folder) / f"{arch}_deterministic.pt"
    if not path.is_file():
        torch.save(_tamed(arch), path)
    return path


def _read_pngs(folder: Path) -> np.ndarray:
    import cv2

    files = sorted(folder.glob("*.png"))
    return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])


# -- phases (each runs in a child process) --------------------------------------------


def phase_salcli(args) -> dict:
    from salcli.inference.predictor import Predictor

    opts = json.loads(args.options or "{}")
    out = Path(args.out)
    p = Predictor(
        checkpoint_file(out.parent, args.weights, args.model),  # as the CLI loads a file
        device="cpu",
        on_warning=lambda line: None,  # a licence notice
        # an ensemble's size is its members', a recurrent family's from the frame
        input_size=None if args.model in (*ENSEMBLES, *RECURRENT) else _size(args.input_size),
        warmup=opts.pop("warmup", "reference"),
        **opts,
    )
    started = time.perf_counter()
    cpu0 = time.process_time()
    result = p.write(args.video, out, args.formats.split(","))
    seconds = time.perf_counter() - started
    return {
        "frames": result.frames,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu0,
        "precision": p.precision,
        "channels_last": p.channels_last,
        "batch_size": p.batch_size,
        "reuse": p.reuse,
        "stride": p.stride,
        "peak_rss_mib": _peak_rss_mib(),
        "maps_dir": str(out / Path(args.video).stem),
    }


def phase_authors(args) -> dict:
    model = _model(args.weights, args.model)
    if args.model == "unisal":  # its folder demo: PNG frames, 5 interleaved sequences
        import unisal_authors_pipeline as uap

        run = uap.run(model, args.video, Path(args.out), domain="DHF1K")
    elif args.model == "tased":  # its own script: PNG frames, maps resized to the frame
        import tased_authors_pipeline as tap

        size = _size(args.input_size)
        run = tap.run(model, args.video, Path(args.out), input_size=size, resize_to_frame=True)
    else:
        import authors_pipeline as ap

        run = ap.run(
            model, args.video, Path(args.out), input_size=_size(args.input_size),
            procedure=args.model,
        )  # fmt: skip
    return {
        "frames": len(run.maps),
        "seconds": run.predict_s,
        "extract_seconds": run.extract_s,
        "peak_rss_mib": _peak_rss_mib(),
        "maps_dir": str(Path(args.out) / "maps"),
    }


# Representative convolutions of the model (Mixed_3c's separable branch at 224x384,
# 2 clips): (in, out, kernel, padding, (B, T, H, W) of the input).
CONV_PROBES = {
    "1x3x3": (128, 192, (1, 3, 3), (0, 1, 1), (2, 16, 28, 48)),
    "3x1x1": (192, 192, (3, 1, 1), (1, 0, 0), (2, 16, 28, 48)),
}
FLOP_INPUT = (64, 96)  # (H, W) at which FLOPs are counted, then scaled by area (exact:
# every layer's size is the input's divided by a power of 2 up to 32)


def conv_rates(repeats: int) -> dict[str, dict[str, float]]:
    """GFLOP/s of the representative convolutions per precision, channels-last."""
    import torch.nn.functional as F

    from salcli.inference.engine import CHANNELS_LAST

    rates: dict[str, dict[str, float]] = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rates[precision] = {}
        for name, (cin, cout, k, pad, (b, t, h, w)) in CONV_PROBES.items():
            x = torch.randn(b, cin, t, h, w).to(dtype).contiguous(memory_format=CHANNELS_LAST)
            wt = (0.05 * torch.randn(cout, cin, *k)).to(dtype)
            wt = wt.contiguous(memory_format=CHANNELS_LAST)
            with torch.inference_mode():
                y = F.conv3d(x, wt, padding=pad)  # warm-up
                best = float("inf")
                for _ in range(max(3, repeats)):
                    t0 = time.perf_counter()
                    F.conv3d(x, wt, padding=pad)
                    best = min(best, time.perf_counter() - t0)
            flop = 2 * y.numel() * cin * k[0] * k[1] * k[2]
            rates[precision][name] = flop / best / 1e9
    return rates


def gflop_per_map(model: torch.nn.Module, clips: int, reuse: bool, size) -> float:
    """FLOPs of one map, clip by clip or with overlap reuse over ``clips`` clips."""
    from torch.utils.flop_counter import FlopCounterMode

    from salcli.inference.overlap import forward_windows

    # at a small size, scaled by area (exact where every size is the input's over a power
    # of 2); a model with a fixed input at its own size
    h, w = FLOP_INPUT if getattr(model, "arch", "") not in FIXED_INPUT else size
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        if reuse:
            forward_windows(model, torch.randn(1, 3, clips + T - 1, h, w), T)
        else:
            model(torch.randn(clips, 3, T, h, w))
    return counter.get_total_flops() / clips * (size[0] * size[1]) / (h * w) / 1e9


def _best(run, repeats: int) -> float:
    best = float("inf")
    with torch.inference_mode():
        run()  # warm-up (primitive creation)
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t)
    return best


def phase_model(args) -> dict:
    from salcli.inference.engine import CHANNELS_LAST
    from salcli.inference.overlap import supports_reuse
    from salcli.inference.predictor import Predictor

    h, w = _size(args.input_size)
    batches = [int(x) for x in args.batch_sizes.split(",")]
    rows = []
    # the authors' layout and precision, timed before a Predictor sets up this process
    fp32 = _model(args.weights, args.model)
    clip_gflop = gflop_per_map(fp32, 1, False, (h, w))  # clip by clip: the same at any batch
    if 1 in batches:
        x = torch.randn(1, 3, T, h, w)
        s = _best(lambda: fp32(x), args.repeats)
        rows.append({"setting": "authors fp32", "batch": 1, "s_per_map": s, "gflop": clip_gflop})
    # as predict runs a loaded checkpoint: BatchNorm folded, cast for the precision
    p = Predictor(
        checkpoint_file(args.out, args.weights, args.model),
        device="cpu",
        input_size=(h, w),
        on_warning=lambda line: None,
    )
    for b in batches:
        x = torch.randn(b, 3, T, h, w)
        xc = x.contiguous(memory_format=CHANNELS_LAST) if p.channels_last else x
        frames = torch.randn(1, 3, b + T - 1, h, w)  # the b clips of b + T - 1 frames
        frames = frames.contiguous(memory_format=CHANNELS_LAST) if p.channels_last else frames
        setting = f"salcli {p.precision}{' cl3d' if p.channels_last else ''}"
        for name, reuse, run in (
            (setting, False, lambda xc=xc: p.engine.forward(xc)),
            (f"{setting} reuse", True, lambda f=frames: p.engine.forward_stream(f, T)),
        ):
            if reuse and (b == 1 or not supports_reuse(p.model)):
                continue
            s = _best(run, args.repeats) / b
            gflop = gflop_per_map(fp32, b, True, (h, w)) if reuse else clip_gflop
            rows.append({"setting": name, "batch": b, "s_per_map": s, "gflop": gflop})
    return {"rows": rows, "precision": p.precision, "conv_rates": conv_rates(args.repeats)}


PHASES = {"salcli": phase_salcli, "authors": phase_authors, "model": phase_model}


def _child(phase: str, args, options: str | None = None, **extra) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--input-size", args.input_size,
           "--model", args.model]  # fmt: skip
    if args.weights:
        cmd += ["--weights", args.weights]
    if options:
        cmd += ["--options", options]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = []
    for x, y in zip(a.astype(np.float64), b.astype(np.float64), strict=True):
        out.append(np.corrcoef(x.ravel(), y.ravel())[0, 1])
    return np.asarray(out)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from salcli.inference.hardware import cpu_has_native_bf16

    return (
        f"{model}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}"
    )


def _e2e_line(name: str, r: dict) -> str:
    rate = r["frames"] / r["seconds"]
    return (
        f"{name} ({r['precision']}, channels-last {r['channels_last']}, reuse {r['reuse']}, "
        f"batch {r['batch_size']}): {r['frames']} maps in {r['seconds']:.1f} s = "
        f"{rate:.3f} maps/s, {1 / rate:.3f} s/map, peak RSS {r['peak_rss_mib']:.0f} MiB"
    )


def _rounds_line(runs: list[dict]) -> str:
    return "  rounds: " + ", ".join(
        f"{r['seconds'] / r['frames']:.3f} s/map (load {r['load']:.1f})" for r in runs
    )


def main_compare(args, video: str, tmp: Path) -> dict[str, float]:
    """One model's figures (printed); its end-to-end and best model-only maps/s."""
    print(f"\n== {args.model}: load average {os.getloadavg()[0]:.2f} at the start")
    print(f"input: {video}, model input {args.input_size}, {args.rounds} round(s)")
    fp32_opts = json.dumps({**json.loads(args.options or "{}"), "precision": "fp32"})
    runs: dict[str, list[dict]] = {"ours": [], "authors": [], "fp32": []}
    for r in range(args.rounds):  # alternated, so that a busy spell hits every phase
        for key, phase, opts in (
            ("ours", "salcli", args.options),
            ("authors", "authors", None),
            ("fp32", "salcli", fp32_opts),
        ):
            if key == "fp32" and runs["ours"][0]["precision"] == "fp32":
                continue  # the defaults are fp32 already
            load = os.getloadavg()[0]
            out = tmp / f"{args.model}-{key}{r}"
            run = _child(phase, args, opts, video=video, out=out, formats="png")
            runs[key].append({**run, "load": load})
    runs["fp32"] = runs["fp32"] or runs["ours"]
    ours, theirs, fp32 = (min(v, key=lambda x: x["seconds"]) for v in runs.values())
    a = _read_pngs(Path(ours["maps_dir"]))
    cc_own = _cc(a, _read_pngs(Path(fp32["maps_dir"])))
    cc_authors = _cc(a, _read_pngs(Path(theirs["maps_dir"])))
    rate_ours = ours["frames"] / ours["seconds"]
    rate_theirs = theirs["frames"] / theirs["seconds"]
    best = " (best of the rounds)" if args.rounds > 1 else ""
    print(_e2e_line("salcli defaults", ours) + best)
    if args.rounds > 1:
        print(_rounds_line(runs["ours"]))
    if ours["precision"] != "fp32":
        print(_e2e_line("salcli fp32    ", fp32) + best)
        if args.rounds > 1:
            print(_rounds_line(runs["fp32"]))
    print(
        f"authors (fp32, batch 1): {theirs['frames']} maps in {theirs['seconds']:.1f} s = "
        f"{rate_theirs:.3f} maps/s, {1 / rate_theirs:.3f} s/map, "
        f"peak RSS {theirs['peak_rss_mib']:.0f} MiB "
        f"(+ {theirs['extract_seconds']:.1f} s extracting frames, not counted){best}"
    )
    if args.rounds > 1:
        print(_rounds_line(runs["authors"]))
    print(f"ratio salcli/authors: {rate_ours / rate_theirs:.2f}x")
    print(
        f"CC vs salcli's fp32 maps (8-bit both): mean {cc_own.mean():.6f}, min {cc_own.min():.6f}"
    )
    frames = "PNG" if args.model in RECURRENT else "JPEG"
    print(
        f"CC vs the authors' maps (8-bit both, their {frames} frames): "
        f"mean {cc_authors.mean():.6f}, min {cc_authors.min():.6f}"
    )
    summary = {"end_to_end": rate_ours, "authors": rate_theirs}
    if args.model in ENSEMBLES:
        members = ", ".join(ENSEMBLES[args.model])
        print(f"model only: {args.model} runs each of {members} once a map")
    elif not args.skip_model and args.model not in RECURRENT:  # model-only: clip models
        model = _child("model", args, batch_sizes=args.batch_sizes, repeats=args.repeats, out=tmp)
        rates = model["conv_rates"]
        mean_rate = {k: sum(v.values()) / len(v) for k, v in rates.items()}
        probes = ", ".join(
            f"{prec} " + " / ".join(f"{name} {r:.0f}" for name, r in v.items())
            for prec, v in rates.items()
        )
        print(f"convolution rates (GFLOP/s, channels-last, Mixed_3c at 2 clips): {probes}")
        print("model only (GFLOP/map; its rate; share of the convolution rate):")
        for row in model["rows"]:
            prec = "fp32" if row["setting"].startswith("authors") else model["precision"]
            gflops = row["gflop"] / row["s_per_map"]
            print(
                f"  {row['setting']:<24} batch {row['batch']:>2}: "
                f"{row['s_per_map']:.3f} s/map, {1 / row['s_per_map']:.3f} maps/s; "
                f"{row['gflop']:.0f} GFLOP/map, {gflops:.0f} GFLOP/s = "
                f"{gflops / mean_rate[prec]:.0%} of {prec}'s"
            )
        # what this machine allows at all: the fewest FLOPs a map costs, at the best
        # probe rate, with nothing else (decoding, pooling, copies) taking any time
        prec = model["precision"]
        least = min(r["gflop"] for r in model["rows"] if not r["setting"].startswith("authors"))
        floor = least / max(rates[prec].values())
        print(
            f"bound: {least:.0f} GFLOP/map at {max(rates[prec].values()):.0f} GFLOP/s "
            f"({prec}) = {floor:.3f} s/map, {1 / rate_theirs / floor:.2f}x the authors "
            f"end to end; salcli defaults are at {floor * rate_ours:.0%} of it"
        )
        ours_rows = [r for r in model["rows"] if not r["setting"].startswith("authors")]
        best_row = min(ours_rows, key=lambda r: r["s_per_map"])
        summary["model_only"] = 1 / best_row["s_per_map"]
        summary["gflop"] = best_row["gflop"]
    return summary


def main_models(args) -> None:
    """main_compare for each of ``--models`` on one input, then each one's ratios to the
    first one's."""
    from helpers import write_video

    models = args.models.split(",")
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        tmp = Path(tmp)
        video = args.video or str(
            write_video(tmp / "bench.mp4", n_frames=int(args.frames), size=_size(args.size))
        )
        print(f"machine: {machine()}")
        results = {}
        size = args.input_size
        for arch in models:
            args.model, args.input_size = arch, FIXED_INPUT.get(arch, size)
            results[arch] = main_compare(args, video, tmp)
    if len(models) < 2:
        return
    first = models[0]
    base = results[first]
    print(f"\nratios to {first} (same input, machine and precision):")
    for arch in models[1:]:
        r = results[arch]
        line = (
            f"  {arch}: end to end {r['end_to_end'] / base['end_to_end']:.2f}x "
            f"({r['end_to_end']:.3f} vs {base['end_to_end']:.3f} maps/s); the authors' "
            f"procedure {r['authors'] / base['authors']:.2f}x"
        )
        if "model_only" in r and "model_only" in base:
            line += (
                f"; model only (best batch) {r['model_only'] / base['model_only']:.2f}x; "
                f"{r['gflop']:.1f} vs {base['gflop']:.1f} GFLOP/map"
            )
        print(line)


def main_memory(args) -> None:
    from helpers import write_video

    lengths = [int(x) for x in str(args.frames).split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        tmp = Path(tmp)
        print(f"machine: {machine()}")
        for n in lengths:
            video = write_video(tmp / f"v{n}.mp4", n_frames=n, size=_size(args.size))
            r = _child(
                "salcli", args, args.options, video=video, out=tmp / f"out{n}", formats="png,h5"
            )
            print(
                f"{n:>6} frames ({args.size}, model input {args.input_size}): "
                f"{r['seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", help="a video file (default: a generated one)")
    ap.add_argument("--frames", default=None, help="frames of the generated video(s)")
    ap.add_argument("--size", default=None, help="HxW of the generated video")
    ap.add_argument("--input-size", default=None, help="HxW of the model input")
    ap.add_argument("--batch-sizes", default="1,2,8,16", help="model-only batch sizes")
    ap.add_argument(
        "--rounds", type=int, default=1, help="end-to-end runs of each phase, alternated (best of)"
    )
    ap.add_argument("--repeats", type=int, default=2, help="model-only timings (best of)")
    ap.add_argument(
        "--weights", help="a checkpoint of the one model; A,B for vinet-e (default: deterministic)"
    )
    ap.add_argument(
        "--models",
        default="vinet",
        help="comma-separated: vinet, vinet-s, vinet-a, vinet-e, tased, unisal",
    )
    ap.add_argument("--model", default="vinet", help=argparse.SUPPRESS)  # a child's
    ap.add_argument("--memory", action="store_true", help="peak RSS against video length")
    ap.add_argument("--skip-model", action="store_true", help="no model-only figures")
    ap.add_argument("--options", help="JSON of extra Predictor options for salcli")
    # child-process arguments
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--formats", default="png", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return
    if args.memory:
        args.frames = args.frames or "600,60"
        args.size = args.size or "48x64"
        args.input_size = args.input_size or "32x64"
        main_memory(args)
    else:
        args.frames = args.frames or "36"
        args.size = args.size or "360x640"
        args.input_size = args.input_size or "224x384"
        main_models(args)


if __name__ == "__main__":
    main()
