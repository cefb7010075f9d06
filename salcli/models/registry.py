"""Model families: everything that differs between ViNet-like models, declared once each.

A ``ModelFamily`` carries, together (in the spirit of torchvision's weights entries):

- the clip: its length, which frames make the clip of each frame (``clips(policy)``:
  a ``salcli.inference.clips.ClipSchedule``), the warm-up policies and how far ahead a clip
  reads (latency);
- the frames in: the model's input size and the frame transform;
- the sound in (audio-visual families): the excerpt of each clip and its layout;
- the maps out: the post-processing;
- the checkpoints: how one is recognised (``detect``) and unwrapped, the variants it
  can hold (each with its module, default file and where the published file comes
  from), and the inference rewrite (BatchNorm folding).

The pipeline (``salcli.inference.predictor``) reads the family of the checkpoint it loads and
nothing else: adding a family is a model module and a declaration here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from salcli.defaults import (
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
from salcli.errors import WeightsError


@dataclass(frozen=True)
class AudioInput:
    """How an audio-visual family hears a clip."""

    rate: int  # Hz; the soundtrack is resampled to it (salcli.media.audio.AudioTrack)
    buffer: int  # samples of one clip's input
    layout: str  # the model input's layout, for the docs, e.g. "(B, 1, N, 1)"
    # (track, first frame, last frame, fps) -> (buffer,): the excerpt of a clip whose
    # audio span (salcli.inference.clips.Clip) is first ... last
    excerpt: Callable[..., np.ndarray]
    batch: Callable[[np.ndarray], torch.Tensor]  # (B, buffer) excerpts -> the model's input


@dataclass(frozen=True)
class Variant:
    """One kind of checkpoint of a family."""

    name: str  # recorded as the outputs' "model": "vinet", "bilinear", ...
    label: str  # for people: "ViNet", "AViNet (bilinear)"
    build: Callable[[], nn.Module]  # a fresh model with the checkpoint's module tree
    default_file: str | None  # the published file looked for when no weights are named
    source: str  # where the published file comes from
    hears: bool = False  # takes the soundtrack
    detects: str = ""  # what the family's ``detect`` says of its checkpoints [its name]
    fixed_input: tuple[int, int] | None = None  # the only input size it works at

    @property
    def detected_as(self) -> str:
        return self.detects or self.name


@dataclass(frozen=True)
class ModelFamily:
    name: str
    label: str
    clip_len: int  # frames per clip (T)
    latency: int  # frames after a frame that its clip reads (0: causal)
    input_size: tuple[int, int]  # (H, W) the published models take
    size_multiple: int  # an input size must be a multiple of this (pixels)
    warmups: tuple[str, ...]  # policies for the frames without a full clip; first = default
    clips: Callable[[str], object]  # policy -> salcli.inference.clips.ClipSchedule
    transform: Callable[..., torch.Tensor]  # (rgb (H, W, 3) uint8, size, device=) -> (3, h, w)
    postprocess: Callable[[np.ndarray, int, int], np.ndarray]  # raw (h, w) -> map (H, W)
    postprocess_doc: str  # what ``postprocess`` does, for the outputs' metadata
    variants: tuple[Variant, ...]
    detect: Callable[[Mapping[str, torch.Tensor]], str | None]  # state_dict -> what it is
    audio: AudioInput | None = None  # how the variants that hear take the sound
    fold: Callable[[nn.Module], nn.Module] = lambda model: model  # inference rewrite
    # (folded model, the run's dtype) -> the model with its weights stored for that dtype
    cast: Callable[[nn.Module, torch.dtype], nn.Module] = lambda model, dtype: model
    unwrap: Callable[[object], dict] | None = None  # loaded file -> state_dict [generic]
    published_unmapped: int = 0  # first frames the published procedure gives no map

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def variant_for(self, detected: str, audio: bool) -> Variant | None:
        """The variant a checkpoint ``detect`` calls ``detected`` runs as, with the sound
        (``audio``) or without; None when it cannot run so."""
        for v in self.variants:
            if v.detected_as == detected and v.hears == audio:
                return v
        return None

    def can_hear(self, detected: str) -> bool | None:
        """Whether checkpoints ``detected`` so take the sound: True, False, or None when
        they run either way (the user chooses)."""
        hears = {v.hears for v in self.variants if v.detected_as == detected}
        return hears.pop() if len(hears) == 1 else None


# --- ViNet and AViNet ----------------------------------------------------------------


def _last_frame_clips(policy: str):
    from salcli.inference.clips import LastFrameClips

    return LastFrameClips(CLIP_LEN, policy)


def _vinet_transform(rgb: np.ndarray, size: tuple[int, int], device=None) -> torch.Tensor:
    from salcli.models.vinet_procedure import frame_to_tensor

    return frame_to_tensor(rgb, size, device=device)


def _vinet_postprocess(raw: np.ndarray, height: int, width: int) -> np.ndarray:
    from salcli.models.vinet_procedure import postprocess

    return postprocess(raw, height, width)


def _soundnet_excerpt(track, first: int, last: int, fps: float) -> np.ndarray:
    from salcli.media.audio import clip_excerpt

    return clip_excerpt(track, first, last, fps)


def _soundnet_batch(excerpts: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(excerpts, np.float32))[:, None, :, None]


def _detect_s3d(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    from salcli.models.checkpoints import detect_arch

    try:
        return detect_arch(state_dict)
    except WeightsError:
        return None


def _fold(model: nn.Module) -> nn.Module:
    from salcli.models.vinet import fold_batchnorm

    return fold_batchnorm(model)


def _cast(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    from salcli.models.vinet import cast_for_precision

    return cast_for_precision(model, dtype)


def _build(arch: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from salcli.models.vinet import build_model

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
    cast=_cast,
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
            hears=True,
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

# --- STAViS ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _CentredClips:
    """STAViS: frame t from frames t-8 ... t+7 (salcli.models.stavis_procedure.clip_plan)."""

    policy: str

    @property
    def length(self) -> int:
        from salcli.models.stavis import CLIP_LEN

        return CLIP_LEN

    @property
    def keep_behind(self) -> int:
        from salcli.models.stavis import TARGET_INDEX

        return TARGET_INDEX

    def lookahead(self, t: int) -> int:
        from salcli.models.stavis import CLIP_LEN, LOOK_AHEAD, TARGET_INDEX

        # the end's loop padding needs to know whether t+7 exists; for frames 0-7 the
        # mirror warm-up reaches frame 8 - t, the reference one frame 8's clip (0 ... 15)
        if t >= TARGET_INDEX:
            return LOOK_AHEAD
        if self.policy == "reference":
            return CLIP_LEN - 1 - t
        return max(LOOK_AHEAD, TARGET_INDEX - t)

    def plan(self, t: int, n: int | None) -> tuple[list[int], tuple[int, int]]:
        from salcli.models.stavis_procedure import clip_plan

        # n None: at least t + 1 + lookahead(t) frames, which no clip of t looks past
        plan = clip_plan(t, t + 1 + self.lookahead(t) if n is None else n, self.policy)
        return list(plan.indices), (plan.audio_first, plan.audio_last)


def _stavis_clips(policy: str):
    return _CentredClips(policy)


def _stavis_transform(rgb: np.ndarray, size: tuple[int, int], device=None) -> torch.Tensor:
    from salcli.models.stavis_procedure import frame_to_tensor

    x = frame_to_tensor(rgb)  # (3, 112, 112)
    return x if device is None else x.to(device)


def _stavis_postprocess(raw: np.ndarray, height: int, width: int) -> np.ndarray:
    from salcli.models.stavis_procedure import postprocess

    return postprocess(raw, height, width)


def _stavis_excerpt(track, first: int, last: int, fps: float) -> np.ndarray:
    from salcli.models.stavis_procedure import ClipPlan, clip_audio

    return clip_audio(track, ClipPlan(first, (), first, last), fps)


def _stavis_batch(excerpts: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(excerpts, np.float32))[:, None, None, :]


def _stavis_detect(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    from salcli.models.stavis import recognize

    return recognize(state_dict)


def _stavis_unwrap(obj: object) -> dict:
    from salcli.models.stavis import unwrap_checkpoint

    return unwrap_checkpoint(obj)


def _stavis_fold(model: nn.Module) -> nn.Module:
    from salcli.models.stavis import fold_batchnorm

    return fold_batchnorm(model)


def _stavis_build(audiovisual: bool) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from salcli.models.stavis import Stavis

        return Stavis(audiovisual=audiovisual)

    return build


_STAVIS_SIZE = (112, 112)  # salcli.models.stavis.INPUT_SIZE, square
_STAVIS_ARCHIVE = "pretrained_models.tar.gz (linked from http://cvsp.cs.ntua.gr/research/stavis/)"

STAVIS = ModelFamily(
    name="stavis",
    label="STAViS",
    clip_len=16,
    latency=7,
    input_size=_STAVIS_SIZE,
    size_multiple=16,
    warmups=WARMUP_POLICIES,
    clips=_stavis_clips,
    transform=_stavis_transform,
    postprocess=_stavis_postprocess,
    postprocess_doc=(
        "model map min-max normalized, 13x13 Gaussian blur (sigma 2, symmetric borders) at "
        "112x112, resized to the frame's size with MATLAB's bicubic imresize, min-max "
        "normalized to [0, 1] per frame"
    ),
    variants=(
        Variant(
            "stavis-visual",
            "STAViS (visual)",
            _stavis_build(False),
            None,
            f"visual_split{{1,2,3}}_save_60.pth in {_STAVIS_ARCHIVE}",
            detects="stavis",
            fixed_input=_STAVIS_SIZE,
        ),
        Variant(
            "stavis-audiovisual",
            "STAViS (audio-visual)",
            _stavis_build(True),
            None,
            f"audiovisual_split{{1,2,3}}_save_60.pth in {_STAVIS_ARCHIVE}",
            hears=True,
            detects="stavis",
            fixed_input=_STAVIS_SIZE,
        ),
    ),  # fmt: skip
    detect=_stavis_detect,
    audio=AudioInput(
        rate=AUDIO_RATE,
        buffer=35_280,  # salcli.models.stavis.AUDIO_BUFFER
        layout="(B, 1, 1, N)",
        excerpt=_stavis_excerpt,
        batch=_stavis_batch,
    ),
    fold=_stavis_fold,
    unwrap=_stavis_unwrap,
    published_unmapped=8,  # frames 1-8: their clips start at frame 1 and map frame 9
)

FAMILIES: tuple[ModelFamily, ...] = (VINET, AVINET, STAVIS)


def family_of(variant_name: str) -> tuple[ModelFamily, Variant]:
    """The family and variant called ``variant_name`` ("vinet", "bilinear", ...)."""
    for fam in FAMILIES:
        for v in fam.variants:
            if v.name == variant_name:
                return fam, v
    raise KeyError(variant_name)


def recognise(obj: object) -> tuple[ModelFamily, str, dict] | None:
    """(family, what its ``detect`` calls it, state_dict) of a loaded checkpoint file (a
    state_dict or a wrapper), or None when no family takes it."""
    from salcli.models.checkpoints import unwrap_state_dict

    for fam in FAMILIES:
        try:
            sd = fam.unwrap(obj) if fam.unwrap is not None else unwrap_state_dict(obj)
        except WeightsError:
            continue
        detected = fam.detect(sd)
        if detected is not None:
            return fam, detected, sd
    return None


def load_checkpoint(path: str | Path, *, audio: bool) -> tuple[ModelFamily, Variant, nn.Module]:
    """Read ``path`` (``torch.load(weights_only=True)``), recognise its family, choose the
    variant that runs with the sound (``audio``) or without, build it and load the file
    strictly. One-line ``WeightsError`` for anything else."""
    from salcli.models.checkpoints import (
        check_keys,
        describe_state_dict,
        load_file,
        unwrap_state_dict,
    )

    obj = load_file(path)
    found = recognise(obj)
    if found is None:
        raise WeightsError(f"{path}: {describe_state_dict(unwrap_state_dict(obj))}")
    fam, detected, sd = found
    variant = fam.variant_for(detected, audio)
    if variant is None:
        label = next(v.label for v in fam.variants if v.detected_as == detected)
        if audio:
            raise WeightsError(f"{path}: {label} is visual only; sound needs an "
                               "audio-visual checkpoint")  # fmt: skip
        raise WeightsError(f"{path}: the {label} checkpoint listens to the soundtrack: "
                           "ask for the sound (--audio)")  # fmt: skip
    model = variant.build()
    check_keys(model, sd, path)
    model.load_state_dict(sd, strict=True)
    return fam, variant, model.eval()


def model_family(model: nn.Module) -> tuple[ModelFamily, Variant]:
    """The family and variant of a model built by salcli (for models passed in as they
    are), from its ``arch`` / ``fusion`` / ``audiovisual`` attributes."""
    arch = getattr(model, "arch", None)
    if arch == "stavis":
        audiovisual = bool(getattr(model, "audiovisual", True))
        return STAVIS, STAVIS.variant("stavis-audiovisual" if audiovisual else "stavis-visual")
    return family_of(getattr(model, "fusion", None) or "vinet")
