"""S3D (Xie et al. 2018), the video backbone of ViNet and AViNet: named blocks that read
like the paper's figure, with the module tree (and so the ``state_dict`` keys) of the
published checkpoints' ``backbone.*``.

Shapes at a 224x384 input, T = 32 (batch first, channels second)::

    clip (B, 3, 32, 224, 384) -> y0 (B, 1024, 4, 7, 12)   y1 (B, 832, 8, 14, 24)
                                 y2 (B, 480, 16, 28, 48)  y3 (B, 192, 16, 56, 96)
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from salcli.models.layers import MaxPool3d, run_sequential

BN_EPS_S3D = 1e-3  # BatchNorm epsilon of the S3D backbone (as trained on Kinetics)


class BasicConv3d(nn.Sequential):
    """Conv3d (no bias) -> BatchNorm -> ReLU (its forward is its children in order)."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel=1, stride=1, padding=0):
        super().__init__(
            OrderedDict(
                conv=nn.Conv3d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False),
                bn=nn.BatchNorm3d(out_ch, eps=BN_EPS_S3D, momentum=0.001),
                relu=nn.ReLU(inplace=True),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_sequential(self, x)


class SepConv3d(nn.Sequential):
    """Separable 3-D convolution: a (1, k, k) spatial conv, then a (k, 1, 1) temporal one,
    each followed by BatchNorm and ReLU (its forward is its children in order)."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int, stride: int = 1, padding: int = 0):
        spatial = nn.Conv3d(
            in_ch,
            out_ch,
            (1, kernel, kernel),
            stride=(1, stride, stride),
            padding=(0, padding, padding),
            bias=False,
        )
        temporal = nn.Conv3d(
            out_ch,
            out_ch,
            (kernel, 1, 1),
            stride=(stride, 1, 1),
            padding=(padding, 0, 0),
            bias=False,
        )
        super().__init__(
            OrderedDict(
                conv_s=spatial,
                bn_s=nn.BatchNorm3d(out_ch, eps=BN_EPS_S3D, momentum=0.001),
                relu_s=nn.ReLU(inplace=True),
                conv_t=temporal,
                bn_t=nn.BatchNorm3d(out_ch, eps=BN_EPS_S3D, momentum=0.001),
                relu_t=nn.ReLU(inplace=True),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_sequential(self, x)


class InceptionBlock(nn.Module):
    """S3D's separable inception block ("Mixed_*"): four branches concatenated on channels.

    ``b1`` and ``b2`` are (reduce, out) widths of the two separable-conv branches.
    """

    def __init__(self, in_ch: int, *, b0: int, b1: tuple[int, int], b2: tuple[int, int], b3: int):
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv3d(in_ch, b0))
        self.branch1 = nn.Sequential(
            BasicConv3d(in_ch, b1[0]), SepConv3d(b1[0], b1[1], kernel=3, padding=1)
        )
        self.branch2 = nn.Sequential(
            BasicConv3d(in_ch, b2[0]), SepConv3d(b2[0], b2[1], kernel=3, padding=1)
        )
        self.branch3 = nn.Sequential(
            MaxPool3d(kernel_size=3, stride=1, padding=1), BasicConv3d(in_ch, b3)
        )
        self.out_channels = b0 + b1[1] + b2[1] + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            (self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), dim=1
        )


class S3DBackbone(nn.Module):
    """S3D (Xie et al. 2018) feature extractor returning four levels, deepest first."""

    def __init__(self):
        super().__init__()
        self.base1 = nn.Sequential(
            SepConv3d(3, 64, kernel=7, stride=2, padding=3),
            MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            BasicConv3d(64, 64),
            SepConv3d(64, 192, kernel=3, padding=1),
        )
        self.maxp2 = MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.base2 = nn.Sequential(
            InceptionBlock(192, b0=64, b1=(96, 128), b2=(16, 32), b3=32),  # Mixed_3b
            InceptionBlock(256, b0=128, b1=(128, 192), b2=(32, 96), b3=64),  # Mixed_3c
        )
        self.maxp3 = MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.base3 = nn.Sequential(
            InceptionBlock(480, b0=192, b1=(96, 208), b2=(16, 48), b3=64),  # Mixed_4b
            InceptionBlock(512, b0=160, b1=(112, 224), b2=(24, 64), b3=64),  # Mixed_4c
            InceptionBlock(512, b0=128, b1=(128, 256), b2=(24, 64), b3=64),  # Mixed_4d
            InceptionBlock(512, b0=112, b1=(144, 288), b2=(32, 64), b3=64),  # Mixed_4e
            InceptionBlock(528, b0=256, b1=(160, 320), b2=(32, 128), b3=128),  # Mixed_4f
        )
        self.maxt4 = MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1))
        self.maxp4 = MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.base4 = nn.Sequential(
            InceptionBlock(832, b0=256, b1=(160, 320), b2=(32, 128), b3=128),  # Mixed_5b
            InceptionBlock(832, b0=384, b1=(192, 384), b2=(48, 128), b3=128),  # Mixed_5c
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y2, y3 = self.shallow(x)
        return [*self.deep(y2), y2, y3]

    def shallow_stages(self) -> tuple[tuple[nn.Module, ...], tuple[nn.Module, ...]]:
        """The stages up to Mixed_3c, whose outputs y3 and y2 the decoder takes: the
        part where a time position depends only on nearby frames (salcli.inference.overlap)."""
        return (self.base1,), (self.maxp2, self.base2)

    def shallow(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clip -> (y2, y3): y3 (B, 192, T/2, H/4, W/4), y2 (B, 480, T/2, H/8, W/8)."""
        outs = []
        for stage in self.shallow_stages():
            for module in stage:
                x = module(x)
            outs.append(x)
        y3, y2 = outs
        return y2, y3

    def deep(self, y2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stages after Mixed_3c: y2 -> (y0, y1)."""
        y1 = self.base3(self.maxp3(y2))  # (B, 832, T/4, H/16, W/16)
        y0 = self.base4(self.maxp4(self.maxt4(y1)))  # (B, 1024, T/8, H/32, W/32)
        return y0, y1
