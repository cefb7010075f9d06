"""SoundNet-8 (Aytar et al. 2016), AViNet's audio branch, with the module tree of the
published ``soundnet8_final.pth``: a raw waveform (B, 1, N, 1) -> (B, 1024, N', 1).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn


class SoundNet8(nn.Module):
    """SoundNet-8 (Aytar et al. 2016) over a raw waveform (B, 1, N, 1) -> (B, 1024, N', 1).

    ``forward`` stops after conv7's ReLU, as AViNet uses it; the conv8 heads are kept
    only so that the published checkpoint loads strictly.
    """

    # (out channels, kernel, padding, max-pool after) for conv1..conv7; stride 2 each.
    LAYERS = (
        (16, 64, 32, 8),
        (32, 32, 16, 8),
        (64, 16, 8, 1),
        (128, 8, 4, 1),
        (256, 4, 2, 4),
        (512, 4, 2, 1),
        (1024, 4, 2, 1),
    )

    def __init__(self):
        super().__init__()
        in_ch = 1
        self._pools: list[int] = []
        for i, (out_ch, k, pad, pool) in enumerate(self.LAYERS, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(in_ch, out_ch, (k, 1), (2, 1), (pad, 0)))
            self.add_module(f"batchnorm{i}", nn.BatchNorm2d(out_ch))
            self._pools.append(pool)
            in_ch = out_ch
        self.conv8_objs = nn.Conv2d(1024, 1000, (8, 1), (2, 1))
        self.conv8_scns = nn.Conv2d(1024, 401, (8, 1), (2, 1))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform  # (B, 1, N, 1)
        for i, pool in enumerate(self._pools, start=1):
            x = getattr(self, f"conv{i}")(x)
            x = F.relu(getattr(self, f"batchnorm{i}")(x))
            if pool > 1:
                x = F.max_pool2d(x, (pool, 1), (pool, 1))
        return x  # (B, 1024, N', 1)


def detect(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """ "soundnet" when a state_dict holds SoundNet-8 alone (its conv1 ... conv7)."""
    return "soundnet" if "conv1.weight" in state_dict and "conv7.weight" in state_dict else None
