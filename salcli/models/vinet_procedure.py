"""Frames in, maps out: the pre- and post-processing of the published pipeline."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from salcli.defaults import BLUR_KSIZE, IMAGENET_MEAN, IMAGENET_STD, INPUT_H, INPUT_W

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


@functools.lru_cache(maxsize=8)
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalization constants (3, 1, 1), once per device."""
    return _MEAN.to(device), _STD.to(device)


def frame_to_tensor(
    rgb: np.ndarray,
    size: tuple[int, int] = (INPUT_H, INPUT_W),
    *,
    round_to_uint8: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, h, w) float32, resized and ImageNet-normalized.

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
    mean, std = _mean_std(device)
    return (x - mean) / std  # (3, h, w)


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
