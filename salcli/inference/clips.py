"""From a stream of frames to clips, one clip per frame to predict, and to their maps.

The streaming (``iter_clips``) is the same for every model family: a family declares
its ``ClipSchedule`` (clip length, which frames each clip holds, how far ahead it
reads): ViNet's is ``salcli.models.vinet_procedure.LastFrameClips``, STAViS's
``salcli.models.stavis_procedure.CentredClips``. Memory: a schedule's ``keep_behind``
plus its look-ahead bound the frames held.

Key frames and batches (``predict_key_frames``, the pure part between the clips and the
maps): with ``stride`` K, frames t = 0, K, 2K, ... and the last one are *key* frames whose
clips are predicted, ``batch_size`` clips per call of ``predict`` (the engine); every
other frame's map is the linear interpolation in time of the key maps on either side of
it. Maps come out in frame order, each as soon as the key after it is known, so at most
``batch_size * stride`` frames wait (plus their clips' frames).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

X = TypeVar("X")
_END = object()


class Clip(list):
    """The frames of one clip, in clip order, and the frames whose audio it hears:
    ``audio_span`` = (first, last), from the start of ``first``'s audio to the end of
    ``last``'s (``first`` < 0: time before the video's first frame)."""

    __slots__ = ("audio_span",)

    def __init__(self, frames, audio_span: tuple[int, int]):
        super().__init__(frames)
        self.audio_span = audio_span


class ClipSchedule(Protocol):
    """Which frames make the clip of each frame: what a model family declares.

    ``plan(t, n)`` gives the frames of frame t's clip, in clip order, and its audio span
    (see ``Clip``), for a video of n frames; ``n`` is None while the length is unknown,
    and then the video is known to have at least ``t + 1 + lookahead(t)`` frames. Later
    clips never read frames more than ``keep_behind`` before their own frame.
    """

    length: int  # frames per clip

    @property
    def keep_behind(self) -> int: ...

    def lookahead(self, t: int) -> int: ...

    def plan(self, t: int, n: int | None) -> tuple[list[int], tuple[int, int]]: ...


def iter_clips(frames: Iterable[X], schedule: ClipSchedule) -> Iterator[tuple[int, X, Clip]]:
    """Stream (t, frame t, its clip) for every frame t of ``frames``, in order.

    The items of a clip are the very objects of ``frames`` (no copies). At most
    ``keep_behind + 1 + max lookahead`` items are held at any time (2T-1 for ViNet).
    """
    held: deque[X] = deque()  # frames first ... first + len(held) - 1
    first = 0
    n: int | None = None  # the video's length, once the end is reached
    it = iter(frames)
    t = 0
    while True:
        need = t + 1 + schedule.lookahead(t)
        while n is None and first + len(held) < need:
            item = next(it, _END)
            if item is _END:
                n = first + len(held)
            else:
                held.append(item)
        if n is not None and t >= n:
            return
        idx, audio_span = schedule.plan(t, n)
        yield t, held[t - first], Clip([held[i - first] for i in idx], audio_span)
        t += 1
        while held and first < t - schedule.keep_behind:
            held.popleft()
            first += 1


# --- key frames, batches, interpolation -----------------------------------------------
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


def predict_key_frames(
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
