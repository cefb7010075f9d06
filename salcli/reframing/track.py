"""The crop track: the window of every frame, the shots and their decisions, and the
share of the saliency each window keeps; what ``salcli.reframe`` returns, what the
renderers draw and what the ``json`` output holds (``to_dict`` / ``from_dict``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from salcli.errors import InputError
from salcli.reframing.geometry import AXIS_X, Layout

TRACK_VERSION = 1  # the json output's layout version


@dataclass(frozen=True)
class Shot:
    """One shot: frames [start, stop), its camera's decision and what it keeps."""

    index: int
    start: int
    stop: int
    decision: str  # "still" | "track" | "pad"
    kept: float  # mean share of the saliency inside the window over the shot
    still_share: float  # what the best still window would keep
    best_share: float  # what the per-frame best window keeps (the upper bound)


@dataclass
class CropTrack:
    """The windows of a video's frames (positions along ``layout.axis``)."""

    source: str
    fps: float
    layout: Layout
    times: np.ndarray  # (N,) float64, seconds from the first frame
    positions: np.ndarray  # (N,) float64, the solved path (pixels)
    kept: np.ndarray  # (N,) float64, share of each frame's saliency inside its window
    shots: list[Shot]
    aspect: float

    @property
    def frames(self) -> int:
        return int(self.times.shape[0])

    def pixel_positions(self) -> np.ndarray:
        """(N,) int64 window positions: the path rounded to whole pixels."""
        return np.clip(np.rint(self.positions), 0, self.layout.travel).astype(np.int64)

    def windows(self) -> np.ndarray:
        """(N, 4) int64 (x, y, w, h) of every frame's window."""
        lay = self.layout
        pos = self.pixel_positions()
        out = np.empty((self.frames, 4), dtype=np.int64)
        x0, y0, w, h = lay.window(0)
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = x0, y0, w, h
        out[:, 0 if lay.axis == AXIS_X else 1] = pos
        return out

    def shot_of(self) -> np.ndarray:
        """(N,) the shot index of every frame."""
        out = np.empty(self.frames, dtype=np.int64)
        for s in self.shots:
            out[s.start : s.stop] = s.index
        return out

    def mean_kept(self) -> float:
        """The share of the saliency inside the window, mean over frames."""
        return float(self.kept.mean()) if self.frames else 0.0

    def worst_shot(self) -> Shot:
        return min(self.shots, key=lambda s: s.kept)

    def summary(self) -> str:
        """One line: the saliency kept, mean and worst shot; the shots' decisions."""
        worst = self.worst_shot()
        still = sum(s.decision == "still" for s in self.shots)
        return (
            f"saliency inside the window {100 * self.mean_kept():.1f} % (worst shot "
            f"{worst.index + 1}: {100 * worst.kept:.1f} %); {len(self.shots)} shot(s), "
            f"{still} still"
        )

    # --- the json output -------------------------------------------------------------

    def to_dict(self) -> dict:
        lay = self.layout
        shot_of = self.shot_of()
        frames = [
            {"frame": i, "time": round(float(t), 6), "x": int(x), "y": int(y), "w": int(w),
             "h": int(h), "shot": int(s)}
            for i, (t, (x, y, w, h), s) in enumerate(zip(self.times, self.windows(), shot_of,
                                                         strict=True))
        ]  # fmt: skip
        return {
            "version": TRACK_VERSION,
            "source": self.source,
            "fps": self.fps,
            "aspect": self.aspect,
            "source_size": [lay.src_w, lay.src_h],
            "output_size": [lay.out_w, lay.out_h],
            "pad": lay.pad,
            "axis": "x" if lay.axis == AXIS_X else "y",
            "saliency_kept": {"mean": self.mean_kept(), "worst_shot": self.worst_shot().kept},
            "shots": [vars(s) for s in self.shots],
            "path": [round(float(p), 4) for p in self.positions],
            "kept": [round(float(k), 6) for k in self.kept],
            "frames": frames,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> CropTrack:
        try:
            (src_w, src_h), (out_w, out_h) = data["source_size"], data["output_size"]
            axis = AXIS_X if data["axis"] == "x" else 1
            frames = data["frames"]
            w, h = (frames[0]["w"], frames[0]["h"]) if frames else (src_w, src_h)
            lay = Layout(src_w, src_h, axis, w, h, out_w, out_h, bool(data["pad"]))
            key = "x" if axis == AXIS_X else "y"
            return cls(
                source=str(data["source"]),
                fps=float(data["fps"]),
                layout=lay,
                times=np.array([f["time"] for f in frames], dtype=np.float64),
                positions=np.array(data.get("path") or [f[key] for f in frames], np.float64),
                kept=np.array(data.get("kept") or [0.0] * len(frames), dtype=np.float64),
                shots=[Shot(**s) for s in data["shots"]],
                aspect=float(data["aspect"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(f"not a salcli reframe track ({exc!r})") from None

    @classmethod
    def load(cls, path: str | Path) -> CropTrack:
        """A track from a ``json`` output (its ``path``; without one, its windows)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read a track ({exc})") from None
        return cls.from_dict(data)
