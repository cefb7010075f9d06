"""ViNet and AViNet, built from small named blocks that read like the paper's figures.

The module tree (and so every ``state_dict`` key and shape) is exactly that of the
published checkpoints (ViNet_DHF1K.pt, the AViNet fine-tunes, soundnet8_final.pth),
so they load unchanged with strict checking.

Shapes at a 224x384 input, T = 32 (batch first, channels second)::

    clip (B, 3, 32, 224, 384)
      S3D backbone -> y0 (B, 1024, 4, 7, 12)   y1 (B, 832, 8, 14, 24)
                      y2 (B, 480, 16, 28, 48)  y3 (B, 192, 16, 56, 96)
      hierarchical decoder -> (B, 224, 384), after a sigmoid

    waveform (B, 1, 70560, 1) -> SoundNet-8 -> (B, 1024, 3, 1)
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .defaults import CLIP_LEN

BN_EPS_S3D = 1e-3  # BatchNorm epsilon of the S3D backbone (as trained on Kinetics)
BOTTLENECK = (4, 7, 12)  # (T, H, W) of y0 at the 224x384, T = 32 input
BOTTLENECK_TOKENS = BOTTLENECK[0] * BOTTLENECK[1] * BOTTLENECK[2]  # 336
AUDIO_POSITIONS = 3  # SoundNet-8 output length for the 70 560-sample buffer
HALF_DTYPES = (torch.float16, torch.bfloat16)
FP32_TAIL = 4  # last modules of the decoder run in fp32: conv (2,1,1), ReLU, 1x1 conv, sigmoid


def in_fp32(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` in fp32 whatever autocast is on (half-precision inputs taken to
    fp32; a model run in fp64 stays in fp64): for the layers whose values are normalized
    afterwards (a bf16 sigmoid has 8 significant bits: a nearly flat map rounds to a few
    levels) and for ops that have no kernel for mixed dtypes."""
    device = inputs[0].device.type
    with torch.autocast(device, enabled=False):
        return module(*(x.float() if x.dtype in HALF_DTYPES else x for x in inputs))


def as_triple(v) -> tuple[int, int, int]:
    """A 3-D size or stride as (T, H, W): one number stands for all three."""
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


def max_pool3d(x: torch.Tensor, kernel, stride=None, padding=0, dilation=1) -> torch.Tensor:
    """``F.max_pool3d`` of a (B, C, T, H, W) tensor, in its own dtype; the same values.

    A maximum rounds nothing, so it is as exact in bf16 or fp16 as in fp32 (CPU autocast
    would run it in fp32, with a cast up and a cast back down). On the CPU a window runs
    as one max over each axis in turn (a box's maximum is the maximum of its rows'
    maxima), each a few element-wise passes, faster than PyTorch's pooling kernel,
    which also writes an int64 index per output: in bf16, channels-last, S3D's 3x3x3
    windows of stride 1 about 2x, its 1x3x3 windows of stride 2 2-3x (21.6 against 41.3
    ms on base1's), its 1x2x2 ones 5x. Only windows strided over all three axes
    (Mixed_4's 3x3x3 of stride 2: 91 ms in that kernel, 118 separable) stay with it.
    """
    k, p, d = as_triple(kernel), as_triple(padding), as_triple(dilation)
    s = k if stride is None else as_triple(stride)
    separable = not all(s[i] > 1 for i in range(3))
    with torch.autocast(x.device.type, enabled=False):
        compiling = torch.compiler.is_compiling()  # out= views break its graphs
        if x.device.type != "cpu" or x.dim() != 5 or x.requires_grad or not separable or compiling:
            return F.max_pool3d(x, k, s, p, d)
        sizes = [(x.shape[2 + i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(3)]
        # the axis that shrinks most first: the passes after it see less
        for i in sorted(range(3), key=lambda i: (sizes[i] / x.shape[2 + i], -i)):
            x = _max_along(x, 2 + i, k[i], s[i], p[i], d[i])
        return x


def _max_along(x: torch.Tensor, axis: int, k: int, s: int, p: int, d: int) -> torch.Tensor:
    """Max pooling along one axis: out[i] = max over j < k of x[i*s - p + j*d], the
    positions outside the axis left out (as padding with -inf)."""
    if k == 1 and s == 1 and p == 0:
        return x
    n = x.shape[axis]
    n_out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    full, partial = [], []  # taps: (first output, outputs, input view)
    for j in range(k):
        off = j * d - p  # input position of output 0
        first = max(0, -(off // s))  # outputs whose input lies inside the axis
        last = min(n_out - 1, (n - 1 - off) // s)
        if first > last:
            continue
        index = [slice(None)] * x.dim()
        index[axis] = slice(first * s + off, last * s + off + 1, s)
        tap = (first, last - first + 1, x[tuple(index)])
        (full if tap[1] == n_out else partial).append(tap)
    shape = list(x.shape)
    shape[axis] = n_out
    # keep the layout: channels-last in, channels-last out
    fmt = torch.channels_last_3d if x.stride(1) == 1 < x.shape[1] else torch.contiguous_format
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    if len(full) >= 2:
        torch.maximum(full[0][2], full[1][2], out=out)
        full = full[2:]
    elif full:
        out.copy_(full.pop()[2])
    else:
        out.fill_(float("-inf"))
    for first, count, tap in full + partial:
        view = out.narrow(axis, first, count)
        torch.maximum(view, tap, out=view)
    return out


class MaxPool3d(nn.MaxPool3d):
    """``nn.MaxPool3d`` that keeps its input's dtype under autocast (see ``max_pool3d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ceil_mode or self.return_indices:
            return super().forward(x)
        return max_pool3d(x, self.kernel_size, self.stride, self.padding, self.dilation)


def _fused_conv_op():
    """oneDNN's convolution with a fused element-wise op (what torch.compile uses on the
    CPU), where this PyTorch build has it."""
    try:
        return torch.ops.mkldnn._convolution_pointwise.default
    except (AttributeError, RuntimeError):
        return None


_FUSED_CONV = _fused_conv_op()
_ONEDNN_CHECKS = {
    torch.bfloat16: "_is_mkldnn_bf16_supported",  # AVX512-BF16, AMX or AVX-NE-CONVERT
    torch.float16: "_is_mkldnn_fp16_supported",  # AVX512-FP16, AMX-FP16 or AVX-NE-CONVERT
}


@functools.cache
def onednn_computes(dtype: torch.dtype) -> bool:
    """Whether oneDNN has native CPU kernels for ``dtype`` on this machine. Without them
    PyTorch emulates it (slowly, but correctly) and oneDNN's own primitives, such as the
    fused convolution of ``conv3d``, refuse it."""
    check = _ONEDNN_CHECKS.get(dtype)
    try:
        return check is not None and bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def conv3d(x: torch.Tensor, conv: nn.Conv3d, *, relu: bool = False, weight=None, stride=None,
           padding=None, dilation=None) -> torch.Tensor:  # fmt: skip
    """``conv(x)`` (then a ReLU), with ``weight``, ``stride``, ``padding`` or ``dilation``
    in place of the layer's own where given.

    A layer stored in bf16 / fp16 (``cast_for_precision``) runs on a CPU that computes
    that dtype natively (``onednn_computes``) as one oneDNN primitive with the ReLU
    fused: the same values (a ReLU commutes with rounding to the dtype) and one pass less
    over the output. Elsewhere, and in fp32, it runs as it always has.
    """
    w = conv.weight if weight is None else weight
    stride = conv.stride if stride is None else stride
    padding = conv.padding if padding is None else padding
    dilation = conv.dilation if dilation is None else dilation
    fuse = (
        relu
        and _FUSED_CONV is not None
        and not torch.compiler.is_compiling()  # torch.compile fuses on its own
        and x.device.type == "cpu"
        and onednn_computes(w.dtype)  # bf16 / fp16 that this CPU computes natively
        and conv.padding_mode == "zeros"
        and not isinstance(padding, str)
        and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
    )
    if fuse:
        return _FUSED_CONV(x.to(w.dtype), w, conv.bias, list(padding), list(stride),
                           list(dilation), conv.groups, "relu", [], "")  # fmt: skip
    out = F.conv3d(x, w, conv.bias, stride, padding, dilation, conv.groups)
    return F.relu(out, inplace=True) if relu else out


def fused_steps(seq: nn.Sequential) -> list[tuple[nn.Module, bool]]:
    """``seq``'s modules as (module, ReLU after it) steps: a convolution that a ReLU
    follows (past folded BatchNorms, now ``nn.Identity``) is one step with its ReLU,
    which ``conv3d`` fuses; any other module is a step of its own."""
    mods = [m for m in seq if not isinstance(m, nn.Identity)]
    steps: list[tuple[nn.Module, bool]] = []
    i = 0
    while i < len(mods):
        relu = (
            isinstance(mods[i], nn.Conv3d)
            and i + 1 < len(mods)
            and isinstance(mods[i + 1], nn.ReLU)
        )
        steps.append((mods[i], relu))
        i += 2 if relu else 1
    return steps


def run_sequential(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``seq(x)``, each convolution that a ReLU follows run with it (``conv3d``)."""
    for module, relu in fused_steps(seq):
        x = conv3d(x, module, relu=True) if relu else module(x)
    return x


# ---------------------------------------------------------------------------
# S3D backbone
# ---------------------------------------------------------------------------


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
        part where a time position depends only on nearby frames (salcli.overlap)."""
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


# ---------------------------------------------------------------------------
# Hierarchical decoder
# ---------------------------------------------------------------------------


class SpatialUpsample(nn.Module):
    """Doubles H and W of a (B, C, T, H, W) tensor, bilinear, frame by frame.

    Identical to ``nn.Upsample(scale_factor=(1, 2, 2), mode="trilinear")`` (a scale of 1
    in time interpolates nothing), but runs as a 2-D op over the B*T frames, which is
    several times faster.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
        up = F.interpolate(frames, scale_factor=2.0, mode="bilinear", align_corners=False)
        return up.reshape(b, t, c, 2 * h, 2 * w).transpose(1, 2)  # (B, C, T, 2H, 2W)


def _up_block(in_ch: int, out_ch: int, t_kernel: int) -> list[nn.Module]:
    """Conv (t_kernel, 3, 3) with an equal temporal stride, ReLU, x2 spatial upsampling."""
    return [
        nn.Conv3d(
            in_ch,
            out_ch,
            (t_kernel, 3, 3),
            stride=(t_kernel, 1, 1),
            padding=(0, 1, 1),
            bias=False,
        ),
        nn.ReLU(inplace=True),
        SpatialUpsample(),
    ]


class HierarchicalDecoder(nn.Module):
    """ViNet's decoder: each level is concatenated in *time* with the next skip feature."""

    def __init__(self):
        super().__init__()
        self.convtsp1 = nn.Sequential(*_up_block(1024, 832, 1))
        self.convtsp2 = nn.Sequential(*_up_block(832, 480, 3))
        self.convtsp3 = nn.Sequential(*_up_block(480, 192, 5))
        self.convtsp4 = nn.Sequential(
            *_up_block(192, 64, 5),  # -> (B, 64, 4, 112, 192)
            *_up_block(64, 32, 2),  # -> (B, 32, 2, 224, 384)
            nn.Conv3d(32, 32, (2, 1, 1), stride=(2, 1, 1), bias=False),  # -> T = 1
            nn.ReLU(inplace=True),
            nn.Conv3d(32, 1, 1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, y0, y1, y2, y3) -> torch.Tensor:
        z = torch.cat((run_sequential(self.convtsp1, y0), y1), dim=2)  # (B, 832, 12, H/16, W/16)
        z = torch.cat((run_sequential(self.convtsp2, z), y2), dim=2)  # (B, 480, 20, H/8, W/8)
        z = torch.cat((run_sequential(self.convtsp3, z), y3), dim=2)  # (B, 192, 20, H/4, W/4)
        z = run_sequential(self.convtsp4[:-FP32_TAIL], z)  # (B, 32, 2, H, W)
        z = in_fp32(self.convtsp4[-FP32_TAIL:], z)  # (B, 1, 1, H, W) float32
        return z.reshape(z.shape[0], z.shape[3], z.shape[4])  # (B, H, W)


class ViNet(nn.Module):
    """Visual-only ViNet: S3D backbone + hierarchical decoder; one map per clip."""

    arch = "vinet"

    def __init__(self):
        super().__init__()
        self.backbone = S3DBackbone()
        self.decoder = HierarchicalDecoder()

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip (B, 3, T, H, W), normalized -> saliency (B, H, W) in (0, 1)."""
        return self.finish(*self.backbone.shallow(clip))

    @property
    def s3d(self) -> S3DBackbone:
        return self.backbone

    def encode_sound(self, waveform: torch.Tensor | None) -> None:
        return None  # visual only

    def finish(self, y2: torch.Tensor, y3: torch.Tensor, sound: torch.Tensor | None = None):
        """The stages after the shallow ones: deep backbone -> decoder -> (B, H, W)."""
        return self.decoder(*self.backbone.deep(y2), y2, y3)


# ---------------------------------------------------------------------------
# SoundNet-8
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# AViNet fusions
# ---------------------------------------------------------------------------


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal positions, stored as the buffer ``pe`` of shape (L, 1, d)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe.unsqueeze(1))
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.shape[0]])  # x: (L, B, d)


class TokenTransformer(nn.Module):
    """Positional encoding + a post-norm transformer encoder over (L, B, d) tokens."""

    def __init__(
        self,
        d_model: int = 512,
        *,
        nhead: int = 4,
        layers: int = 3,
        ff: int = 512,
        max_len: int = BOTTLENECK_TOKENS + AUDIO_POSITIONS,
    ):
        super().__init__()
        self.pos_encoder = PositionalEncoding(d_model, max_len)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=ff)
        self.transformer_encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.transformer_encoder(self.pos_encoder(tokens))


class AViNet(nn.Module):
    """Audio-visual ViNet: S3D + SoundNet-8, fused at the bottleneck, ViNet's decoder.

    ``fusion`` is "bilinear" (AViNet(B)), "transformer" (AViNet(T)) or "concat"
    (AViNet(C)). The published checkpoints of (B) and (T) carry modules that the
    other variant does not use; they are built here too, so that those files load
    strictly.
    """

    arch = "avinet"

    def __init__(self, fusion: str = "bilinear", *, d_model: int = 512):
        super().__init__()
        if fusion not in ("bilinear", "transformer", "concat"):
            raise ValueError(f"unknown fusion {fusion!r}")
        self.fusion = fusion
        # registration order = the published checkpoints' key order
        self.visual_model = ViNet()
        if fusion == "transformer":
            self.conv_in_1x1 = nn.Conv3d(1024, d_model, 1)
            self.transformer = TokenTransformer(d_model)
        self.audionet = SoundNet8()
        if fusion == "transformer":
            self.audio_conv_1x1 = nn.Conv2d(1024, d_model, 1)
        if fusion in ("bilinear", "transformer"):
            self.bilinear = nn.Bilinear(
                BOTTLENECK[1] * (BOTTLENECK[2] // 2), AUDIO_POSITIONS, BOTTLENECK_TOKENS
            )  # (7 * 6 = 42, 3) -> 336
        if fusion == "concat":
            self.concat_conv = nn.Conv3d(2048, 1024, 1)

    def fuse(self, y0: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """y0 (B, 1024, 4, 7, 12), audio (B, 1024, 3, 1) -> fused (B, 1024, 4, 7, 12)."""
        b = y0.shape[0]
        if self.fusion == "bilinear":
            v = max_pool3d(y0, (4, 1, 1), stride=(2, 1, 2))  # (B, 1024, 1, 7, 6)
            # nn.Bilinear has no autocast rule: it needs one dtype (and is cheap)
            out = in_fp32(self.bilinear, v.flatten(2), audio.flatten(2))  # (B, 1024, 336)
            return out.reshape(b, out.shape[1], *BOTTLENECK)
        if self.fusion == "transformer":
            v = self.conv_in_1x1(y0).flatten(2)  # (B, 512, 336)
            a = self.audio_conv_1x1(audio).flatten(2)  # (B, 512, 3)
            tokens = torch.cat((v, a), dim=2).permute(2, 0, 1)  # (339, B, 512)
            out = self.transformer(tokens).permute(1, 2, 0)  # (B, 512, 339)
            n = v.shape[2]
            video = out[..., :n].reshape(b, out.shape[1], *y0.shape[2:])
            sound = out[..., n:].mean(dim=2)[:, :, None, None, None].expand_as(video)
            return torch.cat((video, sound), dim=1)  # (B, 1024, 4, 7, 12)
        sound = audio.mean(dim=(2, 3))[:, :, None, None, None].expand_as(y0)
        return self.concat_conv(torch.cat((y0, sound), dim=1))

    def forward(self, clip: torch.Tensor, waveform: torch.Tensor) -> torch.Tensor:
        """clip (B, 3, T, H, W), waveform (B, 1, 70560, 1) -> saliency (B, H, W)."""
        sound = self.encode_sound(waveform)
        return self.finish(*self.s3d.shallow(clip), sound)

    @property
    def s3d(self) -> S3DBackbone:
        return self.visual_model.backbone

    def encode_sound(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, 1, 70560, 1) -> SoundNet-8 features (B, 1024, 3, 1)."""
        return self.audionet(waveform)

    def finish(self, y2: torch.Tensor, y3: torch.Tensor, sound: torch.Tensor) -> torch.Tensor:
        """Deep backbone stages -> fusion with the sound -> ViNet's decoder -> (B, H, W)."""
        y0, y1 = self.s3d.deep(y2)
        return self.visual_model.decoder(self.fuse(y0, sound), y1, y2, y3)


# ---------------------------------------------------------------------------
# Inference-only rewrite
# ---------------------------------------------------------------------------


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv3d | nn.Conv2d, bn: nn.Module) -> bool:
    """conv <- bn(conv(.)) in eval mode: scale the weights, shift the bias.

    False (and nothing done) when ``bn`` is not a BatchNorm: already folded."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return False
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    conv.weight.mul_(scale.view(shape))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return True


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that follows a convolution into it, in place, for inference.

    The maps are unchanged up to float rounding (about 1e-7) and a forward pass skips
    one read and write of every backbone activation (about 15 % faster on CPU). The
    result is for inference only: its state_dict no longer has the published keys.
    Folding a folded model changes nothing.
    """
    pairs = []  # (module, conv attribute, norm attribute)
    for mod in model.modules():
        if isinstance(mod, BasicConv3d):
            pairs.append((mod, "conv", "bn"))
        elif isinstance(mod, SepConv3d):
            pairs += [(mod, "conv_s", "bn_s"), (mod, "conv_t", "bn_t")]
        elif isinstance(mod, SoundNet8):
            pairs += [(mod, f"conv{i}", f"batchnorm{i}") for i in range(1, len(mod.LAYERS) + 1)]
    for mod, conv, norm in pairs:
        if fold_conv_bn(getattr(mod, conv), getattr(mod, norm)):
            setattr(mod, norm, nn.Identity())
    return model


def cast_for_precision(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Store every convolution's weight and bias in ``dtype`` once (in place), for a model
    run under ``torch.autocast(dtype=dtype)``.

    Autocast computes convolutions in ``dtype`` and so casts their fp32 weights on every
    call; cast once, the values are the same (the maps are identical) and each forward
    pass skips a read and write of all the weights. What runs in fp32 by design keeps
    fp32: the decoder's last ``FP32_TAIL`` layers and everything that is not a
    convolution (AViNet's fusions, the transformer). A model cast so must run under
    autocast (its layers then take inputs of either dtype); fp32 changes nothing.
    """
    if dtype == torch.float32:
        return model
    keep = set()  # modules that stay fp32
    for mod in model.modules():
        if isinstance(mod, HierarchicalDecoder):
            keep.update(mod.convtsp4[-FP32_TAIL:].modules())
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Conv2d, nn.Conv3d)) and mod not in keep:
                mod.to(dtype)
    return model


def build_model(arch: str) -> nn.Module:
    """A fresh, randomly initialised model: "vinet", "bilinear", "transformer", "concat",
    "soundnet" or "stavis" (the audio-visual STAViS; both variants have its keys)."""
    if arch == "vinet":
        return ViNet()
    if arch == "soundnet":
        return SoundNet8()
    if arch == "stavis":
        from .stavis import Stavis

        return Stavis(audiovisual=True)
    return AViNet(arch)


__all__ = [
    "CLIP_LEN",
    "ViNet",
    "AViNet",
    "SoundNet8",
    "S3DBackbone",
    "HierarchicalDecoder",
    "build_model",
    "fold_batchnorm",
    "cast_for_precision",
    "max_pool3d",
]
