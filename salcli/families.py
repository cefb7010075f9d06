"""Model families: everything that differs between ViNet-like models, declared once each.

A ``ModelFamily`` carries, together (in the spirit of torchvision's weights entries):

- the clip: its length, which frames make the clip of each frame (``clips(policy)``:
  a ``salcli.windowing.ClipSchedule``), the warm-up policies and how far ahead a clip
  reads (latency);
- the frames in: the model's input size and the frame transform;
- the sound in (audio-visual families): the excerpt of each clip and its layout;
- the maps out: the post-processing;
- the checkpoints: how one is recognised (``detect``) and unwrapped, the variants it
  can hold (each with its module, default file and where the published file comes
  from), and the inference rewrite (BatchNorm folding).

The pipeline (``salcli.predict``) reads the family of the checkpoint it loads and
nothing else: adding a family is a model module and a declaration here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .defaults import (
    AUDIO_BUFFER,
    AUDIO_RATE,
    BLUR_KSIZE,
    CLIP_LEN,
    DEFAULT_FUSION,
    DEFAULT_WEIGHTS,
    FUSIONS,
    INPUT_H,
    INPUT_W,
    WARMUP_POLICIES,
)
from .errors import WeightsError


@dataclass(frozen=True)
class AudioInput:
    """How an audio-visual family hears a clip."""

    rate: int  # Hz; the soundtrack is resampled to it (salcli.audio.AudioTrack)
    buffer: int  # samples of one clip's input
    layout: str  # the model input's layout, for the docs, e.g. "(B, 1, N, 1)"
    excerpt: Callable[..., np.ndarray]  # (track, clip's frame indices, fps) -> (buffer,)
    batch: Callable[[np.ndarray], torch.Tensor]  # (B, buffer) excerpts -> the model's input


@dataclass(frozen=True)
class Variant:
    """One kind of checkpoint of a family."""

    name: str  # recorded as the outputs' "model": "vinet", "bilinear", ...
    label: str  # for people: "ViNet", "AViNet (bilinear)"
    build: Callable[[], nn.Module]  # a fresh model with the checkpoint's module tree
    default_file: str  # the published file looked for when no weights are named
    source: str  # where the published file comes from
    fixed_input: tuple[int, int] | None = None  # the only input size it works at


@dataclass(frozen=True)
class ModelFamily:
    name: str
    label: str
    clip_len: int  # frames per clip (T)
    latency: int  # frames after a frame that its clip reads (0: causal)
    input_size: tuple[int, int]  # (H, W) the published models take
    size_multiple: int  # an input size must be a multiple of this (pixels)
    warmups: tuple[str, ...]  # policies for the frames without a full clip; first = default
    clips: Callable[[str], object]  # policy -> salcli.windowing.ClipSchedule
    transform: Callable[..., torch.Tensor]  # (rgb (H, W, 3) uint8, size, device=) -> (3, h, w)
    postprocess: Callable[[np.ndarray, int, int], np.ndarray]  # raw (h, w) -> map (H, W)
    postprocess_doc: str  # what ``postprocess`` does, for the outputs' metadata
    variants: tuple[Variant, ...]
    detect: Callable[[Mapping[str, torch.Tensor]], str | None]  # state_dict -> variant name
    audio: AudioInput | None = None
    fold: Callable[[nn.Module], nn.Module] = lambda model: model  # inference rewrite

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    @property
    def default_variant(self) -> Variant:
        return self.variants[0]


# --- ViNet and AViNet ----------------------------------------------------------------


def _last_frame_clips(policy: str):
    from .windowing import LastFrameClips

    return LastFrameClips(CLIP_LEN, policy)


def _vinet_transform(rgb: np.ndarray, size: tuple[int, int], device=None) -> torch.Tensor:
    from .preprocess import frame_to_tensor

    return frame_to_tensor(rgb, size, device=device)


def _vinet_postprocess(raw: np.ndarray, height: int, width: int) -> np.ndarray:
    from .preprocess import postprocess

    return postprocess(raw, height, width)


def _soundnet_excerpt(track, indices: Sequence[int], fps: float) -> np.ndarray:
    from .audio import clip_excerpt
    from .windowing import clip_span

    return clip_excerpt(track, *clip_span(list(indices)), fps)


def _soundnet_batch(excerpts: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(excerpts, np.float32))[:, None, :, None]


def _detect_s3d(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    from .weights import detect_arch

    try:
        return detect_arch(state_dict)
    except WeightsError:
        return None


def _fold(model: nn.Module) -> nn.Module:
    from .model import fold_batchnorm

    return fold_batchnorm(model)


def _build(arch: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from .model import build_model

        return build_model(arch)

    return build


_VINET_SOURCE = (
    "the zip behind the 'pretrained models' link in the README of github.com/samyak0210/ViNet"
)
_VINET_POSTPROCESS = (
    f"model map resized (bilinear) to the frame's size, {BLUR_KSIZE}x{BLUR_KSIZE} Gaussian "
    "blur (sigma 2.0), min-max normalized to [0, 1] per frame"
)
_VINET_COMMON = dict(
    clip_len=CLIP_LEN,
    latency=0,
    input_size=(INPUT_H, INPUT_W),
    size_multiple=32,
    warmups=WARMUP_POLICIES,
    clips=_last_frame_clips,
    transform=_vinet_transform,
    postprocess=_vinet_postprocess,
    postprocess_doc=_VINET_POSTPROCESS,
    fold=_fold,
)

VINET = ModelFamily(
    name="vinet",
    label="ViNet",
    variants=(
        Variant(
            "vinet",
            "ViNet",
            _build("vinet"),
            DEFAULT_WEIGHTS["vinet"],
            f"ViNet_DHF1K.pt, in {_VINET_SOURCE}",
        ),
    ),  # fmt: skip
    detect=lambda sd: "vinet" if _detect_s3d(sd) == "vinet" else None,
    **_VINET_COMMON,
)

AVINET = ModelFamily(
    name="avinet",
    label="AViNet",
    variants=tuple(
        Variant(
            fusion,
            f"AViNet ({fusion})",
            _build(fusion),
            DEFAULT_WEIGHTS[fusion],
            "no published AViNet (concat) weights exist: train them with salcli"
            if fusion == "concat"
            else f"the AViNet ({fusion}) fine-tunes, in {_VINET_SOURCE}",
            fixed_input=(INPUT_H, INPUT_W) if fusion == "bilinear" else None,
        )
        for fusion in (DEFAULT_FUSION, *(f for f in FUSIONS if f != DEFAULT_FUSION))
    ),
    detect=lambda sd: found if (found := _detect_s3d(sd)) in FUSIONS else None,
    audio=AudioInput(
        rate=AUDIO_RATE,
        buffer=AUDIO_BUFFER,
        layout="(B, 1, N, 1)",
        excerpt=_soundnet_excerpt,
        batch=_soundnet_batch,
    ),
    **_VINET_COMMON,
)

FAMILIES: tuple[ModelFamily, ...] = (VINET, AVINET)


def family_of(variant_name: str) -> tuple[ModelFamily, Variant]:
    """The family and variant called ``variant_name`` ("vinet", "bilinear", ...)."""
    for fam in FAMILIES:
        for v in fam.variants:
            if v.name == variant_name:
                return fam, v
    raise KeyError(variant_name)


def recognise(state_dict: Mapping[str, torch.Tensor]) -> tuple[ModelFamily, Variant] | None:
    """The family and variant whose checkpoints have these keys, or None."""
    for fam in FAMILIES:
        name = fam.detect(state_dict)
        if name is not None:
            return fam, fam.variant(name)
    return None


def load_checkpoint(path: str | Path) -> tuple[ModelFamily, Variant, nn.Module]:
    """Read ``path`` (``torch.load(weights_only=True)``), recognise its family, build the
    model and load the file strictly. One-line ``WeightsError`` for anything else."""
    from .weights import check_keys, describe_state_dict, read_checkpoint

    sd = read_checkpoint(path)
    found = recognise(sd)
    if found is None:
        raise WeightsError(f"{path}: {describe_state_dict(sd)}")
    fam, variant = found
    model = variant.build()
    check_keys(model, sd, path)
    model.load_state_dict(sd, strict=True)
    return fam, variant, model.eval()


def model_family(model: nn.Module) -> tuple[ModelFamily, Variant]:
    """The family and variant of a model built by salcli (for models passed in as they
    are): its ``arch`` / ``fusion`` attributes."""
    name = getattr(model, "fusion", None) or getattr(model, "family_variant", None) or "vinet"
    return family_of(name)
