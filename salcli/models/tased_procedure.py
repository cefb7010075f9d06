"""TASED-Net's published procedure (the authors' ``run_example.py``): frames in, which clip
predicts which frame, maps out. The network is ``salcli.models.tased``.

- frames: resized to 224 x 384 (aspect not kept) with OpenCV's ``resize`` at its default,
  bilinear with half-pixel centres and **no antialiasing**, on the 8-bit frame (OpenCV
  rounds the result to 8 bits), then mapped to [-1, 1] as (2 v - 255) / 255; RGB, no
  mean or std (``frame_to_tensor``). The resize always runs on the CPU, with OpenCV, so
  every device gets the same input;
- clips: 32 frames; frame t >= 31 is predicted from frames t-31 ... t (causal, the map
  is the clip's last frame's), as ViNet's (``salcli.models.vinet_procedure.LastFrameClips``).
  The first 31 frames (``--warmup``):

  - ``mirror`` (salcli's default for every family): the past before the first frame is
    the video's own frames mirrored, -p -> p;
  - ``reference`` (the authors' procedure): frame j < 31 is predicted from frames
    j ... j+31 **reversed in time**, so that j is the clip's last frame.

  Videos under 2T-1 = 63 frames get no maps at all from the authors' script. salcli
  maps every frame of them: under ``mirror`` by reflecting off both ends of the video;
  under ``reference`` by repeating the first frame at the front until there are 63
  frames (ViNet's reference rule for short videos, ``vinet_procedure.clip_indices``),
  then proceeding as above; only the real frames get maps;
- maps (``postprocess``): the model's sigmoid map floored to multiples of 1/255,
  blurred with SciPy's Gaussian (sigma 7 pixels, ``reflect`` border, truncated at 4
  sigma, float64) **at the model's size**, divided by its maximum (no min-max: the
  minimum stays above 0); then, as salcli does for every family, resized to the frame's
  size with OpenCV's bilinear ``resize`` (the authors keep 224 x 384 maps, aspect
  distorted). The float map is returned: the authors' 8-bit files (``int(255 g /
  max g)``) differ from it by less than 1/255 before the resize.
"""

from __future__ import annotations

import numpy as np
import torch

from salcli.models.tased import CLIP_LEN
from salcli.models.vinet_procedure import LastFrameClips

INPUT_H = 224  # pixels, model input height
INPUT_W = 384  # pixels, model input width
PIXEL_MAX = 255.0  # 8-bit frames and maps
BLUR_SIGMA = 7.0  # pixels at the model's size (SciPy gaussian_filter)
BLUR_MODE = "reflect"  # SciPy's default: half-sample symmetric (d c b a | a b c d)
BLUR_TRUNCATE = 4.0  # sigmas: a radius of 28 pixels, 57 taps per axis


def frame_to_tensor(
    rgb: np.ndarray,
    size: tuple[int, int] = (INPUT_H, INPUT_W),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, h, w) float32 in [-1, 1]: OpenCV's bilinear resize
    without antialiasing (rounded to 8 bits), then (2 v - 255) / 255. With ``device`` the
    result is copied there (the resize stays on the CPU, the same on every device)."""
    import cv2

    u8 = np.ascontiguousarray(rgb)
    if u8.shape[:2] != tuple(size):
        u8 = cv2.resize(u8, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(u8).permute(2, 0, 1).float()  # (3, h, w), 0 ... 255
    x = x.mul_(2.0).sub_(PIXEL_MAX).div_(PIXEL_MAX)
    return x if device is None else x.to(device)


def published_map(saliency: np.ndarray) -> np.ndarray:
    """The authors' map at the model's size, float64 in (0, 1]: the sigmoid map floored
    to 1/255 steps (in float32, as their ``int(255 s) / 255``), SciPy's Gaussian (sigma
    7, reflect), divided by its maximum; an all-zero map stays zero."""
    from scipy.ndimage import gaussian_filter

    s = np.asarray(saliency, dtype=np.float32)
    floored = np.floor(s * np.float32(PIXEL_MAX)).astype(np.float64) / PIXEL_MAX
    g = gaussian_filter(floored, sigma=BLUR_SIGMA, mode=BLUR_MODE, truncate=BLUR_TRUNCATE)
    top = float(g.max())
    return g / top if top > 0.0 else np.zeros_like(g)


def postprocess(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """A model map (h, w) -> the frame's (height, width), float32: ``published_map``,
    then OpenCV's bilinear resize to the frame (values stay in [0, 1])."""
    import cv2

    m = published_map(saliency).astype(np.float32)
    if m.shape != (height, width):
        m = cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
    return m


def clips(policy: str) -> LastFrameClips:
    """The clip schedule under a warm-up ``policy``: ViNet's, with the reversed future
    clip as the reference rule (see the module docstring)."""
    return LastFrameClips(CLIP_LEN, policy, reference="reversed")
