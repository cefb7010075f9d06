"""Scoring: a split's videos, frame by frame, against their ground truth, by the rules of
the dataset's protocol (``salcli.evaluation.protocols``) and the metrics of
:mod:`salcli.metrics`.

A split is scored in two passes: the fixations of all its videos first (flat indices of
the fixated pixels: small; they make the sAUC negatives), then each video's maps from
its source, frame by frame, each against its density and fixation maps. A frame whose
ground-truth files are missing is skipped and counted; so are, under a model run's
"reference" warm-up, the first frames its published procedure never maps
(``Source.unmapped``), and, when ``skip_empty``, the frames without fixations. No frame
is subsampled.

Every random draw (AUC-J's jitter, the sAUC and AUC-B samples, the DHF1K protocol's
other frames) comes from its own generator seeded by (seed, video, frame, stream):
:func:`frame_rng`. A metric's value so depends only on the seed and its inputs, not on
the other metrics asked for or the order frames are scored in.

Progress goes to a callback as :class:`EvalProgress` (``evaluate``'s ``on_progress``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from salcli import metrics as M
from salcli.errors import InputError
from salcli.evaluation.datasets import VideoItem, read_density
from salcli.evaluation.protocols import PROTOCOLS, Protocol
from salcli.evaluation.report import VideoScores
from salcli.evaluation.sources import Source

OTHERS_STREAM = "sauc_frames"  # random stream of the DHF1K protocol's draw of other frames


@dataclass(frozen=True)
class Scoring:
    """The settings of one evaluation's scoring."""

    protocol: Protocol
    metrics: tuple[str, ...]
    seed: int
    skip_empty: bool  # frames without fixations skipped (else scored)
    warn: Callable[[str], None]  # one line per video with missing ground truth


@dataclass
class Counts:
    """What happened to the frames (and videos) of a run."""

    scored: int = 0  # frames with scores (empty ones included if scored)
    skipped: int = 0  # missing ground truth, unmapped frames, empty ones if skipped
    empty: int = 0  # frames without fixations (scored or skipped)
    missing: int = 0  # frames whose ground-truth files are missing
    resized: int = 0  # frames whose prediction had another size
    unmapped: int = 0  # frames the published procedure maps none of
    unscored: list[str] = field(default_factory=list)  # videos without any ground truth


# --- progress ----------------------------------------------------------------------


@dataclass(frozen=True)
class EvalProgress:
    """Where a run is: ``videos_done`` of ``videos_total`` (every split's), and the step
    under way: the frames of video ``video`` (``frames_done`` of ``frames_total`` read
    from its source) or, ``video`` None, the reading of a split's fixations
    (``frames_done`` of ``frames_total`` videos read)."""

    videos_done: int
    videos_total: int
    video: str | None
    frames_done: int
    frames_total: int


class Tracker:
    """Counts progress and reports it to ``on_progress`` (None: to no one)."""

    def __init__(self, videos_total: int, on_progress: Callable[[EvalProgress], None] | None):
        self.on_progress = on_progress
        self.videos_done, self.videos_total = 0, videos_total
        self.video: str | None = None
        self.done, self.total = 0, 0

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(
                EvalProgress(self.videos_done, self.videos_total, self.video, self.done, self.total)
            )

    def step(self, video: str | None, total: int) -> None:
        """A new step: video ``video``'s ``total`` frames (None: a split's fixations)."""
        self.video, self.done, self.total = video, 0, total
        self._report()

    def frame(self) -> None:
        self.done += 1
        self._report()

    def video_done(self) -> None:
        self.videos_done += 1
        self._report()


# --- fixations ---------------------------------------------------------------------


@dataclass
class _Fix:
    """Fixations of one frame: flat indices of fixated pixels and the frame's shape."""

    flat: np.ndarray | None  # (Nfix,) int64, None when the ground truth is missing
    shape: tuple[int, int] | None


@dataclass
class _SplitFixations:
    """Pass 1 over a split: every video's fixations, and the frames that have some
    ground truth (the DHF1K protocol draws its other frames among them)."""

    fixes: list[list[_Fix]]  # per video, per frame
    pool: list[tuple[int, int]]  # (video, frame) of the frames with ground truth


def _remap(flat: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """Flat indices of a ``src``-sized map moved to a ``dst``-sized one (nearest pixel)."""
    if src == dst:
        return flat
    r, c = np.divmod(flat, src[1])
    r = r * dst[0] // src[0]
    c = c * dst[1] // src[1]
    return r * dst[1] + c


def _remap_dhf1k(flat: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """Fixations of a ``src``-sized frame on a ``dst``-sized map as the DHF1K loop puts
    them: it scales the 1-based points (column, row) by (H/H0, W/W0), so row r lands on
    round(r * W/W0) and column c on round(c * H/H0) (the same as scaling each axis by its
    own ratio when the aspect ratios agree); points that fall outside are dropped."""
    if src == dst:
        return flat
    r, c = np.divmod(flat, src[1])
    rows = np.floor((r + 1) * (dst[1] / src[1]) + 0.5).astype(np.int64)  # MATLAB round
    cols = np.floor((c + 1) * (dst[0] / src[0]) + 0.5).astype(np.int64)
    inside = (rows >= 1) & (rows <= dst[0]) & (cols >= 1) & (cols <= dst[1])
    return (rows[inside] - 1) * dst[1] + (cols[inside] - 1)


def _read_fixations(item: VideoItem) -> list[_Fix]:
    out = []
    for _, fix in item.iter_fixations():
        if fix is None:
            out.append(_Fix(None, None))
        else:
            out.append(_Fix(np.flatnonzero(fix), fix.shape))
    return out


def _split_fixations(items: list[VideoItem], tracker: Tracker) -> _SplitFixations:
    tracker.step(None, len(items))
    fixes = []
    for item in items:
        fixes.append(_read_fixations(item) if item.problem is None else [])
        tracker.frame()
    # the DHF1K loop draws its 10 frames among all frames, empty ones included
    pool = [(v, i) for v, fr in enumerate(fixes) for i, fx in enumerate(fr) if fx.flat is not None]
    return _SplitFixations(fixes, pool)


# --- one frame ---------------------------------------------------------------------


def frame_rng(seed: int, video: str, index: int, stream: str) -> np.random.Generator:
    """The random stream of one draw on one frame: a generator seeded by (seed, video
    name, 0-based frame index, stream name), e.g. ``stream="sauc"``. Each metric has its
    own, so its value depends only on the seed and its inputs."""
    key = [seed, zlib.crc32(video.encode()), index, zlib.crc32(stream.encode())]
    return np.random.default_rng(key)


def to_float(p: np.ndarray, protocol: str) -> np.ndarray:
    """A prediction as the loop of ``protocol`` ("dhf1k" | "av") holds it before the
    resize, (H, W) float64: integer images as their values (the DHF1K loop's
    ``double(imread(...))``) or on ``im2double``'s [0, 1] scale (the audio-visual
    scripts); floats as they are."""
    p = np.asarray(p)
    if p.dtype.kind in "ui" and PROTOCOLS[protocol].integer_values:
        return p.astype(np.float64)
    return M.im2double(p)


def _two_d(pm: np.ndarray) -> np.ndarray:
    pm = np.asarray(pm)
    if pm.ndim == 3:  # (1, H, W) or (H, W, 1) from a source that kept an axis
        pm = pm[0] if pm.shape[0] == 1 else pm[..., 0]
    return pm


def score_frame(
    p: np.ndarray,
    d: np.ndarray,
    fix: np.ndarray,
    other: np.ndarray | None,
    metrics: Sequence[str],
    rng: Callable[[str], np.random.Generator] | None = None,
) -> list[float]:
    """The requested metrics of one frame.

    ``p`` the prediction (resized here to ``d``'s size when it differs: pass a float
    map, see :func:`to_float`); ``d`` the density map; ``fix`` the fixations (H, W);
    ``other`` the sAUC "other" fixations or None (sAUC NaN); ``rng(metric)`` the random
    stream of each sampled metric (None: unseeded).
    """
    p = M.prepare(p, d.shape)  # resized once, float64

    def gen(m: str) -> np.random.Generator:
        return rng(m) if rng is not None else np.random.default_rng()

    out = []
    for m in metrics:
        if m == "cc":
            out.append(M.cc(p, d))
        elif m == "nss":
            out.append(M.nss(p, fix))
        elif m == "auc_j":
            out.append(M.auc_judd(p, fix, rng=gen(m)) if fix.any() else math.nan)
        elif m == "sauc":
            if other is None or not fix.any():
                out.append(math.nan)
            else:
                out.append(M.auc_shuffled(p, fix, other, rng=gen(m)))
        elif m == "sim":
            out.append(M.sim(p, d))
        elif m == "kld":
            out.append(M.kld(p, d))
        elif m == "auc_b":
            out.append(M.auc_borji(p, fix, rng=gen(m)) if fix.sum() > 1 else math.nan)
    return out


@dataclass
class _Video:
    """One video being scored: its index in the split and its frames' fixations."""

    item: VideoItem
    v: int
    fixes: list[_Fix]
    shape: tuple[int, int]  # its ground truth's (H, W)
    union: np.ndarray | None  # the av protocol's sAUC pool: all the video's fixations


def _other(scoring: Scoring, split: _SplitFixations, video: _Video, index: int) -> np.ndarray:
    """The sAUC "other" fixations of one frame, (H, W) bool, per the protocol."""
    fx = video.fixes[index]
    h, w = fx.shape
    sampled = scoring.protocol.sauc_frames
    if sampled is None:  # the video's other frames
        other = video.union.copy() if video.union is not None else np.zeros(h * w, dtype=bool)
        other[fx.flat] = False
        return other.reshape(h, w)
    rng = frame_rng(scoring.seed, video.item.name, index, OTHERS_STREAM)
    k = min(sampled, len(split.pool))
    other = np.zeros(h * w, dtype=bool)
    for j in rng.choice(len(split.pool), size=k, replace=False):
        ov, oi = split.pool[j]
        o = split.fixes[ov][oi]
        other[_remap_dhf1k(o.flat, o.shape, (h, w))] = True
    return other.reshape(h, w)


def _score_one(
    video: _Video,
    index: int,
    pmap: np.ndarray,
    split: _SplitFixations,
    scoring: Scoring,
    counts: Counts,
) -> list[float]:
    """The metrics of frame ``index`` of ``video``, its map ``pmap``."""
    item, fx = video.item, video.fixes[index]
    d = read_density(item.density_paths[index])
    if d.shape != fx.shape:
        raise InputError(
            f"{item.name}: frame {index + 1}: density {d.shape} and fixation "
            f"{fx.shape} maps differ in size"
        )
    fix = np.zeros(fx.shape[0] * fx.shape[1], dtype=bool)
    fix[fx.flat] = True
    other = None
    if "sauc" in scoring.metrics and fx.flat.size:
        other = _other(scoring, split, video, index)
    pm = to_float(_two_d(pmap), scoring.protocol.name)
    if pm.shape != fx.shape:
        counts.resized += 1

    def rng(m: str) -> np.random.Generator:
        return frame_rng(scoring.seed, item.name, index, m)

    return score_frame(pm, d, fix.reshape(fx.shape), other, scoring.metrics, rng)


# --- videos and splits -------------------------------------------------------------


def _video(item: VideoItem, v: int, split: _SplitFixations, scoring: Scoring) -> _Video:
    fixes = split.fixes[v]
    shapes = [fx.shape for fx in fixes if fx.shape is not None]
    shape = shapes[0] if shapes else (1, 1)
    union = None
    if scoring.protocol.sauc_frames is None and "sauc" in scoring.metrics and shapes:
        union = np.zeros(shape[0] * shape[1], dtype=bool)
        for fx in fixes:
            if fx.flat is not None:
                union[_remap(fx.flat, fx.shape, shape)] = True
    return _Video(item, v, fixes, shape, union)


def _score_video(
    video: _Video,
    split: _SplitFixations,
    source: Source,
    scoring: Scoring,
    tracker: Tracker,
    counts: Counts,
) -> VideoScores:
    """Pass 2 over one video: its maps, frame by frame, against its ground truth."""
    item = video.item
    rows, skipped, empty = [], 0, 0
    preds = source.maps(item, video.shape)
    try:
        seen = -1
        for index, pmap in preds:
            if index >= item.n_frames:
                break
            seen = index
            fx = video.fixes[index]
            tracker.frame()
            if index < source.unmapped:  # the published procedure gives it no map
                skipped += 1
                counts.unmapped += 1
                continue
            if fx.flat is None or item.density_paths[index] is None:
                skipped += 1
                counts.missing += 1
                continue
            if fx.flat.size == 0:
                empty += 1
                if scoring.skip_empty:
                    skipped += 1
                    continue
            rows.append(_score_one(video, index, pmap, split, scoring, counts))
    finally:
        preds.close()
    if seen + 1 < item.n_frames:
        raise InputError(f"{item.name}: {seen + 1} predicted maps for {item.n_frames} frames")
    arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(scoring.metrics))
    counts.scored += len(rows)
    counts.skipped += skipped
    counts.empty += empty
    scores = M.aggregate_frames(arr, scoring.metrics)  # the video's mean, NaNs skipped
    return VideoScores(item.name, item.split, len(rows), skipped, empty, scores, arr)


def _unscored(item: VideoItem, scoring: Scoring, counts: Counts) -> VideoScores:
    """A video without any ground truth: reported, counted, not scored."""
    scoring.warn(f"{item.name}: {item.problem}; video not scored")
    counts.unscored.append(item.name)
    counts.missing += item.n_frames
    counts.skipped += item.n_frames
    none = np.empty((0, len(scoring.metrics)))  # (0, n_metrics)
    scores = M.aggregate_frames(none, scoring.metrics)
    return VideoScores(item.name, item.split, 0, item.n_frames, 0, scores, none)


def score_split(
    items: list[VideoItem],
    source: Source,
    scoring: Scoring,
    tracker: Tracker,
    counts: Counts,
) -> list[VideoScores]:
    """The scores of each video of a split (``items``), their maps from ``source``."""
    source.prepare([item for item in items if item.problem is None])
    split = _split_fixations(items, tracker)
    results = []
    for v, item in enumerate(items):
        tracker.step(item.name, item.n_frames)
        if item.problem is not None:
            results.append(_unscored(item, scoring, counts))
        else:
            missing = item.missing()
            if missing:
                scoring.warn(
                    f"{item.name}: {len(missing)} of {item.n_frames} frames have no "
                    f"ground-truth files (the first: frame {missing[0] + 1}); they are skipped"
                )
            video = _video(item, v, split, scoring)
            results.append(_score_video(video, split, source, scoring, tracker, counts))
        tracker.video_done()
    return results


def split_scores(
    protocol: Protocol, videos: list[VideoScores], metrics: Sequence[str]
) -> dict[str, float]:
    """A split's scores: the mean of its videos' means, or over all its frames."""
    if protocol.per_video:
        return M.aggregate_videos([r.scores for r in videos], metrics)
    frames = [r.frame_scores for r in videos]
    return M.aggregate_frames(np.concatenate(frames, axis=0), metrics)
