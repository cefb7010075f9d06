"""Deterministic checkpoints from key/shape manifests, for tests and benchmarks.

Each tensor is filled from its own key (the rule of the reference manifests), so any
implementation with the same ``state_dict`` keys rebuilds the very same weights:
``z = default_rng(crc32(key)).standard_normal(shape)``, then by key suffix: counters 0,
running means 0.1 z, running variances 1 + 0.1 |z|, 1-D weights 1 + 0.1 z, 1-D biases
0.1 z, positional tables the sinusoid, others z * sqrt(2 / fan_in).
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch


def _sinusoid(max_len: int, d: int) -> torch.Tensor:
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(max_len, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table[:, None, :]  # (L, 1, d)


def fill_tensor(key: str, shape: list[int] | tuple[int, ...]) -> torch.Tensor:
    """The deterministic value of one checkpoint entry."""
    shape = tuple(shape)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if key == "pe" or key.endswith(".pe"):
        return _sinusoid(shape[0], shape[2])
    z = np.random.default_rng(zlib.crc32(key.encode())).standard_normal(shape)
    z = z.astype(np.float32)
    if key.endswith("running_mean"):
        v = 0.1 * z
    elif key.endswith("running_var"):
        v = 1.0 + 0.1 * np.abs(z)
    elif len(shape) == 1:
        v = 1.0 + 0.1 * z if key.endswith("weight") else 0.1 * z
    else:
        v = z * math.sqrt(2.0 / int(np.prod(shape[1:])))
    return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))


def load_manifest(path: str | Path) -> dict[str, list[int]]:
    with open(path) as f:
        return json.load(f)["keys"]


def deterministic_state_dict(manifest: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """A full state_dict for ``manifest`` (key -> shape), filled by the rule above."""
    return {key: fill_tensor(key, shape) for key, shape in manifest.items()}


def reference_inputs(h: int = 224, w: int = 384, t: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The clip and waveform the reference outputs were computed from."""
    clip = np.random.default_rng(20201211).standard_normal((1, 3, t, h, w)).astype(np.float32)
    audio = 0.1 * np.random.default_rng(20201212).standard_normal((1, 1, 70560, 1))
    return clip, audio.astype(np.float32)


# The reference README's "tamed" STAViS weights: these tensors of the filled checkpoint
# times 2**e (exact), so that real-range input (pixels minus the mean, about +-150) keeps
# every logit moderate; the plain fill overflows the attention softmax there.
STAVIS_TAMING = {
    "conv1.weight": -6,
    "soundnet8.0.weight": -8,
    **{f"score_dsn.{i}.score_dsn.weight": -3 for i in range(4)},
    "fuse.weight": -3,
    "fuseav.weight": -4,
}
STAVIS_OPTIMIZERS = ("optimizer_global", "optimizer_sal", "optimizer_sound", "optimizer_fusion")


def stavis_snapshot(manifest: dict[str, list[int]], *, tamed: bool = False) -> dict:
    """A STAViS checkpoint as published (train.py's snapshot at epoch 60): the fill rule,
    each tensor seeded from its key as the manifest writes it (``module.`` included),
    optionally tamed, wrapped with ``epoch``, ``arch`` and four empty optimizer states."""
    state = {}
    for key, shape in manifest.items():
        value = fill_tensor(key, shape)
        exponent = STAVIS_TAMING.get(key.removeprefix("module.")) if tamed else None
        state[key] = value * 2.0**exponent if exponent is not None else value
    empty = {"state": {}, "param_groups": []}
    return {"epoch": 61, "arch": "resnet-50", "state_dict": state} | {
        name: dict(empty) for name in STAVIS_OPTIMIZERS
    }
