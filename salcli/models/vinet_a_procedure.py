"""ViNet-A's published procedure (the authors' DHF1K inference script): frames in, which
clip predicts which frame, maps out. The network is ``salcli.models.vinet_a``.

- frames: resized to 256 x 456 (aspect not kept), bilinear and antialiased when shrinking
  with the result rounded to 8 bits, as Pillow's resize in their loader; scaled to [0, 1]
  and normalized with mean 0.45 and std 0.225 for every channel, RGB
  (``frame_to_tensor``);
- clips: ViNet-A is **not causal**. Frame t is the centre of the 64-frame window
  t-32 ... t+31, of which the clip keeps the **odd positions**: frames t-31, t-29, ...,
  t-1, t+1, ..., t+31, 32 frames, 16 before t and 16 after it. **Frame t itself is not
  in its own clip.** The slow pathway sees clip positions 0, 4, ..., 28: frames t-31,
  t-23, ..., t+25. A stream must be read 31 frames ahead of the frame it maps
  (``WindowClips``, ``clip_indices``). Near either end of the video the window reaches
  past it; two policies (``--warmup``):

  - ``mirror`` (salcli's default, as for the other families): a position before the
    first frame reads its mirror image, -p -> p (frame 0 is not repeated), and a position
    past the last frame likewise, n-1+p -> n-1-p; in videos shorter than the window the
    positions keep reflecting off both ends. The clip keeps 32 frames of motion around
    t wherever the video has them.
  - ``reference`` (the authors' procedure, for comparing with published numbers):
    positions are clamped to [0, N-1], copies of the first frame near the start and of
    the last near the end. A 1-frame video gives 32 copies of it.

  Either way every frame gets exactly one map: the published procedure maps every frame
  of a video, so none is left without one (``ModelFamily.published_unmapped`` is 0);
- maps: as for every salcli family, the model's 256 x 456 map is resized to the frame
  (bilinear), blurred with an 11 x 11 Gaussian (sigma 2) and min-max normalized
  (``postprocess``, ViNet's). **The authors score ViNet-A's maps at 256 x 456** on the
  visual datasets (DHF1K, Hollywood-2, UCF-Sports: their loader resizes the ground truth
  to 256 x 456 and the blur runs there); salcli's maps at the frame's size are a step of
  salcli's own. Their audio-visual loaders keep the ground truth's stored size.

Only the visual loaders' clip is implemented: the authors' ETMD_av test loader keeps the
even positions of the window instead (frame t included, 15 frames after it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from salcli.defaults import WARMUP_POLICIES
from salcli.models import vinet_procedure
from salcli.models.vinet_a import CLIP_LEN

INPUT_H = 256  # pixels, model input height
INPUT_W = 456  # pixels, model input width
MEAN = (0.45, 0.45, 0.45)  # RGB, on [0, 1] values (PySlowFast's defaults)
STD = (0.225, 0.225, 0.225)  # RGB
WINDOW = 2 * CLIP_LEN  # 64 frames: t-32 ... t+31, of which the odd positions are the clip
BEFORE = WINDOW // 2  # 32: the window starts 32 frames before t
KEEP_BEHIND = BEFORE - 1  # 31: the oldest frame of a clip is t-31
LOOK_AHEAD = WINDOW - BEFORE - 1  # 31: the newest is t+31

postprocess = vinet_procedure.postprocess  # model map -> the frame's size, blurred, [0, 1]


def frame_to_tensor(
    rgb: np.ndarray,
    size: tuple[int, int] = (INPUT_H, INPUT_W),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, 256, 456) float32: ViNet's antialiased bilinear resize
    rounded to 8 bits (``vinet_procedure.frame_to_tensor``), normalized with ViNet-A's
    mean 0.45 and std 0.225. With ``device`` the frame is resized there."""
    return vinet_procedure.frame_to_tensor(rgb, size, device=device, mean=MEAN, std=STD)


def _mirror(p: int, n: int | None) -> int:
    """Frame read at position p of an n-frame video (n None: longer than p), mirrored
    about the first and the last frame without repeating them (period 2(n-1))."""
    if p < 0:
        p = -p
    if n is None or p < n:
        return p
    if n == 1:
        return 0
    p %= 2 * (n - 1)
    return p if p < n else 2 * (n - 1) - p


def clip_indices(t: int, n: int | None, policy: str = "mirror") -> list[int]:
    """The frames of the clip that predicts frame ``t``, in clip order: the odd positions
    t-31, t-29, ..., t+31 of the window t-32 ... t+31, each past an end of the video
    mirrored or clamped (``policy``: see the module docstring).

    ``n`` is the video's number of frames, or None while it is not known; the video then
    has at least t + 32 frames (``WindowClips.lookahead``), and nothing past its end is
    read.
    """
    if policy not in WARMUP_POLICIES:
        raise ValueError(f"unknown warm-up policy {policy!r}")
    if n is not None and not 0 <= t < n:
        raise IndexError(f"frame {t} out of range for {n} frames")
    positions = range(t - BEFORE + 1, t + LOOK_AHEAD + 1, 2)  # t-31, t-29, ..., t+31
    if policy == "mirror":
        return [_mirror(p, n) for p in positions]
    last = n - 1 if n is not None else t + LOOK_AHEAD
    return [min(max(p, 0), last) for p in positions]


@dataclass(frozen=True)
class WindowClips:
    """ViNet-A's clips as a ``salcli.inference.clips.ClipSchedule``: frame t from the odd
    positions of the window t-32 ... t+31 (``clip_indices``), under ``policy`` past the
    video's ends. No sound: the audio span is the clip's first to last frame."""

    policy: str = "mirror"
    length: int = CLIP_LEN

    def __post_init__(self) -> None:
        if self.policy not in WARMUP_POLICIES:
            raise ValueError(f"unknown warm-up policy {self.policy!r}")

    @property
    def keep_behind(self) -> int:
        # a clip reads back to t-31; mirrored at the end, to 2(n-1) - (t+31) >= t-31
        return KEEP_BEHIND

    def lookahead(self, t: int) -> int:
        # t+31, which also decides the end's mirror or clamp; mirrored at the start the
        # clip reads frames up to 31 - t <= t+31
        return LOOK_AHEAD

    def plan(self, t: int, n: int | None) -> tuple[list[int], tuple[int, int]]:
        indices = clip_indices(t, n, self.policy)
        return indices, (min(indices), max(indices))
