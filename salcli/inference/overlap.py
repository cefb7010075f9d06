"""Exact reuse of the backbone work that overlapping clips share.

Frame t is predicted from frames t-T+1 ... t, so consecutive clips share T-1 of their
T frames. In S3D's first stages (base1, Mixed_3b, Mixed_3c: about 100 of the 229
GFLOP of a map) a clip's activation at time position t depends only on a few frames
around t. Unless that neighbourhood reaches past the clip's ends (where the clip's
own zero padding enters), it is the same number in every clip that contains those
frames. So for a batch of N consecutive clips:

- the batch's N+T-1 frames are run once as one sequence (the *stream*, ``z``), with
  temporal convolutions and poolings dilated instead of strided, so that every
  clip's positions are found in it;
- only the positions near each clip's two ends ("edges": 0, 3, 5, 7, 9 of the 16
  as the layers go deeper) are computed per clip, from that clip's own inputs,
  with its own padding.

The result equals the per-clip forward pass up to float rounding (about 1e-6; the
sums are the same, grouped differently by the GEMM). At a batch of 8 clips a map
costs 24 % fewer FLOPs, and on a 2-core CPU runs 1.27-1.35x faster (the first
stages' convolutions are also the least efficient per FLOP). The deeper stages
(T/4 and below) see the clip ends almost everywhere and run per clip as usual.

Only runs of clips that each start one frame after the previous one are handled
(the reference warm-up's reversed clips are such a run, taken backwards):
``consecutive_runs`` finds them in a batch, and the engine (``salcli.inference.engine``) runs
other clips (``--stride`` K > 1) the plain way. The model supplies its own
composition (``s3d.shallow_stages``, ``encode_sound``, ``finish``): nothing here
rebuilds its forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from salcli.models.layers import as_triple, conv3d, fused_steps, max_pool3d
from salcli.models.s3d import InceptionBlock
from salcli.models.tased import TASED
from salcli.models.vinet import AViNet, ViNet

CHUNK_CLIPS = 2  # clips taken together through the per-clip stages (bounds memory)


@dataclass
class Windows:
    """The activations of N consecutive clips at one layer.

    Clip j's position t (0 <= t < n) is ``left[j, :, t]`` for t < a,
    ``right[j, :, t - (n - b)]`` for t >= n - b, and otherwise the stream position
    ``z[0, :, base + j + step * t]``: the same tensor for every clip that holds it.
    """

    z: torch.Tensor  # (1, C, L, H, W) stream positions, one per frame offset
    base: int  # stream index of clip 0's position 0
    step: int  # stream positions between a clip's consecutive positions
    n: int  # positions per clip
    clips: int  # N
    a: int = 0  # leading positions held per clip
    b: int = 0  # trailing positions held per clip
    left: torch.Tensor | None = None  # (N, C, a, H, W)
    right: torch.Tensor | None = None  # (N, C, b, H, W)

    def _z_index(self, t: int) -> int:
        return self.base + self.step * t

    def gather(self, lo: int, hi: int, fill: float = 0.0) -> torch.Tensor:
        """Positions lo ... hi - 1 of every clip: (N, C, hi - lo, H, W), channels-last;
        ``fill`` for positions outside 0 ... n - 1 (the clip's own padding). Each value
        is copied once, straight into the result."""
        c, _, h, w = self.z.shape[1:]
        out = self.z.new_empty((self.clips, hi - lo, h, w, c))  # (N, t, H, W, C)

        def part(first: int, last: int) -> tuple[int, int, torch.Tensor | None]:
            t0, t1 = max(lo, first), min(hi, last)
            return t0, t1, (out[:, t0 - lo : t1 - lo] if t0 < t1 else None)

        t0, t1, dst = part(lo, 0)
        if dst is not None:
            dst.fill_(fill)
        t0, t1, dst = part(0, self.a)
        if dst is not None:
            dst.copy_(self.left[:, :, t0:t1].permute(0, 2, 3, 4, 1))
        t0, t1, dst = part(self.a, self.n - self.b)
        if dst is not None:
            # clip j's position t is stream position base + j + step * t: a strided view
            frames = self.z[0].permute(1, 2, 3, 0)  # (L, H, W, C)
            s_l, s_h, s_w, s_c = frames.stride()
            offset = frames.storage_offset() + self._z_index(t0) * s_l
            size = (self.clips, t1 - t0, h, w, c)
            dst.copy_(frames.as_strided(size, (s_l, self.step * s_l, s_h, s_w, s_c), offset))
        t0, t1, dst = part(self.n - self.b, self.n)
        if dst is not None:
            u0, u1 = t0 - (self.n - self.b), t1 - (self.n - self.b)
            dst.copy_(self.right[:, :, u0:u1].permute(0, 2, 3, 4, 1))
        t0, t1, dst = part(self.n, hi)
        if dst is not None:
            dst.fill_(fill)
        return out.permute(0, 4, 1, 2, 3)  # (N, C, hi - lo, H, W)

    def crop(self) -> Windows:
        """The same, with ``z`` cut down to the positions some clip reads from it."""
        first = self._z_index(self.a)
        last = self._z_index(self.n - self.b - 1) + self.clips - 1
        if first > last:  # every position is an edge
            first = last = max(0, min(first, self.z.shape[2] - 1))
        z = self.z[:, :, first : last + 1]
        return Windows(z, self.base - first, self.step, self.n, self.clips,
                       self.a, self.b, self.left, self.right)  # fmt: skip

    def widen(self, a: int, b: int) -> Windows:
        """The same, holding at least a leading and b trailing positions per clip."""
        a, b = min(max(a, self.a), self.n), min(max(b, self.b), self.n)
        left, right = self.left, self.right
        if a > self.a:
            extra = self.gather(self.a, a)
            left = extra if left is None else torch.cat((left, extra), dim=2)
        if b > self.b:
            extra = self.gather(self.n - b, self.n - self.b)
            right = extra if right is None else torch.cat((extra, right), dim=2)
        return Windows(self.z, self.base, self.step, self.n, self.clips, a, b, left, right)

    def materialize(self, memory_format=torch.contiguous_format) -> torch.Tensor:
        """Every clip in full: (N, C, n, H, W)."""
        return self.gather(0, self.n).contiguous(memory_format=memory_format)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Windows:
        """Apply an op that works on each time position alone."""
        w = self.crop()
        left = fn(w.left) if w.a else None
        right = fn(w.right) if w.b else None
        return Windows(fn(w.z), w.base, w.step, w.n, w.clips, w.a, w.b, left, right)


def _clips_first(y: torch.Tensor) -> torch.Tensor:
    """(1, C, N, H, W) stream results, one per clip -> (N, C, 1, H, W), no copy."""
    return y.permute(2, 1, 0, 3, 4)


def _cat_time(pieces: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate (N, C, t, H, W) tensors in time; the result is channels-last."""
    out = torch.cat([x.permute(0, 2, 3, 4, 1) for x in pieces], dim=1)  # (N, T, H, W, C)
    return out.permute(0, 4, 1, 2, 3)


# op(x, stride, dilation, taps) runs a layer with no temporal padding, at that temporal
# stride and dilation, with only its kernel taps ``taps`` (a range) in time.
TemporalOp = Callable[[torch.Tensor, int, int, range], torch.Tensor]


def _temporal(w: Windows, k: int, s: int, p: int, fill: float, op: TemporalOp) -> Windows:
    """Apply a layer of temporal kernel k, stride s and padding p (``fill`` past the ends).

    Output position t reads input positions t*s-p ... t*s-p+k-1. It is a stream result
    when they are all stream positions. An edge output whose inputs are stream positions
    or padding is computed from the stream too, with the taps that meet padding left out
    (the same sum); the others are computed from each clip's gathered inputs.
    """
    n2 = (w.n + 2 * p - k) // s + 1
    a2 = min(n2, max(0, -(-(w.a + p) // s)))
    last_clean = (w.n - w.b - k + p) // s
    b2 = min(n2 - a2, max(0, n2 - 1 - last_clean))
    wc = w.crop()
    full = range(k)

    def from_stream(t: int) -> torch.Tensor | None:
        q0 = t * s - p
        lo, hi = max(q0, 0), min(q0 + k, w.n)  # inputs inside the clip
        if lo < w.a or hi > w.n - w.b:
            return None
        start = wc.base + wc.step * lo
        stop = start + wc.step * (hi - lo - 1) + wc.clips
        return _clips_first(op(wc.z[:, :, start:stop], 1, wc.step, range(lo - q0, hi - q0)))

    def edge(first: int, last: int) -> torch.Tensor:  # outputs first ... last - 1
        pieces, run = [], []
        for t in range(first, last + 1):
            y = from_stream(t) if t < last else None
            if y is None and run:  # gather the run of per-clip outputs in one go
                lo = run[0] * s - p
                hi = run[-1] * s - p + k
                pieces.append(op(w.gather(lo, hi, fill), s, 1, full))
                run = []
            if t == last:
                break
            if y is None:
                run.append(t)
            else:
                pieces.append(y)
        return pieces[0] if len(pieces) == 1 else _cat_time(pieces)

    left = edge(0, a2) if a2 else None
    right = edge(n2 - b2, n2) if b2 else None
    if a2 + b2 < n2:
        z, base2 = op(wc.z, 1, wc.step, full), wc.base - wc.step * p
    else:  # nothing is shared any more: keep one edge position as the stream
        z, base2 = (left if left is not None else right)[:1, :, :1], 0
    return Windows(z, base2, w.step * s, n2, w.clips, a2, b2, left, right)


def _conv(w: Windows, conv: nn.Conv3d, relu: bool = False) -> Windows:
    """A convolution over the windows (then a ReLU: every output is a whole sum)."""
    kt, st, pt = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    if kt == 1 and st == 1 and pt == 0:
        return w.map(lambda x: conv3d(x, conv, relu=relu))
    if conv.dilation[0] != 1 or conv.groups != 1 or conv.padding_mode != "zeros":
        raise TypeError("overlap reuse: unsupported temporal convolution")

    def op(x: torch.Tensor, stride: int, dilation: int, taps: range) -> torch.Tensor:
        weight = conv.weight if len(taps) == kt else conv.weight[:, :, taps.start : taps.stop]
        return conv3d(
            x,
            conv,
            relu=relu,
            weight=weight,
            stride=(stride, *conv.stride[1:]),
            padding=(0, *conv.padding[1:]),
            dilation=(dilation, 1, 1),
        )

    return _temporal(w, kt, st, pt, 0.0, op)


def _maxpool(w: Windows, pool: nn.MaxPool3d) -> Windows:
    k, s, p = as_triple(pool.kernel_size), as_triple(pool.stride), as_triple(pool.padding)
    if k[0] == 1 and s[0] == 1 and p[0] == 0:
        return w.map(pool)
    if as_triple(pool.dilation) != (1, 1, 1) or pool.ceil_mode:
        raise TypeError("overlap reuse: unsupported temporal pooling")

    def op(x: torch.Tensor, stride: int, dilation: int, taps: range) -> torch.Tensor:
        kernel = (len(taps), *k[1:])
        return max_pool3d(x, kernel, (stride, *s[1:]), (0, *p[1:]), (dilation, 1, 1))

    return _temporal(w, k[0], s[0], p[0], float("-inf"), op)


def apply(module: nn.Module, w: Windows) -> Windows:
    """Run one backbone module over the windows of a batch."""
    if isinstance(module, nn.Sequential):  # BasicConv3d and SepConv3d are ones too
        for child, relu in fused_steps(module):  # a ReLU after a convolution: fused
            w = _conv(w, child, relu=True) if relu else apply(child, w)
        return w
    if isinstance(module, InceptionBlock):
        outs = [apply(branch, w) for branch in (module.branch0, module.branch1,
                                                module.branch2, module.branch3)]  # fmt: skip
        a, b = max(o.a for o in outs), max(o.b for o in outs)
        outs = [o.widen(a, b).crop() for o in outs]
        # with equal edges the crops coincide; the slices guard the all-edges case,
        # where crop clamps
        first = max(o.base for o in outs)
        size = min(o.z.shape[2] - o.base for o in outs) + first
        z = torch.cat([o.z[:, :, o.base - first : o.base - first + size] for o in outs], dim=1)
        left = torch.cat([o.left for o in outs], dim=1) if a else None
        right = torch.cat([o.right for o in outs], dim=1) if b else None
        return Windows(z, first, w.step, outs[0].n, w.clips, a, b, left, right)
    if isinstance(module, nn.Conv3d):
        return _conv(w, module)
    if isinstance(module, nn.MaxPool3d):
        return _maxpool(w, module)
    if isinstance(module, (nn.BatchNorm3d, nn.ReLU, nn.Identity)):
        return w.map(module)
    raise TypeError(f"overlap reuse: unsupported module {type(module).__name__}")


def _follows(clip: Sequence, prev: Sequence) -> bool:
    """True when ``clip`` is ``prev`` shifted one frame on (the same items)."""
    return len(clip) == len(prev) and all(a is b for a, b in zip(clip[:-1], prev[1:], strict=True))


def consecutive_runs(clips: Sequence[Sequence]) -> list[list[int]]:
    """Split clips into runs of neighbours in which each clip, in the run's order, is the
    one before shifted by one frame; as positions in ``clips``. A run may go backwards
    through ``clips``: the reference warm-up's reversed clips do. Runs of two or more
    clips go through ``forward_windows``."""
    runs: list[list[int]] = []
    forward = True  # direction of the last run
    for i, clip in enumerate(clips):
        if i and forward and _follows(clip, clips[i - 1]):
            runs[-1].append(i)
        elif i and (len(runs[-1]) == 1 or not forward) and _follows(clips[i - 1], clip):
            runs[-1].insert(0, i)
            forward = False
        else:
            runs.append([i])
            forward = True
    return runs


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def supports_reuse(model: nn.Module) -> bool:
    """Whether ``model`` has the S3D composition overlap reuse works on: ``s3d`` (its
    ``shallow_stages``), ``encode_sound`` and ``finish`` (ViNet, AViNet and TASED-Net
    do)."""
    return isinstance(model, ViNet | AViNet | TASED)


def forward_windows(
    model: nn.Module,
    frames: torch.Tensor,
    clip_len: int,
    waveforms: torch.Tensor | None = None,
    *,
    chunk: int = CHUNK_CLIPS,
) -> torch.Tensor:
    """The maps of every clip of ``clip_len`` consecutive frames of ``frames``.

    ``frames`` (1, 3, L, H, W), normalized -> (L - clip_len + 1, H, W): the same as
    ``model(clips)`` with clips[j] = frames[:, :, j : j + clip_len], computing the
    shared backbone work once. AViNet takes ``waveforms`` (N, 1, samples, 1).
    The per-clip stages run ``chunk`` clips at a time.
    """
    if not supports_reuse(model):
        raise TypeError("overlap reuse needs a ViNet, AViNet or TASED-Net model")
    n = frames.shape[2] - clip_len + 1
    if n < 1:
        raise ValueError(f"{frames.shape[2]} frames are fewer than one clip of {clip_len}")
    fmt = (
        torch.channels_last_3d
        if frames.is_contiguous(memory_format=torch.channels_last_3d) and frames.shape[1] > 1
        else torch.contiguous_format
    )
    w = Windows(frames, 0, 1, clip_len, n)
    taps = []  # the windows after each shallow stage: y3, then y2
    for stage in model.s3d.shallow_stages():
        for module in stage:
            w = apply(module, w)
        taps.append(w)
    w3, w2 = taps
    sound = model.encode_sound(waveforms)
    out = []
    for part in _chunks(n, chunk):
        y3 = _select(w3, part).materialize(fmt)
        y2 = _select(w2, part).materialize(fmt)
        out.append(model.finish(y2, y3, None if sound is None else sound[part]))
    return torch.cat(out)  # (N, H, W)


def _select(w: Windows, part: slice) -> Windows:
    """The windows of clips ``part`` only."""
    left = w.left[part] if w.a else None
    right = w.right[part] if w.b else None
    return Windows(w.z, w.base + part.start, w.step, w.n, part.stop - part.start,
                   w.a, w.b, left, right)  # fmt: skip
