"""Which clips go through the model, in which batches, and the maps of the frames between.

``run_schedule`` is the pure part of the pipeline between the clips
(``salcli.windowing.iter_clips``) and the maps: with ``stride`` K, frames t = 0, K, 2K,
... and the last one are *key* frames whose clips are predicted, ``batch_size`` clips
per call of ``predict`` (the engine); every other frame's map is the linear
interpolation in time of the key maps on either side of it. Maps come out in frame
order, each as soon as the key after it is known, so at most ``batch_size * stride``
frames wait (plus their clips' frames).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

X = TypeVar("X")
Predict = Callable[[list[list]], Sequence[np.ndarray]]  # clips -> one raw map each


@dataclass(eq=False)
class _Slot(Generic[X]):
    """A frame waiting for its map: predicted (``key``) or interpolated between keys."""

    t: int
    frame: X
    clip: list | None = field(repr=False)  # held while the frame may still be predicted
    key: bool
    raw: np.ndarray | None = field(default=None, repr=False)


def interpolate_maps(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """Linear interpolation in time of two raw maps: (1 - weight) a + weight b."""
    return ((1.0 - weight) * a + weight * b).astype(np.float32, copy=False)


def run_schedule(
    clips: Iterable[tuple[int, X, list]],
    predict: Predict,
    *,
    stride: int = 1,
    batch_size: int = 1,
) -> Iterator[tuple[X, np.ndarray]]:
    """(frame, raw map) for every (t, frame, clip) of ``clips``, in order (see the module
    docstring). ``predict`` gets at most ``batch_size`` clips at a time, in frame order."""
    if stride < 1 or batch_size < 1:
        raise ValueError("stride and batch_size must be at least 1")
    pending: list[_Slot] = []  # frames in order, waiting for their (next) key map
    keys = 0
    previous: _Slot | None = None  # the last key frame handed out
    for t, frame, clip in clips:
        if pending and not pending[-1].key:
            pending[-1].clip = None  # only the newest frame may still become a key
        key = t % stride == 0
        pending.append(_Slot(t, frame, clip, key))
        keys += key
        if keys == batch_size:
            previous = yield from _flush(pending, previous, predict)
            keys = 0
    if pending and not pending[-1].key:
        pending[-1].key = True  # the last frame is always predicted
    if pending:
        yield from _flush(pending, previous, predict)


def _flush(pending: list[_Slot], previous: _Slot | None, predict: Predict):
    """Predict the key frames of ``pending`` (one batch), hand out every frame up to the
    last key (they leave ``pending``); returns that key."""
    todo = [s for s in pending if s.key and s.raw is None]
    if todo:
        maps = predict([s.clip for s in todo])
        for s, m in zip(todo, maps, strict=True):
            s.raw, s.clip = m, None
    end = max(i for i, s in enumerate(pending) if s.key) + 1
    done = pending[:end]
    del pending[:end]
    nxt: _Slot | None = None
    for i, s in enumerate(done):
        if s.key:
            previous = s
            yield s.frame, s.raw
            continue
        if nxt is None or nxt.t < s.t:
            nxt = next(q for q in done[i:] if q.key)
        assert previous is not None  # frame 0 is always a key
        w = (s.t - previous.t) / (nxt.t - previous.t)
        yield s.frame, interpolate_maps(previous.raw, nxt.raw, w)
    return previous
