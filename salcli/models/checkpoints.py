"""Loading checkpoints: unwrapping, architecture detection, strict loading, naming.

Published files are plain ``state_dict``s; re-uploads often wrap them
(``{"state_dict": ...}``, ``{"model": ...}``) or carry DataParallel's ``module.``
prefix. All of these load unchanged. Every load goes through
``torch.load(..., weights_only=True)``: a pickle that tries to run code is refused.
Where a file is looked for (``--weights``, the default files, the cache) is
``salcli.weights.cache.resolve_weights``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from salcli.errors import WeightsError, one_line
from salcli.models.vinet import build_model

ARCHS = ("vinet", "bilinear", "transformer", "concat", "soundnet", "stavis")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "weights")

SALIENCY_ARCHS = ("vinet", "bilinear", "transformer", "concat")  # ViNet, then the fusions
# STAViS (salcli.models.stavis) has one architecture for both published variants (same keys)
_VINET_ZIP = "the zip linked from the README of https://github.com/samyak0210/ViNet"
# Where the published file of each architecture's default weights comes from (a place a
# person goes to: "get it from <source>"); None: no such weights are published.
PUBLISHED_SOURCES: dict[str, str | None] = {
    "vinet": _VINET_ZIP,
    "bilinear": f"{_VINET_ZIP} (one AViNet (bilinear) fine-tune per dataset)",
    "transformer": f"{_VINET_ZIP} (one AViNet (transformer) fine-tune per dataset)",
    "concat": None,
    "soundnet": "the root of https://github.com/samyak0210/ViNet",
    "stavis": "pretrained_models.tar.gz, linked from http://cvsp.cs.ntua.gr/research/stavis/",
}
_MODEL_NAMES = {  # arch -> (article, name)
    "vinet": ("a", "ViNet"),
    "bilinear": ("an", "AViNet (bilinear)"),
    "transformer": ("an", "AViNet (transformer)"),
    "concat": ("an", "AViNet (concat)"),
    "soundnet": ("a", "SoundNet-8"),
    "stavis": ("a", "STAViS"),
    "s3d": ("an", "S3D"),
    "s3d-torchvision": ("an", "S3D (torchvision)"),
}
_NOT_SALIENCY = {
    "soundnet": "AViNet's audio branch alone, not a saliency model",
    "s3d": "ViNet's video backbone alone, not a saliency model",
    "s3d-torchvision": "ViNet's video backbone alone, not a saliency model",
}


def model_name(arch: str) -> str:
    """The name of an architecture in messages: "ViNet", "AViNet (bilinear)", "SoundNet-8"."""
    return _MODEL_NAMES.get(arch, ("a", arch))[1]


def describe(arch: str) -> str:
    """What a checkpoint of ``arch`` is, as a phrase with its article, for messages:
    "a ViNet checkpoint", "an AViNet (bilinear) checkpoint", "a SoundNet-8 checkpoint
    (AViNet's audio branch alone, not a saliency model)"."""
    article, name = _MODEL_NAMES.get(arch, ("a", arch))
    what = _NOT_SALIENCY.get(arch)
    return f"{article} {name} checkpoint" + (f" ({what})" if what else "")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def unwrap_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint, with wrappers and ``module.`` prefixes removed."""
    for _ in range(3):  # wrappers nest at most a couple of levels in practice
        if isinstance(obj, Mapping) and not _is_tensor_map(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _is_tensor_map(obj):
        raise WeightsError("the file holds no state_dict of tensors")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _is_tensor_map(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def detect_arch(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which model a state_dict belongs to: one of ``ARCHS``."""
    keys = set(state_dict)
    if "transformer.pos_encoder.pe" in keys:
        return "transformer"
    if "concat_conv.weight" in keys:
        return "concat"
    if "bilinear.weight" in keys and any(k.startswith("visual_model.") for k in keys):
        return "bilinear"
    if "decoder.convtsp4.8.weight" in keys and any(k.startswith("backbone.") for k in keys):
        return "vinet"
    if "conv1.weight" in keys and "conv7.weight" in keys:
        return "soundnet"
    from salcli.models.stavis import recognize

    if recognize(state_dict) is not None:
        return "stavis"
    raise WeightsError("the checkpoint is not ViNet, AViNet, STAViS or SoundNet-8 (unknown keys)")


def describe_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str:
    """What a checkpoint that no model family takes holds, as the end of an error line."""
    try:
        arch = detect_arch(state_dict)
    except WeightsError:
        example = next(iter(state_dict), "")
        return f"not a checkpoint of a saliency model salcli knows (unknown keys, e.g. {example})"
    hint = "; use an AViNet checkpoint, which holds it" if arch == "soundnet" else ""
    return f"this is {describe(arch)}{hint}"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict of a checkpoint file (``load_file``, wrappers and ``module.`` removed)."""
    return unwrap_state_dict(load_file(path))


def load_file(path: str | Path) -> object:
    """``torch.load`` with ``weights_only=True`` and a one-line error on any failure: the
    object as saved (a state_dict, or a wrapper such as a training snapshot)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        first = one_line(exc)
        text = str(exc).lower()
        if "unsupported global" in text or "unsupported class" in text:
            raise WeightsError(
                f"{path}: refused, the file holds Python objects that could run code "
                "(only plain tensors are loaded)"
            ) from None
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    return obj


def load_model(
    path: str | Path, expect: str | None = None
) -> tuple[nn.Module, str, dict[str, torch.Tensor]]:
    """Build the model a checkpoint belongs to and load it strictly.

    ``expect`` ("vinet", "avinet", or a fusion name) refuses a file of another kind.
    Returns (model in eval mode, arch, state_dict).
    """
    sd = read_checkpoint(path)
    arch = detect_arch(sd)
    if expect is not None:
        fusions = SALIENCY_ARCHS[1:]
        ok = arch == expect or (expect == "avinet" and arch in fusions)
        if not ok:
            want = "AViNet" if expect == "avinet" else model_name(expect)
            raise WeightsError(f"{path}: this is {describe(arch)}, not {want}")
    model = build_model(arch)
    check_keys(model, sd, path)
    model.load_state_dict(sd, strict=True)
    return model.eval(), arch, sd


def check_keys(model: nn.Module, sd: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Raise a one-line WeightsError unless ``sd`` has exactly the model's keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        raise WeightsError(f"{path}: keys do not match the model: " + ", ".join(parts))
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise WeightsError(
                f"{path}: {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}"
            )
