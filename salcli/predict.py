"""The prediction pipeline, as a Python API under the CLI.

One streaming path, one module per stage::

    decode (salcli.decode, background thread) -> pre-process (salcli.preprocess)
      -> window (salcli.windowing) -> batch -> model (salcli.model)
      -> post-process -> writers (salcli.writers)

    >>> import salcli
    >>> maps = salcli.predict("clip.mp4")            # (N, H, W) float32 in [0, 1]
    >>> p = salcli.Predictor("ViNet_DHF1K.pt", batch_size=8)
    >>> for index, saliency in p.iter_maps("clip.mp4"): ...
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .decode import VideoMeta, open_video, prefetch
from .defaults import (
    CLIP_LEN,
    DEFAULT_BATCH_SIZE,
    DEFAULT_FORMATS,
    DEFAULT_PRECISION,
    DEFAULT_REUSE_BATCH_SIZE,
    DEFAULT_WARMUP,
    DEVICES,
    FUSIONS,
    INPUT_H,
    INPUT_W,
    PRECISIONS,
    WARMUP_POLICIES,
)
from .errors import NoAudioError, UsageError, WeightsError
from .model import fold_batchnorm
from .preprocess import frame_to_tensor, postprocess
from .windowing import clip_span, iter_clips

CHANNELS_LAST_DEVICES = ("cpu", "cuda")  # device types where channels-last 3-D pays off
PREFETCH_FRAMES = 2 * CLIP_LEN  # frames decoded ahead of the model (bounded queue)
WRITE_QUEUE_MAPS = 16  # maps waiting for the writer thread (bounded queue)
CHANNELS_LAST = torch.channels_last_3d  # (B, C, T, H, W) stored as (B, T, H, W, C)

# Batch size on CUDA when none is given: activation memory of one clip at 224x384 in
# fp32 (an estimate: about three of the largest activations, (64, 32, 112, 192) floats,
# alive at once), scaled by element size and input area; half the free memory is used.
CUDA_BYTES_PER_CLIP_FP32 = 600 * 2**20  # bytes, at 224x384
CUDA_MEMORY_FRACTION = 0.5  # of the free device memory
MAX_AUTO_BATCH = 32  # clips; larger batches gain nothing measurable


@dataclass
class _Item:
    """A decoded, pre-processed frame travelling through the windows."""

    index: int
    time: float  # seconds from the first frame
    height: int  # the frame's own size, for post-processing
    width: int
    tensor: torch.Tensor | None = field(repr=False)  # (3, h, w) normalized
    rgb: np.ndarray | None = field(default=None, repr=False)  # (H, W, 3) until resized


_RawMap = tuple[int, float, np.ndarray, int, int]  # (index, time, raw (h, w), height, width)


@dataclass
class _Pending:
    """A frame waiting for its map: predicted (``key``) or interpolated between keys."""

    t: int
    time: float
    height: int
    width: int
    key: bool
    clip: list[_Item] | None = field(default=None, repr=False)
    raw: np.ndarray | None = field(default=None, repr=False)  # (h, w) model map


@dataclass
class VideoResult:
    """What happened to one input (the CLI's summary line and JSON line)."""

    source: str
    status: str  # "done" | "skipped" | "failed"
    frames: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        return {
            "path": self.source,
            "status": self.status,
            "frames": self.frames,
            "fps": round(self.fps, 6),
            "seconds": round(self.seconds, 3),
            "outputs": self.outputs,
            "error": self.error,
        }


def resolve_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 matrix products natively (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_has_native_fp16() -> bool:
    """True when this CPU computes fp16 matrix products natively (AVX512-FP16 / AMX-FP16)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False


def emulated_precision(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``dtype`` arithmetic is emulated on ``device`` (correct, but many times
    slower than fp32): bf16 or fp16 on a CPU without native support for it."""
    if device.type != "cpu" or dtype == torch.float32:
        return False
    return not (cpu_has_native_bf16() if dtype == torch.bfloat16 else cpu_has_native_fp16())


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


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
    (more consecutive clips share more work). CUDA: as many clips as fit in a fraction
    of the free device memory (``free_bytes``, read from the device when None), at most
    ``MAX_AUTO_BATCH``.
    """
    if device.type != "cuda":
        return DEFAULT_REUSE_BATCH_SIZE if reuse else DEFAULT_BATCH_SIZE
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    elem = torch.finfo(dtype).bits // 8
    area = input_size[0] * input_size[1] / (INPUT_H * INPUT_W)
    per_clip = CUDA_BYTES_PER_CLIP_FP32 * elem / 4 * area
    return int(max(1, min(MAX_AUTO_BATCH, CUDA_MEMORY_FRACTION * free_bytes // per_clip)))


def resolve_reuse(option: bool | None, model: nn.Module, device: torch.device, compile: bool):
    """Whether batches of consecutive clips share their backbone work (salcli.overlap)."""
    from .overlap import vinet_of

    if vinet_of(model) is None:
        if option:
            raise UsageError("overlap reuse works only with ViNet / AViNet models")
        return False
    if option is not None:
        return bool(option)
    # unmeasured on CUDA (many small kernels for the clip ends); torch.compile traces
    # the plain forward pass
    return device.type == "cpu" and not compile


def _follows(clip: Sequence, prev: Sequence) -> bool:
    """True when ``clip`` is ``prev`` shifted one frame on (the same items)."""
    return len(clip) == len(prev) and all(a is b for a, b in zip(clip[:-1], prev[1:], strict=True))


def consecutive_runs(clips: Sequence[Sequence]) -> list[list[int]]:
    """Split clips into runs of neighbours in which each clip, in the run's order, is the
    one before shifted by one frame; as positions in ``clips``. A run may go backwards
    through ``clips``: the reference warm-up's reversed clips do."""
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


def interpolate_maps(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """Linear interpolation in time of two raw maps: (1 - weight) a + weight b."""
    return ((1.0 - weight) * a + weight * b).astype(np.float32, copy=False)


def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Sink:
    """Calls ``fn`` on each item put, in order, on a background thread.

    At most ``maxsize`` items wait; an exception raised by ``fn`` is re-raised by the
    next ``put`` or by ``close`` (the items after it are dropped).
    """

    _STOP = object()

    def __init__(self, fn: Callable, maxsize: int):
        self._fn = fn
        self._q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="salcli-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is self._STOP:
                return
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as exc:  # noqa: BLE001 - handed to the producer
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item) -> None:
        while True:
            self._raise()
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait until every item is handled; re-raise the first error."""
        self._q.put(self._STOP)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop as soon as possible, dropping waiting items; never raises."""
        if self._error is None:
            self._error = RuntimeError("aborted")
        with contextlib.suppress(queue.Full):
            while True:  # make room for the stop mark
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    break
            self._q.put(self._STOP, timeout=1.0)
        self._thread.join(timeout=5.0)


class Predictor:
    """A loaded model and the settings to run it over videos.

    Parameters
    ----------
    weights:
        A checkpoint path, a registry name, or None for the default file of the model
        (looked up in ./weights, the repository's weights/ and the user cache).
    audio:
        Use the soundtrack (AViNet). The checkpoint must then be an AViNet one.
    fusion:
        With ``audio``, the fusion the checkpoint must have ("bilinear", "transformer",
        "concat"); None accepts whichever the checkpoint holds.
    warmup:
        "mirror" or "reference", see ``salcli.windowing``.
    model:
        A ready ``nn.Module`` instead of ``weights`` (tests, experiments), used as it
        is; checkpoints loaded from ``weights`` get their BatchNorms folded into the
        convolutions (``salcli.model.fold_batchnorm``: same maps, ~15 % faster).
    input_size:
        (height, width) of the model input; the published models use 224x384.
    allow_silence:
        With ``audio``, a video without an audio track goes on with silence (a
        warning) instead of failing.
    precision:
        "auto" (bf16 on CPUs with native bf16, bf16/fp16 on CUDA, else fp32), "fp32",
        "bf16" or "fp16" (autocast).
    batch_size:
        Clips per forward pass; None chooses (``choose_batch_size``).
    stride:
        Predict every ``stride``-th frame (and the last) and interpolate the maps of the
        frames between, linearly in time, before post-processing. 1 (default) predicts
        every frame.
    channels_last:
        Run the model in the channels-last 3-D layout; None chooses per device.
    gpu_resize:
        On CUDA, resize frames on the GPU (8-bit frames are uploaded from pinned
        memory); None: on when the device is CUDA.
    compile:
        Wrap the model in ``torch.compile`` (pays off on CUDA for long runs).
    reuse:
        Compute the backbone work that consecutive clips share once per batch
        (``salcli.overlap``: the same maps up to float rounding, ~1.3x faster on CPU
        at 8 clips per batch); None: on for ViNet / AViNet on the CPU, unless
        ``compile``. Clips that are not consecutive (``stride`` > 1) run clip by
        clip as usual.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        audio: bool = False,
        fusion: str | None = None,
        device: str = "auto",
        precision: str = DEFAULT_PRECISION,
        batch_size: int | None = None,
        warmup: str = DEFAULT_WARMUP,
        input_size: tuple[int, int] = (INPUT_H, INPUT_W),
        allow_silence: bool = False,
        model: nn.Module | None = None,
        on_warning: Callable[[str], None] | None = None,
        stride: int = 1,
        channels_last: bool | None = None,
        gpu_resize: bool | None = None,
        compile: bool = False,
        reuse: bool | None = None,
    ):
        if warmup not in WARMUP_POLICIES:
            raise UsageError(f"unknown warm-up policy {warmup!r} (mirror or reference)")
        if batch_size is not None and batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if stride < 1:
            raise UsageError("--stride must be at least 1")
        if fusion is not None and fusion not in FUSIONS:
            raise UsageError(f"unknown fusion {fusion!r} (choose from {', '.join(FUSIONS)})")
        if input_size[0] % 32 or input_size[1] % 32 or min(input_size) < 32:
            raise UsageError("the input size must be multiples of 32 pixels")
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.precision = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[
            self.dtype
        ]
        self.stride = int(stride)
        self.channels_last = resolve_channels_last(channels_last, self.device)
        cuda = self.device.type == "cuda"
        self.gpu_resize = cuda if gpu_resize is None else bool(gpu_resize) and cuda
        self.pin_memory = cuda
        self.warmup = warmup
        self.input_size = tuple(input_size)
        self.allow_silence = allow_silence
        self._warn = on_warning or (lambda msg: warnings.warn(msg, stacklevel=3))
        if emulated_precision(self.dtype, self.device):
            self._warn(
                f"{self.precision} is emulated on this CPU (it has no native "
                f"{self.precision} arithmetic): correct, but far slower than fp32"
            )
        self.weights_path: Path | None = None
        self.weights_sha256 = ""
        loaded = model is None
        if loaded:
            model, self.arch = self._load(weights, audio, fusion)
        else:
            self.arch = getattr(model, "fusion", None) or "vinet"
        self.audio = self.arch != "vinet"
        if audio and not self.audio:
            raise WeightsError("--audio needs an AViNet checkpoint; this one is ViNet")
        if self.arch == "bilinear" and self.input_size != (INPUT_H, INPUT_W):
            raise UsageError("AViNet (bilinear) works only at the 224x384 input size")
        if loaded:  # a module passed in is used as it is (see model.fold_batchnorm)
            model = fold_batchnorm(model)
        self.model = model.eval().to(self.device)
        if self.channels_last:
            to_channels_last_3d(self.model)
        self._net = torch.compile(self.model) if compile else self.model
        self.reuse = resolve_reuse(reuse, self.model, self.device, compile)
        self.batch_size = batch_size or choose_batch_size(
            self.device, self.dtype, self.input_size, reuse=self.reuse
        )

    # -- loading -------------------------------------------------------------

    def _load(self, weights, audio: bool, fusion: str | None) -> tuple[nn.Module, str]:
        from .weights import load_model, sha256_file

        arch = (fusion or "bilinear") if audio else "vinet"
        path = self._resolve_weights(weights, arch)
        model, found, _ = load_model(path)
        if audio and found == "vinet":
            raise WeightsError(f"{path}: --audio needs an AViNet checkpoint, this is ViNet")
        if not audio and found != "vinet":
            raise WeightsError(
                f"{path}: this is an AViNet ({found}) checkpoint; add --audio to use it"
            )
        if audio and fusion is not None and found != fusion:
            raise WeightsError(
                f"{path}: the checkpoint's fusion is {found}, but --fusion {fusion} was asked"
            )
        if found == "soundnet":
            raise WeightsError(f"{path}: this is SoundNet-8 alone, not a saliency model")
        self.weights_path = Path(path)
        self.weights_sha256 = sha256_file(path)
        return model, found

    @staticmethod
    def _resolve_weights(weights, arch: str) -> Path:
        """A path, a registry name or None (the default file) -> an existing file."""
        from .registry import resolve_weights

        path = resolve_weights(weights, arch)
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path

    # -- running ---------------------------------------------------------------

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _assemble(self, clips: list[list[_Item]]) -> torch.Tensor:
        """The clips as one model input (B, 3, T, h, w), in one copy: channels-last when
        the model runs so, in pinned memory when it goes to CUDA, on the frames' device."""
        first = clips[0][0].tensor  # (3, h, w)
        b, t, (c, h, w) = len(clips), len(clips[0]), first.shape
        pin = self.pin_memory and first.device.type == "cpu"
        kw = dict(dtype=first.dtype, device=first.device, pin_memory=pin)
        if self.channels_last:
            x = torch.empty((b, t, h, w, c), **kw)  # (B, T, h, w, 3)
            for i, clip in enumerate(clips):
                for j, it in enumerate(clip):
                    x[i, j].copy_(it.tensor.permute(1, 2, 0))
            return x.permute(0, 4, 1, 2, 3)  # (B, 3, T, h, w), channels-last strides
        x = torch.empty((b, c, t, h, w), **kw)
        for i, clip in enumerate(clips):
            for j, it in enumerate(clip):
                x[i, :, j].copy_(it.tensor)
        return x

    def _predict_clips(self, clips: list[list[_Item]], waves: torch.Tensor | None) -> np.ndarray:
        """Raw maps (B, h, w) of the clips; runs of consecutive clips share their
        backbone work when ``reuse`` is on."""
        if not self.reuse:
            return self._forward(self._assemble(clips), waves)
        out: list[np.ndarray | None] = [None] * len(clips)
        singles: list[int] = []
        for run in consecutive_runs(clips):
            if len(run) == 1:
                singles += run
                continue
            frames = [*clips[run[0]], *(clips[i][-1] for i in run[1:])]
            w = None if waves is None else waves[run]
            for i, m in zip(run, self._forward_windows(self._assemble([frames]), w), strict=True):
                out[i] = m
        if singles:
            w = None if waves is None else waves[singles]
            maps = self._forward(self._assemble([clips[i] for i in singles]), w)
            for i, m in zip(singles, maps, strict=True):
                out[i] = m
        return np.stack(out)

    def _forward_windows(self, frames: torch.Tensor, waves: torch.Tensor | None) -> np.ndarray:
        """Raw maps (N, h, w) of the N clips of consecutive frames (1, 3, N + T - 1, h, w)."""
        from .overlap import forward_windows

        def run(x: torch.Tensor, *audio: torch.Tensor) -> torch.Tensor:
            return forward_windows(self.model, x, CLIP_LEN, *audio)

        return self._forward(frames, waves, run)

    def _forward(
        self, clips: torch.Tensor, waves: torch.Tensor | None, net: Callable | None = None
    ) -> np.ndarray:
        """Raw maps (B, h, w) of ``net`` (default: the model) over the clips (B, 3, T, h, w)."""
        net = net or self._net
        clips = clips.to(self.device, non_blocking=True)
        if self.channels_last:
            clips = clips.contiguous(memory_format=CHANNELS_LAST)
        audio = () if waves is None else (waves.to(self.device, non_blocking=True),)
        with torch.inference_mode(), self._autocast():
            out = net(clips, *audio)
        return out.float().cpu().numpy()  # (B, h, w)

    def _open_audio(self, meta: VideoMeta, source: Path, audio_path):
        from . import audio as audio_mod

        path = Path(audio_path) if audio_path is not None else source
        # a separate audio file starts with the first frame; the video's own track is
        # placed by its timestamps relative to the first frame's
        start = 0.0 if audio_path is not None else meta.start_time
        try:
            track = audio_mod.AudioTrack.open(path, video_start=start)
        except NoAudioError:
            if not self.allow_silence:
                raise
            self._warn(f"{path}: no audio track; going on with silence")
            return audio_mod.AudioTrack.silence()
        gap = audio_mod.duration_mismatch(meta.duration, track.duration, meta.fps)
        if gap is not None:
            self._warn(
                f"{source}: audio and video durations differ by {gap:+.3f} s "
                f"(video {meta.duration:.3f} s, audio {track.duration:.3f} s)"
            )
        return track

    def stream(
        self, source: str | Path, *, fps: float | None = None, audio_path: str | Path | None = None
    ) -> tuple[VideoMeta, Iterator[tuple[int, float, np.ndarray]]]:
        """Open ``source`` and return (meta, iterator of (index, time, map)).

        Maps are post-processed (frame size, blurred, min-max [0, 1]), float32, in frame
        order. Errors in opening the file are raised here, before any map.
        """
        reader, meta, track = self._open(source, fps, audio_path)
        return meta, self._run(reader, meta, track)

    def _open(self, source: str | Path, fps: float | None, audio_path: str | Path | None):
        """(reader, meta, audio track or None) of ``source``; nothing left open on error."""
        source = Path(source)
        reader = open_video(source, fps=fps)
        meta = reader.meta
        try:
            track = self._open_audio(meta, source, audio_path) if self.audio else None
        except BaseException:
            reader.close()
            raise
        return reader, meta, track

    def _run(self, reader, meta: VideoMeta, track) -> Iterator[tuple[int, float, np.ndarray]]:
        for index, t, raw, height, width in self._raw_maps(reader, meta, track):
            yield index, t, postprocess(raw, height, width)

    def _raw_maps(self, reader, meta: VideoMeta, track) -> Iterator[_RawMap]:
        """Every frame's raw model map (h, w), in frame order, before post-processing.

        Frames are decoded and pre-processed on a background thread; with ``stride`` K
        only frames t = 0, K, 2K, ... and the last go through the model, the others get
        the linear interpolation of the two nearest predicted maps.
        """
        size = self.input_size
        device = self.device if self.gpu_resize else None

        def decoded() -> Iterator[_Item]:  # on the prefetch thread
            for f in reader:
                h, w = f.rgb.shape[:2]
                if device is None:
                    yield _Item(f.index, f.time, h, w, None, f.rgb)
                else:  # GPU kernels: no CPU thread pool to fight over
                    yield _Item(f.index, f.time, h, w, frame_to_tensor(f.rgb, size, device=device))

        def prepared(items: Iterator[_Item]) -> Iterator[_Item]:
            # On the CPU the resize runs here, on the model's thread: torch's OpenMP pool
            # is process-wide, and a second team working beside the model's slows both.
            for it in items:
                if it.tensor is None:
                    it.tensor, it.rgb = frame_to_tensor(it.rgb, size), None
                yield it

        decoding = prefetch(decoded(), maxsize=PREFETCH_FRAMES)
        frames = prepared(decoding)
        pending: list[_Pending] = []  # frames in order, waiting for their (next) key map
        n_keys = 0
        previous: _Pending | None = None  # the last key frame handed out
        try:
            for t, clip in iter_clips(frames, CLIP_LEN, self.warmup):
                if pending and not pending[-1].key:
                    pending[-1].clip = None  # only the newest frame may still become a key
                last = clip[-1]
                key = t % self.stride == 0
                pending.append(_Pending(t, last.time, last.height, last.width, key, clip))
                n_keys += key
                if n_keys == self.batch_size:
                    previous = yield from self._flush(pending, previous, meta, track)
                    n_keys = 0
            if pending and not pending[-1].key:
                pending[-1].key = True  # the last frame is always predicted
            if pending:
                yield from self._flush(pending, previous, meta, track)
        finally:
            frames.close()
            decoding.close()
            reader.close()
            if track is not None:
                track.close()

    def _flush(self, pending: list[_Pending], previous, meta: VideoMeta, track):
        """Run the key frames of ``pending`` through the model (one batch), hand out every
        frame up to the last key (in place: those leave ``pending``); returns that key."""
        keys = [p for p in pending if p.key and p.raw is None]
        if keys:
            waves = None
            if track is not None:
                from .audio import clip_batch

                spans = [clip_span([it.index for it in p.clip]) for p in keys]
                waves = torch.from_numpy(clip_batch(track, spans, meta.fps))  # (B,1,N,1)
            maps = self._predict_clips([p.clip for p in keys], waves)
            for p, m in zip(keys, maps, strict=True):
                p.raw, p.clip = m, None
        end = max(i for i, p in enumerate(pending) if p.key) + 1
        done = pending[:end]
        del pending[:end]
        nxt = None
        for i, p in enumerate(done):
            if p.key:
                previous = p
                yield p.t, p.time, p.raw, p.height, p.width
                continue
            if nxt is None or nxt.t < p.t:
                nxt = next(q for q in done[i:] if q.key)
            w = (p.t - previous.t) / (nxt.t - previous.t)
            yield p.t, p.time, interpolate_maps(previous.raw, nxt.raw, w), p.height, p.width
        return previous

    def iter_maps(
        self, source: str | Path, *, fps: float | None = None, audio_path: str | Path | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(0-based frame index, map (H, W) float32 in [0, 1]) for every frame of ``source``
        (a media file, or a folder of frames at ``fps``)."""
        _, maps = self.stream(source, fps=fps, audio_path=audio_path)
        for index, _, m in maps:
            yield index, m

    def predict(
        self, source: str | Path, *, fps: float | None = None, audio_path: str | Path | None = None
    ) -> np.ndarray:
        """Every frame's map of ``source`` as one (N, H, W) float32 array (holds them all)."""
        maps = [m for _, m in self.iter_maps(source, fps=fps, audio_path=audio_path)]
        return np.stack(maps)

    def run_info(self):
        from .writers import RunInfo

        return RunInfo(
            model=self.arch,
            weights_sha256=self.weights_sha256,
            clip_len=CLIP_LEN,
            warmup=self.warmup,
            salcli_version=__version__,
            extra={
                "precision": self.precision,
                "reuse": "on" if self.reuse else "off",
                "device": self.device.type,
                "input_size": f"{self.input_size[0]}x{self.input_size[1]}",
                "weights_file": self.weights_path.name if self.weights_path else "",
            },
        )

    def write(
        self,
        source: str | Path,
        out_dir: str | Path,
        formats: Sequence[str] = DEFAULT_FORMATS,
        *,
        fps: float | None = None,
        audio_path: str | Path | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        writer_options: dict | None = None,
    ) -> VideoResult:
        """Predict ``source`` and write its maps in every format of ``formats`` under
        ``out_dir``. Outputs appear only complete (temporary names, then a rename);
        on any error every partial output is removed and the error re-raised."""
        from .writers import make_writer

        started = time.perf_counter()
        out_dir = Path(out_dir)
        reader, meta, track = self._open(source, fps, audio_path)
        maps = self._raw_maps(reader, meta, track)
        writers = []
        n = 0

        def write_one(job: _RawMap) -> None:  # on the writer thread
            index, t, raw, height, width = job
            m = postprocess(raw, height, width)
            for w in writers:
                w.write(index, m, t)

        sink = None
        try:
            run = self.run_info()
            for fmt in dict.fromkeys(formats):
                writers.append(make_writer(fmt, out_dir, meta, run, **(writer_options or {})))
            sink = _Sink(write_one, WRITE_QUEUE_MAPS)
            for job in maps:
                sink.put(job)
                n += 1
                if progress is not None:
                    progress(n, meta.n_frames)
            sink.close()
            outputs: list[str] = []
            for w in writers:
                outputs.extend(str(p) for p in w.close())
        except BaseException:
            maps.close()
            with contextlib.suppress(Exception):
                reader.close()  # an unstarted ``maps`` does not close it
                if track is not None:
                    track.close()
            if sink is not None:
                sink.abort()
            for w in writers:
                with contextlib.suppress(Exception):
                    w.abort()
            raise
        return VideoResult(
            source=str(source),
            status="done",
            frames=n,
            fps=meta.fps,
            seconds=time.perf_counter() - started,
            outputs=outputs,
        )


def predict(source: str | Path, weights: str | Path | None = None, **options) -> np.ndarray:
    """Saliency maps of every frame of ``source``: (N, H, W) float32 in [0, 1].

    ``options`` are those of ``Predictor`` (audio, fusion, device, precision,
    batch_size, warmup, ...) plus ``fps`` and ``audio_path`` for frame folders.
    """
    run_keys = ("fps", "audio_path")
    run_opts = {k: options.pop(k) for k in run_keys if k in options}
    return Predictor(weights, **options).predict(source, **run_opts)
