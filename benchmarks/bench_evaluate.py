"""How long scoring one 600-frame 640x360 video takes (``salcli evaluate``'s hot loop).

Writes a one-video audio-visual dataset (Coutrot_db1 layout: jpg density maps, v5 .mat
fixation maps), the same video in the DHF1K layout (PNG maps and fixations), and
predictions (PNG folder and float16 HDF5 stack) in a temporary folder, then times
``salcli.evaluation.evaluate.evaluate`` on each protocol (the DHF1K one also with predictions at
half the size, resized), and each metric on one frame.

    .venv/bin/python benchmarks/bench_evaluate.py [--frames 600] [--width 640] [--height 360]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import scipy.io

from salcli import metrics as M
from salcli.evaluation.evaluate import evaluate

N_FIXATIONS = 40  # fixated pixels per frame (DIEM-like: tens of observers)


def build(root: Path, n: int, h: int, w: int) -> Path:
    rng = np.random.default_rng(0)
    name = "bench_video"
    ann = root / "data" / "annotations" / "Coutrot_db1" / name
    (ann / "maps").mkdir(parents=True)
    (root / "data" / "video_frames" / "Coutrot_db1" / name).mkdir(parents=True)
    pred = root / "pred" / name
    pred.mkdir(parents=True)
    dhf = root / "data" / "DHF1K" / "val" / name
    for sub in ("images", "maps", "fixation"):
        (dhf / sub).mkdir(parents=True)
    half = root / "pred_half" / name
    half.mkdir(parents=True)
    stack = np.empty((n, h, w), dtype=np.float16)
    for k in range(n):
        fix = np.zeros((h, w), dtype=np.uint8)
        ys = rng.normal(h / 2, h / 6, N_FIXATIONS).clip(0, h - 1).astype(int)
        xs = rng.normal(w / 2, w / 6, N_FIXATIONS).clip(0, w - 1).astype(int)
        fix[ys, xs] = 1
        dens = cv2.GaussianBlur(fix.astype(np.float32), (0, 0), 20)
        dens8 = np.round(255 * dens / dens.max()).astype(np.uint8)
        cv2.imwrite(str(ann / "maps" / f"eyeMap_{k + 1:05d}.jpg"), dens8)
        scipy.io.savemat(str(ann / f"fixMap_{k + 1:05d}.mat"), {"eyeMap": fix})
        for sub, img in (("images", dens8), ("maps", dens8), ("fixation", fix * 255)):
            cv2.imwrite(str(dhf / sub / f"{k + 1:04d}.png"), img)
        noisy = cv2.GaussianBlur(dens + 0.2 * rng.random((h, w), dtype=np.float32), (0, 0), 5)
        noisy = (noisy - noisy.min()) / (noisy.max() - noisy.min())
        noisy8 = np.round(255 * noisy).astype(np.uint8)
        cv2.imwrite(str(pred / f"{k + 1:04d}.png"), noisy8)
        small = cv2.resize(noisy8, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(half / f"{k + 1:04d}.png"), small)
        stack[k] = noisy
    (root / "pred_h5").mkdir()
    with h5py.File(root / "pred_h5" / f"{name}.h5", "w") as f:
        f.create_dataset("saliency", data=stack, chunks=(1, h, w))  # (N, H, W)
    lists = root / "data" / "fold_lists"
    lists.mkdir()
    for s in (1, 2, 3):
        (lists / f"Coutrot_db1_list_test_{s}_fps.txt").write_text(f"{name} {n} 25\n")
    return root


def per_metric(h: int, w: int) -> None:
    rng = np.random.default_rng(1)
    p = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 8)
    d = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 8)
    f = rng.random((h, w)) > 0.9995
    o = rng.random((h, w)) > 0.98
    cases = {
        "cc": lambda: M.cc(p, d),
        "nss": lambda: M.nss(p, f),
        "auc_j": lambda: M.auc_judd(p, f, rng=rng),
        "sauc": lambda: M.auc_shuffled(p, f, o, rng=rng),
        "sim": lambda: M.sim(p, d),
        "kld": lambda: M.kld(p, d),
        "auc_b": lambda: M.auc_borji(p, f, rng=rng),
        "imresize 224x384->360x640": lambda: M.imresize_matlab(p[:224, :384], (h, w)),
    }
    for name, fn in cases.items():
        fn()
        t0 = time.perf_counter()
        for _ in range(20):
            fn()
        print(f"  {name:28s} {(time.perf_counter() - t0) / 20 * 1000:7.2f} ms/frame")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    args = ap.parse_args()
    n, h, w = args.frames, args.height, args.width
    print(f"metrics on one {w}x{h} frame:")
    per_metric(h, w)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = build(Path(tmp), n, h, w)
        print(f"built a {n}-frame {w}x{h} dataset in {time.perf_counter() - t0:.1f} s")
        runs = [
            ("coutrot1", "PNG (8-bit)", root / "pred"),
            ("coutrot1", "HDF5 (float16)", root / "pred_h5"),
            ("dhf1k", "PNG (8-bit)", root / "pred"),
            ("dhf1k", "PNG (8-bit) at half size", root / "pred_half"),
        ]
        for dataset, label, pred in runs:
            split = "1" if dataset == "coutrot1" else None
            t0 = time.perf_counter()
            res = evaluate(dataset, root=root / "data", split=split, predictions=pred)
            dt = time.perf_counter() - t0
            c = res.conventions
            print(
                f"evaluate {dataset} ({res.protocol} protocol), predictions {label}: "
                f"{dt:.2f} s for {c['frames_scored']} frames "
                f"({dt / max(1, c['frames_scored']) * 1000:.1f} ms/frame, all 6 metrics); "
                + ", ".join(f"{k}={v:.3f}" for k, v in res.overall.items())
            )


if __name__ == "__main__":
    main()
