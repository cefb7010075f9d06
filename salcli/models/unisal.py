"""UNISAL (Droste, Jiao & Noble, ECCV 2020): one network for video and image saliency.

The module tree is the one of the published ``weights_best.pth`` and
``weights_ft_mit1003.pth`` (plain state_dicts, 835 entries), so both load unchanged and
strictly; every tensor comes from the file (no ImageNet backbone file is read).

- ``cnn``: MobileNetV2 (width 1.0). Blocks 7 and 14 run at stride 1 and are subsampled
  afterwards: their full-resolution outputs are the skip features (1/8 and 1/16 of the
  input). Blocks 2 and 4 are computed at stride 2 directly (the same values: a stride-1
  3x3 depthwise convolution subsampled [::2, ::2] is the stride-2 one).
- 16 Gaussian prior maps per domain, concatenated to the 1280 channels; ``post_cnn``.
- ``rnn``: one convolutional GRU cell (depthwise-separable convolutions, per-domain
  BatchNorms, per-channel scales), then ``post_rnn``, added to ``post_cnn``'s output. Image
  domains (SALICON) bypass both.
- Decoder: x2 bilinear, the 1/16 skip, an inverted residual, x2 bilinear, the 1/8 skip,
  an inverted residual, the domain's 1x1 adaptation, nearest x8 to the input size,
  replicate padding of 20 and the domain's 41x41 smoothing convolution.

The domain (``DOMAINS``) chooses the per-domain layers: ``set_domain``. ``forward`` returns
the smoothed logits at the input size; the published tail (bilinear resize to the frame,
log-softmax over its pixels) is ``log_probabilities``, and the published map
(exp / max) ``salcli.models.unisal_procedure.postprocess``.

Tensor layouts: frames (B, 3, h, w) with h, w multiples of 32; hidden states
(S, 256, h/32, w/32), one per interleaved sequence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from salcli.models.layers import in_fp32

ARCH = "unisal"
DOMAINS = ("DHF1K", "Hollywood", "UCFSports", "SALICON")  # the published files' spelling
IMAGE_DOMAINS = ("SALICON",)  # the recurrence is bypassed (static)
SIZE_MULTIPLE = 32  # pixels: the backbone's total stride
HIDDEN = 256  # channels of the recurrent state
N_GAUSSIANS = 16  # prior maps per domain
PRIOR_SCALE = 6.0  # the prior maps' peak value
SMOOTHING_KSIZE = 41  # pixels, side of the smoothing kernel at the input size
SMOOTHING_PAD = SMOOTHING_KSIZE // 2  # 20, replicate padding
UPSAMPLE_FINAL = 8  # nearest, from 1/8 of the input to the input size
# (expansion t, channels c, blocks n, stride s) of MobileNetV2's inverted residual stages
MOBILENET_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
SKIP_4X_BLOCK = 7  # its output before the subsampling: 64 channels at 1/8
SKIP_2X_BLOCK = 14  # 160 channels at 1/16
LATE_STRIDE_BLOCKS = (SKIP_4X_BLOCK, SKIP_2X_BLOCK)  # run at stride 1, subsampled after
# keys that tell a UNISAL state_dict apart from every other family's
SIGNATURE_KEYS = ("coarse_gaussians_dhf1k", "rnn.cell_list.0.a_r_x", "smoothing_salicon.weight")


def canonical_domain(name: str) -> str | None:
    """The published spelling of a domain named in any case ("dhf1k" -> "DHF1K"), or None."""
    return next((d for d in DOMAINS if d.lower() == str(name).lower()), None)


class DomainBatchNorm(nn.Module):
    """One BatchNorm per domain (``bn_<Domain>``); the selected one runs."""

    def __init__(self, channels: int):
        super().__init__()
        for d in DOMAINS:
            self.add_module(f"bn_{d}", nn.BatchNorm2d(channels))
        self.domain = DOMAINS[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"bn_{self.domain}")(x)


def _inverted_residual(inp: int, oup: int, stride: int, expand: int, norm=nn.BatchNorm2d):
    """MobileNetV2's block as a ``Sequential`` (the checkpoints' ``conv`` indices)."""
    hidden = inp * expand
    layers: list[nn.Module] = []
    if expand != 1:
        layers += [nn.Conv2d(inp, hidden, 1, bias=False), norm(hidden), nn.ReLU6(inplace=True)]
    layers += [
        nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
        norm(hidden),
        nn.ReLU6(inplace=True),
        nn.Conv2d(hidden, oup, 1, bias=False),
        norm(oup),
    ]
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand: int, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv = _inverted_residual(inp, oup, stride, expand, norm)
        self.residual = stride == 1 and inp == oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """``features`` 0-18; ``forward`` gives (1/32 features, 1/16 skip, 1/8 skip)."""

    def __init__(self):
        super().__init__()
        stem = nn.Sequential(
            nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False),
            nn.BatchNorm2d(STEM_CHANNELS),
            nn.ReLU6(inplace=True),
        )
        blocks: list[nn.Module] = [stem]
        inp = STEM_CHANNELS
        for t, c, n, s in MOBILENET_STAGES:
            for i in range(n):
                index = len(blocks)
                stride = s if i == 0 and index not in LATE_STRIDE_BLOCKS else 1
                blocks.append(InvertedResidual(inp, c, stride, t))
                inp = c
        blocks.append(
            nn.Sequential(
                nn.Conv2d(inp, LAST_CHANNELS, 1, bias=False),
                nn.BatchNorm2d(LAST_CHANNELS),
                nn.ReLU6(inplace=True),
            )
        )
        self.features = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        skips = {}
        for index, block in enumerate(self.features):
            x = block(x)
            if index in LATE_STRIDE_BLOCKS:
                skips[index] = x
                x = x[..., ::2, ::2]
        return x, skips[SKIP_2X_BLOCK], skips[SKIP_4X_BLOCK]


class _Wrapped(nn.Module):
    """An inverted residual under ``inv_res`` (the checkpoints' nesting), optionally
    followed by x2 bilinear upsampling."""

    def __init__(self, inp: int, oup: int, expand: int, norm, upsample: bool = False):
        super().__init__()
        self.inv_res = InvertedResidual(inp, oup, 1, expand, norm)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inv_res(x)
        return _up2(x) if self.upsample else x


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class _Skip(nn.Module):
    """1x1 expansion (BN, ReLU6), then 1x1 reduction with bias (BN)."""

    def __init__(self, inp: int, mid: int, oup: int):
        super().__init__()
        self.expansion = nn.Sequential(
            nn.Conv2d(inp, mid, 1, bias=False), DomainBatchNorm(mid), nn.ReLU6(inplace=True)
        )
        self.reduction = nn.Sequential(nn.Conv2d(mid, oup, 1, bias=True), DomainBatchNorm(oup))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.expansion(x))


class SeparableConv(nn.Module):
    """Depthwise 3x3 (no bias), per-domain BN, ReLU6, 1x1 (no bias)."""

    def __init__(self, channels: int, out: int):
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.sep_bn = DomainBatchNorm(channels)
        self.conv_sep = nn.Conv2d(channels, out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_sep(F.relu6(self.sep_bn(self.conv_dw(x))))


_GATES = ("r", "z", "h")


class ConvGRUCell(nn.Module):
    """r = sig(a_r_x BN(W_r x) + a_r_h BN(U_r h) + b_r), z likewise,
    h~ = tanh(a_h_x BN(W x) + r * a_h_h BN(U h) + b_h), h' = (1 - z) h + z h~."""

    def __init__(self, channels: int = HIDDEN):
        super().__init__()
        shape = (channels, 1, 1)
        for g in _GATES:
            self.register_parameter(f"b_{g}", nn.Parameter(torch.zeros(shape)))
        for g in _GATES:
            for side in ("x", "h"):
                self.register_parameter(f"a_{g}_{side}", nn.Parameter(torch.ones(shape)))
        # the published recurrent-dropout mask: in the files, unused at inference
        self.register_buffer("drop_mask_1", torch.zeros(3, channels))
        for name in ("r_x", "r_h", "z_x", "z_h", "out_x", "out_h"):
            self.add_module(f"norm_{name}", DomainBatchNorm(channels))
        for name in ("w_r", "u_r", "w_z", "u_z", "w", "u"):
            self.add_module(name, SeparableConv(channels, channels))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        r = torch.sigmoid(
            self.a_r_x * self.norm_r_x(self.w_r(x)) + self.a_r_h * self.norm_r_h(self.u_r(h))
            + self.b_r
        )  # fmt: skip
        z = torch.sigmoid(
            self.a_z_x * self.norm_z_x(self.w_z(x)) + self.a_z_h * self.norm_z_h(self.u_z(h))
            + self.b_z
        )  # fmt: skip
        candidate = torch.tanh(
            self.a_h_x * self.norm_out_x(self.w(x)) + r * (self.a_h_h * self.norm_out_h(self.u(h)))
            + self.b_h
        )  # fmt: skip
        return (1 - z) * h + z * candidate


class ConvGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell_list = nn.ModuleList([ConvGRUCell(HIDDEN)])

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.cell_list[0](x, h)


class Unisal(nn.Module):
    """The published UNISAL model (see the module docstring)."""

    arch = ARCH
    recurrent = True  # salcli.inference.engine carries a state per interleaved sequence

    def __init__(self):
        super().__init__()
        for d in DOMAINS:
            self.register_parameter(
                f"coarse_gaussians_{d.lower()}", nn.Parameter(torch.zeros(N_GAUSSIANS, 2, 2))
            )
        self.cnn = MobileNetV2()
        self.post_cnn = _Wrapped(LAST_CHANNELS + N_GAUSSIANS, HIDDEN, 1, nn.BatchNorm2d)
        self.rnn = ConvGRU()
        self.post_rnn = nn.Sequential(
            nn.Conv2d(HIDDEN, HIDDEN, 1, bias=False), DomainBatchNorm(HIDDEN), nn.ReLU6()
        )
        self.skip_2x = _Skip(160, 320, 128)
        self.upsampling_2 = _Wrapped(HIDDEN + 128, 128, 2, DomainBatchNorm, upsample=True)
        self.skip_4x = _Skip(64, 128, 64)
        self.post_upsampling_2 = _Wrapped(128 + 64, 64, 2, DomainBatchNorm)
        for d in DOMAINS:
            self.add_module(f"adaptation_{d.lower()}", nn.Sequential(nn.Conv2d(64, 1, 1)))
            self.add_module(f"smoothing_{d.lower()}", nn.Conv2d(1, 1, SMOOTHING_KSIZE, bias=False))
        self.domain = DOMAINS[0]

    # -- the domain ---------------------------------------------------------------------

    def set_domain(self, domain: str) -> Unisal:
        """Run with ``domain``'s layers (``DOMAINS``, any case); returns the model."""
        found = canonical_domain(domain)
        if found is None:
            raise ValueError(f"unknown domain {domain!r}: choose from {', '.join(DOMAINS)}")
        self.domain = found
        for m in self.modules():
            if isinstance(m, DomainBatchNorm):
                m.domain = found
        return self

    @property
    def static(self) -> bool:
        """Whether the domain bypasses the recurrence (an image domain)."""
        return self.domain in IMAGE_DOMAINS

    def _domain_part(self, kind: str):
        return getattr(self, f"{kind}_{self.domain.lower()}")

    # -- the stages ---------------------------------------------------------------------

    def priors(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """The domain's 16 Gaussian maps at the 1/32 size: (16, h, w), computed in the
        parameters' dtype (fp32 under autocast too) and given in ``like``'s."""
        g = self._domain_part("coarse_gaussians")  # (16, (y, x), (mu, log sigma))
        mu, sigma = g[..., 0], torch.exp(g[..., 1])  # (16, 2)
        y = torch.linspace(0, 1, h, device=g.device, dtype=g.dtype)
        x = torch.linspace(0, 1, w, device=g.device, dtype=g.dtype)
        gy = torch.exp(-0.5 * ((y[None, :] - mu[:, :1]) / sigma[:, :1]) ** 2)  # (16, h)
        gx = torch.exp(-0.5 * ((x[None, :] - mu[:, 1:]) / sigma[:, 1:]) ** 2)  # (16, w)
        return (PRIOR_SCALE * gy[:, :, None] * gx[:, None, :]).to(like.dtype)

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frames (B, 3, h, w) -> (post_cnn features (B, 256, h/32, w/32), the 1/16 skip
        (B, 128, ...), the 1/8 skip (B, 64, ...)): everything before the recurrence."""
        x, at_2x, at_4x = self.cnn(frames)
        b, _, h, w = x.shape
        prior = self.priors(h, w, x).expand(b, -1, -1, -1)
        x = self.post_cnn(torch.cat((x, prior), dim=1))
        return x, self.skip_2x(at_2x), self.skip_4x(at_4x)

    def recur(
        self, features: torch.Tensor, states: torch.Tensor, slots: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames' features (B, 256, h', w'), in time order, each the next step of the
        sequence ``slots[i]`` whose state is ``states[slots[i]]`` ((S, 256, h', w')) ->
        (features with the recurrence's residual added, the states after these steps).
        Frames of distinct sequences run together; a sequence's later frame waits for
        its earlier one."""
        states = states.clone()
        out = torch.empty_like(features)
        for group in _steps(slots):
            idx = torch.tensor([slots[i] for i in group], device=states.device)
            rows = torch.tensor(group, device=features.device)
            h = self.rnn(features[rows], states[idx])  # in the states' dtype (fp32)
            states[idx] = h.to(states.dtype)
            out[rows] = features[rows] + self.post_rnn(h)
        return out, states

    def decode(self, x: torch.Tensor, at_2x: torch.Tensor, at_4x: torch.Tensor) -> torch.Tensor:
        """(B, 256, h/32, w/32) features and the skips -> smoothed logits (B, h, w)."""
        x = torch.cat((_up2(x), at_2x), dim=1)
        x = torch.cat((self.upsampling_2(x), at_4x), dim=1)
        # the map's own layers in fp32 whatever autocast is on: its logits span some 20
        # nats, which bf16's 8 significant bits would round by up to 0.06
        return in_fp32(self._head, self.post_upsampling_2(x))

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 64, h/8, w/8) -> the domain's adaptation, nearest x8, replicate padding and
        smoothing: logits (B, h, w)."""
        x = self._domain_part("adaptation")(x)  # (B, 1, h/8, w/8)
        x = F.interpolate(x, scale_factor=UPSAMPLE_FINAL, mode="nearest")
        x = F.pad(x, (SMOOTHING_PAD,) * 4, mode="replicate")
        return self._domain_part("smoothing")(x)[:, 0]

    def forward(
        self, frames: torch.Tensor, states: torch.Tensor, slots: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames (B, 3, h, w) in time order, the states (S, 256, h/32, w/32) of the
        sequences they continue and each frame's sequence (``slots``, see ``recur``) ->
        (smoothed logits (B, h, w), the states after these frames). An image domain
        bypasses the recurrence: each frame alone, the states returned unchanged."""
        x, at_2x, at_4x = self.encode(frames)
        if not self.static:
            x, states = self.recur(x, states, slots)
        return self.decode(x, at_2x, at_4x), states

    def zero_states(self, count: int, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """``count`` initial states (zeros) for frames of ``size`` (h, w): (S, 256, h/32,
        w/32). The first step still runs the U-branches on them (their BatchNorms turn
        zero into an offset)."""
        h, w = size[0] // SIZE_MULTIPLE, size[1] // SIZE_MULTIPLE
        return torch.zeros(count, HIDDEN, h, w, device=like.device, dtype=like.dtype)


def _steps(slots: Sequence[int]) -> list[list[int]]:
    """Positions 0 ... len(slots)-1 in runs of consecutive positions with distinct slots:
    each run is one recurrence step for every sequence in it."""
    groups: list[list[int]] = []
    seen: set[int] = set()
    for i, s in enumerate(slots):
        if not groups or s in seen:
            groups.append([])
            seen = set()
        groups[-1].append(i)
        seen.add(s)
    return groups


def log_probabilities(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The published tail: smoothed logits (B, h, w) -> log-probabilities (B, H, W),
    bilinear (no antialiasing) to ``size`` then log-softmax over each map's pixels."""
    x = logits[:, None]
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    b = x.shape[0]
    return torch.log_softmax(x.reshape(b, -1).float(), dim=1).reshape(b, *size)


def detect(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """``"unisal"`` when a state_dict (``module.`` removed) has UNISAL's keys, else None."""
    return ARCH if all(k in state_dict for k in SIGNATURE_KEYS) else None
