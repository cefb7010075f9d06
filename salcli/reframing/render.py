"""The second pass: a track drawn over its video, frame by frame.

- ``mp4``: ``<stem>_<aspect>.mp4``, each frame's window cut out and scaled to the output
  size (or, with bars, the whole frame fitted between blurred or solid bars); the
  source's frame rate, and its soundtrack carried over as the overlay video does
  (``salcli.media.writers.mp4``: copied packet for packet when MP4 takes its codec,
  else AAC; cut at the last frame's end).
- ``debug``: ``<stem>_<aspect>_debug.mp4``, the source with its heat map and the window
  drawn, beside the crop, both ``DEBUG_HEIGHT`` pixels high (at most the source's).
- ``json``: ``<stem>_<aspect>.json``, the track (``CropTrack.to_dict``).

The writers are ``Mp4Writer``s with their own picture and size: temporary names renamed
when complete, everything removed on an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salcli.media.decode import VideoMeta
from salcli.media.writers.base import overlay, to_uint8
from salcli.media.writers.mp4 import Mp4Writer
from salcli.reframing.geometry import even
from salcli.reframing.track import CropTrack

DEBUG_HEIGHT = 360  # pixels, height of the debug video (the source's when smaller)
WINDOW_COLOR = (255, 255, 255)  # RGB of the window drawn on the debug video
WINDOW_LINE = 2  # pixels, its line width
BLUR_SHRINK = 8  # the blurred bars are blurred at 1/8 of the output's size
BLUR_SIGMA = 6.0  # pixels at that size


def output_names(stem: str) -> dict[str, str]:
    """Format -> final file name, for a job stem (``<video stem>_<aspect>``)."""
    return {"mp4": f"{stem}.mp4", "json": f"{stem}.json", "debug": f"{stem}_debug.mp4"}


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    shrink = size[0] < rgb.shape[1]
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _bars(rgb: np.ndarray, size: tuple[int, int], style: str, color) -> np.ndarray:
    """The background of a padded frame: ``rgb`` stretched to cover ``size``, blurred;
    or one colour."""
    import cv2

    w, h = size
    if style == "solid":
        return np.full((h, w, 3), color, dtype=np.uint8)
    small = (max(1, w // BLUR_SHRINK), max(1, h // BLUR_SHRINK))
    sh, sw = rgb.shape[:2]
    scale = max(w / sw, h / sh)  # cover: the frame fills the canvas, cut at its edges
    cw, ch = min(sw, round(w / scale)), min(sh, round(h / scale))
    x0, y0 = (sw - cw) // 2, (sh - ch) // 2
    back = cv2.resize(rgb[y0 : y0 + ch, x0 : x0 + cw], small, interpolation=cv2.INTER_AREA)
    back = cv2.GaussianBlur(back, (0, 0), BLUR_SIGMA)
    return cv2.resize(back, size, interpolation=cv2.INTER_LINEAR)


def crop_picture(track: CropTrack, index: int, rgb: np.ndarray, window: np.ndarray,
                 bars: str = "blur", color=(0, 0, 0)) -> np.ndarray:  # fmt: skip
    """The output picture of frame ``index``: its window cut from ``rgb`` (H, W, 3) and
    scaled to the output size, or the frame between bars."""
    lay = track.layout
    size = (lay.out_w, lay.out_h)
    if not lay.pad:
        x, y, w, h = (int(v) for v in window)
        return np.ascontiguousarray(_resize(rgb[y : y + h, x : x + w], size))
    sh, sw = rgb.shape[:2]
    scale = min(size[0] / sw, size[1] / sh)  # fit: the whole frame inside the canvas
    fw, fh = max(1, round(sw * scale)), max(1, round(sh * scale))
    canvas = _bars(rgb, size, bars, color)
    x0, y0 = (size[0] - fw) // 2, (size[1] - fh) // 2
    canvas[y0 : y0 + fh, x0 : x0 + fw] = _resize(rgb, (fw, fh))
    return canvas


class CropWriter(Mp4Writer):
    """The reframed video: ``write(index, _, time, rgb)`` with the source frame; the
    window is the track's."""

    def __init__(self, out_dir: Path, meta: VideoMeta, run, *, track: CropTrack, stem: str,
                 bars: str = "blur", color=(0, 0, 0), **options):  # fmt: skip
        self.track, self.job_stem, self.bars, self.color = track, stem, bars, color
        self.window_of = track.windows()
        super().__init__(out_dir, meta, run, **options)

    def _output_paths(self) -> list[Path]:
        return [self.out_dir / output_names(self.job_stem)[self._kind()]]

    def _kind(self) -> str:
        return "mp4"

    def _check(self, index: int, saliency: np.ndarray) -> None:
        if index >= self.track.frames:
            raise ValueError(f"frame {index} is past the track's {self.track.frames} frames")

    def _frame_size(self) -> tuple[int, int]:
        return self.track.layout.out_w, self.track.layout.out_h

    def _picture(self, index: int, saliency: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        window = self.window_of[index]
        return crop_picture(self.track, index, rgb, window, self.bars, self.color)


class DebugWriter(CropWriter):
    """The source with its heat map and window, beside the crop: ``write(index, map,
    time, rgb)`` with the frame's map (any size: resized to the frame's)."""

    def _kind(self) -> str:
        return "debug"

    def _sizes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        lay = self.track.layout
        h = even(min(DEBUG_HEIGHT, lay.src_h))
        left = (even(max(2, round(lay.src_w * h / lay.src_h))), h)
        right = (even(max(2, round(lay.out_w * h / lay.out_h))), h)
        return left, right

    def _frame_size(self) -> tuple[int, int]:
        left, right = self._sizes()
        return left[0] + right[0], left[1]

    def _picture(self, index: int, saliency: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        import cv2

        lay = self.track.layout
        left, right = self._sizes()
        heat = _resize(saliency.astype(np.float32), (lay.src_w, lay.src_h))
        shown = overlay(rgb, to_uint8(heat))
        x, y, w, h = (int(v) for v in self.window_of[index])
        cv2.rectangle(shown, (x, y), (x + w - 1, y + h - 1), WINDOW_COLOR, WINDOW_LINE)
        crop = super()._picture(index, saliency, rgb)
        return np.hstack([_resize(shown, left), _resize(crop, right)])
