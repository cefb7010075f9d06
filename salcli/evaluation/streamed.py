"""Scoring a set whose ground truth is videos (``ntire26``): the saliency video and the
prediction streamed side by side, frame by frame, nothing written to disk.

For each video: its ``fixations.json`` is read (small: points), the ground-truth saliency
video is decoded as the challenge's FFmpeg extraction to PNG would hold it
(``salcli.media.decode.png_frames``), the source gives the prediction of the same frame,
and the two are scored with bench.py's definitions (``salcli.metrics.bench_scores``).
One frame of each is in memory at a time. The fixation entries go with the frames in the
order bench.py pairs them (``videosets.bench_fixation_order``). A prediction with fewer or
more frames than the saliency video is an error for that video, as bench.py's check of
the frame numbers is.

Videos are scored in parallel, ``jobs`` processes, when the maps come from disk or the
baseline (``Source.portable``); a model's maps are scored as it gives them, in this
process. A video that fails (unreadable prediction, malformed fixations) is warned about
and left unscored; the others go on. Nothing is random.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np

from salcli import metrics as M
from salcli.errors import DatasetError, InputError, SalcliError
from salcli.evaluation.datasets import VideoFileItem
from salcli.evaluation.report import VideoScores
from salcli.evaluation.scoring import Counts, Scoring, Tracker
from salcli.evaluation.sources import Source
from salcli.evaluation.videosets import bench_fixation_order, read_fixations_json
from salcli.media.decode import png_frames

DEFAULT_JOBS = 4  # processes scoring videos at once, at most (each holds ~10 frames' worth)
START_METHOD = "spawn"  # a fresh interpreter per worker: no inherited threads or locks


def default_jobs(n_videos: int) -> int:
    """Processes for ``n_videos``: the CPUs, at most ``DEFAULT_JOBS`` and one per video."""
    return max(1, min(DEFAULT_JOBS, os.cpu_count() or 1, n_videos))


@dataclass
class _Outcome:
    """What scoring one video gave: its scores or why it failed, and its counts."""

    scores: VideoScores | None
    counts: Counts = field(default_factory=Counts)
    kinds: set[str] = field(default_factory=set)
    error: SalcliError | None = None


def _next_map(preds: Iterator[tuple[int, np.ndarray]], name: str, k: int, n: int) -> np.ndarray:
    try:
        return next(preds)[1]
    except StopIteration:
        raise InputError(f"{name}: {k} predicted maps for {n} frames") from None


def _points(item: VideoFileItem, entries: list, entry: int, shape: tuple[int, int]):
    """The checked points of one entry; ``DatasetError`` naming the file and frame."""
    try:
        return M.bench_points(entries[entry], shape)
    except ValueError as exc:
        raise DatasetError(f"{item.fixations_file}: frame {entry + 1}: {exc}") from None


def score_video(
    item: VideoFileItem, source: Source, scoring: Scoring, tracker: Tracker
) -> _Outcome:
    """One video's per-frame scores (see the module docstring). Raises ``SalcliError``."""
    entries = read_fixations_json(item.fixations_file)
    order = bench_fixation_order(max(item.n_frames, len(entries)))
    counts, rows = Counts(), []
    truth = png_frames(item.saliency)
    preds = None
    try:
        for k, g in truth:
            if preds is None:  # the ground truth's size is known now
                preds = source.maps(item, g.shape[:2])
            p = _next_map(preds, item.name, k, item.n_frames)
            tracker.frame()
            entry = int(order[k]) if k < len(order) else len(entries)
            if k < source.unmapped:
                counts.skipped += 1
                counts.unmapped += 1
                continue
            if entry >= len(entries):  # bench.py's zip stops at the JSON's end
                counts.skipped += 1
                counts.missing += 1
                continue
            points = None
            if entries[entry] is None:
                counts.empty += 1
                if scoring.skip_empty:
                    counts.skipped += 1
                    continue
            else:
                points = _points(item, entries, entry, g.shape[:2])
            if np.shape(p)[:2] != g.shape[:2]:
                counts.resized += 1
            rows.append(M.bench_scores(p, g, points, scoring.metrics))
        if preds is None:
            raise InputError(f"{item.saliency}: no decodable frames")
        if next(preds, None) is not None:
            raise InputError(
                f"{item.name}: the prediction has more frames than the {k + 1} of its "
                f"saliency video {item.saliency}"
            )
    finally:
        truth.close()
        if preds is not None:
            preds.close()
    arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(scoring.metrics))
    counts.scored = len(rows)
    scores = M.aggregate_frames(arr, scoring.metrics)  # the video's mean
    video = VideoScores(item.name, item.split, len(rows), counts.skipped, counts.empty, scores, arr)
    return _Outcome(video, counts, set(source.kinds))


def _in_worker(item: VideoFileItem, source: Source, scoring: Scoring) -> _Outcome:
    """``score_video`` in a worker process: a failure comes back as the outcome."""
    try:
        return score_video(item, source, scoring, Tracker(0, None))
    except SalcliError as exc:
        return _Outcome(None, error=exc)


def _failed(item: VideoFileItem, error: SalcliError, scoring: Scoring, counts: Counts) -> None:
    scoring.warn(f"{item.name}: {error}; video not scored")
    counts.unscored.append(item.name)


def _add(total: Counts, part: Counts) -> None:
    for name in ("scored", "skipped", "empty", "missing", "resized", "unmapped"):
        setattr(total, name, getattr(total, name) + getattr(part, name))


def _outcomes(
    items: list[VideoFileItem], source: Source, scoring: Scoring, tracker: Tracker, jobs: int
) -> Iterator[tuple[VideoFileItem, _Outcome]]:
    """Each video's outcome, in the order of ``items``."""
    if jobs <= 1 or not source.portable or len(items) <= 1:
        for item in items:
            tracker.step(item.name, item.n_frames)
            try:
                yield item, score_video(item, source, scoring, tracker)
            except SalcliError as exc:
                yield item, _Outcome(None, error=exc)
        return
    context = multiprocessing.get_context(START_METHOD)
    plain = Scoring(scoring.protocol, scoring.metrics, scoring.seed, scoring.skip_empty, print)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures: list[Future] = [pool.submit(_in_worker, it, source, plain) for it in items]
        try:
            for item, future in zip(items, futures, strict=True):
                tracker.step(item.name, item.n_frames)
                try:
                    yield item, future.result()
                except BrokenProcessPool:  # a worker killed (out of memory, a signal)
                    lost = InputError("its scoring process ended abruptly (out of memory?)")
                    yield item, _Outcome(None, error=lost)
        finally:
            for future in futures:
                future.cancel()


def score_split(
    items: list[VideoFileItem],
    source: Source,
    scoring: Scoring,
    tracker: Tracker,
    counts: Counts,
    jobs: int | None = None,
) -> list[VideoScores]:
    """The scores of each video of a split; videos without ground truth, and those that
    fail, are warned about and listed in ``counts.unscored``. When no video could be
    scored for a reason of its own, the first reason is raised."""
    ready = [item for item in items if item.problem is None]
    source.prepare(ready)
    results: list[VideoScores] = []
    errors: list[SalcliError] = []
    by_name = {}
    jobs = default_jobs(len(ready)) if jobs is None else jobs
    for item, outcome in _outcomes(ready, source, scoring, tracker, jobs):
        if outcome.error is not None:
            errors.append(outcome.error)
            _failed(item, outcome.error, scoring, counts)
        else:
            _add(counts, outcome.counts)
            source.kinds |= outcome.kinds
            by_name[item.name] = outcome.scores
        tracker.video_done()
    for item in items:
        if item.problem is not None:
            _failed(item, DatasetError(item.problem), scoring, counts)
            tracker.video_done()
        elif item.name in by_name:
            results.append(by_name[item.name])
    if not results and errors:
        raise errors[0]
    return results
