"""Reading checkpoint files: ``torch.load(weights_only=True)``, unwrapping, key checks.

Published files are plain ``state_dict``s; re-uploads often wrap them
(``{"state_dict": ...}``, ``{"model": ...}``) or carry DataParallel's ``module.``
prefix. All of these load unchanged. Every load goes through
``torch.load(..., weights_only=True)``: a pickle that tries to run code is refused.
What a file holds is told by the model families (``salcli.models.registry``); where a
file is looked for, by ``salcli.weights.cache.resolve_weights``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from salcli.errors import WeightsError, one_line

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "weights")


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
