"""ViNet and AViNet's published procedure: frames in, clips, the sound of a clip, maps out.

- frames: resized to the model's input (224x384) with antialiasing, ImageNet-normalized
  (``frame_to_tensor``);
- clips: ``CLIP_LEN`` = 32 frames; frame t is predicted from the clip whose **last**
  frame is t (``LastFrameClips``, ``clip_indices``). The first T-1 frames have no full
  past; two warm-up policies:

  - ``mirror`` (default): the video is preceded by its own frames T-1 ... 1 in reverse,
    s = reverse(frames[1:T]) ++ frames, and frame t uses s[t ... t+T-1]; i.e. a past
    position p < 0 reads frame -p. One pass, easy to batch.
  - ``reference`` (the authors' pipeline, for comparing with published numbers): frame
    t < T-1 is predicted from frames t ... t+T-1 **reversed in time**, so that t is last.

  Videos shorter than needed: under ``mirror`` with fewer than T frames, past positions
  keep reflecting off both ends of the video (..., 2, 1, 0, 1, 2, ..., n-1, n-2, ...);
  a 1-frame video repeats it. Under ``reference`` with fewer than 2T-1 frames, as the
  paper does, the first frame is repeated at the front until there are 2T-1 frames;
  only the real frames get maps. Either way every frame gets exactly one map, and at
  most 2T-1 frames are held;
- sound (AViNet): the clip's excerpt, Hann-windowed, centred in ``AUDIO_BUFFER``
  samples at 22 050 Hz (``clip_excerpt``), layout (B, 1, N, 1);
- maps: resized to the frame (bilinear), blurred, min-max normalized (``postprocess``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from salcli.defaults import WARMUP_POLICIES
from salcli.media.audio import AUDIO_RATE, AudioTrack, frame_span

CLIP_LEN = 32  # frames per clip (T)
INPUT_H = 224  # pixels, model input height
INPUT_W = 384  # pixels, model input width
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, on [0, 1] values
IMAGENET_STD = (0.229, 0.224, 0.225)  # RGB
BLUR_KSIZE = 11  # pixels, Gaussian kernel side of the maps; sigma derived as OpenCV does (2.0)
MIN_FPS = 10  # frames/s the audio buffer is sized for
AUDIO_BUFFER = AUDIO_RATE // MIN_FPS * CLIP_LEN  # 70 560 samples: a clip's sound input


@functools.lru_cache(maxsize=8)
def _mean_std(
    device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalization constants (3, 1, 1), once per device and family."""
    return torch.tensor(mean).view(3, 1, 1).to(device), torch.tensor(std).view(3, 1, 1).to(device)


def frame_to_tensor(
    rgb: np.ndarray,
    size: tuple[int, int] = (INPUT_H, INPUT_W),
    *,
    round_to_uint8: bool = True,
    device: torch.device | str | None = None,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, h, w) float32, resized and normalized per channel with
    ``mean`` and ``std`` (RGB, on [0, 1] values; ImageNet's by default).

    The resize is bilinear and antialiased when shrinking, as torchvision's ``Resize``
    on PIL images in the authors' pipeline; ``round_to_uint8`` rounds the resized
    pixels back to 8 bits as PIL does, before scaling to [0, 1].

    With ``device`` (e.g. CUDA) the 8-bit frame is copied there (from pinned memory,
    asynchronously) and resized there; the result lives on that device.
    """
    x = torch.from_numpy(np.ascontiguousarray(rgb))  # (H, W, 3) uint8
    device = torch.device(device) if device is not None else x.device
    if device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    x = x.permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        if round_to_uint8:
            x = x.round_().clamp_(0, 255)
    x = x[0].div_(255.0)
    m, s = _mean_std(device, tuple(mean), tuple(std))
    return (x - m) / s  # (3, h, w)


def postprocess(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """A model map (h, w) -> the frame's (height, width), blurred, min-max to [0, 1].

    Bilinear resize (OpenCV), an 11x11 Gaussian blur (sigma 2.0, derived from the
    kernel size as OpenCV does for sigma 0), then min-max normalization; a constant
    map becomes all zeros. Returns float32.
    """
    import cv2

    m = np.asarray(saliency, dtype=np.float32)
    if m.shape != (height, width):
        m = cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
    m = cv2.GaussianBlur(m, (BLUR_KSIZE, BLUR_KSIZE), 0)
    lo, hi = float(m.min()), float(m.max())
    if hi - lo <= 0.0:
        return np.zeros_like(m)
    return (m - lo) / (hi - lo)


# --- clips ------------------------------------------------------------------------------


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


REFERENCE_RULES = ("reversed", "clamped")  # how a family's published procedure fills the past


def clip_indices(
    t: int,
    n: int | None,
    clip_len: int = CLIP_LEN,
    policy: str = "mirror",
    reference: str = "reversed",
) -> list[int]:
    """Indices of the frames of the clip that predicts frame ``t``, oldest first.

    ``n`` is the number of frames of the video, or None when it is known to be at
    least 2T-1 (a streaming reader does not know it up front). Under ``policy``
    "reference", ``reference`` says which published procedure: "reversed" (ViNet's: the
    future clip reversed in time) or "clamped" (ViNet-S's: positions before the video
    read frame 0, so frame t < T-1 sees T-1-t copies of frame 0, then 0 ... t).
    """
    if policy not in WARMUP_POLICIES:
        raise ValueError(f"unknown warm-up policy {policy!r}")
    if reference not in REFERENCE_RULES:
        raise ValueError(f"unknown reference rule {reference!r}")
    T = clip_len
    if n is not None and not 0 <= t < n:
        raise IndexError(f"frame {t} out of range for {n} frames")
    if policy == "mirror":
        return [_reflect(p, n) for p in range(t - T + 1, t + 1)]
    if reference == "clamped":
        return [max(0, p) for p in range(t - T + 1, t + 1)]
    pad = 0 if n is None else max(0, 2 * T - 1 - n)
    u = t + pad  # position in the padded video
    if u >= T - 1:
        padded = list(range(u - T + 1, u + 1))
    else:
        padded = list(range(u + T - 1, u - 1, -1))  # frames u ... u+T-1, reversed
    return [max(0, i - pad) for i in padded]


def clip_span(indices: list[int]) -> tuple[int, int]:
    """First and last frame whose audio a clip listens to: the range its frames cover."""
    return min(indices), max(indices)


@dataclass(frozen=True)
class LastFrameClips:
    """ViNet / AViNet / ViNet-S: the clip of frame t ends with t; ``policy`` fills the
    first T-1 (see the module docstring), ``reference`` is the published procedure's
    rule under the policy "reference" (``clip_indices``)."""

    length: int = CLIP_LEN
    policy: str = "mirror"
    reference: str = "reversed"

    def __post_init__(self) -> None:
        if self.policy not in WARMUP_POLICIES:
            raise ValueError(f"unknown warm-up policy {self.policy!r}")

    @property
    def keep_behind(self) -> int:
        return self.length - 1

    def lookahead(self, t: int) -> int:
        if self.policy == "reference" and self.reference == "clamped":
            return 0  # causal: the past is the video's own first frame
        # the first 2T-1 frames decide how a short video is padded
        return max(0, 2 * self.length - 2 - t)

    def plan(self, t: int, n: int | None) -> tuple[list[int], tuple[int, int]]:
        indices = clip_indices(t, n, self.length, self.policy, self.reference)
        return indices, clip_span(indices)


# --- the sound of a clip ---------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _hann(size: int) -> np.ndarray:
    """numpy.hanning(size), float64, read-only (a video's clips have few distinct sizes)."""
    window = np.hanning(size)
    window.flags.writeable = False
    return window


def _place(windowed: np.ndarray) -> np.ndarray:
    """Centre ``windowed`` in a zero buffer of AUDIO_BUFFER samples (see clip_excerpt)."""
    out = np.zeros(AUDIO_BUFFER, dtype=np.float32)
    size = windowed.shape[0]
    off = AUDIO_BUFFER // 2 - size // 2  # buffer index of windowed[0]; < 0 when longer
    lo, hi = max(0, off), min(AUDIO_BUFFER, off + size)
    if hi > lo:
        out[lo:hi] = windowed[lo - off : hi - off]
    return out


def clip_excerpt(track: AudioTrack, first: int, last: int, fps: float) -> np.ndarray:
    """(70560,) float32: the audio input of the clip of frames ``first`` ... ``last``.

    The excerpt runs from the start of ``first``'s span to the end (inclusive) of
    ``last``'s span (``frame_span`` with the track's ``length``; when the length is not
    known yet, the track is decoded through the unclamped end first, and clamped only if
    the stream ended before it). Samples at or past ``length`` are not part of it (the
    authors sliced ``wav[start:end+1]`` of a ``length``-sample array). It is multiplied
    by ``numpy.hanning`` of its own length L (in float64, then rounded to float32) and
    placed centred in a zero buffer of 70 560 samples: excerpt sample L//2 lands at
    buffer index 35 280, i.e. the excerpt starts at 35 280 - L//2. When L is odd the
    extra zero is on the left (before the excerpt), as in the authors' placement.

    Longer than the buffer (L > 70 560, frame rates under 10 fps): the window is made
    over the whole excerpt, then only the centred 70 560 samples are kept (excerpt
    samples L//2 - 35 280 ... L//2 + 35 279), so the clip's middle stays at the
    buffer's middle and what is cut are the ends, already attenuated by the window.
    An empty excerpt (frames past the end of the audio) gives an all-zero buffer.
    """
    if last < first:
        raise ValueError(f"clip ends ({last}) before it starts ({first})")
    start = frame_span(first, fps, None)[0]
    stop = frame_span(last, fps, None)[1] + 1  # exclusive, unclamped
    excerpt = track.samples(start, max(start, stop))
    length = track.length  # known now if the stream ended before `stop`
    if length is not None:
        stop = min(stop, length)
    if stop <= start:
        return np.zeros(AUDIO_BUFFER, dtype=np.float32)
    excerpt = excerpt[: stop - start]
    windowed = (excerpt.astype(np.float64) * _hann(excerpt.shape[0])).astype(np.float32)
    return _place(windowed)


def clip_batch(track: AudioTrack, clips: Sequence[tuple[int, int]], fps: float) -> np.ndarray:
    """(B, 1, 70560, 1) float32, SoundNet's input layout: ``clip_excerpt`` of each
    (first, last) frame pair, in the order given (ask in increasing order of ``first``)."""
    out = np.zeros((len(clips), 1, AUDIO_BUFFER, 1), dtype=np.float32)  # (B, 1, N, 1)
    for i, (first, last) in enumerate(clips):
        out[i, 0, :, 0] = clip_excerpt(track, first, last, fps)
    return out


def excerpt_batch(excerpts: np.ndarray) -> torch.Tensor:
    """(B, 70560) excerpts -> SoundNet-8's input (B, 1, 70560, 1)."""
    return torch.from_numpy(np.ascontiguousarray(excerpts, np.float32))[:, None, :, None]
