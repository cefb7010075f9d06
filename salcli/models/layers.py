"""Layers (ops) the model families share, kept apart from the architectures.

- ``conv3d``: a convolution (then a ReLU) that runs as one oneDNN primitive with the ReLU
  fused where the CPU computes the layer's 16-bit dtype natively (``onednn_computes``);
  ``run_sequential`` runs a ``nn.Sequential`` so;
- ``max_pool3d`` / ``MaxPool3d``: max pooling in the input's own dtype, separable on the
  CPU (bit-equal to PyTorch's, faster);
- ``in_fp32``: a module run in full precision whatever autocast is on;
- ``fold_conv_bn``: a BatchNorm folded into the convolution before it, for inference.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

HALF_DTYPES = (torch.float16, torch.bfloat16)


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


def cast_convolutions(
    model: nn.Module,
    dtype: torch.dtype,
    owner: type[nn.Module],
    tail: str,
    tail_len: int,
    kinds: tuple[type[nn.Module], ...] = (nn.Conv3d,),
) -> nn.Module:
    """Every convolution of ``kinds`` in ``model`` stored in ``dtype`` (in place), but the
    last ``tail_len`` modules of each ``owner``'s ``tail`` sequence, which keep fp32: a
    family's weight cast for a 16-bit run (``cast_for_precision``); fp32 changes nothing."""
    if dtype == torch.float32:
        return model
    keep = {
        kept
        for mod in model.modules()
        if isinstance(mod, owner)
        for kept in getattr(mod, tail)[-tail_len:].modules()
    }
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, kinds) and mod not in keep:
                mod.to(dtype)
    return model


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
