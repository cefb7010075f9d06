"""From a stream of frames to clips of T frames, one clip per frame to predict.

Frame t (0-based) is predicted from the clip whose **last** frame is t:
frames t-T+1 ... t. The first T-1 frames have no full past; two warm-up policies:

- ``mirror`` (default, the design card's): the video is preceded by its own frames
  T-1 ... 1 in reverse, s = reverse(frames[1:T]) ++ frames, and frame t uses
  s[t ... t+T-1]; i.e. a past position p < 0 reads frame -p. One pass, easy to batch.
- ``reference`` (the authors' pipeline, for comparing with published numbers): frame
  t < T-1 is predicted from frames t ... t+T-1 **reversed in time**, so that t is last.

Videos shorter than needed:

- ``mirror`` with fewer than T frames: past positions keep reflecting off both ends
  of the video (..., 2, 1, 0, 1, 2, ..., n-1, n-2, ...); a 1-frame video repeats it.
- ``reference`` with fewer than 2T-1 frames: as the paper does, the first frame is
  repeated at the front until there are 2T-1 frames; only the real frames get maps.

Either way every frame gets exactly one map. Memory: at most 2T-1 frames are held.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TypeVar

from .defaults import CLIP_LEN, WARMUP_POLICIES

X = TypeVar("X")


def _reflect(p: int, n: int | None) -> int:
    """Frame read at position p (may be negative) of a video of n frames, mirrored."""
    if p < 0:
        p = -p
    if n is None or p < n:
        return p
    if n == 1:
        return 0
    period = 2 * (n - 1)
    p %= period
    return p if p < n else period - p


def clip_indices(
    t: int, n: int | None, clip_len: int = CLIP_LEN, policy: str = "mirror"
) -> list[int]:
    """Indices of the frames of the clip that predicts frame ``t``, oldest first.

    ``n`` is the number of frames of the video, or None when it is known to be at
    least 2T-1 (a streaming reader does not know it up front).
    """
    if policy not in WARMUP_POLICIES:
        raise ValueError(f"unknown warm-up policy {policy!r}")
    T = clip_len
    if n is not None and not 0 <= t < n:
        raise IndexError(f"frame {t} out of range for {n} frames")
    if policy == "mirror":
        return [_reflect(p, n) for p in range(t - T + 1, t + 1)]
    pad = 0 if n is None else max(0, 2 * T - 1 - n)
    u = t + pad  # position in the padded video
    if u >= T - 1:
        padded = list(range(u - T + 1, u + 1))
    else:
        padded = list(range(u + T - 1, u - 1, -1))  # frames u ... u+T-1, reversed
    return [max(0, i - pad) for i in padded]


def iter_clips(
    frames: Iterable[X], clip_len: int = CLIP_LEN, policy: str = "mirror"
) -> Iterator[tuple[int, list[X]]]:
    """Stream (t, clip) for every frame t of ``frames``, in order; ``clip[-1]`` is frame t.

    The items of a clip are the very objects of ``frames`` (no copies). At most 2T-1
    items are held at any time.
    """
    T = clip_len
    head_len = 2 * T - 1
    it = iter(frames)
    head: list[X] = []
    for item in it:
        head.append(item)
        if len(head) == head_len:
            break
    if len(head) < head_len:  # short video: its length is now known
        n = len(head)
        for t in range(n):
            yield t, [head[i] for i in clip_indices(t, n, T, policy)]
        return
    for t in range(head_len):
        yield t, [head[i] for i in clip_indices(t, None, T, policy)]
    window: deque[X] = deque(head[-T:], maxlen=T)
    del head
    t = head_len
    for item in it:
        window.append(item)
        yield t, list(window)
        t += 1


def clip_span(indices: list[int]) -> tuple[int, int]:
    """First and last frame whose audio a clip listens to: the range its frames cover."""
    return min(indices), max(indices)
