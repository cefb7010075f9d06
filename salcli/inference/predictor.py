"""The prediction pipeline, as a Python API under the CLI.

One streaming path, one module per stage, each testable alone::

    decode (salcli.media.decode, background thread)
      -> frame transform (the family's, salcli.models.vinet_procedure)
      -> clips (salcli.inference.clips, the family's ClipSchedule)
      -> key frames, batches, interpolation (salcli.inference.clips)
      -> engine: device, precision, layout, reuse (salcli.inference.engine)
      -> post-process (the family's) -> writers (salcli.media.writers, background thread)

Several weights files make an ensemble (salcli.inference.ensemble): one decode, each
model on its own clips, the maps averaged before the post-processing.

A ``Predictor`` is a loaded model (its family read from the checkpoint,
``salcli.models.registry``) with validated options (``salcli.options.PredictOptions``)::

    >>> import salcli
    >>> maps = salcli.predict("clip.mp4")            # (N, H, W) float32 in [0, 1]
    >>> p = salcli.Predictor("ViNet_DHF1K.pt", batch_size=8)
    >>> for index, saliency in p.iter_maps("clip.mp4"): ...
    >>> p.write("clip.mp4", "out/", formats=("png", "h5"))   # outputs + completion record
    >>> e = salcli.Predictor(["vinet-s-dhf1k", "vinet-a-dhf1k"])  # an ensemble: ViNet-E

Many videos with resume and shards: ``salcli.predict_many`` (salcli.corpus.local).

The module is over 500 lines because ``Predictor`` is one class: loading, the settings
its outputs record, streaming and writing share its state; the stages themselves live in
the modules above.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from salcli import __version__
from salcli.defaults import DEFAULT_FUSION
from salcli.errors import NoAudioError, OptionError, UsageError, WeightsError, escape
from salcli.inference.clips import iter_clips, predict_key_frames
from salcli.inference.engine import Engine
from salcli.inference.ensemble import Ensemble, once
from salcli.media import records
from salcli.media.audio import AudioTrack, duration_mismatch
from salcli.media.decode import (
    DEFAULT_FOLDER_FPS,
    Frame,
    VideoMeta,
    Warn,
    is_image_file,
    open_video,
    prefetch,
)
from salcli.media.writers import RunInfo, WriterThread, make_writer
from salcli.models.checkpoints import sha256_file
from salcli.models.registry import ModelFamily, Variant, load_checkpoint, model_family
from salcli.options import PredictOptions, make_options, map_settings_names, parse_formats
from salcli.weights.cache import resolve_weights

PREFETCH_FRAMES = 64  # frames decoded ahead of the model (bounded queue): 2 ViNet clips
WRITE_QUEUE_MAPS = 16  # maps waiting for the writer thread (bounded queue)


@dataclass
class VideoResult:
    """What happened to one input (the CLI's summary line and JSON line)."""

    source: str
    status: str  # "done" | "skipped" | "failed" | "claimed" (another run computes it)
    frames: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str | None = None  # the error's line, options named as the API names them
    # the same line as a template naming its options as {name}, for the command line
    error_template: str | None = field(default=None, repr=False)
    error_options: tuple[str, ...] = field(default=(), repr=False)
    holder: dict | None = None  # "claimed": who computes it (salcli.corpus.claims)

    def as_dict(self) -> dict:
        extra = {"holder": self.holder} if self.holder is not None else {}
        return {
            "path": self.source,
            "status": self.status,
            "frames": self.frames,
            "fps": round(self.fps, 6),
            "seconds": round(self.seconds, 3),
            "outputs": self.outputs,
            "error": self.error,
        } | extra


_LICENCES_SAID: set[str] = set()  # families whose licence notice this process has given


def _default_warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


class Predictor:
    """A loaded model and the settings to run it over videos.

    ``weights``: a checkpoint path, a file name in the weights folders, a registry name,
    or None for the default file of the family (ViNet; AViNet with ``audio``). The
    family and variant are recognised from the checkpoint. ``model``: a ready module
    instead (tests, experiments), used as it is; loaded checkpoints get the family's
    inference rewrite (BatchNorm folded into the convolutions: same maps, ~15 % faster).
    Several ``weights`` (a list or tuple) make an ensemble: ``members`` holds a
    Predictor per file, ``family`` and ``variant`` are None, and the maps are the
    members' averaged (salcli.inference.ensemble).

    Every other keyword is an option of ``salcli.options.PredictOptions`` (validated
    there, documented there and in ``salcli predict --help``), or pass ``options=``.
    ``on_warning`` receives every warning as one line (default: ``warnings.warn``).
    """

    _in_ensemble = False  # one model of an ensemble (_Member)

    def __init__(
        self,
        weights: str | Path | Sequence[str | Path] | None = None,
        *,
        model: nn.Module | None = None,
        options: PredictOptions | None = None,
        on_warning: Warn | None = None,
        **option_values: Any,
    ):
        if weights is not None:
            option_values["weights"] = weights
        self.options = opts = make_options(options, **option_values)
        self.warn = on_warning or _default_warn
        self.weights_path: Path | None = None
        self.weights_sha256 = ""
        self.members: tuple[Predictor, ...] = ()  # an ensemble's models, in order
        if isinstance(opts.weights, tuple):
            self._init_ensemble(opts, model)
            return
        loaded = model is None
        if loaded:
            self.family, self.variant, model = self._load(opts)
            model = self.family.fold(model)
            self._say_licence()
        else:
            self.family, self.variant = model_family(model)
        self.arch, self.label = self.variant.name, self.variant.label
        self.postprocess = self.family.postprocess  # raw map (h, w) -> the frame's (H, W)
        self.audio = self.variant.hears
        # an ensemble's member without sound runs visual (the ensemble checks --audio)
        if opts.audio and not self.audio and not self._in_ensemble:
            raise WeightsError(f"{self._what()}: {self.variant.label} is visual only; "
                               "sound needs an audio-visual model")  # fmt: skip
        self.warmup = opts.warmup or self.family.warmups[0]
        if self.warmup not in self.family.warmups:
            raise OptionError("warmup", f"{self.warmup!r}: {self.family.label} has "
                              f"{', '.join(self.family.warmups)}")  # fmt: skip
        self.input_size = opts.input_size or self.family.input_size
        self._check_size()
        self.domain = self._check_domain(opts.domain)  # None: each input's default
        if self.family.recurrent and opts.stride != 1:
            raise OptionError("stride", f"{opts.stride}: {self.family.label} is recurrent: "
                              "every frame is a step of its sequence")  # fmt: skip
        self.stride = opts.stride
        self.allow_silence = opts.allow_silence
        self.schedule = self.family.clips(self.warmup)
        if opts.fusion is not None and self.family.name != "avinet" and not self._in_ensemble:
            raise OptionError("fusion", f"{opts.fusion}: {self.variant.label} has no fusion "
                              "to choose (only AViNet has)")  # fmt: skip
        # with a stride the clips in a batch are not consecutive: nothing to share
        reuse = opts.reuse if opts.stride == 1 or opts.reuse is not None else False
        self.engine = Engine(
            model,
            device=opts.device,
            precision=opts.precision,
            batch_size=opts.batch_size,
            reuse=reuse,
            channels_last=opts.channels_last,
            compile=opts.compile,
            input_size=self.input_size,
            cast=self.family.cast if loaded else None,  # a module passed in runs as given
        )
        cuda = self.engine.device.type == "cuda"
        self.gpu_resize = cuda if opts.gpu_resize is None else bool(opts.gpu_resize) and cuda
        if self.engine.emulated:
            self.warn(
                f"{self.precision} is emulated on this CPU (it has no native "
                f"{self.precision} arithmetic): correct, but far slower than fp32"
            )

    def _init_ensemble(self, opts: PredictOptions, model: nn.Module | None) -> None:
        """A ``_Member`` per file (warnings said once); the ensemble's engine facts, model,
        weights and raw maps are its members' (salcli.inference.ensemble.Ensemble)."""
        if model is not None:
            raise UsageError("a model passed in runs alone: an ensemble loads its weights files")
        say = once(self.warn)
        self.members = tuple(
            _Member(options=opts.replace(weights=w), on_warning=say) for w in opts.weights
        )
        for m in self.members:
            if m.family.recurrent:  # its raw maps are logits of a distribution over pixels
                raise UsageError(f"{escape(m._what())}: {m.label} runs alone, not in an "
                                 "ensemble")  # fmt: skip
        self.ensemble = self.engine = e = Ensemble(self.members, opts)
        self.family = self.variant = None
        self.arch, self.label, self.weights_sha256 = e.arch, e.label, e.weights_sha256
        self.audio, self.warmup, self.postprocess = e.audio, e.warmup, e.postprocess
        self.input_size = e.size  # where the members' maps are averaged
        self.stride, self.allow_silence = opts.stride, opts.allow_silence

    # -- what the engine decided (an ensemble's: salcli.inference.ensemble.Ensemble) ------

    model = property(lambda self: self.engine.model)
    device = property(lambda self: self.engine.device)
    dtype = property(lambda self: self.engine.dtype)
    precision = property(lambda self: self.engine.precision)
    batch_size = property(lambda self: self.engine.batch_size)
    reuse = property(lambda self: self.engine.reuse)
    channels_last = property(lambda self: self.engine.channels_last)
    pin_memory = property(lambda self: self.engine.pin_memory)

    # -- loading -------------------------------------------------------------------

    def _say_licence(self) -> None:
        """The licence of weights that restrict their use, once a process and family."""
        notice = self.family.licence_notice
        if notice and self.family.name not in _LICENCES_SAID:
            _LICENCES_SAID.add(self.family.name)
            self.warn(f"{self._what()}: {notice}")

    def _what(self) -> str:
        return str(self.weights_path) if self.weights_path else "the model"

    def _load(self, opts: PredictOptions) -> tuple[ModelFamily, Variant, nn.Module]:
        wanted = (opts.fusion or DEFAULT_FUSION) if opts.audio else "vinet"
        path = resolve_weights(opts.weights, wanted)  # an existing file, or a WeightsError
        # an ensemble's member hears where it can (None), the others run visual
        audio = None if self._in_ensemble and opts.audio else opts.audio
        family, variant, model = load_checkpoint(path, audio=audio)
        self.weights_path = Path(path)
        # a family without fusions refuses --fusion itself (an OptionError, in __init__)
        fusions = family.name == "avinet"
        if fusions and opts.audio and opts.fusion is not None and variant.name != opts.fusion:
            raise WeightsError(
                f"{path}: the checkpoint's fusion is {variant.name}, but {opts.fusion} "
                "was asked for"
            )
        self.weights_sha256 = sha256_file(path)
        return family, variant, model

    def _check_domain(self, domain: str | None) -> str | None:
        """The asked domain as the family spells it; None when none was asked."""
        if domain is None:
            return None
        domains = self.family.domains
        if domains is None:
            raise OptionError("domain", f"{domain}: {self.family.label} has no domains "
                              "(only UNISAL has)")  # fmt: skip
        found = domains.canonical(domain)
        if found is None:
            raise OptionError("domain", f"{domain!r}: {self.family.label} has "
                              f"{', '.join(domains.names)}")  # fmt: skip
        return found

    def domain_for(self, source: str | Path | None) -> str | None:
        """The domain ``source`` runs in: the asked one, else the family's default for a
        still image or for a video (None: the family has no domains)."""
        domains = self.family.domains if self.family is not None else None
        if domains is None:
            return None
        if self.domain is not None:
            return self.domain
        still = source is not None and is_image_file(source)
        return domains.image_default if still else domains.video_default

    def _start_input(self, meta: VideoMeta) -> tuple[int, int]:
        """Set up the model for one input: its domain (a family with domains) and a fresh
        recurrence; the model input size (h, w) of its frames."""
        domains = self.family.domains
        if domains is None:
            return self.input_size
        domain = self.domain_for(meta.path if meta.still else None)
        self.model.set_domain(domain)
        if self.family.recurrent:
            self.engine.sequences.restart(domains.sequences(domain))
        if self.options.input_size is not None:
            return self.input_size
        return domains.input_size(meta.height, meta.width, domain)

    def _check_size(self) -> None:
        h, w = self.input_size
        fixed = self.variant.fixed_input
        if fixed is not None and tuple(self.input_size) != fixed:
            raise OptionError(
                "input_size",
                f"{h}x{w}: {self.variant.label} works only at {fixed[0]}x{fixed[1]}",
            )
        m = self.family.size_multiple
        if h % m or w % m or min(h, w) < m:
            raise OptionError("input_size", f"{h}x{w}: must be multiples of {m} pixels")

    # -- what the outputs record ---------------------------------------------------------

    def settings(
        self,
        source: str | Path | None = None,
        *,
        fps: float | None = None,
        folder: bool | None = None,
    ) -> dict[str, Any]:
        """The settings that shape the maps of ``source``: the model, its weights, and
        every option marked ``shapes_maps`` as this predictor resolved it. A re-run
        takes earlier outputs for its own only when these are equal (salcli.media.records).

        A folder of frames (``folder``; default: whether ``source`` is one) has its rate
        among them (``fps``, else the option's, else 30 frames/s); a video file has its
        own."""
        if folder is None:
            folder = source is not None and Path(source).is_dir()
        if self.members:  # each member's value, joined in order
            resolved = self.ensemble.resolved()
        else:
            resolved = {
                "precision": self.precision,
                "input_size": f"{self.input_size[0]}x{self.input_size[1]}",
                "warmup": self.warmup,
            }
            if self.family.domains is not None:  # the size is each input's (its frames')
                resolved["domain"] = self.domain_for(source)
                if self.options.input_size is None:
                    resolved["input_size"] = "auto"
        resolved["stride"] = self.stride
        out: dict[str, Any] = {"model": self.arch, "weights_sha256": self.weights_sha256}
        for name in map_settings_names():
            if name == "fps":  # a video file has its own rate; a folder's is a setting
                if folder:
                    out["fps"] = float(fps or self.options.fps or DEFAULT_FOLDER_FPS)
                continue
            if name == "domain" and "domain" not in resolved:  # a family without domains
                continue
            out[name] = resolved.get(name, getattr(self.options, name))
        if self.members:
            out["members"] = self.ensemble.member_settings()
        return out

    def run_info(self, source: str | Path | None = None, *, fps: float | None = None) -> RunInfo:
        settings = self.settings(source, fps=fps)
        extra = {k: v for k, v in settings.items() if k not in ("model", "weights_sha256")}
        if self.members:
            return self.ensemble.run_info(extra)
        return RunInfo(
            model=self.arch,
            weights_sha256=self.weights_sha256,
            clip_len=self.family.clip_len,
            warmup=self.warmup,
            salcli_version=__version__,
            postprocess=self.family.postprocess_doc,
            extra={
                **extra,
                "family": self.family.name,
                "reuse": "on" if self.reuse else "off",
                "device": self.device.type,
                "weights_file": self.weights_path.name if self.weights_path else "",
            },
        )

    # -- running -------------------------------------------------------------------------

    def _open_audio(self, meta: VideoMeta, source: Path, audio_path):
        path = Path(audio_path) if audio_path is not None else source
        # a separate audio file starts with the first frame; the video's own track is
        # placed by its timestamps relative to the first frame's
        start = 0.0 if audio_path is not None else meta.start_time
        try:
            track = AudioTrack.open(path, video_start=start)
        except NoAudioError as err:
            if not self.allow_silence:
                raise NoAudioError(
                    f"{escape(str(err))}; {{allow_silence}} goes on with silence",
                    options=("allow_silence",),
                ) from None
            self.warn(f"{path}: no audio track; going on with silence")
            return AudioTrack.silence()
        gap = duration_mismatch(meta, track)
        if gap is not None:
            self.warn(
                f"{source}: audio and video durations differ by {gap:+.3f} s "
                f"(video {meta.duration:.3f} s, audio {track.duration:.3f} s)"
            )
        return track

    def _open(self, source: str | Path, fps: float | None, audio_path: str | Path | None):
        """(reader, meta, audio track or None) of ``source``; nothing left open on error."""
        source = Path(source)
        fps = self.options.fps if fps is None else fps
        reader = open_video(source, fps=fps, on_warning=self.warn)
        meta = reader.meta
        try:
            track = self._open_audio(meta, source, audio_path) if self.audio else None
            if self.members:  # a track for each member that hears
                track = self.ensemble.tracks(track)
        except BaseException:
            reader.close()
            raise
        return reader, meta, track

    def _raw_maps(self, reader, meta: VideoMeta, track, *, keep_rgb: bool = False):
        """(frame, raw model map (h, w)) for every frame, in order, before post-processing.

        Frames are decoded (and on CUDA transformed) on a background thread; with
        ``keep_rgb`` each frame keeps its picture for the writers that show it. An
        ensemble's raw map is its members' average (salcli.inference.ensemble).
        """
        if self.members:
            yield from self.ensemble.raw_maps(
                reader, meta, track, keep_rgb=keep_rgb, prefetch_frames=PREFETCH_FRAMES
            )
            return
        size = self._start_input(meta)
        transform = self.family.transform
        device = self.device if self.gpu_resize else None

        def decoded() -> Iterator[Frame]:  # on the prefetch thread
            for f in reader:
                if device is not None:  # GPU kernels: no CPU thread pool to fight over
                    f.tensor = transform(f.rgb, size, device=device)
                    f.rgb = f.rgb if keep_rgb else None
                yield f

        def prepared(frames: Iterator[Frame]) -> Iterator[Frame]:
            # On the CPU the resize runs here, on the model's thread: torch's OpenMP pool
            # is process-wide, and a second team working beside the model's slows both.
            for f in frames:
                if f.tensor is None:
                    f.tensor = transform(f.rgb, size)
                    f.rgb = f.rgb if keep_rgb else None
                yield f

        decoding = prefetch(decoded(), maxsize=PREFETCH_FRAMES)
        frames = prepared(decoding)
        try:
            yield from self.maps_of_frames(frames, meta, track)
        finally:
            frames.close()
            decoding.close()
            reader.close()
            if track is not None:
                track.close()

    def maps_of_frames(
        self, frames: Iterator, meta: VideoMeta, track: AudioTrack | None
    ) -> Iterator[tuple[Any, np.ndarray]]:
        """(frame, raw map (h, w)) for every frame of ``frames``, in order: frames that
        carry this model's input (``tensor``, (3, h, w)), put into clips, key frames and
        batches and run through the engine (with ``track``, each clip's sound excerpt)."""

        def predict(clips: list[list[Frame]]) -> np.ndarray:
            sound = None
            if track is not None:
                a = self.family.audio
                excerpts = [a.excerpt(track, *c.audio_span, meta.fps) for c in clips]
                sound = a.batch(np.stack(excerpts))
            return self.engine(clips, sound)

        clips = iter_clips(frames, self.schedule)
        return predict_key_frames(clips, predict, stride=self.stride, batch_size=self.batch_size)

    def iter_raw_maps(
        self, source: str | Path, *, fps: float | None = None, audio_path: str | Path | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(0-based frame index, raw map (h, w) float32) for every frame of ``source``:
        the model's output before ``postprocess`` (an ensemble's: the average)."""
        reader, meta, track = self._open(source, fps, audio_path)
        for frame, raw in self._raw_maps(reader, meta, track):
            yield frame.index, raw

    def stream(
        self, source: str | Path, *, fps: float | None = None, audio_path: str | Path | None = None
    ) -> tuple[VideoMeta, Iterator[tuple[int, float, np.ndarray]]]:
        """Open ``source`` and return (meta, iterator of (index, time, map)).

        Maps are post-processed (frame size, blurred, min-max [0, 1]), float32, in frame
        order. Errors in opening the file are raised here, before any map.
        """
        reader, meta, track = self._open(source, fps, audio_path)
        post = self.postprocess

        def maps() -> Iterator[tuple[int, float, np.ndarray]]:
            for frame, raw in self._raw_maps(reader, meta, track):
                yield frame.index, frame.time, post(raw, frame.height, frame.width)

        return meta, maps()

    def frames_and_maps(
        self, source: str | Path, *, fps: float | None = None, audio_path: str | Path | None = None
    ) -> tuple[VideoMeta, Iterator[tuple[Frame, np.ndarray]]]:
        """As ``stream``, with each map its decoded frame (``Frame.rgb`` kept), for callers
        that look at the pictures too (``salcli reframe``'s shot detection): one decode."""
        reader, meta, track = self._open(source, fps, audio_path)
        post = self.postprocess

        def pairs() -> Iterator[tuple[Frame, np.ndarray]]:
            for frame, raw in self._raw_maps(reader, meta, track, keep_rgb=True):
                yield frame, post(raw, frame.height, frame.width)

        return meta, pairs()

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

    def write(
        self,
        source: str | Path,
        out_dir: str | Path,
        formats: Sequence[str] | None = None,
        *,
        fps: float | None = None,
        audio_path: str | Path | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        record: bool = True,
        record_fields: Mapping[str, Any] | None = None,
        commit: Callable[[str], None] | None = None,
    ) -> VideoResult:
        """Predict ``source`` and write its maps in every format of ``formats`` (default:
        the options') under ``out_dir``, then its completion record (``record``; see
        salcli.media.records: formats finished earlier with the same settings stay listed).

        Outputs appear only complete (temporary names, then a rename); on any error every
        partial output is removed, as is an output folder this call created, and the
        error is re-raised. The source is decoded once: the overlay writer gets the
        decoded frames from the pipeline.

        ``record_fields``: more fields for the record (a corpus run's id). ``commit``:
        called with ``"outputs"`` before the outputs replace anything and ``"record"``
        before the record is written (a corpus run checks its claim there); what it
        raises stops the video as any error does.
        """
        started = time.perf_counter()
        out_dir = Path(out_dir)
        formats = parse_formats(formats) if formats is not None else self.options.formats
        created = records.missing_parents(out_dir)
        reader, meta, track = self._open(source, fps, audio_path)
        try:
            writers = [
                make_writer(fmt, out_dir, meta, self.run_info(source, fps=fps),
                            **self.options.writer_options())
                for fmt in formats
            ]  # fmt: skip
        except BaseException:
            _close_quietly(reader, track)
            records.remove_empty(created)
            raise
        try:
            n = self._write_maps(reader, meta, track, writers, progress)
            if commit is not None:
                commit("outputs")
            previous = records.read_record(out_dir, meta.stem) if record else None
            if record:  # from here until the new record, a killed run redoes the video
                records.remove_record(out_dir, meta.stem)
            outputs = [str(path) for w in writers for path in w.close()]
        except BaseException:
            for w in writers:
                with contextlib.suppress(Exception):
                    w.abort()
            records.remove_empty(created)
            raise
        result = VideoResult(
            source=str(source),
            status="done",
            frames=n,
            fps=meta.fps,
            seconds=time.perf_counter() - started,
            outputs=outputs,
        )
        if record:
            if commit is not None:
                commit("record")
            record_of_run = records.merged(
                previous,
                out_dir=out_dir,
                stem=meta.stem,
                source=str(source),
                formats=list(formats),
                outputs=outputs,
                frames=n,
                fps=meta.fps,
                settings=self.settings(source, fps=fps),
                salcli_version=__version__,
                **(record_fields or {}),
            )
            records.write_record(out_dir, meta.stem, record_of_run)
        return result

    def _write_maps(self, reader, meta: VideoMeta, track, writers: list, progress) -> int:
        """Every frame's map, post-processed on the writer thread and handed to
        ``writers``; the number of maps. On any error the pipeline is stopped and the
        writer thread aborted (the caller aborts the writers)."""
        post = self.postprocess

        def write_one(job: tuple[Frame, np.ndarray]) -> None:  # on the writer thread
            frame, raw = job
            m = post(raw, frame.height, frame.width)
            for w in writers:
                w.write(frame.index, m, frame.time, rgb=frame.rgb)
            frame.rgb = None

        keep_rgb = any(w.needs_frames for w in writers)
        maps = self._raw_maps(reader, meta, track, keep_rgb=keep_rgb)
        sink = WriterThread(write_one, WRITE_QUEUE_MAPS)
        n = 0
        try:
            for job in maps:
                sink.put(job)
                n += 1
                if progress is not None:
                    progress(n, meta.n_frames)
            sink.close()
        except BaseException:
            maps.close()
            _close_quietly(reader, track)  # an unstarted ``maps`` does not close them
            sink.abort()
            raise
        return n


class _Member(Predictor):
    """One model of an ensemble: with ``audio`` it hears where its family can and runs
    visual otherwise; ``audio`` and ``fusion`` are checked over the whole ensemble."""

    _in_ensemble = True


def _close_quietly(reader, track) -> None:
    with contextlib.suppress(Exception):
        reader.close()
        if track is not None:
            track.close()


def predict(source: str | Path, weights: str | Path | None = None, **options) -> np.ndarray:
    """Saliency maps of every frame of ``source``: (N, H, W) float32 in [0, 1].

    ``options`` are those of ``Predictor`` (audio, fusion, device, precision,
    batch_size, warmup, fps, ...) plus ``audio_path`` for frame folders.
    """
    audio_path = options.pop("audio_path", None)
    return Predictor(weights, **options).predict(source, audio_path=audio_path)


__all__ = ["Predictor", "VideoResult", "predict"]
