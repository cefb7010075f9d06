"""Every model family and every published checkpoint, declared once.

- ``ModelFamily``: everything that differs between families, in the spirit of
  torchvision's weights entries: the clip (its length and ``clips(policy)``, the
  family's ``salcli.inference.clips.ClipSchedule``), the warm-up policies, the frames in
  (input size, transform), the sound in (audio-visual families: ``AudioInput``), the maps
  out (post-processing), how a checkpoint is recognised (``detect``) and unwrapped, the
  inference rewrite (BatchNorm folding) and the weight cast for a precision; its
  ``variants``, each with its module, the file used when no weights are named, and what
  its checkpoints hold (``arch``).
- ``Part``: a checkpoint of a part of a model, not a saliency model (SoundNet-8, S3D):
  what training starts from.
- ``Checkpoint``: one declaration per published file: its registry name, file name,
  what it holds, what it was trained on, where it comes from (the page, direct URLs and
  SHA-256 where known) and its licence.

The pipeline (``salcli.inference.predictor``) reads the family of the checkpoint it
loads and nothing else; the weights look-up and cache (``salcli.weights.cache``),
``salcli weights``, default files, training's ``--init`` and evaluate's per-split
weights read ``CHECKPOINTS`` and the variants' default files. Adding a family is a model
module (network and procedure) and a declaration here.

This module is over 500 lines on purpose: it is the one table, every declaration in it
read at a glance beside the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from salcli.defaults import DEFAULT_FUSION, FUSIONS, WARMUP_POLICIES
from salcli.errors import WeightsError, escape
from salcli.models import (
    stavis,
    stavis_procedure,
    tased,
    tased_procedure,
    unisal,
    unisal_procedure,
    vinet,
    vinet_a,
    vinet_a_procedure,
    vinet_procedure,
    vinet_s,
)
from salcli.models.checkpoints import check_keys, load_file, unwrap_state_dict
from salcli.models.s3d import S3DBackbone
from salcli.models.soundnet import SoundNet8
from salcli.models.soundnet import detect as detect_soundnet

# --- declarations ----------------------------------------------------------------------


@dataclass(frozen=True)
class AudioInput:
    """How an audio-visual family hears a clip."""

    # (track, first frame, last frame, fps) -> (buffer,): the excerpt of a clip whose
    # audio span (salcli.inference.clips.Clip) is first ... last
    excerpt: Callable[..., np.ndarray]
    batch: Callable[[np.ndarray], torch.Tensor]  # (B, buffer) excerpts -> the model's input


@dataclass(frozen=True)
class Variant:
    """One kind of model of a family."""

    name: str  # recorded as the outputs' "model": "vinet", "bilinear", "stavis-visual", ...
    label: str  # for people: "ViNet", "AViNet (bilinear)"
    build: Callable[[], nn.Module]  # a fresh model with the checkpoints' module tree
    arch: str  # what its checkpoints hold, as the family's ``detect`` names it
    default_file: str | None = None  # looked for when no weights are named
    hears: bool = False  # takes the soundtrack
    fixed_input: tuple[int, int] | None = None  # the only input size it works at
    article: str = "a"  # "a ViNet checkpoint", "an AViNet (bilinear) checkpoint"


@dataclass(frozen=True)
class Domains:
    """A family whose layers come in per-domain sets (UNISAL): which exist, the defaults
    for videos and for still images, and what a domain fixes of the procedure."""

    names: tuple[str, ...]  # as the checkpoints spell them
    video_default: str
    image_default: str
    canonical: Callable[[str], str | None]  # a name in any case -> its spelling, or None
    sequences: Callable[[str], int]  # interleaved sequences of a domain (1: static)
    # (frame height, frame width, domain) -> the model input (h, w) when none is given
    input_size: Callable[[int, int, str], tuple[int, int]]


@dataclass(frozen=True)
class ModelFamily:
    name: str
    label: str
    clip_len: int  # frames per clip (T)
    input_size: tuple[int, int]  # (H, W) the published models take
    size_multiple: int  # an input size must be a multiple of this (pixels)
    warmups: tuple[str, ...]  # policies for the frames without a full clip; first = default
    clips: Callable[[str], object]  # policy -> salcli.inference.clips.ClipSchedule
    transform: Callable[..., torch.Tensor]  # (rgb (H, W, 3) uint8, size, device=) -> (3, h, w)
    postprocess: Callable[[np.ndarray, int, int], np.ndarray]  # raw (h, w) -> map (H, W)
    postprocess_doc: str  # what ``postprocess`` does, for the outputs' metadata
    variants: tuple[Variant, ...]
    detect: Callable[[Mapping[str, torch.Tensor]], str | None]  # state_dict -> an arch
    audio: AudioInput | None = None  # how the variants that hear take the sound
    fold: Callable[[nn.Module], nn.Module] = lambda model: model  # inference rewrite
    # (folded model, the run's dtype) -> the model with its weights stored for that dtype
    cast: Callable[[nn.Module, torch.dtype], nn.Module] = lambda model, dtype: model
    unwrap: Callable[[object], dict] = unwrap_state_dict  # loaded file -> state_dict
    published_unmapped: int = 0  # first frames the published procedure gives no map
    trainable: bool = False  # salcli train trains it
    # the licence of the published weights where it restricts their use: said once when
    # one is loaded (salcli.inference.predictor)
    licence_notice: str | None = None
    domains: Domains | None = None  # per-domain layers (UNISAL): chosen with ``domain``
    recurrent: bool = False  # a hidden state carried across frames (no clips, no --stride)

    def holds(self, state_dict: Mapping[str, torch.Tensor]) -> str | None:
        """The arch of one of this family's variants that ``state_dict`` holds, or None
        (``detect`` may name a sibling family's: ViNet's and AViNet's share a module)."""
        found = self.detect(state_dict)
        return found if any(v.arch == found for v in self.variants) else None

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def variant_for(self, arch: str, audio: bool) -> Variant | None:
        """The variant a checkpoint holding ``arch`` runs as, with the sound (``audio``)
        or without; None when it cannot run so."""
        return next((v for v in self.variants if v.arch == arch and v.hears == audio), None)

    def can_hear(self, arch: str) -> bool | None:
        """Whether checkpoints holding ``arch`` take the sound: True, False, or None when
        they run either way (the user chooses)."""
        hears = {v.hears for v in self.variants if v.arch == arch}
        return hears.pop() if len(hears) == 1 else None


@dataclass(frozen=True)
class Part:
    """A checkpoint kind that holds a part of a model, not a saliency model."""

    arch: str
    label: str
    what: str  # what it is, for messages
    article: str = "a"
    default_file: str | None = None
    build: Callable[[], nn.Module] | None = None


@dataclass(frozen=True)
class Source:
    """Where published files come from, for people."""

    page: str  # the page a person goes to
    where: str  # "the zip linked from the README of ...": a person gets the file from it
    licence: str


@dataclass(frozen=True)
class Checkpoint:
    """One known checkpoint file (published, or added by ``$SALCLI_REGISTRY``).

    ``sha256``: the full hex digest or None; ``sha256_prefix``: leading hex digits where
    only those are known. Without ``urls`` it is ``manual``: got from ``page``.
    """

    name: str  # registry name: --weights NAME, salcli weights download/import --name
    arch: str  # what it holds: a variant's arch or a part's
    file: str  # its file name, in the weights folders and the cache
    trained_on: str = ""
    page: str | None = None
    where: str = ""  # what a person gets the file from
    licence: str = ""
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    sha256_prefix: str | None = None
    note: str = ""  # how it is used

    @property
    def checksum(self) -> str | None:
        """What a file must match: the full digest, else the prefix, else None."""
        return self.sha256 or self.sha256_prefix

    @property
    def downloadable(self) -> bool:
        return bool(self.urls)

    @property
    def manual(self) -> bool:
        return not self.urls

    @property
    def description(self) -> str:
        """One line: what it holds and was trained on, where it is, how it is used."""
        what = label(self.arch) if self.arch in KINDS else self.arch
        parts = [f"{what}, {self.trained_on}" if self.trained_on else what]
        if self.where:
            parts.append(f"from {self.where}")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)

    def where_to_get(self) -> str:
        """One phrase: how a user obtains this file."""
        if self.urls:
            return (
                f"run `salcli weights download {self.name}`, or `salcli weights import FILE "
                f"--name {self.name}` with a copy you have"
            )
        page = self.page or "its publisher"
        return (
            f"get {self.file} from {page}, then run `salcli weights import FILE --name {self.name}`"
        )


# --- ViNet and AViNet ------------------------------------------------------------------

_VINET_POSTPROCESS = (
    f"model map resized (bilinear) to the frame's size, {vinet_procedure.BLUR_KSIZE}x"
    f"{vinet_procedure.BLUR_KSIZE} Gaussian blur (sigma 2.0), min-max normalized to [0, 1] "
    "per frame"
)
_VINET_COMMON = dict(
    clip_len=vinet_procedure.CLIP_LEN,
    input_size=(vinet_procedure.INPUT_H, vinet_procedure.INPUT_W),
    size_multiple=32,
    warmups=WARMUP_POLICIES,
    clips=lambda policy: vinet_procedure.LastFrameClips(vinet_procedure.CLIP_LEN, policy),
    transform=vinet_procedure.frame_to_tensor,
    postprocess=vinet_procedure.postprocess,
    postprocess_doc=_VINET_POSTPROCESS,
    detect=vinet.detect,
    fold=vinet.fold_batchnorm,
    cast=vinet.cast_for_precision,
    trainable=True,
)

VINET = ModelFamily(
    name="vinet",
    label="ViNet",
    variants=(Variant("vinet", "ViNet", vinet.ViNet, "vinet", "ViNet_DHF1K.pt"),),
    **_VINET_COMMON,
)

AVINET = ModelFamily(
    name="avinet",
    label="AViNet",
    variants=tuple(
        Variant(
            fusion,
            f"AViNet ({fusion})",
            lambda fusion=fusion: vinet.AViNet(fusion),
            fusion,
            f"AViNet_{fusion}.pt",
            hears=True,
            fixed_input=(vinet_procedure.INPUT_H, vinet_procedure.INPUT_W)
            if fusion == "bilinear"
            else None,
            article="an",
        )
        for fusion in (DEFAULT_FUSION, *(f for f in FUSIONS if f != DEFAULT_FUSION))
    ),
    audio=AudioInput(excerpt=vinet_procedure.clip_excerpt, batch=vinet_procedure.excerpt_batch),
    **_VINET_COMMON,
)

# --- ViNet-S ---------------------------------------------------------------------------

_VINET_PP_LICENCE = vinet_s.LICENCE  # of ViNet++'s code and weights: ViNet-S and ViNet-A

VINET_S = ModelFamily(
    name="vinet-s",
    label="ViNet-S",
    variants=(
        Variant(
            "vinet-s",
            "ViNet-S",
            vinet_s.ViNetS,
            "vinet-s",
            "DHF1K_vinet_s_rootgrouped_32_bs8_kld_cc.pt",
        ),
    ),  # fmt: skip
    **{
        **_VINET_COMMON,
        "clips": lambda policy: vinet_procedure.LastFrameClips(
            vinet_procedure.CLIP_LEN, policy, reference="clamped"
        ),
        "detect": vinet_s.detect,
    },
    licence_notice=f"the ViNet-S weights are {_VINET_PP_LICENCE}",
)

# --- STAViS ----------------------------------------------------------------------------

_STAVIS_SIZE = (stavis.INPUT_SIZE, stavis.INPUT_SIZE)

STAVIS = ModelFamily(
    name="stavis",
    label="STAViS",
    clip_len=stavis.CLIP_LEN,
    input_size=_STAVIS_SIZE,
    size_multiple=16,
    warmups=WARMUP_POLICIES,
    clips=stavis_procedure.CentredClips,
    transform=stavis_procedure.transform,
    postprocess=stavis_procedure.postprocess,
    postprocess_doc=(
        "model map min-max normalized, 13x13 Gaussian blur (sigma 2, symmetric borders) at "
        "112x112, resized to the frame's size with MATLAB's bicubic imresize, min-max "
        "normalized to [0, 1] per frame"
    ),
    variants=(
        Variant(
            "stavis-visual",
            "STAViS (visual)",
            lambda: stavis.Stavis(audiovisual=False),
            "stavis",
            fixed_input=_STAVIS_SIZE,
        ),
        Variant(
            "stavis-audiovisual",
            "STAViS (audio-visual)",
            lambda: stavis.Stavis(audiovisual=True),
            "stavis",
            hears=True,
            fixed_input=_STAVIS_SIZE,
        ),
    ),  # fmt: skip
    detect=stavis.detect,
    audio=AudioInput(excerpt=stavis_procedure.excerpt, batch=stavis_procedure.excerpt_batch),
    fold=stavis.fold_batchnorm,
    unwrap=stavis.unwrap_checkpoint,
    published_unmapped=stavis.TARGET_INDEX,  # frames 1-8: their first clip maps frame 9
)

# --- ViNet-A ---------------------------------------------------------------------------

_VINET_A_SIZE = (vinet_a_procedure.INPUT_H, vinet_a_procedure.INPUT_W)

VINET_A = ModelFamily(
    name="vinet-a",
    label="ViNet-A",
    clip_len=vinet_a.CLIP_LEN,
    input_size=_VINET_A_SIZE,
    size_multiple=vinet_a.SIZE_MULTIPLE,
    warmups=WARMUP_POLICIES,  # reference: the authors' clamped windows (vinet_a_procedure)
    clips=vinet_a_procedure.WindowClips,
    transform=vinet_a_procedure.frame_to_tensor,
    postprocess=vinet_a_procedure.postprocess,
    postprocess_doc=(
        f"model map (256x456) resized (bilinear) to the frame's size, "
        f"{vinet_procedure.BLUR_KSIZE}x{vinet_procedure.BLUR_KSIZE} Gaussian blur (sigma 2.0), "
        "min-max normalized to [0, 1] per frame (the authors score ViNet-A's maps at 256x456)"
    ),
    variants=(
        Variant(
            vinet_a.ARCH,
            "ViNet-A",
            vinet_a.ViNetA,
            vinet_a.ARCH,
            "ViNet_A_DHF1K_no_split_neck_32_kldiv_cc___6_0.pt",
            fixed_input=_VINET_A_SIZE,
        ),
    ),
    detect=vinet_a.detect,
    fold=vinet_a.fold_batchnorm,
    cast=vinet_a.cast_for_precision,
    licence_notice=f"the ViNet-A weights are {_VINET_PP_LICENCE}",
)

# --- TASED-Net -------------------------------------------------------------------------

TASED = ModelFamily(
    name="tased",
    label="TASED-Net",
    clip_len=tased.CLIP_LEN,
    input_size=(tased_procedure.INPUT_H, tased_procedure.INPUT_W),
    size_multiple=tased.SIZE_MULTIPLE,
    warmups=WARMUP_POLICIES,  # reference: the reversed future clip (tased_procedure)
    clips=tased_procedure.clips,
    transform=tased_procedure.frame_to_tensor,
    postprocess=tased_procedure.postprocess,
    postprocess_doc=(
        "model map floored to 1/255 steps, SciPy Gaussian blur (sigma 7, reflect) at the "
        "model's size, divided by its maximum (the authors' maps), then resized (OpenCV "
        "bilinear) to the frame's size"
    ),
    variants=(Variant(tased.ARCH, "TASED-Net", tased.TASED, tased.ARCH, "TASED_updated.pt"),),
    detect=tased.detect,
    unwrap=tased.unwrap_checkpoint,
    fold=tased.fold_batchnorm,
    cast=tased.cast_for_precision,
    trainable=True,  # with its own recipe (salcli.training.recipe)
)

# --- UNISAL ----------------------------------------------------------------------------

UNISAL = ModelFamily(
    name="unisal",
    label="UNISAL",
    clip_len=1,  # one frame a step; the past is in the state of its sequence
    input_size=unisal_procedure.INPUT_SIZE,
    size_multiple=unisal.SIZE_MULTIPLE,
    # no frames lack a past: frames 0 ... P-1 start their sequences from the zero state,
    # as the authors' procedure does
    warmups=("reference",),
    clips=lambda policy: unisal_procedure.FrameClips(),
    transform=unisal_procedure.frame_to_tensor,
    postprocess=unisal_procedure.postprocess,
    postprocess_doc=unisal_procedure.POSTPROCESS_DOC,
    variants=(Variant(unisal.ARCH, "UNISAL", unisal.Unisal, unisal.ARCH, "weights_best.pth"),),
    detect=unisal.detect,
    domains=Domains(
        names=unisal.DOMAINS,
        video_default=unisal_procedure.DEFAULT_VIDEO_DOMAIN,
        image_default=unisal_procedure.DEFAULT_IMAGE_DOMAIN,
        canonical=unisal.canonical_domain,
        sequences=unisal_procedure.sequences,
        input_size=unisal_procedure.input_size,
    ),
    recurrent=True,
)

FAMILIES: tuple[ModelFamily, ...] = (VINET, AVINET, VINET_S, STAVIS, VINET_A, TASED, UNISAL)

# --- parts -----------------------------------------------------------------------------

_BACKBONE_ALONE = "ViNet's video backbone alone, not a saliency model"
PARTS: tuple[Part, ...] = (
    Part("soundnet", "SoundNet-8", "AViNet's audio branch alone, not a saliency model",
         default_file="soundnet8_final.pth", build=SoundNet8),
    Part("s3d", "S3D", _BACKBONE_ALONE, article="an", build=S3DBackbone),
    Part("s3d-torchvision", "S3D (torchvision)", _BACKBONE_ALONE, article="an"),
)  # fmt: skip

# --- the published checkpoints ---------------------------------------------------------

_VINET_ZIP = Source(
    page="https://github.com/samyak0210/ViNet",
    where="the zip linked from the README of https://github.com/samyak0210/ViNet (its "
    "'pretrained models' link: a SharePoint share, no direct URL)",
    licence="none stated",
)
_VINET_REPO = Source(
    page="https://github.com/samyak0210/ViNet",
    where="the root of https://github.com/samyak0210/ViNet",
    licence="none stated",
)
_S3D_AUTHOR = Source(
    page="https://github.com/kylemin/S3D",
    where="the file linked from the README of https://github.com/kylemin/S3D",
    licence="none stated for the weights (code MIT)",
)
_TORCHVISION = Source(
    page="https://pytorch.org/vision/stable/models/generated/torchvision.models.video.s3d.html",
    where="torchvision's S3D_Weights.KINETICS400_V1",
    licence="none stated for the weights (torchvision BSD-3-Clause)",
)
_STAVIS_ARCHIVE = Source(
    page="http://cvsp.cs.ntua.gr/research/stavis/",
    where="pretrained_models.tar.gz, linked from http://cvsp.cs.ntua.gr/research/stavis/ (no "
    "direct URL to the file)",
    licence="none stated for the weights (code MIT)",
)
_VINET_PP = Source(
    page="https://github.com/ViNet-Saliency/vinet_v2",
    where="the Google Drive file linked from the README of "
    "https://github.com/ViNet-Saliency/vinet_v2 (no direct URL)",
    licence="CC BY-NC-SA 4.0 (non-commercial)",
)
_TASED_DRIVE = Source(
    page="https://github.com/kylemin/TASED-Net",
    where="the Google Drive file linked from the README of https://github.com/kylemin/TASED-Net "
    "(no direct URL)",
    licence="MIT (the code's; none stated for the weights, trained on DHF1K)",
)
_AV_SETS = ("DIEM", "Coutrot_db1", "Coutrot_db2", "AVAD", "ETMD_av", "SumMe")
# (registry name suffix, the file's prefix, what it was trained on) of the ViNet-S files
_VINET_S_FILES = (
    ("dhf1k", "DHF1K", "trained on DHF1K"),
    ("hollywood", "Hollywood2", "trained on Hollywood-2"),
    ("ucf", "UCF", "trained on UCF-Sports"),
    ("etmd-av-split1", "ETMD_av", "trained on split 1 of ETMD_av"),
    ("mvva-split1", "mvva", "trained on split 1 of MVVA"),
)
STAVIS_SPLITS = (1, 2, 3)  # one STAViS model per split of the audio-visual sets
_UNISAL_REPO = Source(
    page="https://github.com/rdroste/unisal",
    where="the folder training_runs/pretrained_unisal/ of https://github.com/rdroste/unisal "
    "(committed to the repository)",
    licence="Apache-2.0 (the repository's; none stated apart for the weights)",
)


def _published(name: str, arch: str, file: str, trained_on: str, source: Source,
               **kw: object) -> Checkpoint:  # fmt: skip
    return Checkpoint(name, arch, file, trained_on, source.page, source.where,
                      source.licence, **kw)  # fmt: skip


CHECKPOINTS: tuple[Checkpoint, ...] = (
    _published("vinet-dhf1k", "vinet", "ViNet_DHF1K.pt", "trained on DHF1K", _VINET_ZIP,
               note="salcli's default ViNet weights"),
    _published("vinet-hollywood", "vinet", "ViNet_Hollywood.pt",
               "fine-tuned from DHF1K on Hollywood-2", _VINET_ZIP),
    _published("vinet-ucf", "vinet", "ViNet_UCFSports.pt", "fine-tuned from DHF1K on UCF-Sports",
               _VINET_ZIP),
    *(
        _published(f"avinet-{fusion}-{data.lower().replace('_', '-')}", fusion,
                   f"AViNet_{fusion}_{data}.pt", f"fine-tuned from ViNet (DHF1K) on {data}",
                   _VINET_ZIP)
        for fusion in ("bilinear", "transformer")
        for data in _AV_SETS
    ),
    _published("soundnet8", "soundnet", "soundnet8_final.pth", "conv1-conv8, as AViNet uses it",
               _VINET_REPO, urls=(
                   "https://raw.githubusercontent.com/samyak0210/ViNet/master/soundnet8_final.pth",
                   "https://raw.githubusercontent.com/samyak0210/ViNet/main/soundnet8_final.pth",
                   "https://github.com/samyak0210/ViNet/raw/master/soundnet8_final.pth",
               )),
    _published("s3d-kinetics400", "s3d", "S3D_kinetics400.pt", "trained on Kinetics-400",
               _S3D_AUTHOR, note="the S3D author's file (ViNet's backbone layers plus a "
               "classifier head); ViNet training starts from it"),
    _published("s3d-kinetics400-torchvision", "s3d-torchvision", "s3d-d76dad2f.pth",
               "trained on Kinetics-400", _TORCHVISION,
               urls=("https://download.pytorch.org/models/s3d-d76dad2f.pth",),
               sha256_prefix="d76dad2f",
               note="its features.* entries are ViNet's backbone under torchvision's names, in "
               "the same order; the 8 hex digits in the file name are the start of its SHA-256"),
    *(
        _published(f"vinet-s-{name}", "vinet-s", f"{prefix}_vinet_s_rootgrouped_32_bs8_kld_cc.pt",
                   trained_on, _VINET_PP)
        for name, prefix, trained_on in _VINET_S_FILES
    ),
    *(
        _published(f"stavis-{kind}-split{k}", "stavis", f"{kind}_split{k}_save_60.pth",
                   f"trained on split {k} of the audio-visual sets", _STAVIS_ARCHIVE,
                   note=f"folder stavis_{folder}/; predict split {k}'s test videos with it, "
                   f"{'with' if hears else 'without'} the sound")
        for kind, folder, hears in (("visual", "visual_only", False),
                                    ("audiovisual", "audiovisual", True))
        for k in STAVIS_SPLITS
    ),
    # --- ViNet-A (ViNet++, ICASSP 2025): the files its inference scripts load ---
    _published("vinet-a-dhf1k", "vinet-a", "ViNet_A_DHF1K_no_split_neck_32_kldiv_cc___6_0.pt",
               "trained on DHF1K", _VINET_PP, note="salcli's default ViNet-A weights"),
    _published("vinet-a-hollywood", "vinet-a",
               "ViNet_A_Hollywood2_no_split_neck_32_kldiv_cc___6_0.pt",
               "trained on Hollywood-2", _VINET_PP),
    _published("vinet-a-ucf", "vinet-a", "ViNet_A_UCF_no_split_neck_32_kldiv_cc___6_0.pt",
               "trained on UCF-Sports", _VINET_PP),
    _published("vinet-a-etmd-av-split1", "vinet-a", "ViNet_A_ETMD_av_1_neck_32_kldiv_cc___2_0.pt",
               "fine-tuned on split 1 of ETMD_av", _VINET_PP,
               note="predict split 1's test videos with it (the authors' test loader for "
               "ETMD_av takes the window's even positions; salcli's clips are the visual "
               "loaders' odd ones)"),
    _published("vinet-a-mvva-split1", "vinet-a", "ViNet_A_mvva_1_neck_32_kldiv_cc___2_0.pt",
               "fine-tuned on split 1 of MVVA", _VINET_PP,
               note="predict split 1's test videos with it"),
    # --- TASED-Net (ICCV 2019): the one file the README links ---
    _published("tased-dhf1k", tased.ARCH, "TASED_updated.pt", "trained on DHF1K", _TASED_DRIVE,
               note="the README's updated model (2019-11-17), not the paper's; salcli's "
               "default TASED-Net weights"),
    # --- UNISAL (ECCV 2020): one model for the video domains and SALICON images ---
    _published("unisal", "unisal", "weights_best.pth",
               "trained jointly on DHF1K, Hollywood-2, UCF-Sports and SALICON", _UNISAL_REPO,
               note="salcli's default UNISAL weights; --domain chooses DHF1K (videos), "
               "Hollywood, UCFSports or SALICON (images)"),
    _published("unisal-mit1003", "unisal", "weights_ft_mit1003.pth",
               "weights_best.pth fine-tuned on MIT1003 through the SALICON domain",
               _UNISAL_REPO, note="for images (MIT1003 / MIT300), in the SALICON domain"),
)  # fmt: skip

# --- what the declarations give --------------------------------------------------------

VARIANTS: tuple[Variant, ...] = tuple(v for fam in FAMILIES for v in fam.variants)
# arch -> what holds it: a variant, or a family whose variants share it (STAViS: both
# variants have the same keys), or a part
KINDS: dict[str, Variant | ModelFamily | Part] = {}
for _fam in FAMILIES:
    for _v in _fam.variants:
        shared = sum(v.arch == _v.arch for v in _fam.variants) > 1
        KINDS.setdefault(_v.arch, _fam if shared else _v)
KINDS.update({p.arch: p for p in PARTS})
ARCHS: tuple[str, ...] = tuple(KINDS)  # every arch a checkpoint may hold
TRAINABLE: tuple[str, ...] = tuple(v.arch for fam in FAMILIES if fam.trainable
                                   for v in fam.variants)  # fmt: skip
# arch -> the file looked for when no weights are named
DEFAULT_FILES: dict[str, str] = {
    kind.arch: kind.default_file for kind in (*VARIANTS, *PARTS) if kind.default_file
}


def label(arch: str) -> str:
    """The name of what ``arch`` checkpoints hold, in messages: "ViNet", "AViNet
    (bilinear)", "STAViS", "SoundNet-8"."""
    kind = KINDS.get(arch)
    return kind.label if kind is not None else arch


def describe(arch: str) -> str:
    """What a checkpoint of ``arch`` is, with its article, for messages: "a ViNet
    checkpoint", "a SoundNet-8 checkpoint (AViNet's audio branch alone, not a saliency
    model)"."""
    kind = KINDS.get(arch)
    if kind is None:
        return f"a {arch} checkpoint"
    article = kind.variants[0].article if isinstance(kind, ModelFamily) else kind.article
    what = f" ({kind.what})" if isinstance(kind, Part) else ""
    return f"{article} {kind.label} checkpoint{what}"


def published(arch: str) -> list[Checkpoint]:
    """The published checkpoints that hold ``arch``."""
    return [c for c in CHECKPOINTS if c.arch == arch]


def where_published(arch: str) -> str | None:
    """Where the published ``arch`` checkpoints are, as what a person gets them from ("the
    zip linked from the README of ..."); None when none are published."""
    places = list(dict.fromkeys(c.where for c in published(arch)))
    return "; ".join(places) if places else None


def build_model(arch: str) -> nn.Module:
    """A fresh, randomly initialised model of what ``arch`` checkpoints hold (STAViS: the
    audio-visual model; both variants have its keys)."""
    kind = KINDS.get(arch)
    build = (
        kind.variants[-1].build if isinstance(kind, ModelFamily) else getattr(kind, "build", None)
    )
    if build is None:
        raise KeyError(arch)
    return build()


def arch_of(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """What a state_dict holds, by its keys: one of ``ARCHS`` but the S3D layouts (which
    ``salcli.weights.store.s3d_layout`` tells apart), or None."""
    for fam in FAMILIES:
        found = fam.holds(state_dict)
        if found is not None:
            return found
    return detect_soundnet(state_dict)


def describe_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str:
    """What a checkpoint that no model family takes holds, as the end of an error line."""
    arch = arch_of(state_dict)
    if arch is None:
        example = next(iter(state_dict), "")
        return f"not a checkpoint of a saliency model salcli knows (unknown keys, e.g. {example})"
    hint = "; use an AViNet checkpoint, which holds it" if arch == "soundnet" else ""
    return f"this is {describe(arch)}{hint}"


def family_of(variant_name: str) -> tuple[ModelFamily, Variant]:
    """The family and variant called ``variant_name`` ("vinet", "bilinear", ...)."""
    for fam in FAMILIES:
        for v in fam.variants:
            if v.name == variant_name:
                return fam, v
    raise KeyError(variant_name)


def recognise(obj: object) -> tuple[ModelFamily, str, dict] | None:
    """(family, the arch it holds, state_dict) of a loaded checkpoint file (a state_dict
    or a wrapper), or None when no family takes it."""
    for fam in FAMILIES:
        try:
            sd = fam.unwrap(obj)
        except WeightsError:
            # the family's keys in a wrapper it refuses (a STAViS snapshot of another
            # arch): that refusal is the answer
            if _holds_keys_of(fam, obj):
                raise
            continue
        found = fam.holds(sd)
        if found is not None:
            return fam, found, sd
    return None


def _holds_keys_of(fam: ModelFamily, obj: object) -> bool:
    try:
        return fam.holds(unwrap_state_dict(obj)) is not None
    except WeightsError:
        return False


def load_checkpoint(
    path: str | Path, *, audio: bool | None
) -> tuple[ModelFamily, Variant, nn.Module]:
    """Read ``path`` (``torch.load(weights_only=True)``), recognise its family, choose the
    variant that runs with the sound (``audio``) or without (None: with the sound where a
    variant of the checkpoint's takes it, else without: a member of an ensemble), build it
    and load the file strictly (every tensor from the file: nothing is initialised at
    random first). A one-line ``WeightsError`` for anything else."""
    obj = load_file(path)
    try:
        found = recognise(obj)
    except WeightsError as err:
        raise WeightsError(f"{escape(str(path))}: {err.template}", options=err.options) from None
    if found is None:
        raise WeightsError(f"{path}: {describe_state_dict(unwrap_state_dict(obj))}")
    fam, arch, sd = found
    if audio is None:
        variant = fam.variant_for(arch, True) or fam.variant_for(arch, False)
    else:
        variant = fam.variant_for(arch, audio)
    if variant is None:
        name = next(v.label for v in fam.variants if v.arch == arch)
        if audio:
            raise WeightsError(f"{path}: {name} is visual only; sound needs an audio-visual "
                               "checkpoint")  # fmt: skip
        raise WeightsError(
            f"{escape(str(path))}: the {name} checkpoint listens to the soundtrack: ask for "
            "the sound ({audio})",
            options=("audio",),
        )
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = variant.build()
    check_keys(model, sd, path)
    model = model.to_empty(device="cpu")
    model.load_state_dict(sd, strict=True)
    return fam, variant, model.eval()


def model_family(model: nn.Module) -> tuple[ModelFamily, Variant]:
    """The family and variant of a model built by salcli (for models passed in as they
    are), from its ``arch`` / ``fusion`` / ``audiovisual`` attributes."""
    arch = getattr(model, "arch", None) or "vinet"
    if arch == "stavis":
        hears = bool(getattr(model, "audiovisual", True))
        return STAVIS, STAVIS.variant("stavis-audiovisual" if hears else "stavis-visual")
    if arch == "avinet":
        return family_of(model.fusion)
    return family_of(arch)
