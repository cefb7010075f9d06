"""ViNet-A (Girmaji et al., ICASSP 2025, "ViNet++"): a SlowFast-R50 action backbone, a neck
that merges its two pathways, and a grouped decoder with channel shuffles.

The module tree, and so every ``state_dict`` key, shape and their order, is that of the
published checkpoints (``ViNet_A_DHF1K_no_split_neck_32_kldiv_cc___6_0.pt`` and the other
fine-tunes): plain state_dicts that load strictly, unchanged. The procedure around the
network (frames in, which clip predicts which frame, maps out) is in
``salcli.models.vinet_a_procedure``.

Shapes for one clip (B, 3, 32, 256, 456), mean 0.45 / std 0.225 normalized::

    SlowFast-R50 (salcli.models.slowfast)
      slow (B, 2048, 8, 16, 29)    fast (B, 256, 32, 16, 29)
      skip1 (B, 80, 8, 64, 114)    skip2 (B, 320, 8, 64, 114)
      skip3 (B, 640, 8, 32, 57)    skip4 (B, 1280, 8, 16, 29)
    neck
      slow -> 1x1x1 conv + ReLU                                (B, 1024, 8, 16, 29)
      fast re-read in memory order as (B, 512, 16, 16, 29), max over step pairs
                                                               (B, 512, 8, 16, 29)
      both, slow first                                         (B, 1536, 8, 16, 29)
      skip1 ... skip4 -> 1x1x1 conv + ReLU, half the channels  (40, 160, 320, 640)
    decoder (3x3x3 grouped convs + ReLU; ++ = concatenation on channels, decoder first)
      convtsp1 (g 32)                  (B, 640, 8, 16, 29)  ++ skip4, shuffle 32 -> 1280
      convtsp2 (g 16), up (1, 2, 57/29) (B, 320, 8, 32, 57)  ++ skip3, shuffle 16 -> 640
      convtsp3 (g 8), up x2            (B, 160, 8, 64, 114) ++ skip2, shuffle 8  -> 320
      convtsp4 (g 8)                   (B, 40, 8, 64, 114)  ++ skip1             -> 80
      convtsp5 2x3x3 /2 (g 4), up x2   (B, 64, 4, 128, 228)
      convtsp6 2x3x3 /2 (g 2), up x2   (B, 32, 2, 256, 456)
               2x3x3, 1x1x1, 1x1x1     (B, 1, 1, 256, 456) logits -> sigmoid (B, 256, 456)

"up" is bilinear with half-pixel centres on each frame (the authors' trilinear
``nn.Upsample`` with a time scale of 1, the same values); convtsp2's upsampling brings
16 x 29 to skip3's 32 x 57, a scale of (2, 57/29) given as a factor, as theirs.

Sizes: clips of ``CLIP_LEN`` = 32 frames. The authors' code writes the published size
into the neck (512 channels, 16 steps, a pool to (8, 16, 29)) and so runs only at
256 x 456; here those sizes are computed from the input, the same at 256 x 456, so that
the network also runs at any frame size of multiples of 8 (the tests use tiny ones).
salcli runs the published model at 256 x 456 only.

Precision: the decoder's last ``FP32_TAIL`` modules (from the convolution that brings
time to one step to the sigmoid) run in fp32 under autocast, as ViNet's decoder tail;
a model ``.double()`` runs whole in fp64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from salcli.models.layers import cast_convolutions, in_fp32, max_pool3d, run_sequential
from salcli.models.slowfast import SlowFast, SlowFastFeatures

ARCH = "vinet-a"
CLIP_LEN = 32  # frames per clip (T)
SIZE_MULTIPLE = 8  # the network runs at frame sides that are multiples of this
DECODER_GROUPS = (32, 16, 8, 8, 4, 2)  # groups of convtsp1 ... convtsp6's first conv
SHUFFLE_GROUPS = (32, 16, 8)  # channel shuffles before convtsp2, convtsp3, convtsp4
FP32_TAIL = 6  # last modules of convtsp6 in fp32: 2x3x3 conv, ReLU, 1x1x1, ReLU, 1x1x1, sigmoid
# keys only a ViNet-A checkpoint holds (the lateral convs, the neck, the last conv)
SIGNATURE_KEYS = (
    "backbone.fast_conv1.weight",
    "backbone.Tconv1.weight",
    "neck.conv_slow.0.weight",
    "decoder.convtsp6.7.weight",
)


# ---------------------------------------------------------------------------
# Neck
# ---------------------------------------------------------------------------


def _pointwise(in_ch: int, out_ch: int) -> nn.Sequential:
    """1x1x1 convolution without bias, then a ReLU."""
    return nn.Sequential(nn.Conv3d(in_ch, out_ch, 1, bias=False), nn.ReLU(inplace=True))


class Neck(nn.Module):
    """Merges the two pathways into the decoder's input, and halves the skips."""

    def __init__(self):
        super().__init__()
        self.conv_slow = _pointwise(2048, 1024)
        for i, ch in enumerate((80, 320, 640, 1280), start=1):
            setattr(self, f"conv_skip{i}", _pointwise(ch, ch // 2))

    def forward(self, feats: SlowFastFeatures) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-> the bottleneck (B, 1536, T/4, h, w) and skip1 ... skip4 at half channels."""
        slow = run_sequential(self.conv_slow, feats.slow)  # (B, 1024, 8, h, w)
        fast = feats.fast  # (B, 256, 32, h, w)
        b, c, t, h, w = fast.shape
        # the authors' view of the contiguous fast features as (B, 512, 16, h, w): new
        # channel k holds old channel k // 2, steps 16 (k mod 2) ... 16 (k mod 2) + 15
        fast = fast.reshape(b, 2 * c, t // 2, h, w)
        # their adaptive max-pool to (8, h, w): the max of each pair of steps
        fast = max_pool3d(fast, (2, 1, 1))  # (B, 512, 8, h, w)
        bottleneck = torch.cat((slow, fast.to(slow.dtype)), dim=1)  # (B, 1536, 8, h, w)
        squeezes = (self.conv_skip1, self.conv_skip2, self.conv_skip3, self.conv_skip4)
        skips = [run_sequential(sq, s) for sq, s in zip(squeezes, feats.skips, strict=True)]
        return bottleneck, skips


# ---------------------------------------------------------------------------
# Decoder
# ---------------------------------------------------------------------------


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, C, T, H, W) with the channels dealt out: channel i * (C / g) + j goes to
    position j * g + i (ShuffleNet's shuffle)."""
    b, c, *rest = x.shape
    return x.reshape(b, groups, c // groups, *rest).transpose(1, 2).reshape(b, c, *rest)


class FrameUpsample(nn.Module):
    """Bilinear upsampling of each frame of a (B, C, T, H, W) tensor, half-pixel centres,
    no antialiasing: ``nn.Upsample(scale_factor=(1, sh, sw), mode="trilinear")``'s values
    (a time scale of 1 interpolates nothing), run as a 2-D op over the B*T frames.

    ``forward(x, size)`` upsamples to ``size`` (H', W') by the factors H'/H and W'/W,
    given as factors as the authors give theirs (16 x 29 -> 32 x 57: (2, 57/29))."""

    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if size is None:
            size = (math.floor(h * self.scale), math.floor(w * self.scale))
        scale = (size[0] / h, size[1] / w)
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
        if math.floor(h * scale[0]) == size[0] and math.floor(w * scale[1]) == size[1]:
            up = F.interpolate(frames, scale_factor=scale, mode="bilinear", align_corners=False)
        else:  # the factor rounds below the size (never at the published size)
            up = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        return up.reshape(b, t, c, *size).transpose(1, 2)  # (B, C, T, H', W')


def _grouped(in_ch: int, out_ch: int, groups: int) -> nn.Conv3d:
    """3x3x3 grouped convolution, padding 1, no bias: keeps (T, H, W)."""
    return nn.Conv3d(in_ch, out_ch, 3, padding=1, groups=groups, bias=False)


def _halving(in_ch: int, out_ch: int, groups: int = 1, stride: int = 2) -> nn.Conv3d:
    """2x3x3 convolution (temporal stride ``stride``), no temporal padding, no bias."""
    return nn.Conv3d(in_ch, out_ch, (2, 3, 3), stride=(stride, 1, 1), padding=(0, 1, 1),
                     groups=groups, bias=False)  # fmt: skip


class Decoder(nn.Module):
    """ViNet-A's decoder: grouped convolutions, the skips concatenated on channels and
    shuffled, four upsamplings to the frame, then time reduced to one step."""

    def __init__(self):
        super().__init__()
        g = DECODER_GROUPS
        self.convtsp1 = nn.Sequential(_grouped(1536, 640, g[0]), nn.ReLU(inplace=True))
        self.convtsp2 = nn.Sequential(
            _grouped(1280, 320, g[1]), nn.ReLU(inplace=True), FrameUpsample()
        )
        self.convtsp3 = nn.Sequential(
            _grouped(640, 160, g[2]), nn.ReLU(inplace=True), FrameUpsample()
        )
        self.convtsp4 = nn.Sequential(_grouped(320, 40, g[3]), nn.ReLU(inplace=True))
        self.convtsp5 = nn.Sequential(
            _halving(80, 64, g[4]), nn.ReLU(inplace=True), FrameUpsample()
        )
        self.convtsp6 = nn.Sequential(
            _halving(64, 32, g[5]),  # 4 -> 2 steps
            nn.ReLU(inplace=True),
            FrameUpsample(),
            _halving(32, 16, stride=1),  # 2 -> 1 step
            nn.ReLU(inplace=True),
            nn.Conv3d(16, 16, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv3d(16, 1, 1, bias=True),
            nn.Sigmoid(),
        )

    def logits(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Bottleneck (B, 1536, 8, h, w) and halved skips -> logits (B, H, W), fp32."""
        s1, s2, s3, s4 = skips  # (40, 8, 4h, 4w), (160, 8, 4h, 4w), (320, 8, 2h, 2w), (640, ..)
        z = run_sequential(self.convtsp1, z)  # (B, 640, 8, h, w)
        z = channel_shuffle(torch.cat((z, s4.to(z.dtype)), dim=1), SHUFFLE_GROUPS[0])
        z = run_sequential(self.convtsp2[:-1], z)  # (B, 320, 8, h, w)
        z = self.convtsp2[-1](z, size=tuple(s3.shape[-2:]))  # (B, 320, 8, 2h, 2w)
        z = channel_shuffle(torch.cat((z, s3.to(z.dtype)), dim=1), SHUFFLE_GROUPS[1])
        z = run_sequential(self.convtsp3, z)  # (B, 160, 8, 4h, 4w)
        z = channel_shuffle(torch.cat((z, s2.to(z.dtype)), dim=1), SHUFFLE_GROUPS[2])
        z = run_sequential(self.convtsp4, z)  # (B, 40, 8, 4h, 4w)
        z = torch.cat((z, s1.to(z.dtype)), dim=1)  # (B, 80, 8, 4h, 4w): 4 groups, no shuffle
        z = run_sequential(self.convtsp5, z)  # (B, 64, 4, 8h, 8w)
        z = run_sequential(self.convtsp6[:-FP32_TAIL], z)  # (B, 32, 2, H, W)
        z = in_fp32(self.convtsp6[-FP32_TAIL:-1], z)  # (B, 1, 1, H, W), fp32 (or fp64)
        return z.reshape(z.shape[0], z.shape[3], z.shape[4])  # (B, H, W)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


class ViNetA(nn.Module):
    """SlowFast-R50 backbone + neck + grouped decoder; one map per 32-frame clip."""

    arch = ARCH

    def __init__(self):
        super().__init__()
        self.backbone = SlowFast()
        self.neck = Neck()
        self.decoder = Decoder()

    def logits(self, clip: torch.Tensor) -> torch.Tensor:
        """clip (B, 3, 32, H, W), normalized -> the input of the sigmoid (B, H, W), fp32."""
        _check_clip(clip)
        bottleneck, skips = self.neck(self.backbone(clip))
        return self.decoder.logits(bottleneck, skips)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip (B, 3, 32, H, W), normalized -> saliency (B, H, W) in (0, 1), fp32."""
        return in_fp32(self.decoder.convtsp6[-1], self.logits(clip))


def _check_clip(clip: torch.Tensor) -> None:
    if clip.dim() != 5 or clip.shape[1] != 3 or clip.shape[2] != CLIP_LEN:
        raise ValueError(f"ViNet-A takes clips (B, 3, {CLIP_LEN}, H, W), got {tuple(clip.shape)}")
    h, w = clip.shape[-2:]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ValueError(f"ViNet-A takes frame sides of multiples of {SIZE_MULTIPLE}, got {h}x{w}")


# ---------------------------------------------------------------------------
# What the family declaration uses (salcli.models.registry)
# ---------------------------------------------------------------------------


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm of the backbone into the convolution before it, in place, for
    inference (the neck and the decoder have none): the same maps up to float rounding.
    The result's state_dict no longer has the published keys. Folding twice changes
    nothing."""
    for mod in model.modules():
        if isinstance(mod, SlowFast):
            mod.fold_batchnorm()
    return model


def cast_for_precision(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Store every convolution's weights in ``dtype`` once (in place), for a model run
    under ``torch.autocast(dtype=dtype)``: the values autocast computes from the fp32
    weights, without casting them on every call. The decoder's fp32 tail keeps fp32;
    fp32 changes nothing. Cast so, the model must run under autocast."""
    return cast_convolutions(model, dtype, Decoder, "convtsp6", FP32_TAIL)


def detect(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """``"vinet-a"`` when a state_dict (``module.`` removed) has ViNet-A's keys, else None
    (ViNet's, AViNet's, STAViS's, SoundNet's have none of its lateral convs and neck)."""
    return ARCH if all(k in state_dict for k in SIGNATURE_KEYS) else None
