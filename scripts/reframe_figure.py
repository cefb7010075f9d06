"""The picture of README's reframe section: one frame of ``salcli reframe``'s ``debug``
output on a generated scene (a ball crossing a lit stage, its saliency a Gaussian on it).

    .venv/bin/python scripts/reframe_figure.py [docs/images/reframe_debug.jpg]
"""

from __future__ import annotations

import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import h5py
import numpy as np

import salcli

SIZE = (360, 640)  # (H, W) of the scene
FRAMES = 50
SHOWN = 34  # the frame kept for the picture
FPS = 25
RADIUS = 28  # pixels, the ball's
JPEG_QUALITY = 80


def scene(
    i: int,
) -> tuple[
    np.ndarray,
    np.ndarray,
]:
    """Frame ``i`` (RGB) and its saliency map."""
    h, w = SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    stage = 60 + 80 * np.exp(-((xx - w / 2) ** 2 + (yy - h) ** 2) / (2 * (0.5 * w) ** 2))
    rgb = np.dstack([stage * 0.9, stage * 0.7, stage * 1.1]).clip(0, 255).astype(np.uint8)
    cx, cy = 90 + i * (w - 180) / (FRAMES - 1), h * 0.55 - 60 * np.sin(np.pi * i / FRAMES)
    cv2.circle(rgb, (int(cx), int(cy)), RADIUS, (240, 200, 60), -1, lineType=cv2.LINE_AA)
    sal = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (1.5 * RADIUS) ** 2))
    return rgb, sal.astype(np.float32)


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/reframe_debug.jpg")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video = folder / "stage.mp4"
        with av.open(str(video), "w") as out, h5py.File(folder / "stage.h5", "w") as f:
            vs = out.add_stream("libx264", rate=FPS)
            vs.width, vs.height, vs.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
            maps = f.create_dataset("saliency", (FRAMES, *SIZE), np.float16)
            f.attrs["source"] = str(video)
            for i in range(FRAMES):
                rgb, maps[i] = scene(i)
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                vf.pts, vf.time_base = i, Fraction(1, FPS)
                out.mux(vs.encode(vf))
            out.mux(vs.encode())
        (done,) = salcli.reframe_many([video], folder, maps_from=folder / "stage.h5",
                                      formats="debug")  # fmt: skip
        if done.result.status != "done":
            raise SystemExit(done.result.error)
        with av.open(str(folder / "stage_9x16_debug.mp4")) as c:
            frame = next(f for k, f in enumerate(c.decode(video=0)) if k == SHOWN)
    target.parent.mkdir(parents=True, exist_ok=True)
    bgr = frame.to_ndarray(format="bgr24")
    cv2.imwrite(str(target), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    print(f"{target}: {bgr.shape[1]}x{bgr.shape[0]}, {target.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
