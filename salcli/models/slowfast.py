"""The SlowFast-R50 video backbone of ViNet-A (Feichtenhofer et al. 2019, as ACAR-Net's
action-localisation model has it), with its lateral connections read out as skips.

The module tree, and so every ``state_dict`` key, shape and their order, is that of the
``backbone.*`` entries of the published ViNet-A checkpoints: the fast pathway first
(``fast_conv1``, ``fast_bn1``, ``fast_res1`` ... ``fast_res4``), then the slow one, then
the four lateral convolutions ``Tconv1`` ... ``Tconv4``. A block's shortcut is a 1x1x1
convolution ``downsample.0`` with its own BatchNorm beside it, ``downsample_bn``.

Bottleneck stages of 3, 4, 6 and 3 blocks; the fast pathway has beta = 1/8 of the slow
one's channels and alpha = 4 times its frame rate. Shapes for a (B, 3, 32, 256, 456)
clip (batch first, channels second)::

    fast pathway, all 32 frames                 slow pathway, clip frames 0, 4, ..., 28
    conv 5x7x7 /(1,2,2), BN, ReLU, max-pool     conv 1x7x7 /(1,2,2), BN, ReLU, max-pool
      (B, 8, 32, 64, 114)    -- Tconv1 -->        (B, 64, 8, 64, 114)  ++ 16 = skip1 (80)
    res1  (B, 32, 32, 64, 114) -- Tconv2 -->    res1 (B, 256, 8, 64, 114) ++ 64 = skip2 (320)
    res2  (B, 64, 32, 32, 57)  -- Tconv3 -->    res2 (B, 512, 8, 32, 57) ++ 128 = skip3 (640)
    res3  (B, 128, 32, 16, 29) -- Tconv4 -->    res3 (B, 1024, 8, 16, 29) ++ 256 = skip4 (1280)
    res4  (B, 256, 32, 16, 29) = fast           res4 (B, 2048, 8, 16, 29) = slow

``++`` is a concatenation on channels, the slow features first; each skip is also the
input of the next slow stage. The lateral convolutions are 5x1x1 with temporal stride 4
(32 fast steps -> 8 slow ones) and double the fast channels. res2 and res3 halve the
frame's sides (stride in the block's 1x3x3 convolution and its shortcut); res4 keeps
them and dilates its 1x3x3 convolutions by 2. Every fast block, and the slow res3 and
res4 blocks, start with a temporal 3x1x1 convolution; the slow res1 and res2 blocks
with a 1x1x1 one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from salcli.models.layers import MaxPool3d, conv3d, fold_conv_bn

STAGE_BLOCKS = (3, 4, 6, 3)  # bottleneck blocks of res1 ... res4 (ResNet-50)
STAGE_PLANES = (64, 128, 256, 512)  # slow pathway's bottleneck widths
STAGE_STRIDES = (1, 2, 2, 1)  # spatial stride of each stage's first block
STAGE_DILATIONS = (1, 1, 1, 2)  # spatial dilation of each stage's 1x3x3 convolutions
SLOW_TEMPORAL_HEADS = (False, False, True, True)  # slow stages whose blocks start 3x1x1
EXPANSION = 4  # a bottleneck's output channels / its width
ALPHA = 4  # fast frames per slow frame
BETA_INV = 8  # slow channels per fast channel (beta = 1/8)
LATERAL_KERNEL = 5  # frames, kernel of the lateral (fast -> slow) convolutions
STEM_CHANNELS = 64  # slow stem's output channels


def conv_bn_relu(x: torch.Tensor, conv: nn.Conv3d, bn: nn.Module) -> torch.Tensor:
    """relu(bn(conv(x))); with the BatchNorm folded (``nn.Identity``) one fused step."""
    if isinstance(bn, nn.Identity):
        return conv3d(x, conv, relu=True)
    return F.relu(bn(conv(x)), inplace=True)


class Bottleneck(nn.Module):
    """1x1x1 (or 3x1x1) -> 1x3x3 (strided, dilated) -> 1x1x1 (x4 channels), each with a
    BatchNorm, ReLUs between; the shortcut (1x1x1 conv + BN where the shape changes)
    added before the last ReLU."""

    def __init__(self, in_ch: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 temporal_head: bool = False):  # fmt: skip
        super().__init__()
        out_ch = planes * EXPANSION
        if temporal_head:
            self.conv1 = nn.Conv3d(in_ch, planes, (3, 1, 1), padding=(1, 0, 0), bias=False)
        else:
            self.conv1 = nn.Conv3d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), stride=(1, stride, stride),
                               padding=(0, dilation, dilation), dilation=(1, dilation, dilation),
                               bias=False)  # fmt: skip
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_ch)
        self.downsample: nn.Sequential | None = None
        self.downsample_bn: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_ch, out_ch, 1, stride=(1, stride, stride), bias=False)
            )
            self.downsample_bn = nn.BatchNorm3d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = conv_bn_relu(x, self.conv1, self.bn1)
        out = conv_bn_relu(out, self.conv2, self.bn2)
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample_bn(self.downsample(x))
        return F.relu(out + shortcut, inplace=True)

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """(convolution, its BatchNorm) attribute pairs, for folding."""
        pairs = [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]
        return pairs + ([("downsample", "downsample_bn")] if self.downsample is not None else [])


def make_stage(in_ch: int, planes: int, blocks: int, *, stride: int, dilation: int,
               temporal_head: bool) -> nn.Sequential:  # fmt: skip
    """``blocks`` bottlenecks; the first takes ``in_ch`` channels and strides."""
    layers = [Bottleneck(in_ch, planes, stride=stride, dilation=dilation,
                         temporal_head=temporal_head)]  # fmt: skip
    layers += [
        Bottleneck(planes * EXPANSION, planes, dilation=dilation, temporal_head=temporal_head)
        for _ in range(blocks - 1)
    ]
    return nn.Sequential(*layers)


def _stem(t_kernel: int, out_ch: int) -> tuple[nn.Conv3d, nn.BatchNorm3d]:
    """A pathway's first convolution (t_kernel x 7 x 7, stride (1, 2, 2)) and its BN."""
    conv = nn.Conv3d(3, out_ch, (t_kernel, 7, 7), stride=(1, 2, 2),
                     padding=(t_kernel // 2, 3, 3), bias=False)  # fmt: skip
    return conv, nn.BatchNorm3d(out_ch)


@dataclass
class SlowFastFeatures:
    """What ViNet-A's neck reads: the two pathways' last features and the four skips."""

    slow: torch.Tensor  # (B, 2048, T/4, H/16, W/16)
    fast: torch.Tensor  # (B, 256, T, H/16, W/16)
    skips: tuple[torch.Tensor, ...]  # skip1 ... skip4: (80, 320, 640, 1280) channels


class SlowFast(nn.Module):
    """SlowFast-R50 (alpha 4, beta 1/8) with time-strided lateral convolutions."""

    def __init__(self):
        super().__init__()
        fast_width = STEM_CHANNELS // BETA_INV  # 8
        # registration order = the checkpoints' key order: fast, slow, laterals
        self.fast_conv1, self.fast_bn1 = _stem(5, fast_width)
        self.fast_maxpool = MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        in_ch = fast_width
        for i in range(4):
            planes = STAGE_PLANES[i] // BETA_INV
            stage = make_stage(in_ch, planes, STAGE_BLOCKS[i], stride=STAGE_STRIDES[i],
                               dilation=STAGE_DILATIONS[i], temporal_head=True)  # fmt: skip
            setattr(self, f"fast_res{i + 1}", stage)
            in_ch = planes * EXPANSION
        self.slow_conv1, self.slow_bn1 = _stem(1, STEM_CHANNELS)
        self.slow_maxpool = MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        fast_ch = [fast_width] + [p // BETA_INV * EXPANSION for p in STAGE_PLANES]  # 8 ... 256
        in_ch = STEM_CHANNELS
        for i in range(4):
            stage = make_stage(in_ch + 2 * fast_ch[i], STAGE_PLANES[i], STAGE_BLOCKS[i],
                               stride=STAGE_STRIDES[i], dilation=STAGE_DILATIONS[i],
                               temporal_head=SLOW_TEMPORAL_HEADS[i])  # fmt: skip
            setattr(self, f"slow_res{i + 1}", stage)
            in_ch = STAGE_PLANES[i] * EXPANSION
        for i in range(4):  # fast -> slow: 5x1x1, temporal stride 4, twice the channels
            lateral = nn.Conv3d(fast_ch[i], 2 * fast_ch[i], (LATERAL_KERNEL, 1, 1),
                                stride=(ALPHA, 1, 1), padding=(LATERAL_KERNEL // 2, 0, 0),
                                bias=False)  # fmt: skip
            setattr(self, f"Tconv{i + 1}", lateral)

    def fast_stages(self) -> list[nn.Sequential]:
        return [self.fast_res1, self.fast_res2, self.fast_res3, self.fast_res4]

    def slow_stages(self) -> list[nn.Sequential]:
        return [self.slow_res1, self.slow_res2, self.slow_res3, self.slow_res4]

    def laterals(self) -> list[nn.Conv3d]:
        return [self.Tconv1, self.Tconv2, self.Tconv3, self.Tconv4]

    def fast_pathway(self, clip: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 3, T, H, W) -> the fast features (B, 256, T, H/16, W/16) and the four
        lateral features for the slow pathway, (B, 2c, T/4, ...) of the stem's and the
        first three stages' c channels."""
        x = self.fast_maxpool(conv_bn_relu(clip, self.fast_conv1, self.fast_bn1))
        lateral = []  # (B, 16, T/4, H/4, W/4), (64, .., H/4), (128, .., H/8), (256, .., H/16)
        for stage, tconv in zip(self.fast_stages(), self.laterals(), strict=True):
            lateral.append(tconv(x))
            x = stage(x)
        return x, lateral

    def forward(self, clip: torch.Tensor) -> SlowFastFeatures:
        """clip (B, 3, T, H, W), T = 32 -> slow and fast features and the four skips."""
        fast, lateral = self.fast_pathway(clip)
        x = clip[:, :, ::ALPHA]  # (B, 3, T/4, H, W): clip frames 0, 4, ..., 28
        x = self.slow_maxpool(conv_bn_relu(x, self.slow_conv1, self.slow_bn1))
        skips = []
        for stage, side in zip(self.slow_stages(), lateral, strict=True):
            x = torch.cat((x, side), dim=1)  # slow first, then the fast pathway's
            skips.append(x)
            x = stage(x)
        return SlowFastFeatures(slow=x, fast=fast, skips=tuple(skips))

    def fold_batchnorm(self) -> None:
        """Every BatchNorm folded into the convolution before it (in place)."""
        pairs = [(self, "fast_conv1", "fast_bn1"), (self, "slow_conv1", "slow_bn1")]
        for stage in (*self.fast_stages(), *self.slow_stages()):
            for block in stage:
                pairs += [(block, conv, bn) for conv, bn in block.conv_bn_pairs()]
        for mod, conv_name, bn_name in pairs:
            conv = getattr(mod, conv_name)
            conv = conv[0] if isinstance(conv, nn.Sequential) else conv
            if fold_conv_bn(conv, getattr(mod, bn_name)):
                setattr(mod, bn_name, nn.Identity())
