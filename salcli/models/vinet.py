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
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from salcli.models.layers import (
    cast_convolutions,
    fold_conv_bn,
    in_fp32,
    max_pool3d,
    run_sequential,
)
from salcli.models.s3d import BasicConv3d, S3DBackbone, SepConv3d
from salcli.models.soundnet import SoundNet8

BOTTLENECK = (4, 7, 12)  # (T, H, W) of y0 at the 224x384, T = 32 input
BOTTLENECK_TOKENS = BOTTLENECK[0] * BOTTLENECK[1] * BOTTLENECK[2]  # 336
AUDIO_POSITIONS = 3  # SoundNet-8 output length for the 70 560-sample buffer
FP32_TAIL = 4  # last modules of the decoder run in fp32: conv (2,1,1), ReLU, 1x1 conv, sigmoid


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


def _up_block(in_ch: int, out_ch: int, t_kernel: int, groups: int = 1) -> list[nn.Module]:
    """Conv (t_kernel, 3, 3) with an equal temporal stride, ReLU, x2 spatial upsampling."""
    return [
        nn.Conv3d(
            in_ch,
            out_ch,
            (t_kernel, 3, 3),
            stride=(t_kernel, 1, 1),
            padding=(0, 1, 1),
            groups=groups,
            bias=False,
        ),
        nn.ReLU(inplace=True),
        SpatialUpsample(),
    ]


FULL = (1, 1, 1, 1, 1)  # ViNet's decoder: every convolution sees every channel


class HierarchicalDecoder(nn.Module):
    """ViNet's decoder: each level is concatenated in *time* with the next skip feature.

    ``groups``: the channel groups of its five 3x3 convolutions, in order (ViNet-S's
    decoder is this one with grouped convolutions, ``salcli.models.vinet_s``)."""

    def __init__(self, groups: tuple[int, int, int, int, int] = FULL):
        super().__init__()
        g1, g2, g3, g4, g5 = groups
        self.convtsp1 = nn.Sequential(*_up_block(1024, 832, 1, g1))
        self.convtsp2 = nn.Sequential(*_up_block(832, 480, 3, g2))
        self.convtsp3 = nn.Sequential(*_up_block(480, 192, 5, g3))
        self.convtsp4 = nn.Sequential(
            *_up_block(192, 64, 5, g4),  # -> (B, 64, 4, 112, 192)
            *_up_block(64, 32, 2, g5),  # -> (B, 32, 2, 224, 384)
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

    def __init__(self, decoder_groups: tuple[int, int, int, int, int] = FULL):
        super().__init__()
        self.backbone = S3DBackbone()
        self.decoder = HierarchicalDecoder(decoder_groups)

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
    return cast_convolutions(
        model, dtype, HierarchicalDecoder, "convtsp4", FP32_TAIL, (nn.Conv2d, nn.Conv3d)
    )


def detect(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """What a state_dict (``module.`` removed) holds by its keys: "vinet", or an AViNet's
    fusion ("bilinear", "transformer", "concat"); None when it is none of them."""
    keys = set(state_dict)
    if "transformer.pos_encoder.pe" in keys:
        return "transformer"
    if "concat_conv.weight" in keys:
        return "concat"
    if "bilinear.weight" in keys and any(k.startswith("visual_model.") for k in keys):
        return "bilinear"
    if "decoder.convtsp4.8.weight" in keys and any(k.startswith("backbone.") for k in keys):
        first = state_dict.get("decoder.convtsp1.0.weight")
        # a grouped decoder (ViNet-S) sees fewer than the 1024 channels of y0 per filter
        return "vinet" if first is None or first.shape[1] == 1024 else None
    return None
