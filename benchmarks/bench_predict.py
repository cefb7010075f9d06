"""salcli predict against a re-enactment of the authors' procedure, on the same input.

    .venv/bin/python benchmarks/bench_predict.py [--video PATH] [--frames 36]
        [--size 360x640] [--input-size 224x384] [--batch-sizes 1,2,8] [--weights PATH]
    .venv/bin/python benchmarks/bench_predict.py --memory [--frames 600,60]

Reports, each phase in its own process (so peak RSS is its own):

- salcli with its default settings (precision, layout, batch size, the writer thread)
  except ``--warmup reference``, so that the first 31 maps are comparable: video file ->
  8-bit PNG maps; maps/s, s/map, peak RSS;
- the authors' procedure (benchmarks/authors_pipeline.py: JPEG frames, PIL resize,
  one fp32 clip per frame at batch 1): JPEG files -> 8-bit PNG maps (frame extraction
  timed apart and not counted); maps/s, s/map, peak RSS;
- the ratio of the two rates, and the per-frame CC of salcli's maps against the fp32
  maps (mean and minimum);
- model-only throughput (fp32 as the authors run it; salcli's precision and layout,
  clip by clip and with overlap reuse over consecutive clips) at each batch size.

``--memory`` instead runs salcli (png + h5 outputs) on generated videos of each length
in ``--frames`` at a small size, and reports peak RSS per length.

Weights: ``--weights`` or the deterministic checkpoint of salcli.testing (the timings
and CCs do not depend on the values much; a real checkpoint gives real-looking maps).
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

MANIFEST = ROOT / "tests" / "data" / "vinet.keys.json"


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _model(weights: str | None) -> torch.nn.Module:
    from salcli.model import ViNet

    if weights:
        from salcli.weights import load_model

        return load_model(weights)[0].eval()
    from salcli.testing import deterministic_state_dict, load_manifest

    model = ViNet().eval()
    model.load_state_dict(deterministic_state_dict(load_manifest(MANIFEST)))
    return model


def _read_pngs(folder: Path) -> np.ndarray:
    import cv2

    files = sorted(folder.glob("*.png"))
    return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])


# -- phases (each runs in a child process) --------------------------------------------


def phase_salcli(args) -> dict:
    from salcli.predict import Predictor

    opts = json.loads(args.options or "{}")
    p = Predictor(
        model=_model(args.weights),
        device="cpu",
        input_size=_size(args.input_size),
        warmup=opts.pop("warmup", "reference"),
        **opts,
    )
    out = Path(args.out)
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
    import authors_pipeline as ap

    model = _model(args.weights)
    run = ap.run(model, args.video, Path(args.out), input_size=_size(args.input_size))
    return {
        "frames": len(run.maps),
        "seconds": run.predict_s,
        "extract_seconds": run.extract_s,
        "peak_rss_mib": _peak_rss_mib(),
        "maps_dir": str(Path(args.out) / "maps"),
    }


def phase_model(args) -> dict:
    from salcli.model import fold_batchnorm
    from salcli.predict import CHANNELS_LAST, Predictor

    h, w = _size(args.input_size)
    # as Predictor prepares a loaded checkpoint: BatchNorm folded into the convolutions
    p = Predictor(model=fold_batchnorm(_model(args.weights)), device="cpu", input_size=(h, w))
    fp32 = _model(args.weights)
    rows = []
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        x = torch.randn(b, 3, 32, h, w)
        xc = x.contiguous(memory_format=CHANNELS_LAST) if p.channels_last else x
        frames = torch.randn(1, 3, b + 31, h, w)  # the b clips of b + 31 consecutive frames
        frames = frames.contiguous(memory_format=CHANNELS_LAST) if p.channels_last else frames
        setting = f"salcli {p.precision}{' cl3d' if p.channels_last else ''}"
        for name, run in (
            ("authors fp32", lambda x=x: fp32(x)),
            (setting, lambda xc=xc: p._forward(xc, None)),
            (f"{setting} reuse", lambda f=frames: p._forward_windows(f, None)),
        ):
            if name.startswith("authors") and b != 1 or name.endswith("reuse") and b == 1:
                continue
            best = float("inf")
            with torch.inference_mode():
                run()  # warm-up (primitive creation)
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    run()
                    best = min(best, time.perf_counter() - t)
            rows.append({"setting": name, "batch": b, "s_per_map": best / b})
    return {"rows": rows}


PHASES = {"salcli": phase_salcli, "authors": phase_authors, "model": phase_model}


def _child(phase: str, args, **extra) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--input-size", args.input_size]
    if args.weights:
        cmd += ["--weights", args.weights]
    if args.options and phase == "salcli":
        cmd += ["--options", args.options]
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
    from salcli.predict import cpu_has_native_bf16

    return (
        f"{model}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}"
    )


def main_compare(args) -> None:
    from conftest import write_video

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        tmp = Path(tmp)
        video = args.video or str(
            write_video(tmp / "bench.mp4", n_frames=int(args.frames), size=_size(args.size))
        )
        print(f"machine: {machine()}")
        print(f"input: {video}, model input {args.input_size}")
        ours = _child("salcli", args, video=video, out=tmp / "salcli", formats="png")
        theirs = _child("authors", args, video=video, out=tmp / "authors")
        a = _read_pngs(Path(ours["maps_dir"]))
        b = _read_pngs(Path(theirs["maps_dir"]))
        cc = _cc(a, b)
        rate_ours = ours["frames"] / ours["seconds"]
        rate_theirs = theirs["frames"] / theirs["seconds"]
        print(
            f"salcli  ({ours['precision']}, channels-last {ours['channels_last']}, "
            f"reuse {ours['reuse']}, batch {ours['batch_size']}): "
            f"{ours['frames']} maps in {ours['seconds']:.1f} s = "
            f"{rate_ours:.3f} maps/s, {1 / rate_ours:.3f} s/map, "
            f"peak RSS {ours['peak_rss_mib']:.0f} MiB"
        )
        print(
            f"authors (fp32, batch 1): {theirs['frames']} maps in {theirs['seconds']:.1f} s = "
            f"{rate_theirs:.3f} maps/s, {1 / rate_theirs:.3f} s/map, "
            f"peak RSS {theirs['peak_rss_mib']:.0f} MiB "
            f"(+ {theirs['extract_seconds']:.1f} s extracting JPEGs, not counted)"
        )
        print(f"ratio salcli/authors: {rate_ours / rate_theirs:.2f}x")
        print(f"CC vs fp32 maps (8-bit both): mean {cc.mean():.6f}, min {cc.min():.6f}")
        if not args.skip_model:
            model = _child("model", args, batch_sizes=args.batch_sizes, repeats=args.repeats)
            print("model only:")
            for row in model["rows"]:
                print(
                    f"  {row['setting']:<24} batch {row['batch']:>2}: "
                    f"{row['s_per_map']:.3f} s/map, {1 / row['s_per_map']:.3f} maps/s"
                )


def main_memory(args) -> None:
    from conftest import write_video

    lengths = [int(x) for x in str(args.frames).split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        tmp = Path(tmp)
        print(f"machine: {machine()}")
        for n in lengths:
            video = write_video(tmp / f"v{n}.mp4", n_frames=n, size=_size(args.size))
            r = _child("salcli", args, video=video, out=tmp / f"out{n}", formats="png,h5")
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
    ap.add_argument("--batch-sizes", default="1,2,8", help="model-only batch sizes")
    ap.add_argument("--repeats", type=int, default=2, help="model-only timings (best of)")
    ap.add_argument("--weights", help="a ViNet checkpoint (default: deterministic)")
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
        main_compare(args)


if __name__ == "__main__":
    main()
