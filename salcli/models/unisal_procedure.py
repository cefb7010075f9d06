"""UNISAL's published procedure (the authors' ``run_inference`` through their folder demo):
frames in, the interleaved sequences, maps out. The network is ``salcli.models.unisal``.

- domains: DHF1K (default for video), Hollywood, UCFSports: recurrent; SALICON (default
  for images, and with ``weights_ft_mit1003.pth`` the MIT1003 / MIT300 setting): static,
  the recurrence bypassed;
- input size (``input_size``): chosen from the frame's size: 224x384 for a DHF1K frame of
  exactly 360x640, 224x416 for Hollywood, 256x384 for UCFSports, else the pair of
  multiples of 32 whose aspect ratio is nearest the frame's (``aspect_size``);
- frames (``frame_to_tensor``): Pillow's LANCZOS resize of the 8-bit RGB frame (stretched,
  no crop; 8-bit output), then ImageNet normalization;
- sequences: the video is cut into ``FRAME_STRIDE[domain]`` interleaved sequences (frame t
  is the next step of sequence t mod P; frames 0 ... P-1 each start theirs from the zero
  state): causal, every frame mapped, no warm-up (``FrameClips``: each frame alone; the
  states are the engine's, ``salcli.inference.recurrence``);
- maps (``postprocess``): the model's smoothed logits resized (bilinear, no antialiasing)
  to the frame, then the published map exp(log-softmax) / max = exp(z - max z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from salcli.models.unisal import DOMAINS, IMAGE_DOMAINS, SIZE_MULTIPLE
from salcli.models.vinet_procedure import IMAGENET_MEAN, IMAGENET_STD, _mean_std

DEFAULT_VIDEO_DOMAIN = "DHF1K"  # the authors' demo for any video
DEFAULT_IMAGE_DOMAIN = "SALICON"  # the authors' demo for images
# interleaved sequences (the authors' frame_modulo) of each recurrent domain
FRAME_STRIDE = {"DHF1K": 5, "Hollywood": 4, "UCFSports": 4}
DHF1K_FRAME = (360, 640)  # (H, W) of DHF1K's frames: the one size that gets 224x384
DHF1K_INPUT = (224, 384)
FIXED_INPUT = {"Hollywood": (224, 416), "UCFSports": (256, 384)}  # whatever the frame
# the aspect rule: (n1, n2) blocks of 32 pixels, each in 7 ... 13, n1 * n2 in 100 ... 120
ASPECT_BLOCKS = range(7, 14)
ASPECT_AREA = (100, 120)
INPUT_SIZE = DHF1K_INPUT  # the paper's DHF1K setting (the family's nominal size)

assert set(FRAME_STRIDE) | set(IMAGE_DOMAINS) == set(DOMAINS)


def sequences(domain: str) -> int:
    """Interleaved sequences of ``domain``: its frame stride; 1 for an image domain."""
    return FRAME_STRIDE.get(domain, 1)


def aspect_size(height: int, width: int) -> tuple[int, int]:
    """The authors' ``get_optimal_out_size``: 32 (n1, n2) whose ratio n1/n2 is nearest
    height/width, nearness min(a, b) / max(a, b), the first best in the order of n1 then
    n2, among n1, n2 in 7 ... 13 with 100 <= n1 n2 <= 120."""
    target = height / width
    best, best_score = (0, 0), -1.0
    for n1 in ASPECT_BLOCKS:
        for n2 in ASPECT_BLOCKS:
            if not ASPECT_AREA[0] <= n1 * n2 <= ASPECT_AREA[1]:
                continue
            ratio = n1 / n2
            score = min(ratio, target) / max(ratio, target)
            if score > best_score:
                best, best_score = (n1, n2), score
    return best[0] * SIZE_MULTIPLE, best[1] * SIZE_MULTIPLE


def input_size(height: int, width: int, domain: str) -> tuple[int, int]:
    """The model input (h, w) of frames of height x width in ``domain`` (see the module
    docstring)."""
    if domain == "DHF1K" and (height, width) == DHF1K_FRAME:
        return DHF1K_INPUT
    return FIXED_INPUT.get(domain) or aspect_size(height, width)


def resize_lanczos(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8, Pillow's LANCZOS resize (antialiased when
    shrinking; rounded to 8 bits), the frame stretched to ``size`` (h, w)."""
    from PIL import Image

    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    image = Image.fromarray(np.ascontiguousarray(rgb))
    return np.array(image.resize((w, h), Image.Resampling.LANCZOS))  # writable, for torch


def frame_to_tensor(
    rgb: np.ndarray, size: tuple[int, int] = INPUT_SIZE, *, device=None
) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, h, w) float32: ``resize_lanczos`` to ``size``, / 255,
    ImageNet mean and std (RGB). With ``device`` the result is moved there (the resize is
    Pillow's, on the CPU, whatever the device)."""
    x = torch.from_numpy(np.ascontiguousarray(resize_lanczos(rgb, size)))  # (h, w, 3) uint8
    device = torch.device(device) if device is not None else x.device
    x = x.to(device).permute(2, 0, 1).float().div_(255.0)  # (3, h, w)
    m, s = _mean_std(device, IMAGENET_MEAN, IMAGENET_STD)
    return (x - m) / s


def postprocess(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """Smoothed logits (h, w) -> the published map (height, width) float32 in (0, 1]:
    bilinear resize (align_corners False, no antialiasing, as their model's last resize),
    then exp(z - max z), which is their exp(log-softmax) divided by its maximum."""
    z = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))[None, None]
    if tuple(z.shape[-2:]) != (height, width):
        z = F.interpolate(z, size=(height, width), mode="bilinear", align_corners=False)
    z = z[0, 0]
    return torch.exp(z - z.max()).numpy()


POSTPROCESS_DOC = (
    "model logits resized (bilinear, no antialiasing) to the frame's size, then "
    "exp(log-softmax) / max, as the authors' published maps"
)


@dataclass(frozen=True)
class FrameClips:
    """Each frame alone (a recurrent model: the past is in its state, not in a clip);
    causal, nothing held behind."""

    length: int = 1

    @property
    def keep_behind(self) -> int:
        return 0

    def lookahead(self, t: int) -> int:
        return 0

    def plan(self, t: int, n: int | None) -> tuple[list[int], tuple[int, int]]:
        return [t], (t, t)
