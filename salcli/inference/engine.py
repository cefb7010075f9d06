"""The engine: batches of clips in, raw model maps out.

Everything about *how* the network runs lives here — the device, the precision
(autocast; the model keeps its last layers in fp32 itself), the memory layout
(channels-last 3-D), the batch size, pinned memory and non-blocking copies on CUDA,
``torch.compile``, and overlap reuse (``salcli.inference.overlap``: runs of consecutive clips
share their backbone work). *What* goes in (which frames, which sound) is the
pipeline's business (``salcli.inference.predictor``); the engine takes clips of frames whose
``tensor`` is the model input, plus the sound input of each clip, and returns one raw
map (h, w) float32 per clip. A recurrent model (``recurrent = True``: UNISAL) takes
single frames instead, each the next step of its interleaved sequence; the engine holds
the sequences' states between calls (``salcli.inference.recurrence``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from salcli.defaults import DEFAULT_BATCH_SIZE, DEFAULT_REUSE_BATCH_SIZE
from salcli.errors import UsageError
from salcli.inference.hardware import (
    PRECISION_NAMES,
    emulated_precision,
    keep_freed_memory,
    resolve_device,
    resolve_precision,
)
from salcli.inference.recurrence import InterleavedStates
from salcli.models.vinet_procedure import INPUT_H, INPUT_W

FP32_BYTES = torch.finfo(torch.float32).bits // 8  # bytes per fp32 activation
CHANNELS_LAST_DEVICES = ("cpu", "cuda")  # device types where channels-last 3-D pays off
CHANNELS_LAST = torch.channels_last_3d  # (B, C, T, H, W) stored as (B, T, H, W, C)

# Batch size on CUDA when none is given: activation memory of one clip at 224x384 in
# fp32 (an estimate: about three of the largest activations, (64, 32, 112, 192) floats,
# alive at once), scaled by element size and input area; half the free memory is used.
CUDA_BYTES_PER_CLIP_FP32 = 600 * 2**20  # bytes, at 224x384
CUDA_MEMORY_FRACTION = 0.5  # of the free device memory
MAX_AUTO_BATCH = 32  # clips; larger batches gain nothing measurable
RECURRENT_CPU_BATCH = 10  # frames per call of a recurrent model on CPU: 2 steps of 5 sequences


def resolve_channels_last(option: bool | None, device: torch.device) -> bool:
    """Whether the model runs in the channels-last 3-D layout; None chooses per device."""
    if option is not None:
        return bool(option)
    return device.type in CHANNELS_LAST_DEVICES


def choose_batch_size(
    device: torch.device,
    dtype: torch.dtype,
    input_size: tuple[int, int] = (INPUT_H, INPUT_W),
    *,
    free_bytes: int | None = None,
    reuse: bool = False,
) -> int:
    """Clips per forward pass when the user gave none.

    CPU: ``DEFAULT_BATCH_SIZE``, or ``DEFAULT_REUSE_BATCH_SIZE`` with overlap reuse
    (more consecutive clips share more work), twice that in bf16 / fp16 (16-bit
    activations: the same memory as fp32's batch, and a map costs fewer operations).
    CUDA: as many clips as fit in a fraction of the free device memory (``free_bytes``,
    read from the device when None), at most ``MAX_AUTO_BATCH``.
    """
    elem = torch.finfo(dtype).bits // 8  # bytes per activation
    if device.type != "cuda":
        return DEFAULT_REUSE_BATCH_SIZE * FP32_BYTES // elem if reuse else DEFAULT_BATCH_SIZE
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    area = input_size[0] * input_size[1] / (INPUT_H * INPUT_W)
    per_clip = CUDA_BYTES_PER_CLIP_FP32 * elem / FP32_BYTES * area
    return int(max(1, min(MAX_AUTO_BATCH, CUDA_MEMORY_FRACTION * free_bytes // per_clip)))


def resolve_reuse(option: bool | None, model: nn.Module, device: torch.device, compile: bool):
    """Whether batches of consecutive clips share their backbone work (salcli.inference.overlap)."""
    from salcli.inference.overlap import supports_reuse

    if not supports_reuse(model):
        if option:
            raise UsageError("overlap reuse works only with ViNet / AViNet / TASED-Net models")
        return False
    if option is not None:
        return bool(option)
    # unmeasured on CUDA (many small kernels for the clip ends); torch.compile traces
    # the plain forward pass
    return device.type == "cpu" and not compile


def to_channels_last_3d(model: nn.Module) -> nn.Module:
    """Store every 5-D parameter and buffer of ``model`` channels-last (in place).

    ``nn.Module.to(memory_format=...)`` refuses models that also hold 4-D weights
    (SoundNet's), so the 5-D ones are converted one by one; values do not change.
    """
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.dim() == 5:
                t.data = t.data.contiguous(memory_format=CHANNELS_LAST)
    return model


def _sound_row(sound: torch.Tensor | None, i: int) -> torch.Tensor | None:
    """Clip i's row of a batch's sound input (None: no sound)."""
    return None if sound is None else sound[i]


def _same_sound(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Equal sound rows, or no sound for either."""
    return a is b if a is None or b is None else torch.equal(a, b)


def _same_clip(a: Sequence, b: Sequence, sound_a, sound_b) -> bool:
    """The same frame objects in the same order, and equal sound (or none)."""
    if len(a) != len(b) or any(x is not y for x, y in zip(a, b, strict=True)):
        return False
    return _same_sound(sound_a, sound_b)


def distinct_clips(
    clips: Sequence[Sequence], sound: torch.Tensor | None = None
) -> tuple[list[int], list[int]]:
    """(first, where): the positions in ``clips`` of the first of each distinct clip, and
    for every clip the index in ``first`` of the clip it equals. Clips are equal when they
    hold the same frame objects in the same order and their ``sound`` rows are equal."""
    first: list[int] = []
    where: list[int] = []
    seen: dict[tuple[int, ...], list[int]] = {}
    for i, clip in enumerate(clips):
        # equal ids are the same frames: the clips hold them through the call
        same = seen.setdefault(tuple(map(id, clip)), [])
        for k in same:
            if _same_sound(_sound_row(sound, first[k]), _sound_row(sound, i)):
                where.append(k)
                break
        else:
            same.append(len(first))
            where.append(len(first))
            first.append(i)
    return first, where


@dataclass(frozen=True)
class _HeldClip:
    """The last clip of an engine call, its sound row and its map. The frames are held
    by weak reference: a clip that ended its video does not keep its pictures alive,
    and a frame that is gone matches nothing."""

    frames: tuple[weakref.ref, ...]
    sound: torch.Tensor | None  # the clip's row of the call's sound input
    map: np.ndarray  # (h, w) float32

    @classmethod
    def of(cls, clip: Sequence, sound: torch.Tensor | None, map: np.ndarray) -> _HeldClip | None:
        """None where the frames take no weak reference (then nothing is held)."""
        try:
            frames = tuple(weakref.ref(f) for f in clip)
        except TypeError:
            return None
        return cls(frames, None if sound is None else sound.clone(), map.copy())

    def matches(self, clip: Sequence, sound: torch.Tensor | None) -> bool:
        frames = [r() for r in self.frames]
        return None not in frames and _same_clip(frames, clip, self.sound, sound)


class Engine:
    """Runs a saliency model over batches of clips.

    ``model(clips[, sound])`` maps (B, 3, T, h, w) clips (and, for audio-visual models,
    a (B, ...) sound input) to (B, h, w) saliency; it is moved to the device and, where
    chosen, to the channels-last layout. ``device``, ``precision``, ``batch_size``,
    ``reuse``, ``channels_last`` and ``compile`` are the options of the same names
    (``salcli.options.PredictOptions``); None and "auto" choose for the machine.
    ``cast(model, dtype)``: the model family's weight cast for the chosen precision
    (``ModelFamily.cast``), applied once.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int | None = None,
        reuse: bool | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        input_size: tuple[int, int] = (INPUT_H, INPUT_W),
        cast: Callable[[nn.Module, torch.dtype], nn.Module] | None = None,
    ):
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.precision = PRECISION_NAMES[self.dtype]
        self.emulated = emulated_precision(self.dtype, self.device)
        self.recurrent = bool(getattr(model, "recurrent", False))
        # recurrent models take 2-D frames: the 3-D layout does not apply
        self.channels_last = not self.recurrent and resolve_channels_last(
            channels_last, self.device
        )
        self.sequences = InterleavedStates()  # a recurrent model's states (restart per video)
        self.pin_memory = self.device.type == "cuda"
        if self.device.type == "cpu":  # activations reuse freed memory, no new pages
            keep_freed_memory()
        if cast is not None:  # weights stored once in the run's dtype (the same maps)
            model = cast(model, self.dtype)
        self.model = model.eval().to(self.device)
        if self.channels_last:
            to_channels_last_3d(self.model)
        self._net = torch.compile(self.model) if compile else self.model
        self._held: _HeldClip | None = None  # the last clip of the last call (__call__)
        self.reuse = resolve_reuse(reuse, self.model, self.device, compile)
        if batch_size is None and self.recurrent and self.device.type != "cuda":
            batch_size = RECURRENT_CPU_BATCH
        self.batch_size = batch_size or choose_batch_size(
            self.device, self.dtype, input_size, reuse=self.reuse
        )

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def assemble(self, clips: Sequence[Sequence]) -> torch.Tensor:
        """The clips (each a sequence of frames with a (3, h, w) ``tensor``) as one model
        input (B, 3, T, h, w), in one copy: channels-last when the model runs so, in
        pinned memory when it goes to CUDA, on the frames' device."""
        first = clips[0][0].tensor  # (3, h, w)
        b, t, (c, h, w) = len(clips), len(clips[0]), first.shape
        pin = self.pin_memory and first.device.type == "cpu"
        kw = dict(dtype=first.dtype, device=first.device, pin_memory=pin)
        if self.channels_last:
            x = torch.empty((b, t, h, w, c), **kw)  # (B, T, h, w, 3)
            for i, clip in enumerate(clips):
                for j, frame in enumerate(clip):
                    x[i, j].copy_(frame.tensor.permute(1, 2, 0))
            return x.permute(0, 4, 1, 2, 3)  # (B, 3, T, h, w), channels-last strides
        x = torch.empty((b, c, t, h, w), **kw)
        for i, clip in enumerate(clips):
            for j, frame in enumerate(clip):
                x[i, :, j].copy_(frame.tensor)
        return x

    def __call__(self, clips: Sequence[Sequence], sound: torch.Tensor | None = None) -> np.ndarray:
        """Raw maps (B, h, w) float32 of the clips; runs of consecutive clips share their
        backbone work when ``reuse`` is on.

        A clip equal to an earlier one of the batch, or to the last clip of the call
        before (the same frames, the same sound: ``distinct_clips``), is computed once:
        STAViS's reference warm-up gives frames 0-8 one clip. The engine holds that last
        clip (its frames by weak reference), its sound and its map until the next call.
        """
        if self.recurrent:
            return self._forward_recurrent(clips)
        first, where = distinct_clips(clips, sound)
        held, known = self._held, {}
        if held is not None:
            known = {
                k: held.map
                for k, i in enumerate(first)
                if held.matches(clips[i], _sound_row(sound, i))
            }
        todo = [k for k in range(len(first)) if k not in known]
        if todo:
            picked = [first[k] for k in todo]
            s = None if sound is None else sound[picked]
            known.update(zip(todo, self._compute([clips[i] for i in picked], s), strict=True))
        out = np.stack([known[k] for k in where])
        last = len(clips) - 1
        self._held = _HeldClip.of(clips[last], _sound_row(sound, last), out[last])
        return out

    def _compute(self, clips: Sequence[Sequence], sound: torch.Tensor | None) -> np.ndarray:
        """The maps of ``clips``, every one computed."""
        if not self.reuse:
            return self._forward(self.assemble(clips), sound)
        from salcli.inference.overlap import consecutive_runs

        out: list[np.ndarray | None] = [None] * len(clips)
        singles: list[int] = []
        for run in consecutive_runs(clips):
            if len(run) == 1:
                singles += run
                continue
            frames = [*clips[run[0]], *(clips[i][-1] for i in run[1:])]
            s = None if sound is None else sound[run]
            maps = self._forward(self.assemble([frames]), s, self._windows(len(clips[0])))
            for i, m in zip(run, maps, strict=True):
                out[i] = m
        if singles:
            s = None if sound is None else sound[singles]
            maps = self._forward(self.assemble([clips[i] for i in singles]), s)
            for i, m in zip(singles, maps, strict=True):
                out[i] = m
        return np.stack(out)

    def _forward_recurrent(self, clips: Sequence[Sequence]) -> np.ndarray:
        """Raw maps (B, h, w) of a recurrent model: each clip's last frame (its ``index``
        and its (3, h, w) ``tensor``) the next step of its sequence (``sequences``)."""
        frames = [clip[-1] for clip in clips]
        indices = [f.index for f in frames]
        x = torch.stack([f.tensor for f in frames]).to(self.device, non_blocking=True)

        def zeros(count: int) -> torch.Tensor:  # fp32 states whatever the precision
            return self.model.zero_states(count, tuple(x.shape[-2:]), x.float())

        with torch.inference_mode(), self._autocast():
            states, slots = self.sequences.prepare(indices, zeros)
            out, states = self._net(x, states, slots)
        self.sequences.update(states, indices)
        return out.float().cpu().numpy()  # (B, h, w)

    def forward(self, clips: torch.Tensor, sound: torch.Tensor | None = None) -> np.ndarray:
        """Raw maps (B, h, w) float32 of a batch tensor (B, 3, T, h, w), each clip on its
        own: the model as the engine runs it (device, precision, layout, compile)."""
        return self._forward(clips, sound)

    def forward_stream(
        self, frames: torch.Tensor, clip_len: int, sound: torch.Tensor | None = None
    ) -> np.ndarray:
        """Raw maps (B, h, w) of the B = L - clip_len + 1 consecutive clips of ``frames``
        (1, 3, L, h, w), their shared backbone work done once (overlap reuse)."""
        return self._forward(frames, sound, self._windows(clip_len))

    def _windows(self, clip_len: int) -> Callable:
        from salcli.inference.overlap import forward_windows

        def run(frames: torch.Tensor, *sound: torch.Tensor) -> torch.Tensor:
            return forward_windows(self.model, frames, clip_len, *sound)

        return run

    def _forward(
        self, clips: torch.Tensor, sound: torch.Tensor | None, net: Callable | None = None
    ) -> np.ndarray:
        """Raw maps (B, h, w) of ``net`` (default: the model) over clips (B, 3, T, h, w)."""
        net = net or self._net
        clips = clips.to(self.device, non_blocking=True)
        if self.channels_last:
            clips = clips.contiguous(memory_format=CHANNELS_LAST)
        extra = () if sound is None else (sound.to(self.device, non_blocking=True),)
        with torch.inference_mode(), self._autocast():
            out = net(clips, *extra)
        return out.float().cpu().numpy()  # (B, h, w)
