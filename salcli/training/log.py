"""A training run's log: one ``EpochRecord`` per epoch, written as ``log.jsonl`` (one JSON
object a line) and drawn as ``curves.png`` (with OpenCV), each written atomically.

The picture has three panels over the epochs: the training and validation loss;
validation CC and SIM; validation NSS and KLD. The epoch with the lowest validation loss
is marked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from salcli.files import write_atomic, write_text_atomic

PANEL_W, PANEL_H = 420, 300  # pixels, one panel
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 58, 14, 34, 38  # pixels around a panel's plot area
TICKS = 5  # labelled values per axis
FONT_SCALE = 0.42
WHITE, GREY, BLACK = (255, 255, 255), (200, 200, 200), (40, 40, 40)  # BGR
PANELS = (
    ("loss", (("train_loss", "train", (200, 90, 20)), ("val_loss", "validation", (30, 30, 200)))),
    ("validation CC, SIM", (("cc", "CC", (30, 140, 30)), ("sim", "SIM", (160, 40, 160)))),
    ("validation NSS, KLD", (("nss", "NSS", (20, 120, 200)), ("kld", "KLD", (90, 90, 90)))),
)


@dataclass(frozen=True)
class EpochRecord:
    """One line of ``log.jsonl``."""

    epoch: int  # 1-based; 0: the starting weights (``validate_first``)
    train_loss: float  # mean over the epoch's windows
    val_loss: float  # mean over the validation windows
    cc: float  # validation metrics: mean over windows (NaNs skipped)
    sim: float
    kld: float
    nss: float
    windows: int  # training windows used
    val_windows: int
    seconds: float  # training part of the epoch (validation not included)
    val_seconds: float
    samples_per_s: float  # training windows per second, all ranks together
    best: bool  # the lowest validation loss so far (best.pt written)

    def as_dict(self, digits: int | None = 6) -> dict[str, Any]:
        """The record for JSON: NaN as None, floats rounded to ``digits`` (None: exact)."""
        return {f.name: _json_num(getattr(self, f.name), digits) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochRecord:
        """``as_dict``'s inverse (None back to NaN)."""
        return cls(**{k: (math.nan if v is None else v) for k, v in d.items()})


def _json_num(x: Any, digits: int | None) -> Any:
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return x if digits is None else round(x, digits)
    return x


def write_log(history: Sequence[EpochRecord], log: Path, curves: Path) -> None:
    """The records as ``log`` (JSON lines) and their curves as the PNG ``curves``."""
    lines = "".join(json.dumps(r.as_dict()) + "\n" for r in history)
    write_text_atomic(log, lines)
    plot_curves([r.as_dict() for r in history], curves)


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _label(value: float) -> str:
    return f"{value:.3g}"


def _panel(title: str, series, history: Sequence[dict[str, Any]]) -> np.ndarray:
    img = np.full((PANEL_H, PANEL_W, 3), WHITE, dtype=np.uint8)  # (H, W, 3) BGR
    font = cv2.FONT_HERSHEY_SIMPLEX
    x0, x1 = MARGIN_L, PANEL_W - MARGIN_R
    y0, y1 = MARGIN_T, PANEL_H - MARGIN_B
    cv2.putText(img, title, (x0, 20), font, FONT_SCALE + 0.08, BLACK, 1, cv2.LINE_AA)
    epochs = [int(h["epoch"]) for h in history]
    values = _finite(h.get(key) for h in history for key, _, _ in series)
    if not epochs or not values:
        cv2.putText(img, "no data", (x0 + 10, (y0 + y1) // 2), font, FONT_SCALE, BLACK, 1)
        return img
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    e_lo, e_hi = min(epochs), max(max(epochs), min(epochs) + 1)

    def px(epoch: float, value: float) -> tuple[int, int]:
        x = x0 + (epoch - e_lo) / (e_hi - e_lo) * (x1 - x0)
        y = y1 - (value - lo) / (hi - lo) * (y1 - y0)
        return int(round(x)), int(round(y))

    for k in range(TICKS):  # horizontal grid and value labels
        v = lo + (hi - lo) * k / (TICKS - 1)
        _, y = px(e_lo, v)
        cv2.line(img, (x0, y), (x1, y), GREY, 1)
        cv2.putText(img, _label(v), (4, y + 4), font, FONT_SCALE, BLACK, 1, cv2.LINE_AA)
    step = max(1, math.ceil((e_hi - e_lo) / (TICKS - 1)))
    for e in range(e_lo, e_hi + 1, step):  # epoch labels
        x, _ = px(e, lo)
        cv2.line(img, (x, y1), (x, y1 + 4), BLACK, 1)
        cv2.putText(img, str(e), (x - 6, y1 + 18), font, FONT_SCALE, BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, "epoch", (x1 - 40, PANEL_H - 4), font, FONT_SCALE, BLACK, 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), BLACK, 1)
    best = [h["epoch"] for h in history if h.get("best")]
    if best and title == "loss":
        x, _ = px(best[-1], lo)
        cv2.line(img, (x, y0), (x, y1), (0, 170, 255), 1)
    for n, (key, name, colour) in enumerate(series):
        pts = [
            px(h["epoch"], float(h[key]))
            for h in history
            if h.get(key) is not None and math.isfinite(float(h[key]))
        ]
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, dtype=np.int32)], False, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 3, colour, -1, cv2.LINE_AA)
        ly = y0 + 16 + 16 * n
        cv2.line(img, (x1 - 110, ly - 4), (x1 - 90, ly - 4), colour, 2)
        cv2.putText(img, name, (x1 - 85, ly), font, FONT_SCALE, colour, 1, cv2.LINE_AA)
    return img


def render_curves(history: Sequence[dict[str, Any]]) -> np.ndarray:
    """The three panels side by side, (PANEL_H, 3 * PANEL_W, 3) uint8 BGR."""
    return np.concatenate([_panel(t, s, history) for t, s in PANELS], axis=1)


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write ``render_curves(history)`` as a PNG (under a temporary name, then renamed)."""
    ok, data = cv2.imencode(".png", render_curves(history))
    if not ok:  # pragma: no cover - encoding an 8-bit image does not fail
        raise ValueError("PNG encoding failed")
    write_atomic(path, lambda tmp: tmp.write_bytes(data.tobytes()))
