"""ViNet-S (Girmaji et al., "Minimalistic Video Saliency Prediction via Efficient Decoder &
Spatio Temporal Action Cues", ICASSP 2025; ViNet-Saliency/vinet_v2): ViNet's S3D backbone
and ViNet's hierarchical decoder with its convolutions grouped ("root grouping": 32, 16,
8, 4 and 2 groups), a 36 MB model.

The module tree, and so every ``state_dict`` key and shape, is that of the published
files (``DHF1K_vinet_s_rootgrouped_32_bs8_kld_cc.pt`` and the others declared in
``salcli.models.registry``): plain state_dicts, 470 entries; the 462 ``backbone.*`` are
ViNet's S3D (the same names, shapes and function), the 8 ``decoder.*`` the grouped decoder.
It is a ViNet in everything else: batching, overlap reuse, BatchNorm folding, the bf16
cast and the fused oneDNN convolutions apply as they are.

Shapes at a 224x384 input, T = 32 (batch first, channels second)::

    clip (B, 3, 32, 224, 384)
      S3D backbone -> y0 (B, 1024, 4, 7, 12)   y1 (B, 832, 8, 14, 24)
                      y2 (B, 480, 16, 28, 48)  y3 (B, 192, 16, 56, 96)
      grouped decoder, skips concatenated in time -> (B, 224, 384), after a sigmoid

The decoder's x2 upsampling is ViNet's (trilinear with a time factor of 1, corners not
aligned), as the authors' inference scripts build it; their training script built the
model with a bilinear, corners-aligned upsampling instead (``BiCubic = not
--use_trilinear_upsampling``), which the published inference does not use. The published
procedure (frames, clips, maps) is ViNet's but for the first 31 frames: their clip starts
with copies of frame 0 (``salcli.models.vinet_procedure.LastFrameClips`` with
``reference="clamped"``).

Licence: the authors' code and weights are CC BY-NC-SA 4.0 (non-commercial).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from salcli.models.vinet import ViNet

ROOT_GROUPS = (32, 16, 8, 4, 2)  # channel groups of the decoder's five 3x3 convolutions
LICENCE = "CC BY-NC-SA 4.0: non-commercial use only, share alike, credit the authors"


class ViNetS(ViNet):
    """ViNet-S: ViNet's S3D backbone, ViNet's decoder with grouped convolutions."""

    arch = "vinet-s"

    def __init__(self):
        super().__init__(decoder_groups=ROOT_GROUPS)


def detect(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """ "vinet-s" when a state_dict holds ViNet-S (ViNet's keys, its first decoder
    convolution grouped 32 ways: 32 of y0's 1024 channels per filter); else None."""
    first = state_dict.get("decoder.convtsp1.0.weight")
    head = "decoder.convtsp4.8.weight" in state_dict
    backbone = any(k.startswith("backbone.") for k in state_dict)
    grouped = first is not None and first.dim() == 5 and first.shape[1] * ROOT_GROUPS[0] == 1024
    return "vinet-s" if head and backbone and grouped else None
