"""STAViS's published test procedure as pure functions: frames in, clips, audio, maps out.

Each function reproduces one step of the authors' test scripts (their dataset loader,
``test_sal.py`` and the MATLAB evaluation); the network itself is ``salcli.models.stavis``.
Frame indices are **0-based** here; theirs are 1-based (their frame j is our j - 1).

- ``frame_to_tensor``: decoded RGB (H, W, 3) uint8 -> (3, 112, 112) float32, exactly as
  Pillow computes their two resizes (nearest to 320 x 240, then bilinear to 112 x 112),
  in numpy, then the ActivityNet mean subtracted.
- ``clip_plan``: the 16 frames whose clip predicts frame f (f-8 ... f+7, loop-padded at
  the end as theirs) and the frames its audio excerpt spans, with a warm-up policy for
  frames 0-7, which their procedure never maps.
- ``excerpt_span`` / ``clip_audio`` / ``audio_batch``: the samples each clip hears,
  Hann-windowed and centred in 35 280 samples, layout (B, 1, 1, 35280).
- ``postprocess``: a model map (112, 112) -> the frame's size, as their MATLAB evaluation
  does (min-max, 13 x 13 Gaussian blur at 112 x 112, bicubic ``imresize``), in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from salcli.defaults import DEFAULT_WARMUP, WARMUP_POLICIES
from salcli.media.audio import AUDIO_RATE, AudioTrack, frame_span
from salcli.metrics import imresize_matlab
from salcli.models.stavis import (
    ACTIVITYNET_MEAN,
    AUDIO_BUFFER,
    CLIP_LEN,
    INPUT_SIZE,
    LOOK_AHEAD,
    TARGET_INDEX,
)

LOAD_SIZE = (240, 320)  # (H, W) their frame loader resizes every frame to (Pillow: 320 x 240)
PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point bits for 8-bit resampling coefficients
BLUR_SIGMA = 2.0  # pixels at 112 x 112: postprocessMap(map, 2)
BLUR_SIZE = 2 * math.ceil(3 * BLUR_SIGMA) + 1  # 13 pixels, fspecial's kernel side
CONSTANT_MAP_VALUE = 0.5  # their normalizeImage1: a constant map becomes 0.5 everywhere

_MEAN = np.asarray(ACTIVITYNET_MEAN, dtype=np.float32)  # (3,)


# ---------------------------------------------------------------------------
# Frames in: Pillow's resizes, exactly
# ---------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _nearest_index(in_len: int, out_len: int) -> np.ndarray:
    """Source index of each output pixel in Pillow's nearest resize (ImagingScaleAffine):
    x_0 = s/2, x_(k+1) = x_k + s accumulated in double precision, s = in/out, index
    floor(x_k). The closed form floor((k + 1/2) s) differs at some k."""
    step = in_len / out_len
    pos = step * 0.5
    index = np.empty(out_len, dtype=np.int64)
    for k in range(out_len):
        index[k] = int(pos)  # pos > 0: truncation is floor
        pos += step
    # a full-image box keeps every x_k inside [0, in): nothing to fill
    index = np.minimum(index, in_len - 1)
    index.flags.writeable = False
    return index


def _bilinear_filter(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


@lru_cache(maxsize=32)
def _bilinear_taps(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's bilinear taps for one axis: (index, weight), each (out_len, taps) int64,
    weights fixed-point (2^22 = 1); unused taps have weight 0.

    As Pillow's ``precompute_coeffs`` and ``normalize_coeffs_8bpc``: the filter is widened
    by in/out when shrinking (antialiasing), each output's taps are normalized to sum 1 in
    double precision (summed in tap order), then rounded half away from zero to integers.
    """
    scale = in_len / out_len
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # bilinear support 1, widened
    inv = 1.0 / filterscale
    one = float(1 << PRECISION_BITS)
    ksize = int(math.ceil(support)) * 2 + 1
    index = np.zeros((out_len, ksize), dtype=np.int64)
    weight = np.zeros((out_len, ksize), dtype=np.int64)
    for xx in range(out_len):
        center = (xx + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)  # int(): truncation toward zero, as C
        n = min(int(center + support + 0.5), in_len) - lo
        taps = [_bilinear_filter((x + lo - center + 0.5) * inv) for x in range(n)]
        total = 0.0
        for w in taps:
            total += w
        for x, w in enumerate(taps):
            k = w / total if total != 0.0 else w
            index[xx, x] = lo + x
            weight[xx, x] = int(k * one + (0.5 if k >= 0 else -0.5))
    index.flags.writeable = False
    weight.flags.writeable = False
    return index, weight


def _pass(x: np.ndarray, out_len: int, axis: int) -> np.ndarray:
    """One Pillow 8-bit pass along ``axis`` (0 rows, 1 columns) of (H, W, C) int64 pixels:
    the sum of pixel x integer weight plus 2^21, shifted right by 22 bits, clipped to
    0 ... 255 (exact integer arithmetic, as Pillow's)."""
    index, weight = _bilinear_taps(x.shape[axis], out_len)
    if axis == 1:
        acc = (x[:, index, :] * weight[None, :, :, None]).sum(axis=2)  # (H, out, C)
    else:
        acc = (x[index] * weight[:, :, None, None]).sum(axis=1)  # (out, W, C)
    return np.clip((acc + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS, 0, 255)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {rgb.dtype} {rgb.shape}")
    return rgb


def resize_nearest(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8, identical to Pillow's
    ``Image.resize((width, height), Image.NEAREST)``."""
    rgb = _check_rgb(rgb)
    rows = _nearest_index(rgb.shape[0], int(height))
    cols = _nearest_index(rgb.shape[1], int(width))
    return rgb[rows[:, None], cols[None, :]]


def resize_bilinear(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8, Pillow's
    ``Image.resize((width, height), Image.BILINEAR)``: antialiased when shrinking, columns
    first, then rows, rounded to 8 bits between the two passes (the order of Pillow's C
    resampler). Identical to Pillow 13 wherever the width shrinks at least as much as the
    height, e.g. 320 x 240 -> 112 x 112; otherwise Pillow 13 was seen to pass rows first
    (then up to 1 gray level apart). Equal sizes are a copy."""
    rgb = _check_rgb(rgb)
    x = rgb.astype(np.int64)
    if rgb.shape[1] != width:
        x = _pass(x, int(width), axis=1)
    if rgb.shape[0] != height:
        x = _pass(x, int(height), axis=0)
    return x.astype(np.uint8)


def frame_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """A decoded RGB frame (H, W, 3) uint8 -> the model's (3, 112, 112) float32 input.

    As their loader and test transform: Pillow nearest resize to 320 x 240 (the filter
    Pillow < 7 used when none was named; their requirements pinned 5.2.0), Pillow
    bilinear to 112 x 112 (aspect not kept), values 0-255 minus the ActivityNet mean,
    nothing divided. Bit-exact with Pillow (>= 7 with NEAREST named) for the resizes; the
    float32 subtraction is theirs (``tensor.sub_(mean)``).
    """
    small = resize_bilinear(resize_nearest(rgb, *LOAD_SIZE), INPUT_SIZE, INPUT_SIZE)
    chw = np.ascontiguousarray(small.transpose(2, 0, 1)).astype(np.float32)  # (3, 112, 112)
    return torch.from_numpy(chw - _MEAN[:, None, None])


# ---------------------------------------------------------------------------
# Which clip predicts which frame
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipPlan:
    """The clip that gives frame ``frame`` its map (all indices 0-based).

    ``indices``: the CLIP_LEN frames of the clip, in clip order. ``audio_first`` /
    ``audio_last``: the excerpt runs from the start of ``audio_first``'s audio span to the
    end (inclusive) of ``audio_last``'s; ``audio_first`` < 0 means time before the video's
    first frame. Frames whose plans have equal ``inputs`` get the same map (one forward
    pass serves them all: frames 0-8 under the "reference" policy).
    """

    frame: int
    indices: tuple[int, ...]
    audio_first: int
    audio_last: int

    @property
    def inputs(self) -> tuple[tuple[int, ...], int, int]:
        """What the model sees: (indices, audio_first, audio_last)."""
        return self.indices, self.audio_first, self.audio_last


def _loop_pad(indices: list[int]) -> tuple[int, ...]:
    """Their LoopPadding: cycle the list's own entries until it holds CLIP_LEN."""
    return tuple(indices[i % len(indices)] for i in range(CLIP_LEN))


def _reflect(i: int, n: int) -> int:
    """Index ``i`` (< 0) mirrored about frame 0 without repeating it (-1 -> 1, -2 -> 2 ...),
    reflected again at the last frame for videos shorter than the mirror (period 2(n-1))."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    r = i % period
    return period - r if r > n - 1 else r


def published_clip(start: int, n: int) -> tuple[int, ...]:
    """Their test clip that starts at frame ``start`` of an n-frame video: frames
    start ... min(n-1, start+15), loop-padded to 16 (their clip start+1, 1-based)."""
    return _loop_pad(list(range(start, min(n, start + CLIP_LEN))))


def clip_plan(frame: int, n: int, warmup: str = DEFAULT_WARMUP) -> ClipPlan:
    """The clip that predicts frame ``frame`` (0-based) of an ``n``-frame video.

    Frames f >= 8 (their frames 9 ... N) are predicted from frames f-8 ... f+7, loop-padded
    at the end as theirs (``published_clip(f - 8, n)``): with n = 64, frame 63 gets
    55 ... 63, 55 ... 61. The audio spans the padded clip's first to last index, so a
    padded clip hears only up to its last listed frame (61 there). Both policies give
    exactly their clips for these frames.

    Frames 0-7 have fewer than 8 frames before them; their procedure never maps them:

    - ``"mirror"`` (default, ViNet's mirror warm-up turned to a centred clip): the missing
      frames f-8 ... -1 are frames 8-f ... 1 (mirrored about frame 0, which is not
      repeated), so frame f keeps its place 8 in the clip; then frames 0 ... f+7,
      loop-padded as theirs when the video is shorter. The audio is what plays at frames
      f-8 ... min(f+7, n-1) on the video's timeline (before the first frame: silence, or
      the audio of a stream that starts before the video), so in a video of 16 frames or
      more the excerpt has a full clip's length, and it always covers frame f.
    - ``"reference"``: frames 0-7 get the map of their first clip (frames 0 ... 15,
      which their procedure saves for frame 8), the same as frame 8's.

    Videos shorter than 9 frames have no frame their procedure evaluates; the rules above
    still give every frame a clip (``"reference"``: all of them the first clip). n = 1:
    sixteen copies of frame 0 (their procedure skips such a video).
    """
    if n < 1:
        raise ValueError(f"a video has at least one frame, got n = {n}")
    if not 0 <= frame < n:
        raise ValueError(f"frame {frame} is outside a video of {n} frames")
    if warmup not in WARMUP_POLICIES:
        raise ValueError(
            f"unknown warm-up policy {warmup!r}; use one of {', '.join(WARMUP_POLICIES)}"
        )
    start = frame - TARGET_INDEX
    if start >= 0 or warmup == "reference":
        indices = published_clip(max(start, 0), n)
        return ClipPlan(frame, indices, indices[0], indices[-1])
    before = [_reflect(i, n) for i in range(start, 0)]  # frames 8-f ... 1
    last = min(n, start + CLIP_LEN) - 1  # f+7, or the video's last frame
    indices = _loop_pad(before + list(range(last + 1)))
    return ClipPlan(frame, indices, start, last)


# ---------------------------------------------------------------------------
# Audio in
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CentredClips:
    """STAViS's clips as a ``salcli.inference.clips.ClipSchedule``: frame t from frames
    t-8 ... t+7 (``clip_plan``), under a warm-up ``policy`` for frames 0-7."""

    policy: str
    length: int = CLIP_LEN
    keep_behind: int = TARGET_INDEX

    def lookahead(self, t: int) -> int:
        # the end's loop padding needs to know whether t+7 exists; for frames 0-7 the
        # mirror warm-up reaches frame 8 - t, the reference one frame 8's clip (0 ... 15)
        if t >= TARGET_INDEX:
            return LOOK_AHEAD
        if self.policy == "reference":
            return CLIP_LEN - 1 - t
        return max(LOOK_AHEAD, TARGET_INDEX - t)

    def plan(self, t: int, n: int | None) -> tuple[list[int], tuple[int, int]]:
        # n None: at least t + 1 + lookahead(t) frames, which no clip of t looks past
        plan = clip_plan(t, t + 1 + self.lookahead(t) if n is None else n, self.policy)
        return list(plan.indices), (plan.audio_first, plan.audio_last)


def _span_start(k: int, fps: float) -> int:
    """First sample of frame k's span (their int(max(0, (k-1)/f*Fs - n/2)), 1-based k);
    for k < 0 (before the video) the same expression floored, not clamped at 0."""
    if k >= 0:
        return frame_span(k, fps, None)[0]
    centre = k * (1.0 / float(fps)) * AUDIO_RATE
    return math.floor(centre - AUDIO_RATE / float(fps) / 2)


def excerpt_span(plan: ClipPlan, fps: float, length: int | None) -> tuple[int, int]:
    """(start, stop), stop exclusive: the timeline samples the clip of ``plan`` hears.

    ``fps`` is the frame rate (their fold list's), ``length`` the track's number of
    samples (None: not known, no clamp at the end). From the start of ``audio_first``'s
    span to the end, inclusive, of ``audio_last``'s: their int() of
    (k-1)/fps*Fs -+ Fs/fps/2 per 1-based frame k, the start clamped at 0, the end at the
    length (``salcli.media.audio.frame_span``). At 25 fps a full clip is 16 * 882 + 1 = 14 113
    samples. Empty (stop <= start) past the end of the audio.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    start = _span_start(plan.audio_first, fps)
    stop = frame_span(plan.audio_last, fps, length)[1] + 1  # their wav[:, start:end+1]
    if length is not None:
        stop = min(stop, int(length))
    return start, max(start, stop)


def place_excerpt(excerpt: np.ndarray) -> np.ndarray:
    """(AUDIO_BUFFER,) float32: ``excerpt`` times numpy's Hann window of its own length
    (cast to float32 first, as theirs), centred in the buffer: it starts at
    17 640 - len // 2. Longer than the buffer (fps <= 10; theirs fails there): the centred
    35 280 samples of the windowed excerpt are kept."""
    excerpt = np.asarray(excerpt, dtype=np.float32)
    out = np.zeros(AUDIO_BUFFER, dtype=np.float32)
    size = excerpt.shape[0]
    if size == 0:
        return out
    windowed = np.hanning(size).astype(np.float32) * excerpt
    off = AUDIO_BUFFER // 2 - size // 2  # buffer index of excerpt[0]; < 0 when longer
    lo, hi = max(0, off), min(AUDIO_BUFFER, off + size)
    out[lo:hi] = windowed[lo - off : hi - off]
    return out


def clip_audio(track: AudioTrack, plan: ClipPlan, fps: float) -> np.ndarray:
    """(AUDIO_BUFFER,) float32: the audio input of ``plan``'s clip, from ``track``
    (``salcli.media.audio.AudioTrack``: mono 22 050 Hz, x256). When the track's length is not
    known yet, the unclamped span is read first and clamped once the stream has ended."""
    start, stop = excerpt_span(plan, fps, track.length)
    samples = track.samples(start, stop)
    length = track.length  # known now if the stream ended before `stop`
    if length is not None:
        samples = samples[: max(0, min(stop, length) - start)]
    return place_excerpt(samples)


def audio_batch(track: AudioTrack, plans: Sequence[ClipPlan], fps: float) -> np.ndarray:
    """(B, 1, 1, AUDIO_BUFFER) float32, the model's audio layout (time last): ``clip_audio``
    of each plan, in order (ask in increasing frame order: the track streams)."""
    out = np.zeros((len(plans), 1, 1, AUDIO_BUFFER), dtype=np.float32)  # (B, 1, 1, N)
    for i, plan in enumerate(plans):
        out[i, 0, 0] = clip_audio(track, plan, fps)
    return out


# ---------------------------------------------------------------------------
# Maps out
# ---------------------------------------------------------------------------


@lru_cache(maxsize=4)
def gaussian_taps(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """The 1-D factor of MATLAB's ``fspecial('gaussian', size, sigma)``: the 2-D kernel is
    the outer product of these taps (its eps cut-off removes nothing at 13 / 2)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    g = g / g.sum()
    g.flags.writeable = False
    return g


def _minmax(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    if not hi > lo:
        return np.full_like(m, CONSTANT_MAP_VALUE)
    return (m - lo) / (hi - lo)


def _blur_symmetric(m: np.ndarray) -> np.ndarray:
    """``imfilter(m, fspecial('gaussian', 13, 2), 'symmetric', 'conv')``, separably."""
    from scipy.ndimage import correlate1d  # 'reflect' is MATLAB's 'symmetric' (edge repeated)

    g = gaussian_taps()
    return correlate1d(correlate1d(m, g, axis=0, mode="reflect"), g, axis=1, mode="reflect")


def postprocess(
    saliency: np.ndarray, height: int, width: int, *, unit_range: bool = True
) -> np.ndarray:
    """A model map (112, 112) -> (height, width) float32, as their MATLAB evaluation.

    Min-max normalized (a constant map becomes 0.5 everywhere, as their normalizeImage1),
    blurred **at the model's resolution** with the 13 x 13 Gaussian, sigma 2, mirrored
    (symmetric) borders, then resized to the frame with MATLAB's ``imresize`` (bicubic,
    antialiased when shrinking; ``salcli.metrics.imresize_matlab``), in float64.

    Bicubic overshoots [0, 1] slightly where the map is steep. With ``unit_range`` (the
    default) the resized map is min-max normalized once more, to exactly [0, 1]: an
    increasing affine map of MATLAB's values, so CC, NSS, AUC-Judd, shuffled AUC and SIM
    (the metrics STAViS reports; each standardizes or min-max normalizes first) are those
    of their maps; KLD is not invariant. ``unit_range=False`` returns MATLAB's values as
    they are (overshoot included). Their published maps also went through 8-bit JPEG
    files; this is the float route.
    """
    m = np.asarray(saliency, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {m.shape}")
    if not m.max() > m.min():  # constant (no rounding noise to stretch afterwards)
        return np.full((int(height), int(width)), CONSTANT_MAP_VALUE, dtype=np.float32)
    m = imresize_matlab(_blur_symmetric(_minmax(m)), (int(height), int(width)))
    if unit_range:
        m = _minmax(m)
    return m.astype(np.float32)


__all__ = [
    "BLUR_SIGMA",
    "BLUR_SIZE",
    "DEFAULT_WARMUP",
    "LOAD_SIZE",
    "WARMUP_POLICIES",
    "ClipPlan",
    "audio_batch",
    "clip_audio",
    "clip_plan",
    "excerpt_span",
    "frame_to_tensor",
    "gaussian_taps",
    "place_excerpt",
    "postprocess",
    "published_clip",
    "resize_bilinear",
    "resize_nearest",
]


# ---------------------------------------------------------------------------
# The procedure as the model family declares it (salcli.models.registry)
# ---------------------------------------------------------------------------


def transform(rgb: np.ndarray, size: tuple[int, int], device=None) -> torch.Tensor:
    """The family's frame transform: ``frame_to_tensor`` (its size is fixed), on ``device``."""
    x = frame_to_tensor(rgb)  # (3, 112, 112)
    return x if device is None else x.to(device)


def excerpt(track: AudioTrack, first: int, last: int, fps: float) -> np.ndarray:
    """(35280,) float32: the sound of the clip whose audio spans frames first ... last."""
    return clip_audio(track, ClipPlan(first, (), first, last), fps)


def excerpt_batch(excerpts: np.ndarray) -> torch.Tensor:
    """(B, 35280) excerpts -> the model's input (B, 1, 1, 35280), time last."""
    return torch.from_numpy(np.ascontiguousarray(excerpts, np.float32))[:, None, None, :]
