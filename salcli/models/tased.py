"""TASED-Net (Min & Corso, "TASED-Net: Temporally-Aggregating Spatial Encoder-Decoder
Network for Video Saliency Detection", ICCV 2019; kylemin/TASED-Net, MIT licence).

An S3D encoder (salcli's ``S3DBackbone``, shared with ViNet: the published file's 462
``base1.*`` ... ``base4.*`` entries are ViNet's ``backbone.*`` without the prefix) and a
decoder of transposed convolutions whose three **max-unpoolings** put values back where
the encoder's maxima were. The module tree, and so every ``state_dict`` key and shape, is
that of ``TASED_updated.pt`` (513 entries, 21 260 693 parameters; every BatchNorm has
eps 1e-3): a plain state_dict, with or without DataParallel's ``module.`` prefix, loaded
unchanged and strictly (``unwrap_checkpoint`` only adds BatchNorm step counters a file
may lack: harmless in eval mode).

Shapes at a 224x384 input, T = 32 (batch first, channels second)::

    clip (B, 3, 32, 224, 384)
      base1 -> y3 (B, 192, 16, 56, 96)   max over time (4) -> (B, 192, 4, 56, 96),
                                         1x3x3 pool (stride 2, pad 1): indices i2 (.., 4, 28, 48)
      maxp2, base2 -> y2 (B, 480, 16, 28, 48)   the same way: i1 (B, 480, 4, 14, 24)
      maxp3, base3 -> y1 (B, 832, 8, 14, 24)    maxt4 -> (B, 832, 4, 14, 24),
                                                maxp4 (1x2x2): i0, (B, 832, 4, 7, 12)
      base4 -> y0 (B, 1024, 4, 7, 12)
      convtsp1 -> (B, 832, 4, 7, 12)    unpool with i0 -> (B, 832, 4, 14, 24)
      convtsp2 -> (B, 480, 4, 14, 24)   unpool with i1 -> (B, 480, 4, 28, 48)
      convtsp3 -> (B, 192, 4, 28, 48)   unpool with i2 -> (B, 192, 4, 56, 96)
      convtsp4 -> (B, 1, 1, 224, 384), sigmoid -> (B, 224, 384)

The unpooling (``max_unpool``) gives PyTorch's CPU answer on every device: indices are
the first maximum of each window in raster order (padding never wins), and where several
pooled positions point at one element the **last** of them in raster order wins; an
element nobody points at is 0. PyTorch's CUDA kernel leaves the order of colliding
writes unspecified; salcli computes, for each output element, the largest pooled
position that points at it (a max-reduction, which no write order changes) and takes its
value, so CPU and CUDA agree. Gradients go back as ``max_unpool3d``'s do: each pooled
position receives the gradient of the element its index names, winner or not.

The model runs through salcli's engine as ViNet does: the stages up to Mixed_3c are the
same S3D, so overlap reuse applies (``s3d``, ``encode_sound``, ``finish``), the encoder's
BatchNorms fold into its convolutions and its convolutions are stored once in a 16-bit
run's dtype; the decoder's last two layers and the sigmoid run in fp32.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from salcli.models.checkpoints import unwrap_state_dict
from salcli.models.layers import cast_convolutions, in_fp32, max_pool3d, run_sequential
from salcli.models.s3d import BN_EPS_S3D, S3DBackbone

ARCH = "tased"
CLIP_LEN = 32  # frames per clip (T), fixed by the decoder's two temporal halvings
SIZE_MULTIPLE = 32  # pixels: the input size must be a multiple (five spatial halvings)
LICENCE = "MIT"
BN_MOMENTUM = 0.001  # as S3D's BatchNorms (training only)
SIDE_TIME_POOL = (4, 1, 1)  # kernel = stride of the index-only pools' max over time
SIDE_POOL = ((1, 3, 3), (1, 2, 2), (0, 1, 1))  # (kernel, stride, padding) giving i1, i2
BOTTLENECK_POOL = ((1, 2, 2), (1, 2, 2), (0, 0, 0))  # maxp4, giving i0
FP32_TAIL = 3  # last modules of convtsp4 run in fp32: transposed conv 4->4, 1x1 conv, sigmoid
DETECT_KEYS = ("base1.0.conv_s.weight", "convtsp1.0.weight", "convtsp4.13.weight")
COUNTER = "num_batches_tracked"


# --- max-unpooling with one answer on every device --------------------------------------


def pool_with_indices(x: torch.Tensor, pool) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of a max-pool (kernel, stride, padding) over (B, C, T, H, W),
    in the input's dtype whatever autocast is on. Each index is the position of its
    window's first maximum in raster order (t, then h, then w; padding never wins) in
    the flattened T*H*W volume of its (batch, channel)."""
    kernel, stride, padding = pool
    with torch.autocast(x.device.type, enabled=False):
        return F.max_pool3d(x, kernel, stride, padding, return_indices=True)


class _MaxUnpool(torch.autograd.Function):
    """``max_unpool3d`` where the last colliding pooled position wins, on any device."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, indices: torch.Tensor, size: tuple[int, int, int]):
        b, c = values.shape[:2]
        flat_idx = indices.reshape(b * c, -1)  # (B*C, pooled positions)
        flat_val = values.reshape(b * c, -1)
        positions = torch.arange(flat_idx.shape[1], device=values.device).expand_as(flat_idx)
        out_len = size[0] * size[1] * size[2]
        # per output element: the largest pooled position pointing at it, -1 for none
        winner = torch.full((b * c, out_len), -1, dtype=torch.long, device=values.device)
        winner.scatter_reduce_(1, flat_idx, positions, reduce="amax", include_self=True)
        taken = flat_val.gather(1, winner.clamp_min(0))
        out = torch.where(winner >= 0, taken, torch.zeros((), dtype=values.dtype,
                                                          device=values.device))  # fmt: skip
        ctx.save_for_backward(indices)
        ctx.shape = values.shape
        return out.view(b, c, *size)  # (B, C, T, H, W)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (indices,) = ctx.saved_tensors
        b, c = ctx.shape[:2]
        g = grad.reshape(b * c, -1).gather(1, indices.reshape(b * c, -1))
        return g.view(ctx.shape), None, None


def max_unpool(values: torch.Tensor, indices: torch.Tensor, size) -> torch.Tensor:
    """(B, C, t, h, w) pooled ``values`` back into a zero (B, C, *size) volume at
    ``indices`` (positions in the flattened volume of each (batch, channel)); where
    several positions name one element, the last in raster order wins (PyTorch's CPU
    ``max_unpool3d``), on every device."""
    return _MaxUnpool.apply(values, indices, tuple(int(s) for s in size))


# --- the network ------------------------------------------------------------------------


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=BN_EPS_S3D, momentum=BN_MOMENTUM)


def _up(in_ch: int, out_ch: int) -> list[nn.Module]:
    """Transposed conv 1x3x3 (padding 0x1x1, size kept), BatchNorm, ReLU."""
    conv = nn.ConvTranspose3d(in_ch, out_ch, (1, 3, 3), padding=(0, 1, 1), bias=False)
    return [conv, _bn(out_ch), nn.ReLU(inplace=True)]


def _halve_time(channels: int) -> list[nn.Module]:
    """Conv 2x1x1 of stride 2 in time, BatchNorm, ReLU."""
    conv = nn.Conv3d(channels, channels, (2, 1, 1), stride=(2, 1, 1), bias=False)
    return [conv, _bn(channels), nn.ReLU(inplace=True)]


def _double_space(in_ch: int, out_ch: int) -> nn.ConvTranspose3d:
    """Transposed conv 1x4x4, stride 1x2x2, padding 0x1x1: H and W doubled."""
    return nn.ConvTranspose3d(in_ch, out_ch, (1, 4, 4), stride=(1, 2, 2), padding=(0, 1, 1),
                              bias=False)  # fmt: skip


class TASED(S3DBackbone):
    """TASED-Net: the S3D encoder (this module's ``base1`` ... ``base4``, as the published
    keys have them) and the unpooling decoder; one map per clip, for its last frame."""

    arch = ARCH

    def __init__(self):
        super().__init__()
        self.convtsp1 = nn.Sequential(
            nn.Conv3d(1024, 1024, 1, bias=False), _bn(1024), nn.ReLU(inplace=True),
            *_up(1024, 832),
        )  # fmt: skip
        self.convtsp2 = nn.Sequential(*_up(832, 480))
        self.convtsp3 = nn.Sequential(*_up(480, 192))
        self.convtsp4 = nn.Sequential(
            _double_space(192, 64), _bn(64), nn.ReLU(inplace=True),  # (B, 64, 4, H/2, W/2)
            *_halve_time(64),  # T = 2
            nn.ConvTranspose3d(64, 4, 1, bias=False), _bn(4), nn.ReLU(inplace=True),
            *_halve_time(4),  # T = 1
            _double_space(4, 4),  # (B, 4, 1, H, W)
            nn.Conv3d(4, 1, 1, bias=True),
            nn.Sigmoid(),
        )  # fmt: skip

    @property
    def s3d(self) -> S3DBackbone:
        """The encoder (this module itself): overlap reuse runs its shallow stages."""
        return self

    def encode_sound(self, waveform: torch.Tensor | None) -> None:
        return None  # visual only

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip (B, 3, 32, H, W) in [-1, 1] -> saliency (B, H, W) in (0, 1)."""
        return self.finish(*self.shallow(clip))

    def finish(self, y2: torch.Tensor, y3: torch.Tensor, sound: None = None) -> torch.Tensor:
        """The stages after Mixed_3c: y2 (B, 480, 16, H/8, W/8) and y3 (B, 192, 16, H/4,
        W/4) -> the deep encoder, the index-only pools, the decoder -> (B, H, W)."""
        side2 = max_pool3d(y3, SIDE_TIME_POOL)  # (B, 192, 4, H/4, W/4)
        i2 = pool_with_indices(side2, SIDE_POOL)[1]  # (B, 192, 4, H/8, W/8)
        side1 = max_pool3d(y2, SIDE_TIME_POOL)  # (B, 480, 4, H/8, W/8)
        i1 = pool_with_indices(side1, SIDE_POOL)[1]  # (B, 480, 4, H/16, W/16)
        y1 = self.maxt4(self.base3(self.maxp3(y2)))  # (B, 832, 4, H/16, W/16)
        pooled, i0 = pool_with_indices(y1, BOTTLENECK_POOL)  # (B, 832, 4, H/32, W/32)
        y0 = self.base4(pooled)  # (B, 1024, 4, H/32, W/32)
        z = max_unpool(run_sequential(self.convtsp1, y0), i0, y1.shape[2:])
        z = max_unpool(run_sequential(self.convtsp2, z), i1, side1.shape[2:])
        z = max_unpool(run_sequential(self.convtsp3, z), i2, side2.shape[2:])
        z = run_sequential(self.convtsp4[:-FP32_TAIL], z)  # (B, 4, 1, H/2, W/2)
        z = in_fp32(self.convtsp4[-FP32_TAIL:], z)  # (B, 1, 1, H, W)
        return z.reshape(z.shape[0], z.shape[3], z.shape[4])  # (B, H, W)

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The decoder's parameters (``convtsp1`` ... ``convtsp4``): the published
        recipe trains them at a learning rate of its own."""
        return [p for name, p in self.named_parameters() if name.startswith("convtsp")]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("convtsp")]


# --- checkpoints and inference rewrites ---------------------------------------------------


def detect(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """ "tased" when a state_dict (``module.`` removed) holds TASED-Net: the S3D encoder
    under ``base1`` ... ``base4`` beside the ``convtsp`` decoder; else None."""
    return ARCH if all(k in state_dict for k in DETECT_KEYS) else None


def unwrap_checkpoint(obj: object) -> dict[str, torch.Tensor]:
    """The state_dict of a loaded TASED-Net file (wrappers and ``module.`` removed, as
    for every family), with the BatchNorm step counters it lacks added as 0: they do
    nothing in eval mode. Every other key is left as it is, so that a missing or
    unexpected tensor is still refused by the strict load."""
    sd = unwrap_state_dict(obj)
    if detect(sd) is None:
        return sd
    for key in [k for k in sd if k.endswith(".running_mean")]:
        counter = key.removesuffix("running_mean") + COUNTER
        sd.setdefault(counter, torch.zeros((), dtype=torch.long))
    return sd


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """The encoder's BatchNorms folded into its convolutions (``salcli.models.vinet``'s
    rewrite, which knows S3D's units); the decoder's stay as they are."""
    from salcli.models.vinet import fold_batchnorm as fold_s3d

    return fold_s3d(model)


def cast_for_precision(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Every convolution's weights (transposed ones included) stored once in ``dtype``,
    but the fp32 tail's (see ``salcli.models.vinet.cast_for_precision``: the same maps
    under autocast, one weight cast less per layer and call)."""
    return cast_convolutions(
        model, dtype, TASED, "convtsp4", FP32_TAIL, (nn.Conv3d, nn.ConvTranspose3d)
    )
