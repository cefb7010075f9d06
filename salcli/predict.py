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
    DEFAULT_WARMUP,
    DEVICES,
    FUSIONS,
    INPUT_H,
    INPUT_W,
    PRECISIONS,
    WARMUP_POLICIES,
)
from .errors import NoAudioError, UsageError, WeightsError
from .preprocess import frame_to_tensor, postprocess
from .windowing import clip_span, iter_clips

PREFETCH_FRAMES = 2 * CLIP_LEN  # frames decoded ahead of the model (bounded queue)


@dataclass
class _Item:
    """A decoded, pre-processed frame travelling through the windows."""

    index: int
    time: float  # seconds from the first frame
    height: int  # the frame's own size, for post-processing
    width: int
    tensor: torch.Tensor = field(repr=False)  # (3, h, w) normalized


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


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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
        A ready ``nn.Module`` instead of ``weights`` (tests, experiments).
    input_size:
        (height, width) of the model input; the published models use 224x384.
    allow_silence:
        With ``audio``, a video without an audio track goes on with silence (a
        warning) instead of failing.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        audio: bool = False,
        fusion: str | None = None,
        device: str = "auto",
        precision: str = DEFAULT_PRECISION,
        batch_size: int = DEFAULT_BATCH_SIZE,
        warmup: str = DEFAULT_WARMUP,
        input_size: tuple[int, int] = (INPUT_H, INPUT_W),
        allow_silence: bool = False,
        model: nn.Module | None = None,
        on_warning: Callable[[str], None] | None = None,
    ):
        if warmup not in WARMUP_POLICIES:
            raise UsageError(f"unknown warm-up policy {warmup!r} (mirror or reference)")
        if batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if fusion is not None and fusion not in FUSIONS:
            raise UsageError(f"unknown fusion {fusion!r} (choose from {', '.join(FUSIONS)})")
        if input_size[0] % 32 or input_size[1] % 32 or min(input_size) < 32:
            raise UsageError("the input size must be multiples of 32 pixels")
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.precision = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[
            self.dtype
        ]
        self.batch_size = batch_size
        self.warmup = warmup
        self.input_size = tuple(input_size)
        self.allow_silence = allow_silence
        self._warn = on_warning or (lambda msg: warnings.warn(msg, stacklevel=3))
        self.weights_path: Path | None = None
        self.weights_sha256 = ""
        if model is None:
            model, self.arch = self._load(weights, audio, fusion)
        else:
            self.arch = getattr(model, "fusion", None) or "vinet"
        self.audio = self.arch != "vinet"
        if audio and not self.audio:
            raise WeightsError("--audio needs an AViNet checkpoint; this one is ViNet")
        if self.arch == "bilinear" and self.input_size != (INPUT_H, INPUT_W):
            raise UsageError("AViNet (bilinear) works only at the 224x384 input size")
        self.model = model.eval().to(self.device)

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
        from .weights import find_weights

        if weights is None:
            try:
                from .registry import resolve_weights
            except ImportError:
                return find_weights(arch)
            return resolve_weights(None, arch)
        path = Path(weights).expanduser()
        if path.exists() or path.suffix in (".pt", ".pth", ".tar", ".ckpt") or "/" in str(weights):
            if not path.is_file():
                raise WeightsError(f"weights file not found: {path}")
            return path
        try:
            from .registry import resolve_weights
        except ImportError:
            raise WeightsError(f"weights file not found: {path}") from None
        return resolve_weights(str(weights), arch)

    # -- running ---------------------------------------------------------------

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _forward(self, clips: torch.Tensor, waves: torch.Tensor | None) -> np.ndarray:
        clips = clips.to(self.device, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            if waves is None:
                out = self.model(clips)
            else:
                out = self.model(clips, waves.to(self.device, non_blocking=True))
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
        source = Path(source)
        reader = open_video(source, fps=fps)
        meta = reader.meta
        try:
            track = self._open_audio(meta, source, audio_path) if self.audio else None
        except BaseException:
            reader.close()
            raise
        return meta, self._run(reader, meta, track)

    def _run(self, reader, meta: VideoMeta, track) -> Iterator[tuple[int, float, np.ndarray]]:
        size = self.input_size

        def items() -> Iterator[_Item]:
            for f in reader:
                h, w = f.rgb.shape[:2]
                yield _Item(f.index, f.time, h, w, frame_to_tensor(f.rgb, size))

        frames = prefetch(items(), maxsize=PREFETCH_FRAMES)
        try:
            for batch in _batched(iter_clips(frames, CLIP_LEN, self.warmup), self.batch_size):
                x = torch.stack(
                    [torch.stack([it.tensor for it in clip], dim=1) for _, clip in batch]
                )  # (B, 3, T, h, w)
                waves = None
                if track is not None:
                    from .audio import clip_batch

                    spans = [clip_span([it.index for it in clip]) for _, clip in batch]
                    waves = torch.from_numpy(clip_batch(track, spans, meta.fps))  # (B,1,N,1)
                maps = self._forward(x, waves)
                for (t, clip), m in zip(batch, maps, strict=True):
                    last = clip[-1]
                    yield t, last.time, postprocess(m, last.height, last.width)
        finally:
            frames.close()
            reader.close()
            if track is not None:
                track.close()

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
        meta, maps = self.stream(source, fps=fps, audio_path=audio_path)
        writers = []
        n = 0
        try:
            run = self.run_info()
            for fmt in dict.fromkeys(formats):
                writers.append(make_writer(fmt, out_dir, meta, run, **(writer_options or {})))
            for index, t, m in maps:
                for w in writers:
                    w.write(index, m, t)
                n += 1
                if progress is not None:
                    progress(n, meta.n_frames)
            outputs: list[str] = []
            for w in writers:
                outputs.extend(str(p) for p in w.close())
        except BaseException:
            maps.close()
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
