"""A re-enactment of the authors' TASED-Net procedure (``run_example.py``), for parity tests
and benchmarks.

Written from the facts in ``shared/docs/tased.conventions.md`` (not from the authors'
code):

1. the video is extracted to one image file per frame, 1-based ``%05d`` names (PNG by
   default, lossless; their README recommends PNG frames);
2. each file is read with ``cv2.imread`` (BGR, 8 bits), resized with ``cv2.resize`` to
   384 x 224 at OpenCV's default interpolation (bilinear, no antialiasing), flipped to RGB;
3. the frames go into a sliding list; once it holds T = 32 frames (after frame i >= 31),
   the clip (1, 3, 32, 224, 384) of (2 v - 255) / 255 values predicts frame i, and, while
   i < 2T-2, the same clip **flipped in time** predicts frame i-31; then the oldest
   frame leaves the list. One fp32 forward pass per map, batch of one. A video with
   fewer than 2T-1 = 63 frames gets no maps at all (their script prints a notice);
4. each map: ``int(255 s) / 255`` of the sigmoid map, SciPy's ``gaussian_filter`` (sigma
   7, reflect) at 224 x 384, divided by its maximum, times 255, truncated to uint8, saved
   as ``%04d.png`` of the 1-based frame number. The maps stay at 224 x 384;
   ``resize_to_frame`` also resizes them (``cv2.resize``, bilinear) to the frame's size
   before the 8 bits, as salcli does, so that the two can be compared frame by frame.

The network is the one passed in (salcli's ``TASED``, golden-parity tested against
theirs), as it is: nothing folded, fp32, eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from authors_pipeline import AuthorsRun, timed_run
from scipy.ndimage import gaussian_filter
from torch import nn

from salcli.models.tased import CLIP_LEN
from salcli.models.tased_procedure import BLUR_SIGMA, INPUT_H, INPUT_W

MAP_NAME = "{:04d}.png"  # their output names: the 1-based frame number


def read_frame(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB (h, w, 3) uint8 at the model's size, (H, W) of the file): imread, resize, flip."""
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise OSError(f"could not read {path}")
    small = cv2.resize(bgr, (size[1], size[0]))  # OpenCV's default interpolation
    return small[:, :, ::-1], bgr.shape[:2]


def schedule(n: int, clip_len: int = CLIP_LEN) -> Iterator[tuple[int, int, bool]]:
    """(frame to predict, newest frame in the list, flipped?) in their run order; nothing
    for a video under 2T-1 frames."""
    if n < 2 * clip_len - 1:
        return
    for i in range(clip_len - 1, n):
        yield i, i, False
        if i < 2 * clip_len - 2:
            yield i - clip_len + 1, i, True


def map_u8(saliency: np.ndarray, frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """Their post-processing of one sigmoid map (h, w) -> uint8; resized to ``frame_size``
    (H, W) before the 8 bits where given."""
    smap = np.floor(np.asarray(saliency, np.float32) * np.float32(255.0)) / 255.0
    smap = gaussian_filter(smap.astype(np.float64), sigma=BLUR_SIGMA)
    smap = smap / np.max(smap)
    if frame_size is not None and smap.shape != tuple(frame_size):
        smap = cv2.resize(smap, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_LINEAR)
    return (smap * 255.0).astype(np.uint8)


def predict_folder(
    model: nn.Module,
    frames: list[Path],
    out_dir: str | Path | None = None,
    *,
    input_size: tuple[int, int] = (INPUT_H, INPUT_W),
    resize_to_frame: bool = False,
) -> np.ndarray | None:
    """Maps of a folder of frames, their way: (N, h, w) uint8 in frame order (at the
    frame's size with ``resize_to_frame``), or None for a video under 63 frames."""
    n = len(frames)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    snippet: list[np.ndarray] = []  # the sliding list, RGB frames at the model's size
    newest = -1
    maps: dict[int, np.ndarray] = {}
    frame_size = None
    for t, last, flipped in schedule(n):
        while newest < last:
            newest += 1
            rgb, frame_size = read_frame(frames[newest], input_size)
            snippet.append(rgb)
            if len(snippet) > CLIP_LEN:
                del snippet[0]
        clip = torch.from_numpy(np.stack(snippet).astype(np.float32))  # (T, h, w, 3)
        clip = clip.permute(3, 0, 1, 2)[None].mul(2.0).sub(255.0).div(255.0)  # (1, 3, T, h, w)
        if flipped:
            clip = torch.flip(clip, dims=[2])
        with torch.no_grad():
            saliency = model(clip)[0].numpy()  # (h, w)
        u8 = map_u8(saliency, frame_size if resize_to_frame else None)
        if out is not None:
            cv2.imwrite(str(out / MAP_NAME.format(t + 1)), u8)
        maps[t] = u8
    if not maps:
        return None
    return np.stack([maps[t] for t in range(n)])


def run(
    model: nn.Module,
    video: str | Path,
    workdir: str | Path,
    *,
    input_size: tuple[int, int] = (INPUT_H, INPUT_W),
    frame_format: str = "png",
    resize_to_frame: bool = False,
    save_maps: bool = True,
) -> AuthorsRun:
    """Extract ``video`` to frame files under ``workdir``, then predict them; timed apart.
    ``maps`` is empty (0 frames) for a video under 63 frames."""

    def predict(frames: list[Path], out: Path | None) -> np.ndarray:
        maps = predict_folder(
            model, frames, out, input_size=input_size, resize_to_frame=resize_to_frame
        )
        return np.zeros((0, *input_size), dtype=np.uint8) if maps is None else maps

    return timed_run(video, workdir, frame_format, save_maps, predict)
