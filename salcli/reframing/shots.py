"""Cuts between shots: PySceneDetect's content detector (``scenedetect``), fed the frames
salcli decodes anyway (``ContentDetector.process_frame``), so the video is decoded once.

Frames are shrunk to ``DETECT_WIDTH`` pixels wide first, as PySceneDetect's own scene
manager does by default: the HSV differences it thresholds barely change, and it runs
several times faster.
"""

from __future__ import annotations

import numpy as np

DETECT_WIDTH = 256  # pixels, the width frames are shrunk to before detection


class ShotDetector:
    """Feed every frame in order (``add``); ``shots()`` then gives [(start, stop), ...]
    frame ranges covering the video, a cut starting each shot after the first."""

    def __init__(self, fps: float, threshold: float, min_shot: int):
        from scenedetect.common import FrameTimecode
        from scenedetect.detectors import ContentDetector

        self._timecode = FrameTimecode
        self._detector = ContentDetector(threshold=threshold, min_scene_len=min_shot)
        self._fps = float(fps)
        self._cuts: list[int] = []
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        """The next frame, (H, W, 3) uint8 RGB."""
        import cv2

        h, w = rgb.shape[:2]
        if w > DETECT_WIDTH:
            size = (DETECT_WIDTH, max(1, round(h * DETECT_WIDTH / w)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(rgb[..., ::-1])  # the detector reads OpenCV's BGR
        tc = self._timecode(self.frames, self._fps)
        self._cuts += [c.frame_num for c in self._detector.process_frame(tc, bgr)]
        self.frames += 1

    def shots(self) -> list[tuple[int, int]]:
        """The shots as [start, stop) frame ranges, in order."""
        if self.frames:
            last = self._timecode(self.frames - 1, self._fps)
            self._cuts += [c.frame_num for c in self._detector.post_process(last)]
        cuts = sorted({c for c in self._cuts if 0 < c < self.frames})
        bounds = [0, *cuts, self.frames]
        return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
