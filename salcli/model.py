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
FP32_TAIL = 4  # last modules of the decoder run in fp32: conv (2,1,1), ReLU, 1x1 conv, sigmoid


def in_fp32(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` in fp32 whatever autocast is on: for the layers whose values are
    normalized afterwards (a bf16 sigmoid has 8 significant bits: a nearly flat map
    rounds to a few levels) and for ops that have no kernel for mixed dtypes."""
    device = inputs[0].device.type
    with torch.autocast(device, enabled=False):
        return module(*(x.float() for x in inputs))


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
            nn.MaxPool3d(kernel_size=3, stride=1, padding=1), BasicConv3d(in_ch, b3)
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
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            BasicConv3d(64, 64),
            SepConv3d(64, 192, kernel=3, padding=1),
        )
        self.maxp2 = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.base2 = nn.Sequential(
            InceptionBlock(192, b0=64, b1=(96, 128), b2=(16, 32), b3=32),  # Mixed_3b
            InceptionBlock(256, b0=128, b1=(128, 192), b2=(32, 96), b3=64),  # Mixed_3c
        )
        self.maxp3 = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.base3 = nn.Sequential(
            InceptionBlock(480, b0=192, b1=(96, 208), b2=(16, 48), b3=64),  # Mixed_4b
            InceptionBlock(512, b0=160, b1=(112, 224), b2=(24, 64), b3=64),  # Mixed_4c
            InceptionBlock(512, b0=128, b1=(128, 256), b2=(24, 64), b3=64),  # Mixed_4d
            InceptionBlock(512, b0=112, b1=(144, 288), b2=(32, 64), b3=64),  # Mixed_4e
            InceptionBlock(528, b0=256, b1=(160, 320), b2=(32, 128), b3=128),  # Mixed_4f
        )
        self.maxt4 = nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1))
        self.maxp4 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
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
        z = torch.cat((self.convtsp1(y0), y1), dim=2)  # (B, 832, 12, H/16, W/16)
        z = torch.cat((self.convtsp2(z), y2), dim=2)  # (B, 480, 20, H/8, W/8)
        z = torch.cat((self.convtsp3(z), y3), dim=2)  # (B, 192, 20, H/4, W/4)
        z = self.convtsp4[:-FP32_TAIL](z)  # (B, 32, 2, H, W)
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
            v = F.max_pool3d(y0, (4, 1, 1), stride=(2, 1, 2))  # (B, 1024, 1, 7, 6)
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
def _fold(conv: nn.Conv3d | nn.Conv2d, bn: nn.Module) -> bool:
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
        if _fold(getattr(mod, conv), getattr(mod, norm)):
            setattr(mod, norm, nn.Identity())
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
]
