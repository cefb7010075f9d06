"""The weights a training run starts from.

- ViNet: the S3D backbone from Kinetics-400 weights, in either published layout: the S3D
  author's ``S3D_kinetics400.pt`` (ViNet's own backbone names, or the author's flat
  ``base.N`` names; a classifier head beside them is ignored) or torchvision's
  ``s3d-d76dad2f.pth`` (``features.*``). Both are mapped **by name**, key by key, onto
  ``S3DBackbone``, and the map must cover every backbone entry with a tensor of the same
  shape and use every source entry once (``s3d_backbone_state``). The decoder starts from
  PyTorch's default initialisation (seeded). A ViNet checkpoint instead (``init``
  ``ViNet_DHF1K.pt``) fine-tunes the whole model: Hollywood-2 / UCF-Sports from DHF1K.
- ViNet-S: the same S3D backbone from the same files (the authors' train script starts
  from ``S3D_kinetics400.pt``), its grouped decoder from PyTorch's initialisation; a
  ViNet checkpoint gives it its backbone only; a ViNet-S checkpoint (a published one)
  fine-tunes the whole model.
- TASED-Net: its S3D encoder (``base1`` ... ``base4``, ViNet's backbone under the same
  names) from the same files (the authors' ``run_train.py`` starts from
  ``S3D_kinetics400.pt``), the decoder from PyTorch's initialisation; a ViNet checkpoint
  gives it its encoder only; a TASED-Net checkpoint (``TASED_updated.pt``) fine-tunes the
  whole model.
- AViNet: the visual part (S3D + decoder) from a ViNet checkpoint (default
  ``ViNet_DHF1K.pt``), SoundNet-8 from ``soundnet8_final.pth``, the fusion layers
  initialised afresh. An AViNet checkpoint of the same fusion continues its training.
- ``init`` "none": nothing loaded (a from-scratch run); ``soundnet`` "none": SoundNet-8
  left at its initialisation too.

Files are looked up as predict's weights are (``salcli.weights.cache.resolve_weights``: a
path, or a file or registry name in the current folder, ``./weights``, the checkout's
``weights/`` and the cache) and read with ``torch.load(weights_only=True)``.

The model is built by architecture name (``salcli.models.registry.build_model``): "vinet",
"vinet-s", "bilinear", "transformer" or "concat"; training only relies on its ``forward(clip)`` /
``forward(clip, audio)`` returning (B, H, W) maps in (0, 1), its ``state_dict`` having the
published keys, and, for initialisation, ViNet's ``backbone`` and AViNet's
``visual_model`` / ``audionet`` children (``visual_part`` / ``backbone_of`` /
``audio_part`` below are the only places that know them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from salcli.defaults import FUSIONS
from salcli.errors import UsageError, WeightsError, escape
from salcli.models.checkpoints import check_keys, read_checkpoint
from salcli.models.registry import CHECKPOINTS, TRAINABLE, arch_of, build_model, describe, label
from salcli.models.s3d import BasicConv3d, S3DBackbone, SepConv3d
from salcli.models.tased import TASED
from salcli.weights.cache import resolve_weights
from salcli.weights.store import s3d_layout

NO_INIT = ("none", "random", "scratch")  # values of init / soundnet meaning "load nothing"
# the published starting points, tried in their order of declaration
S3D_NAMES = tuple(c.name for c in CHECKPOINTS if c.arch in ("s3d", "s3d-torchvision"))
SOUNDNET_NAME = next(c.name for c in CHECKPOINTS if c.arch == "soundnet")
# ViNet's backbone stages -> index of their first module in the flat S3D Sequential
# (``base.N`` in the S3D author's file, ``features.N`` in torchvision's); the indices in
# between (4, 7, 13) are pooling layers without parameters.
STAGE_START = {"base1": 0, "base2": 5, "base3": 8, "base4": 14}
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
COUNTER = "num_batches_tracked"  # BatchNorm's step counter: may be missing from a file


@dataclass(frozen=True)
class InitReport:
    """What a model was initialised from: one line per part (for the log and options)."""

    lines: tuple[str, ...]


# --- where the parts are -------------------------------------------------------------


def visual_part(model: nn.Module) -> nn.Module:
    """The ViNet inside ``model`` (ViNet itself, or AViNet's ``visual_model``)."""
    return getattr(model, "visual_model", model)


def backbone_of(model: nn.Module) -> S3DBackbone:
    """The S3D backbone: ViNet's ``backbone``; TASED-Net is its own encoder."""
    visual = visual_part(model)
    return visual if isinstance(visual, TASED) else visual.backbone


def load_backbone(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """A complete ``S3DBackbone`` state_dict into ``model``'s backbone, strictly: TASED-Net's
    decoder, beside its encoder in one module, keeps what it has."""
    backbone = backbone_of(model)
    check_keys(_meta_backbone(), state, path)
    own = backbone.state_dict()
    backbone.load_state_dict({**own, **state} if isinstance(backbone, TASED) else state)


def audio_part(model: nn.Module) -> nn.Module | None:
    """AViNet's SoundNet-8 (None for ViNet)."""
    return getattr(model, "audionet", None)


# --- S3D Kinetics weights ------------------------------------------------------------


def _units(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every BasicConv3d / SepConv3d of the backbone, in order."""
    return [(n, m) for n, m in backbone.named_modules() if isinstance(m, (BasicConv3d, SepConv3d))]


def _flat_prefix(name: str, head: str) -> str:
    """ViNet's ``baseK.M.rest`` -> ``<head>.<N>.rest`` of the flat S3D Sequential."""
    stage, index, *rest = name.split(".")
    return ".".join([head, str(STAGE_START[stage] + int(index)), *rest])


def torchvision_names(backbone: nn.Module | None = None) -> dict[str, str]:
    """ViNet backbone key -> torchvision ``s3d`` key, for every backbone entry.

    torchvision's ``Conv3dNormActivation`` is (conv, norm, ReLU) as ``0``, ``1``, ``2``
    where ViNet's ``BasicConv3d`` names them ``conv``, ``bn``; its
    ``TemporalSeparableConv`` holds two of them (``0`` spatial, ``1`` temporal) where
    ViNet's ``SepConv3d`` has ``conv_s``/``bn_s`` and ``conv_t``/``bn_t``; an inception
    block's ``branch0`` is the unit itself in torchvision, a one-element Sequential in
    ViNet (``branch0.0``).
    """
    backbone = backbone if backbone is not None else _meta_backbone()
    out: dict[str, str] = {}
    for name, unit in _units(backbone):
        tv = _flat_prefix(name, "features").replace(".branch0.0", ".branch0")
        if isinstance(unit, BasicConv3d):
            pairs = [("conv", "0"), ("bn", "1")]
        else:
            pairs = [("conv_s", "0.0"), ("bn_s", "0.1"), ("conv_t", "1.0"), ("bn_t", "1.1")]
        for ours, theirs in pairs:
            entries = ("weight",) if ours.startswith("conv") else BN_ENTRIES
            for e in entries:
                out[f"{name}.{ours}.{e}"] = f"{tv}.{theirs}.{e}"
    return out


def author_names(backbone: nn.Module | None = None) -> dict[str, str]:
    """ViNet backbone key -> the S3D author's flat key (``base.N...``)."""
    backbone = backbone if backbone is not None else _meta_backbone()
    return {k: _flat_prefix(k, "base") for k in backbone.state_dict()}


def _meta_backbone() -> S3DBackbone:
    with torch.device("meta"):  # names and shapes only
        return S3DBackbone()


def s3d_backbone_state(
    sd: Mapping[str, torch.Tensor], path: str | Path = "S3D weights"
) -> dict[str, torch.Tensor]:
    """The ``S3DBackbone`` state_dict held by an S3D Kinetics-400 checkpoint.

    Accepts torchvision's layout (``features.*``), the S3D author's flat ``base.N`` names
    and ViNet's own backbone names (with ``module.`` / ``backbone.`` prefixes or not).
    Every backbone entry must be found, with its shape (BatchNorm step counters may be
    missing; they start at 0), and every source entry of the backbone's part must be
    used; anything else raises a one-line ``WeightsError``.
    """
    backbone = _meta_backbone()
    own = backbone.state_dict()
    keys = {k.removeprefix("module."): k for k in sd}
    torchvision = any(k.startswith("features.") for k in keys)
    # the registry recognises the author's layouts (the torchvision one is checked here,
    # name by name, so that a gap is named)
    if not torchvision and s3d_layout(sd, path) is None:
        raise WeightsError(f"{path}: not S3D Kinetics weights (no S3D backbone entries)")
    if torchvision:
        names = torchvision_names(backbone)
        part = [k for k in keys if k.startswith("features.")]
    elif any(k.startswith("base.") for k in keys):
        names = author_names(backbone)
        part = [k for k in keys if k.startswith("base.")]
    else:
        keys = {k.removeprefix("backbone."): v for k, v in keys.items()}
        names = {k: k for k in own}
        part = [k for k in keys if k.split(".")[0] in STAGE_START]
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in names.items():
        if theirs not in keys:
            if ours.endswith(COUNTER):
                out[ours] = torch.zeros((), dtype=torch.long)
                continue
            raise WeightsError(f"{path}: S3D entry {theirs} (ViNet {ours}) is missing")
        value = sd[keys[theirs]]
        if tuple(value.shape) != tuple(own[ours].shape):
            raise WeightsError(
                f"{path}: {theirs} has shape {tuple(value.shape)}, ViNet's {ours} needs "
                f"{tuple(own[ours].shape)}"
            )
        out[ours] = value
    used = set(names.values())
    unused = [k for k in part if k not in used]
    if unused:
        raise WeightsError(f"{path}: S3D entry {unused[0]} maps to no ViNet backbone entry")
    if set(out) != set(own):  # pragma: no cover - the name tables cover the module tree
        raise WeightsError(f"{path}: the S3D map does not cover the backbone")
    return out


# --- the model a run starts from -----------------------------------------------------


def _resolve(spec: str | Path | None, arch: str, option: str) -> Path:
    """The file of ``option``'s value (an existing file, or a one-line WeightsError
    naming the option)."""
    return resolve_weights(spec, arch, option=option)


def _default_s3d() -> Path:
    reasons = []
    for name in S3D_NAMES:
        try:
            return _resolve(name, "s3d", "init")
        except WeightsError as err:
            reasons.append(err.template)  # each names the option as {init}
    raise WeightsError(
        "no S3D Kinetics-400 weights to start ViNet from: "
        + "; or ".join(reasons)
        + " (or {init} a checkpoint, or {init} none)",
        options=("init",),
    )


def _load_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], path: Path) -> None:
    check_keys(module, sd, path)
    module.load_state_dict(sd, strict=True)


def initial_model(
    arch: str, init: str | Path | None = None, soundnet: str | Path | None = None
) -> tuple[nn.Module, InitReport]:
    """A model of ``arch`` ("vinet", "vinet-s" or a fusion) with its starting weights (see
    the module docstring). Unseeded parts use PyTorch's default initialisation: seed torch
    first."""
    if arch not in TRAINABLE:
        choices = ", ".join(TRAINABLE)
        raise UsageError(f"unknown architecture {arch!r} (choose from {choices})")
    model = build_model(arch)
    lines: list[str] = []
    audio = arch in FUSIONS
    if init is not None and str(init).lower() in NO_INIT:
        part = "visual part (S3D + decoder)" if audio else "all"
        lines.append(f"{part}: random (init none)")
        init_path = None
    elif init is None:
        init_path = _default_s3d() if not audio else _resolve(None, "vinet", "init")
    else:
        init_path = _resolve(init, arch, "init")
    whole = False
    if init_path is not None:
        sd = read_checkpoint(init_path)
        kind = arch_of(sd)
        if kind is None:
            load_backbone(model, s3d_backbone_state(sd, init_path), init_path)
            lines.append(f"S3D backbone: {init_path} (Kinetics-400, mapped by name)")
            lines.append("decoder: random")
        elif kind == "vinet" and arch in ("vinet-s", "tased"):  # ViNet's backbone is theirs
            backbone = {k.removeprefix("backbone."): v for k, v in sd.items()
                        if k.startswith("backbone.")}  # fmt: skip
            load_backbone(model, backbone, init_path)
            lines.append(f"S3D backbone: {init_path} (a ViNet checkpoint's)")
            lines.append("decoder: random")
        elif kind == "vinet":
            _load_strict(visual_part(model), sd, init_path)
            lines.append(f"{'visual part (S3D + decoder)' if audio else 'all'}: {init_path}")
        elif kind == arch:
            _load_strict(model, sd, init_path)
            whole = True
            lines.append(f"all: {init_path}")
        elif kind == "soundnet":
            raise WeightsError(
                f"{escape(str(init_path))}: SoundNet-8 weights go to {{soundnet}}, not {{init}}",
                options=("soundnet", "init"),
            )
        else:
            want = f"{label(arch)} or S3D" if not audio else f"ViNet or AViNet ({arch})"
            raise WeightsError(f"{init_path}: {describe(kind)} cannot start {want} training")
    if audio and not whole:
        if soundnet is not None and str(soundnet).lower() in NO_INIT:
            lines.append("SoundNet-8: random (soundnet none)")
        else:
            if soundnet is None:
                sn_path = _resolve(SOUNDNET_NAME, "soundnet", "soundnet")
            else:
                sn_path = _resolve(soundnet, "soundnet", "soundnet")
            sd = read_checkpoint(sn_path)
            if arch_of(sd) != "soundnet":
                raise WeightsError(f"{sn_path}: not SoundNet-8 weights")
            _load_strict(audio_part(model), sd, sn_path)
            lines.append(f"SoundNet-8: {sn_path}")
        lines.append(f"fusion ({arch}): random")
    return model, InitReport(tuple(lines))
