"""One video reframed: the track (pass 1), its renders (pass 2), the completion record.

    >>> import salcli
    >>> track = salcli.reframe("talk.mp4", aspect="9:16")            # the crop track
    >>> salcli.reframe_render(track, "talk.mp4", "out/", formats=("mp4", "json"))

``Reframer`` holds the options and the model (loaded on first use, once for a batch);
``salcli.reframing.batch`` runs it over many videos with skip, resume and shards.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salcli import __version__
from salcli.errors import InputError, UsageError
from salcli.files import write_text_atomic
from salcli.inference.predictor import VideoResult
from salcli.media import records
from salcli.media.decode import Warn, open_video, prefetch
from salcli.media.writers.base import RunInfo, _temp_name
from salcli.options import PredictOptions, make_options
from salcli.reframing.analyse import build_track, read_video
from salcli.reframing.maps import MapCache, MapStack, open_stack, stack_pairs, stack_path
from salcli.reframing.options import REFRAME_FORMATS, ReframeOptions, aspect_tag
from salcli.reframing.render import CropWriter, DebugWriter, output_names
from salcli.reframing.track import CropTrack

Progress = Callable[[int, int | None], None]
PREFETCH_FRAMES = 8  # decoded frames waiting for the render pass, at most


def _reframe_paths(fmt: str, out_dir: Path, stem: str) -> list[Path]:
    return [Path(out_dir) / output_names(stem)[fmt]]


REFRAME_NAMING = records.Naming(REFRAME_FORMATS, _reframe_paths)


def job_stem(source: str | Path, aspect: float) -> str:
    """The name of a video's reframe outputs and record: ``<stem>_<aspect>``."""
    from salcli.corpus.inputs import source_stem

    return f"{source_stem(Path(source))}_{aspect_tag(aspect)}"


class Reframer:
    """Reframes videos with ``options`` (``ReframeOptions``); maps from ``predict``'s
    options (a model run) unless ``options.maps_from`` names stacks."""

    def __init__(
        self,
        options: ReframeOptions,
        predict: PredictOptions | None = None,
        *,
        on_warning: Warn | None = None,
        predictor=None,
    ):
        self.options = options
        self.predict_options = predict or PredictOptions()
        self.warn = on_warning
        self._predictor = predictor

    @property
    def predictor(self):
        if self._predictor is None:
            from salcli.inference.predictor import Predictor

            self._predictor = Predictor(options=self.predict_options, on_warning=self.warn)
        return self._predictor

    def stack_of(self, source: Path, maps_path: Path | None = None) -> Path | None:
        """Where ``source``'s maps are read from (None: the model is run)."""
        if maps_path is not None:
            return maps_path
        if self.options.maps_from is None:
            return None
        return stack_path(self.options.maps_from, source)

    def settings(self, source: Path, maps_path: Path | None = None) -> dict[str, Any]:
        """What shapes the outputs: the reframe options and the maps' origin."""
        stack = self.stack_of(source, maps_path)
        if stack is None:
            maps = self.predictor.settings(source, fps=self.predict_options.fps)
            maps = {f"maps_{k}": v for k, v in maps.items()}
        else:
            opened = open_stack(stack)
            try:
                maps = opened.settings()
            finally:
                opened.close()
        return {**self.options.settings(), **maps}

    def _run_info(self, source: Path, stack: MapStack | None) -> RunInfo:
        if stack is None:
            return self.predictor.run_info(source, fps=self.predict_options.fps)
        a = stack.attrs
        return RunInfo(
            model=str(a.get("model", "")),
            weights_sha256=str(a.get("weights_sha256", "")),
            clip_len=int(a.get("clip_len", 0)),
            warmup=str(a.get("warmup", "")),
            salcli_version=__version__,
            postprocess=str(a.get("postprocess", "")),
            extra={"maps": str(stack.path)},
        )

    def _pairs(self, source: Path, stack: MapStack | None, fps=None, audio_path=None):
        fps = fps or self.predict_options.fps
        if stack is None:
            return self.predictor.frames_and_maps(source, fps=fps, audio_path=audio_path)
        return stack_pairs(source, stack, self.warn, fps=fps)

    def track(
        self,
        source: str | Path,
        *,
        maps_path: Path | None = None,
        cache: MapCache | None = None,
        progress: Progress | None = None,
        fps: float | None = None,
        audio_path: Path | None = None,
    ) -> CropTrack:
        """Pass 1 over ``source``: its crop track. ``fps``: of a folder of frames (else
        the options'); ``audio_path``: the soundtrack of a model that hears, when it is
        not the video's own (a dataset's wav)."""
        source = Path(source)
        path = self.stack_of(source, maps_path)
        stack = open_stack(path) if path is not None else None
        try:
            return self._track(source, stack, cache, progress, fps, audio_path)
        finally:
            if stack is not None:
                stack.close()

    def _track(self, source: Path, stack, cache, progress, fps=None, audio_path=None) -> CropTrack:
        meta, pairs = self._pairs(source, stack, fps, audio_path)
        try:
            found = read_video(pairs, meta.fps, self.options, cache=cache,
                               total=meta.n_frames, progress=progress)  # fmt: skip
        except InputError as err:
            if str(source) in str(err):
                raise
            raise InputError(f"{source}: {err}") from None
        finally:
            pairs.close()
        return build_track(str(source), meta.fps, *found, self.options)

    def write(
        self,
        source: str | Path,
        out_dir: str | Path,
        *,
        stem: str | None = None,
        maps_path: Path | None = None,
        progress: Progress | None = None,
        record: bool = True,
    ) -> tuple[VideoResult, CropTrack]:
        """Reframe ``source`` into ``out_dir`` in every format of the options, then its
        completion record. On any error nothing partial is left behind."""
        started = time.perf_counter()
        source, out_dir = Path(source), Path(out_dir)
        stem = stem or job_stem(source, self.options.aspect)
        formats = self.options.formats
        created = records.missing_parents(out_dir)
        path = self.stack_of(source, maps_path)
        stack = open_stack(path) if path is not None else None
        cache = None
        try:
            if stack is None and "debug" in formats:
                out_dir.mkdir(parents=True, exist_ok=True)
                cache = MapCache(_temp_name(out_dir, out_dir / output_names(stem)["debug"]))

            def first(done: int, n: int | None) -> None:
                if progress is not None:
                    progress(done, 2 * n if n else None)

            track = self._track(source, stack, cache, first)
            shown = stack if stack is not None else (cache.stack() if cache else None)
            previous = records.read_record(out_dir, stem) if record else None
            if record:  # from here until the new record, a killed run redoes the video
                records.remove_record(out_dir, stem)
            offset = track.frames

            def second(done: int) -> None:
                if progress is not None:
                    progress(offset + done, 2 * offset)

            try:
                outputs = render(track, source, out_dir, formats, stem=stem, maps=shown,
                                 run=self._run_info(source, stack), bars=self.options.bars,
                                 color=self.options.bar_color, progress=second,
                                 fps=self.predict_options.fps)  # fmt: skip
            finally:
                if shown is not None and shown is not stack:
                    shown.close()
        except BaseException:
            records.remove_empty(created)
            raise
        finally:
            if stack is not None:
                stack.close()
            if cache is not None:
                cache.remove()
        result = VideoResult(
            source=str(source),
            status="done",
            frames=track.frames,
            fps=track.fps,
            seconds=time.perf_counter() - started,
            outputs=[str(p) for p in outputs],
        )
        if record:
            payload = records.merged(
                previous, out_dir=out_dir, stem=stem, source=str(source), formats=list(formats),
                outputs=result.outputs, settings=self.settings(source, maps_path),
                naming=REFRAME_NAMING, frames=track.frames, fps=track.fps,
                salcli_version=__version__, saliency_kept=track.mean_kept(),
                saliency_kept_worst_shot=track.worst_shot().kept,
            )  # fmt: skip
            records.write_record(out_dir, stem, payload)
        return result, track


def render(
    track: CropTrack,
    source: str | Path,
    out_dir: str | Path,
    formats: Sequence[str] = ("mp4",),
    *,
    stem: str | None = None,
    maps: MapStack | None = None,
    run: RunInfo | None = None,
    bars: str = "blur",
    color: tuple[int, int, int] = (0, 0, 0),
    progress: Callable[[int], None] | None = None,
    fps: float | None = None,
    mp4_crf: int | None = None,
) -> list[Path]:
    """Pass 2: draw ``track`` over ``source`` into ``out_dir`` (``mp4``, ``debug``,
    ``json``; ``debug`` needs ``maps``); returns the outputs. Atomic: on an error every
    temporary is removed and earlier outputs are left as they were."""
    source, out_dir = Path(source), Path(out_dir)
    stem = stem or job_stem(source, track.aspect)
    if "debug" in formats and maps is None:
        raise UsageError("the debug output needs the maps (a map stack)")
    run = run or RunInfo("", "", 0, "", __version__)
    reader = open_video(source, fps=fps)
    meta = reader.meta
    writers = []
    try:
        kinds = {"mp4": CropWriter, "debug": DebugWriter}
        for fmt in formats:
            if fmt in kinds:
                writers.append(kinds[fmt](out_dir, meta, run, track=track, stem=stem,
                                          bars=bars, color=color, mp4_crf=mp4_crf))  # fmt: skip
        n = _render_frames(reader, track, writers, maps, progress)
        if n != track.frames:
            raise InputError(f"{source}: {n} frames, its track has {track.frames}")
        outputs = [p for w in writers for p in w.close()]
    except BaseException:
        for w in writers:
            with contextlib.suppress(Exception):
                w.abort()
        reader.close()
        raise
    if "json" in formats:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / output_names(stem)["json"]
        outputs.append(write_text_atomic(path, track.to_json(), sync=False))
    return outputs


def _render_frames(reader, track: CropTrack, writers: list, maps, progress) -> int:
    """Every frame through ``writers``: the number of frames."""
    empty = np.zeros((0, 0), dtype=np.float32)
    n = 0
    frames = prefetch(reader, maxsize=PREFETCH_FRAMES)
    try:
        for frame in frames:
            if frame.index >= track.frames:
                raise InputError(f"{reader.meta.path}: more frames than its track's {track.frames}")
            m = maps.map(frame.index) if maps is not None else empty
            for w in writers:
                w.write(frame.index, m if isinstance(w, DebugWriter) else empty, frame.time,
                        rgb=frame.rgb)  # fmt: skip
            n += 1
            if progress is not None:
                progress(n)
    finally:
        frames.close()
        reader.close()
    return n


def reframe(
    video: str | Path,
    aspect: str | float = "9:16",
    *,
    options: ReframeOptions | None = None,
    on_warning: Warn | None = None,
    progress: Progress | None = None,
    **option_values: Any,
) -> CropTrack:
    """The crop track of ``video`` at ``aspect`` (pass 1 only: nothing is written).

    Keywords: those of ``ReframeOptions`` (``mode``, ``max_speed``, ``maps_from``...) and
    of ``PredictOptions`` for the model (``weights``, ``audio``, ``precision``...)."""
    reframe_opts, predict_opts = split_reframe_options({"aspect": aspect, **option_values},
                                                       options)  # fmt: skip
    return Reframer(reframe_opts, predict_opts, on_warning=on_warning).track(
        video, progress=progress
    )


def split_reframe_options(
    values: dict[str, Any], options: ReframeOptions | None = None
) -> tuple[ReframeOptions, PredictOptions]:
    """Keyword options -> (ReframeOptions, PredictOptions); unknown names refused."""
    from dataclasses import fields

    mine = {f.name for f in fields(ReframeOptions)}
    theirs = {f.name for f in fields(PredictOptions)} - mine
    unknown = set(values) - mine - theirs
    if unknown:
        raise UsageError(f"unknown option {sorted(unknown)[0]!r}")
    own = {k: v for k, v in values.items() if k in mine}
    reframe_opts = options.replace(**own) if options is not None else ReframeOptions(**own)
    predict_opts = make_options(**{k: v for k, v in values.items() if k in theirs})
    return reframe_opts, predict_opts
