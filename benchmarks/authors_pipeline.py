"""A re-enactment of the authors' ViNet inference procedure, for parity tests and benchmarks.

Written from the facts in ``shared/docs/conventions.md`` (not from the authors' code):

1. the video is extracted to JPEG files, one per frame (``cv2.imwrite``, quality 95);
2. each JPEG is read back with PIL, resized with ``Image.resize((W, H), BILINEAR)``
   (PIL's bilinear is antialiased when shrinking, as torchvision's ``Resize`` on PIL
   images), turned into a tensor (``ToTensor``: [0, 1], (3, H, W)) and normalized with
   the ImageNet mean and std;
3. frames are held in a sliding list of T = 32 tensors; once T frames are in, the clip
   (1, 3, T, H, W) predicts its last frame, one fp32 clip per frame at batch 1; the first
   T-1 frames use the *reference* warm-up: frame j < T-1 is predicted from frames
   j ... j+T-1 reversed in time (the flipped clip, run while the list holds frames
   j ... j+T-1); a video shorter than 2T-1 frames is first padded at the front by
   repeating its first frame until it has 2T-1 frames (only real frames get maps);
4. each (224, 384) map is resized to the frame's size (``cv2.resize``, bilinear),
   blurred (``cv2.GaussianBlur``, 11x11, sigma 0), min-max normalized and stored as an
   8-bit image (round(255 x)).

``procedure="vinet-s"`` re-enacts the ViNet-S scripts (``shared/docs/vinet_pp.conventions.md``)
instead: the same frames in and maps out but for two steps, (3) frame t is predicted from
frames t-T+1 ... t, positions before the video reading frame 0 (no flipped clips, no
padding), and (4) the 8-bit maps are round(255 x + 0.5), clamped to 255.
``procedure="vinet-a"``, the ViNet-A scripts: (2) frames resized to 256x456 and normalized
with mean 0.45 and std 0.225; (3) frame t from the odd positions t-31, t-29, ..., t+31 of
the window t-32 ... t+31, clamped to the video; (4) as ViNet-S's, but the map is resized
to the frame as salcli's are (the authors keep 256x456 on the visual sets), so that the
two can be compared frame by frame.
``procedure="vinet-e"`` with ``model=(ViNet-S, ViNet-A)``, the ViNet-E script: each model
on its own frames and clip of frame t (as above), ViNet-S's raw map resized bicubically
to ViNet-A's 256x456, the two averaged, then (4) as ViNet-A's.

Needs Pillow (``pip install pillow``), which salcli itself does not use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from salcli.media.decode import open_video
from salcli.models.vinet_procedure import (
    BLUR_KSIZE,
    CLIP_LEN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_H,
    INPUT_W,
)

JPEG_QUALITY = 95  # cv2.IMWRITE_JPEG_QUALITY of the extracted frames
FRAME_NAME = "{:05d}.{}"  # 1-based frame files, as img_00001.jpg ... in the AV datasets
MAP_NAME = "{:05d}.png"


@dataclass
class AuthorsRun:
    """Outputs and timings of one re-enacted run."""

    maps: np.ndarray  # (N, H, W) uint8, the saved 8-bit maps
    extract_s: float = 0.0  # seconds: video -> JPEG files
    predict_s: float = 0.0  # seconds: JPEG files -> map files (the model phase)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def seconds_per_map(self) -> float:
        return self.predict_s / max(1, len(self.maps))


def extract_frames(video: str | Path, folder: str | Path, frame_format: str = "jpg") -> list[Path]:
    """Decode every frame of ``video`` into ``folder`` as 1-based JPEG files (quality 95);
    ``frame_format="png"`` writes lossless files instead (to tell the JPEG loss apart)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with open_video(video) as reader:
        for frame in reader:
            path = folder / FRAME_NAME.format(frame.index + 1, frame_format)
            bgr = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
            params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if frame_format == "jpg" else []
            if not cv2.imwrite(str(path), bgr, params):
                raise OSError(f"could not write {path}")
            paths.append(path)
    return paths


def load_frame(
    path: str | Path,
    size: tuple[int, int] = (INPUT_H, INPUT_W),
    normalization: tuple[Sequence[float], Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
) -> tuple[torch.Tensor, tuple[int, int]]:
    """A JPEG file -> ((3, h, w) float32, (H, W) of the file): PIL bilinear resize,
    ToTensor, Normalize with ``normalization`` (mean, std)."""
    from PIL import Image

    with Image.open(path) as im:
        img = im.convert("RGB")
    frame_size = (img.height, img.width)
    img = img.resize((size[1], size[0]), Image.BILINEAR)  # PIL takes (width, height)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(normalization[0]).view(3, 1, 1)
    std = torch.tensor(normalization[1]).view(3, 1, 1)
    return (x - mean) / std, frame_size  # (3, h, w)


def reference_schedule(n: int, clip_len: int = CLIP_LEN) -> Iterator[tuple[int, list[int], bool]]:
    """(frame to predict, frame indices the sliding list holds, flipped?) in run order.

    Mirrors the authors' loop over a (padded) frame list: after reading padded frame i
    (i >= T-1) the list holds frames i-T+1 ... i; it predicts frame i with the clip as
    is and, while i < 2T-2, frame i-T+1 with the clip flipped in time. Indices are into
    the real video (the front padding repeats frame 0).
    """
    T = clip_len
    pad = max(0, 2 * T - 1 - n)
    for i in range(T - 1, n + pad):
        held = [max(0, j - pad) for j in range(i - T + 1, i + 1)]
        if i - pad >= 0:
            yield i - pad, held, False
        if i < 2 * T - 2 and i - T + 1 - pad >= 0:
            yield i - T + 1 - pad, held, True


def causal_schedule(n: int, clip_len: int = CLIP_LEN) -> Iterator[tuple[int, list[int], bool]]:
    """ViNet-S's loop, as ``reference_schedule`` gives it: frame t from frames t-T+1 ... t,
    indices below 0 clamped to 0 (never flipped)."""
    for t in range(n):
        yield t, [max(0, j) for j in range(t - clip_len + 1, t + 1)], False


def window_schedule(n: int, clip_len: int = CLIP_LEN) -> Iterator[tuple[int, list[int], bool]]:
    """ViNet-A's loop: frame t from the odd positions of the window t-T ... t+T-1, each
    clamped to [0, n-1] (never flipped)."""
    for t in range(n):
        yield t, [min(max(j, 0), n - 1) for j in range(t - clip_len + 1, t + clip_len, 2)], False


SCHEDULES = {"vinet": reference_schedule, "vinet-s": causal_schedule, "vinet-a": window_schedule}
# 8-bit maps: ViNet's round(255 x); the ViNet++ scripts' round(255 x + 0.5)
HALF_LEVEL_UP = {"vinet": 0.0, "vinet-s": 0.5, "vinet-a": 0.5, "vinet-e": 0.5}
# (mean, std) of each procedure's frame normalization, RGB
NORMALIZATION = {
    "vinet": (IMAGENET_MEAN, IMAGENET_STD),
    "vinet-s": (IMAGENET_MEAN, IMAGENET_STD),
    "vinet-a": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
}


def postprocess_u8(saliency: np.ndarray, height: int, width: int, up: float = 0.0) -> np.ndarray:
    """(h, w) model map -> (height, width) uint8: cv2 resize, 11x11 blur, min-max, 8 bits
    (round(255 x + up))."""
    m = cv2.resize(
        np.asarray(saliency, np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    )
    m = cv2.GaussianBlur(m, (BLUR_KSIZE, BLUR_KSIZE), 0)
    lo, hi = float(m.min()), float(m.max())
    m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    return np.clip(np.rint(m * 255.0 + up), 0, 255).astype(np.uint8)


class _Loader:
    """One procedure's frames as its script reads them: each JPEG once, kept while a later
    clip still holds it (the sliding list)."""

    def __init__(self, frames: list[Path], size: tuple[int, int], procedure: str) -> None:
        self.frames, self.size, self.normalization = frames, size, NORMALIZATION[procedure]
        self.cache: dict[int, torch.Tensor] = {}  # frame index -> (3, h, w)
        self.sizes: dict[int, tuple[int, int]] = {}  # frame index -> (H, W) of the file

    def clip(self, held: list[int], flipped: bool) -> torch.Tensor:
        for j in held:
            if j not in self.cache:
                self.cache[j], self.sizes[j] = load_frame(
                    self.frames[j], self.size, self.normalization
                )
        for j in [j for j in self.cache if j < min(held)]:
            del self.cache[j]
        clip = torch.stack([self.cache[j] for j in held], dim=1)[None]  # (1, 3, T, h, w)
        return torch.flip(clip, dims=[2]) if flipped else clip


# ViNet-E's members (ViNet-S, ViNet-A) and the size their maps are averaged at (ViNet-A's)
ENSEMBLE = ("vinet-s", "vinet-a")
ENSEMBLE_SIZE = (256, 456)  # (H, W)


def _ensemble_maps(models: Sequence[nn.Module], frames: list[Path], clip_len: int):
    """(frame t, ViNet-E's raw (256, 456) map, frame size) in frame order: both members
    on their own clip of frame t, ViNet-S's map bicubic to 256x456, the two averaged."""
    n = len(frames)
    sizes = {"vinet-s": (INPUT_H, INPUT_W), "vinet-a": ENSEMBLE_SIZE}
    loaders = [_Loader(frames, sizes[p], p) for p in ENSEMBLE]
    runs = [SCHEDULES[p](n, clip_len) for p in ENSEMBLE]
    for (t, s_held, _), (t_a, a_held, _) in zip(*runs, strict=True):
        assert t == t_a, "both loaders give the same frame t"
        with torch.no_grad():
            s = models[0](loaders[0].clip(s_held, False))[:, None]  # (1, 1, 224, 384)
            a = models[1](loaders[1].clip(a_held, False))[0]  # (256, 456)
        s = torch.nn.functional.interpolate(
            s, size=ENSEMBLE_SIZE, mode="bicubic", align_corners=False
        )[0, 0]
        yield t, torch.stack([a, s]).mean(dim=0).numpy(), loaders[0].sizes[t]


def _single_maps(model: nn.Module, frames: list[Path], input_size, clip_len: int, procedure: str):
    """(frame t, the model's raw map, frame size) in the script's run order."""
    loader = _Loader(frames, input_size, procedure)
    for t, held, flipped in SCHEDULES[procedure](len(frames), clip_len):
        clip = loader.clip(held, flipped)
        with torch.no_grad():
            yield t, model(clip)[0].numpy(), loader.sizes[t]  # (h, w)


def predict_folder(
    model: nn.Module | Sequence[nn.Module],
    frames: list[Path],
    out_dir: str | Path | None = None,
    *,
    input_size: tuple[int, int] = (INPUT_H, INPUT_W),
    clip_len: int = CLIP_LEN,
    procedure: str = "vinet",
) -> np.ndarray:
    """Maps of a folder of JPEG frames, the authors' way: (N, H, W) uint8, in frame order.

    Each JPEG is read once (by each member of ViNet-E, whose ``model`` is the pair
    (ViNet-S, ViNet-A)); one fp32 clip per map at batch 1. With ``out_dir`` the maps are
    also saved there as 1-based PNG files.
    """
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if procedure == "vinet-e":
        raw = _ensemble_maps([m.eval() for m in model], frames, clip_len)
    else:
        raw = _single_maps(model.eval(), frames, input_size, clip_len, procedure)
    up = HALF_LEVEL_UP[procedure]
    maps: list[np.ndarray | None] = [None] * len(frames)
    for t, saliency, size in raw:
        u8 = postprocess_u8(saliency, *size, up)
        if out is not None:
            cv2.imwrite(str(out / MAP_NAME.format(t + 1)), u8)
        maps[t] = u8
    return np.stack(maps)


def run(
    model: nn.Module | Sequence[nn.Module],
    video: str | Path,
    workdir: str | Path,
    *,
    input_size: tuple[int, int] = (INPUT_H, INPUT_W),
    save_maps: bool = True,
    frame_format: str = "jpg",
    procedure: str = "vinet",
) -> AuthorsRun:
    """Extract ``video`` to JPEGs under ``workdir``, then predict them; timed separately."""
    return timed_run(
        video,
        workdir,
        frame_format,
        save_maps,
        lambda frames, out: predict_folder(
            model, frames, out, input_size=input_size, procedure=procedure
        ),
    )


def timed_run(
    video: str | Path,
    workdir: str | Path,
    frame_format: str,
    save_maps: bool,
    predict: Callable[[list[Path], Path | None], np.ndarray],
) -> AuthorsRun:
    """``video`` extracted to ``frame_format`` files under ``workdir``/frames, then
    ``predict(frame files, map folder or None)`` -> (N, H, W) uint8; each phase timed."""
    workdir = Path(workdir)
    started = time.perf_counter()
    frames = extract_frames(video, workdir / "frames", frame_format)
    extracted = time.perf_counter()
    maps = predict(frames, workdir / "maps" if save_maps else None)
    done = time.perf_counter()
    return AuthorsRun(maps=maps, extract_s=extracted - started, predict_s=done - extracted)
