"""Training throughput (windows per second) of salcli train, at the published input size.

    .venv/bin/python benchmarks/bench_train.py [--steps 3] [--batch-size 2]
        [--input-size 224x384] [--frame-size 360x640] [--precision fp32] [--device cpu]
        [--loader-workers 1] [--phases model,train]

Phases (each in its own process, so that peak RSS is its own):

- ``model``: the optimizer step alone on random clips already in memory: forward,
  KL-divergence loss, backward, Adam, in training mode (batch statistics), as
  ``salcli train`` runs it; the first step (allocation, kernel selection) is timed apart.
- ``train``: ``salcli.training.loop.train`` end to end for one epoch on a generated dataset
  in the DHF1K layout (``steps * batch`` videos of 40 JPEG frames at ``--frame-size``,
  density maps, fixations): DataLoader workers decoding and resizing frames, the steps, then one
  validation clip and the checkpoints; reported is the epoch record's samples/s (the
  training steps, data loading included, validation and saving not).

Prints the conditions (CPU, threads, load average) and the figures; asserts nothing.
The weights are the deterministic checkpoint of salcli.testing (timings do not depend
on the values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
sys.path[:0] = [str(ROOT)]
MANIFEST = ROOT / "tests" / "data" / "vinet.keys.json"
VIDEO_FRAMES = 40  # frames per generated video (>= T = 32)


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _init_checkpoint(path: Path) -> Path:
    from salcli.testing import deterministic_state_dict, load_manifest

    torch.save(deterministic_state_dict(load_manifest(MANIFEST)), path)
    return path


def _write_dataset(root: Path, videos: int, frame_size: tuple[int, int]) -> None:
    """DHF1K layout: train/ with ``videos`` videos, val/ with one; a bright square moving
    over noise, a Gaussian density around it, its centre fixated."""
    import cv2

    h, w = frame_size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    for split, count in (("train", videos), ("val", 1)):
        for v in range(count):
            vdir = root / "DHF1K" / split / f"{v:04d}"
            for sub in ("images", "maps", "fixation"):
                (vdir / sub).mkdir(parents=True)
            base = rng.integers(0, 90, size=(h, w, 3), dtype=np.uint8)
            for i in range(1, VIDEO_FRAMES + 1):
                cy, cx = (h // 4 + 2 * i) % h, (w // 4 + 3 * i) % w
                frame = base.copy()
                frame[max(0, cy - h // 10) : cy + h // 10, max(0, cx - w // 10) : cx + w // 10] = (
                    240
                )
                dens = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (h / 12) ** 2))
                fix = np.zeros((h, w), np.uint8)
                fix[cy, cx] = 255
                cv2.imwrite(str(vdir / "images" / f"{i:04d}.jpg"), frame)
                cv2.imwrite(
                    str(vdir / "maps" / f"{i:04d}.png"), np.round(255 * dens).astype(np.uint8)
                )
                cv2.imwrite(str(vdir / "fixation" / f"{i:04d}.png"), fix)


def phase_model(args) -> dict:
    from salcli.inference.hardware import resolve_device, resolve_precision
    from salcli.models.vinet import ViNet
    from salcli.training.loss import kld_loss

    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    h, w = _size(args.input_size)
    model = ViNet().to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    clips = torch.randn(args.batch_size, 3, 32, h, w, device=device)  # (B, 3, T, H, W)
    target = torch.rand(args.batch_size, h, w, device=device)  # (B, H, W)
    times = []
    for _ in range(args.steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            pred = model(clips)
        loss = kld_loss(pred, target).mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    steady = times[1:]
    return {
        "first_step_s": times[0],
        "s_per_step": float(np.mean(steady)),
        "samples_per_s": args.batch_size / float(np.mean(steady)),
        "peak_rss_mib": _peak_rss_mib(),
        "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else None,
    }


def phase_train(args) -> dict:
    from salcli.training.loop import train
    from salcli.training.options import TrainOptions

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        _write_dataset(tmp, args.steps * args.batch_size, _size(args.frame_size))
        written = time.perf_counter() - t0
        options = TrainOptions(
            dataset="dhf1k",
            root=str(tmp),
            init=str(_init_checkpoint(tmp / "init.pt")),
            epochs=1,
            batch_size=args.batch_size,
            out=str(tmp / "run"),
            device=args.device,
            precision=args.precision,
            loader_workers=args.loader_workers,
            input_size=_size(args.input_size),
            val_stride=1000,  # one validation clip: the epoch's training part is what counts
        )
        steps = []
        result = train(options, on_event=lambda k, d: steps.append(d) if k == "step" else None)
    record = result.history[-1]
    gaps = np.diff([0.0] + [s["seconds"] for s in steps])
    return {
        "dataset_written_s": written,
        "steps": len(steps),
        "s_per_step": [round(float(g), 2) for g in gaps],
        "samples_per_s": record.samples_per_s,
        "samples_per_s_after_first": (
            (len(steps) - 1) * args.batch_size / float(gaps[1:].sum()) if len(steps) > 1 else None
        ),
        "peak_rss_mib": _peak_rss_mib(),
    }


PHASES = {"model": phase_model, "train": phase_train}


def _child(args) -> None:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    print(json.dumps(PHASES[args.child](args)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--input-size", default="224x384")
    ap.add_argument("--frame-size", default="360x640")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--loader-workers", "--workers", type=int, default=1, help="DataLoader workers")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--phases", default="model,train")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if torch.cuda.is_available():
        print(f"# CUDA: {torch.cuda.get_device_name(0)}")
    print(
        f"# input {args.input_size}, batch {args.batch_size}, {args.steps} steps, "
        f"{args.precision} on {args.device}, {args.loader_workers} DataLoader worker(s)"
    )
    for phase in args.phases.split(","):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--child", phase]
        t0 = time.perf_counter()
        out = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        if out.returncode:
            print(f"{phase}: failed\n{out.stderr[-2000:]}")
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        print(
            f"{phase}: "
            + json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()})
        )
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
