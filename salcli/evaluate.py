"""Scoring saliency predictions against a dataset's eye-tracking ground truth.

``evaluate(dataset, ...)`` scores, for every test video of a split, either predictions
on disk (per-video PNG folders ``DIR/<video>/0001.png ...`` or HDF5 stacks
``DIR/<video>.h5`` with dataset ``saliency`` (N, H, W), as ``salcli predict`` writes
them), the model itself (``salcli.predict.Predictor``), or a centre baseline, with the
metrics of :mod:`salcli.metrics`, following the dataset's published protocol:

- ``dhf1k`` protocol (DHF1K, Hollywood-2, UCF-Sports): the sAUC negatives of a frame
  are the union of the fixations of 10 frames drawn at random (without replacement)
  from the frames with fixations of the evaluated split, the current one possibly
  among them; the overall score is the mean over all scored frames (NaNs skipped per
  metric).
- ``av`` protocol (DIEM, Coutrot1/2, AVAD, ETMD, SumMe; STAViS / AViNet): the sAUC
  negatives are the union of the fixations of all frames of the same video minus the
  current frame's fixated pixels; scores are averaged per video, then over videos;
  ``--split all`` is the mean of the three splits' overall scores.

Frames with no ground truth (no fixated pixel, or a missing map) are skipped and
counted; no frame is subsampled. Every random draw comes from a generator seeded by
(seed, video, frame), so a score does not depend on which other videos were scored.
Fixations of frames of another size (other videos in the DHF1K protocol) are mapped to
the current frame's size by nearest pixel (row * H / H0, col * W / W0, floored).

The JSON document (``EvalResult.to_json``; stable; NaN written as null)::

    {
      "dataset": "diem",            # salcli's dataset name
      "split": "1",                 # "1" | "2" | "3" | "all" | a split folder ("val")
      "protocol": "av",             # "av" | "dhf1k"
      "conventions": {
        "aggregation": str,         # how frames and videos (and splits) are averaged
        "sauc_negatives": str,      # where the sAUC "other" fixations come from
        "resizing": str,            # MATLAB imresize when sizes differ
        "frames_resized": int,      # frames whose prediction had another size
        "predictions": str,         # "8-bit images" | "16-bit images" | "floats"
        "source": str,              # "predictions DIR" | "model (...)" | "baseline: ..."
        "seed": int,
        "metrics": [str, ...],
        "auc_splits": 100, "auc_step": 0.1, "auc_judd_jitter": true,
        "frames_scored": int,
        "frames_skipped": int       # empty or missing ground truth
      },
      "overall": {"cc": float, "nss": ..., "auc_j": ..., "sauc": ..., "sim": ..., "kld": ...},
      "splits": {"1": {...}, "2": {...}, "3": {...}},   # only when several splits
      "videos": {"<name>": {"split": "1", "frames": int, "skipped": int, "cc": float, ...}}
    }

Only the requested metrics appear (``auc_b`` for AUC-Borji when asked). A video listed
in several scored splits is keyed ``<name>@<split>``. The CSV has the columns
``video,split,frames,skipped,<metrics...>``: one row per video, ``overall:<split>`` rows
when several splits, and a last ``overall`` row.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics as M
from .datasets import Dataset, VideoItem, read_density, read_gray, sorted_frames
from .errors import InputError, NoAudioError, OutputError, UsageError

DEFAULT_SEED = 0  # seed of every sampled metric and of the DHF1K "other" frames
DHF1K_OTHER_FRAMES = 10  # frames whose fixations make the sAUC negatives (DHF1K protocol)
CENTER_SIGMA_FRACTION = 0.25  # centre baseline: sigma per axis, as a fraction of that side
H5_CHUNK = 16  # frames read from an HDF5 stack at a time
H5_DATASET = "saliency"  # dataset name in the HDF5 stacks salcli predict writes

PROTOCOLS = {
    "dhf1k": {
        "sauc_negatives": (
            f"union of the fixations of {DHF1K_OTHER_FRAMES} frames drawn at random from "
            "the frames with fixations of the whole evaluated set (the current frame may "
            "be among them)"
        ),
        "aggregation": "mean over all scored frames, NaNs skipped per metric",
    },
    "av": {
        "sauc_negatives": (
            "union of the fixations of all frames of the same video, minus the current "
            "frame's fixated pixels"
        ),
        "aggregation": (
            "mean per video (NaNs skipped), then mean over videos; split 'all' = mean of the splits"
        ),
    },
}
RESIZING = (
    "prediction resized to the ground truth's size with MATLAB imresize (bicubic, "
    "a=-0.5, antialiased when shrinking) when sizes differ; equal sizes untouched"
)
METRIC_NAMES = {
    "cc": "CC",
    "nss": "NSS",
    "auc_j": "AUC-J",
    "sauc": "sAUC",
    "sim": "SIM",
    "kld": "KLD",
    "auc_b": "AUC-B",
}
METRIC_ALIASES = {
    "auc_judd": "auc_j",
    "aucj": "auc_j",
    "auc-j": "auc_j",
    "s-auc": "sauc",
    "auc_shuffled": "sauc",
    "s_auc": "sauc",
    "auc_borji": "auc_b",
    "auc-b": "auc_b",
    "kl": "kld",
}


def parse_metrics(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"cc,nss"`` -> ("cc", "nss"); None -> the default set. UsageError on unknowns."""
    if text is None:
        return M.METRICS
    parts = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in parts:
        name = raw.strip().lower()
        if not name:
            continue
        name = METRIC_ALIASES.get(name, name)
        if name not in M.ALL_METRICS:
            raise UsageError(f"unknown metric {raw.strip()!r}; one of: {', '.join(M.ALL_METRICS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError("--metrics names no metric")
    return tuple(out)


# --- prediction sources ------------------------------------------------------------


class Source:
    """Where the maps come from. ``maps(item, shape)`` yields (0-based index, map)."""

    description = ""

    def __init__(self) -> None:
        self.kinds: set[str] = set()  # "8-bit images", "16-bit images", "floats"

    def maps(self, item: VideoItem, shape: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError  # pragma: no cover - interface

    def close(self) -> None:
        pass


def _kind(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return "8-bit images"
    if dtype == np.uint16:
        return "16-bit images"
    return "floats"


class DiskSource(Source):
    """Predictions on disk: a folder of ``<video>/`` PNG folders or ``<video>.h5`` stacks,
    or one ``.h5`` file with a dataset (or group with ``saliency``) per video."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such predictions folder or file")
        self.description = f"predictions {self.path}"

    def maps(self, item: VideoItem, shape: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
        if self.path.is_file():
            yield from self._h5(self.path, item.name, whole_file=True)
            return
        folder = self.path / item.name
        h5 = self.path / f"{item.name}.h5"
        if folder.is_dir():
            files = sorted_frames(folder)
            if not files:
                raise InputError(f"{folder}: no prediction images")
            for i, p in enumerate(files):
                try:
                    arr = read_gray(p)
                except Exception as exc:  # noqa: BLE001 - one line for the user
                    raise InputError(f"{p}: not a readable prediction image") from exc
                self.kinds.add(_kind(arr.dtype))
                yield i, arr
        elif h5.is_file():
            yield from self._h5(h5, item.name, whole_file=False)
        else:
            raise InputError(f"no predictions for video {item.name} in {self.path}")

    def _h5(self, path: Path, name: str, *, whole_file: bool) -> Iterator[tuple[int, np.ndarray]]:
        import h5py

        try:
            f = h5py.File(str(path), "r")
        except OSError:
            raise InputError(f"{path}: not a readable HDF5 file") from None
        with f:
            if not whole_file:
                ds = f.get(H5_DATASET)
            elif name in f:
                ds = f[name]
                if isinstance(ds, h5py.Group):
                    ds = ds.get(H5_DATASET)
            else:
                ds = f.get(H5_DATASET)  # a single-video stack
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
                raise InputError(f"{path}: no (N, H, W) dataset '{H5_DATASET}' for {name}")
            self.kinds.add(_kind(ds.dtype))
            for start in range(0, ds.shape[0], H5_CHUNK):
                block = ds[start : start + H5_CHUNK]  # (n, H, W)
                for k in range(block.shape[0]):
                    yield start + k, block[k]


class ModelSource(Source):
    """The model run over each test video's frame folder (and its wav with ``audio``)."""

    def __init__(self, predictor: Any, *, audio: bool = False, fps: float | None = None):
        super().__init__()
        self.predictor = predictor
        self.audio = audio
        self.fps = fps
        self.description = "model (AViNet, audio)" if audio else "model (ViNet, visual only)"

    def maps(self, item: VideoItem, shape: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
        wav = None
        if self.audio:
            if item.wav is None:
                raise NoAudioError(f"{item.name}: no audio file for this video in the dataset")
            wav = item.wav
        for index, m in self.predictor.iter_maps(
            item.frames, fps=item.fps or self.fps, audio_path=wav
        ):
            self.kinds.add(_kind(np.asarray(m).dtype))
            yield index, m


def center_map(shape: tuple[int, int]) -> np.ndarray:
    """The centre baseline: a Gaussian centred on the frame, sigma per axis =
    ``CENTER_SIGMA_FRACTION`` of that axis' length, peak 1. (H, W) float64."""
    h, w = shape
    y = (np.arange(h) - (h - 1) / 2.0) / (CENTER_SIGMA_FRACTION * h)
    x = (np.arange(w) - (w - 1) / 2.0) / (CENTER_SIGMA_FRACTION * w)
    return np.exp(-0.5 * y[:, None] ** 2) * np.exp(-0.5 * x[None, :] ** 2)


class CenterSource(Source):
    """A centre-bias baseline: the same centred Gaussian for every frame."""

    description = (
        f"baseline: centred Gaussian, sigma = {CENTER_SIGMA_FRACTION} x height, "
        f"{CENTER_SIGMA_FRACTION} x width"
    )

    def maps(self, item: VideoItem, shape: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
        self.kinds.add("floats")
        m = center_map(shape)
        for i in range(item.n_frames):
            yield i, m


def make_predictor(weights: str | Path | None, audio: bool) -> Any:
    """A ``salcli.predict.Predictor`` (imported lazily: torch loads only when needed)."""
    from .predict import Predictor

    return Predictor(weights, audio=audio)


# --- results -----------------------------------------------------------------------


@dataclass
class VideoResult:
    name: str
    split: str
    frames: int  # frames scored
    skipped: int  # frames with an empty / missing ground truth
    scores: dict[str, float]  # per-video means (NaNs skipped)
    frame_scores: np.ndarray = field(repr=False)  # (frames, n_metrics) per-frame scores


@dataclass
class EvalResult:
    dataset: str
    split: str
    protocol: str
    metrics: tuple[str, ...]
    conventions: dict[str, Any]
    overall: dict[str, float]
    videos: list[VideoResult]
    splits: dict[str, dict[str, float]] = field(default_factory=dict)

    def video_key(self, v: VideoResult) -> str:
        dup = sum(1 for o in self.videos if o.name == v.name) > 1
        return f"{v.name}@{v.split}" if dup else v.name

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON document (NaN -> null); see the module docs and README."""
        videos = {}
        for v in self.videos:
            row: dict[str, Any] = {"split": v.split, "frames": v.frames, "skipped": v.skipped}
            row.update({m: _num(v.scores[m]) for m in self.metrics})
            videos[self.video_key(v)] = row
        doc: dict[str, Any] = {
            "dataset": self.dataset,
            "split": self.split,
            "protocol": self.protocol,
            "conventions": self.conventions,
            "overall": {m: _num(self.overall[m]) for m in self.metrics},
        }
        if len(self.splits) > 1:
            doc["splits"] = {
                s: {m: _num(sc[m]) for m in self.metrics} for s, sc in self.splits.items()
            }
        doc["videos"] = videos
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        """One row per video, then one ``overall`` row (and one per split for ``all``)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["video", "split", "frames", "skipped", *self.metrics])
        for v in self.videos:
            w.writerow(
                [
                    v.name,
                    v.split,
                    v.frames,
                    v.skipped,
                    *(_fmt_csv(v.scores[m]) for m in self.metrics),
                ]
            )
        if len(self.splits) > 1:
            for s, sc in self.splits.items():
                n = sum(v.frames for v in self.videos if v.split == s)
                k = sum(v.skipped for v in self.videos if v.split == s)
                w.writerow([f"overall:{s}", s, n, k, *(_fmt_csv(sc[m]) for m in self.metrics)])
        w.writerow(
            [
                "overall",
                self.split,
                self.conventions["frames_scored"],
                self.conventions["frames_skipped"],
                *(_fmt_csv(self.overall[m]) for m in self.metrics),
            ]
        )
        return buf.getvalue()

    def caption(self) -> str:
        c = self.conventions
        return (
            f"protocol {self.protocol}: {c['aggregation']}. sAUC negatives: "
            f"{c['sauc_negatives']}. Predictions: {c['predictions']} ({c['source']}); "
            f"resized with MATLAB imresize where sizes differ ({c['frames_resized']} frames). "
            f"Seed {c['seed']}. {c['frames_scored']} frames scored, "
            f"{c['frames_skipped']} skipped (empty ground truth)."
        )

    def table_width(self) -> int:
        """Columns the table needs with no cell folded (cells + padding + borders)."""
        names = [self.video_key(v) for v in self.videos] + ["overall", "split 1"]
        widths = [max(len("video"), *map(len, names)), len("frames") + 2]
        widths += [max(len(METRIC_NAMES[m]), 7) for m in self.metrics]  # "-0.1234"
        return sum(w + 3 for w in widths) + 1

    def table(self, *, videos: bool = True):
        """A rich Table: one row per video, then the overall row; conventions as caption."""
        from rich.table import Table

        t = Table(
            title=f"{self.dataset} - split {self.split}",
            caption=self.caption(),
            caption_justify="left",
        )
        t.add_column("video", overflow="fold")
        t.add_column("frames", justify="right", no_wrap=True)
        for m in self.metrics:  # numbers are never cut: the video column folds instead
            t.add_column(METRIC_NAMES[m], justify="right", no_wrap=True)
        if videos:
            for v in self.videos:
                t.add_row(
                    self.video_key(v), str(v.frames), *(_fmt(v.scores[m]) for m in self.metrics)
                )
        if len(self.splits) > 1:
            for s, sc in self.splits.items():
                n = sum(v.frames for v in self.videos if v.split == s)
                t.add_row(
                    f"split {s}", str(n), *(_fmt(sc[m]) for m in self.metrics), style="italic"
                )
        t.add_row(
            "overall",
            str(self.conventions["frames_scored"]),
            *(_fmt(self.overall[m]) for m in self.metrics),
            style="bold",
            end_section=True,
        )
        return t


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _fmt(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _fmt_csv(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6f}"


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


# --- fixations store ---------------------------------------------------------------


@dataclass
class _Fix:
    """Fixations of one frame: flat indices of fixated pixels and the frame's shape."""

    flat: np.ndarray | None  # (Nfix,) int64, None when the ground truth is missing
    shape: tuple[int, int] | None


def _remap(flat: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """Flat indices of a ``src``-sized map moved to a ``dst``-sized one (nearest pixel)."""
    if src == dst:
        return flat
    r, c = np.divmod(flat, src[1])
    r = r * dst[0] // src[0]
    c = c * dst[1] // src[1]
    return r * dst[1] + c


def _read_fixations(item: VideoItem) -> list[_Fix]:
    out = []
    for _, fix in item.iter_fixations():
        if fix is None:
            out.append(_Fix(None, None))
        else:
            out.append(_Fix(np.flatnonzero(fix), fix.shape))
    return out


def _frame_rng(seed: int, video: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(video.encode()), index, stream])


# --- scoring -----------------------------------------------------------------------


def score_frame(
    p: np.ndarray,
    d: np.ndarray,
    fix: np.ndarray,
    other: np.ndarray | None,
    metrics: Sequence[str],
    rng: np.random.Generator,
) -> list[float]:
    """The requested metrics of one frame (P already at the ground truth's size or not)."""
    p = M.prepare(p, d.shape)  # resized once, float64
    out = []
    for m in metrics:
        if m == "cc":
            out.append(M.cc(p, d))
        elif m == "nss":
            out.append(M.nss(p, fix))
        elif m == "auc_j":
            out.append(M.auc_judd(p, fix, rng=rng))
        elif m == "sauc":
            out.append(math.nan if other is None else M.auc_shuffled(p, fix, other, rng=rng))
        elif m == "sim":
            out.append(M.sim(p, d))
        elif m == "kld":
            out.append(M.kld(p, d))
        elif m == "auc_b":
            out.append(M.auc_borji(p, fix, rng=rng))
    return out


class _Progress:
    """Rich progress bars over videos and frames (a no-op when quiet)."""

    def __init__(self, quiet: bool, total_videos: int):
        self.p = None
        if quiet:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.p.start()
        self.videos = self.p.add_task("videos", total=total_videos)
        self.frames = self.p.add_task("frames", total=0)

    def video(self, name: str, n_frames: int) -> None:
        if self.p:
            self.p.reset(self.frames, total=n_frames, description=f"{name}")

    def frame(self) -> None:
        if self.p:
            self.p.advance(self.frames)

    def video_done(self) -> None:
        if self.p:
            self.p.advance(self.videos)

    def close(self) -> None:
        if self.p:
            self.p.stop()


def _score_split(
    ds: Dataset,
    items: list[VideoItem],
    source: Source,
    metrics: tuple[str, ...],
    seed: int,
    progress: _Progress,
    counters: dict[str, int],
) -> list[VideoResult]:
    protocol = ds.protocol
    progress.video("reading fixations", len(items))
    fixes = []  # pass 1: fixations only (flat indices: small), for the sAUC negatives
    for item in items:
        fixes.append(_read_fixations(item))
        progress.frame()
    pool = [(v, i) for v, fr in enumerate(fixes) for i, fx in enumerate(fr) if _has_fix(fx)]
    results = []
    for v, item in enumerate(items):
        progress.video(item.name, item.n_frames)
        shapes = [fx.shape for fx in fixes[v] if fx.shape is not None]
        shape = shapes[0] if shapes else (1, 1)
        union = None
        if protocol == "av" and "sauc" in metrics and shapes:
            union = np.zeros(shape[0] * shape[1], dtype=bool)
            for fx in fixes[v]:
                if fx.flat is not None:
                    union[_remap(fx.flat, fx.shape, shape)] = True
        rows, skipped = [], 0
        preds = source.maps(item, shape)
        try:
            seen = -1
            for index, pmap in preds:
                if index >= item.n_frames:
                    break
                seen = index
                fx = fixes[v][index]
                progress.frame()
                if not _has_fix(fx) or item.density_paths[index] is None:
                    skipped += 1
                    continue
                d = _density(item, index)
                if d.shape != fx.shape:
                    raise InputError(
                        f"{item.name}: frame {index + 1}: density {d.shape} and fixation "
                        f"{fx.shape} maps differ in size"
                    )
                fix = np.zeros(fx.shape[0] * fx.shape[1], dtype=bool)
                fix[fx.flat] = True
                other = None
                if "sauc" in metrics:
                    other = _other(protocol, fixes, pool, union, v, index, fx, seed, item.name)
                rng = _frame_rng(seed, item.name, index, 0)
                pm = np.asarray(pmap)
                if pm.ndim == 3:
                    pm = pm[..., 0] if pm.shape[-1] in (1, 3, 4) else pm[0]
                if pm.shape != fx.shape:
                    counters["resized"] += 1
                rows.append(score_frame(pm, d, fix.reshape(fx.shape), other, metrics, rng))
        finally:
            close = getattr(preds, "close", None)
            if close:
                close()
        if seen + 1 < item.n_frames:
            raise InputError(f"{item.name}: {seen + 1} predicted maps for {item.n_frames} frames")
        arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(metrics))
        scores = M.aggregate_frames(arr, metrics)  # the video's mean, NaNs skipped
        counters["scored"] += len(rows)
        counters["skipped"] += skipped
        results.append(VideoResult(item.name, item.split, len(rows), skipped, scores, arr))
        progress.video_done()
    return results


def _has_fix(fx: _Fix) -> bool:
    return fx.flat is not None and fx.flat.size > 0


def _density(item: VideoItem, index: int) -> np.ndarray:
    path = item.density_paths[index]
    assert path is not None
    return read_density(path)


def _other(
    protocol: str,
    fixes: list[list[_Fix]],
    pool: list[tuple[int, int]],
    union: np.ndarray | None,
    v: int,
    index: int,
    fx: _Fix,
    seed: int,
    name: str,
) -> np.ndarray:
    """The sAUC "other" fixations of one frame, (H, W) bool, per the protocol."""
    h, w = fx.shape
    if protocol == "av":
        other = union.copy() if union is not None else np.zeros(h * w, dtype=bool)
        other[fx.flat] = False
        return other.reshape(h, w)
    rng = _frame_rng(seed, name, index, 1)
    k = min(DHF1K_OTHER_FRAMES, len(pool))
    other = np.zeros(h * w, dtype=bool)
    for j in rng.choice(len(pool), size=k, replace=False):
        ov, oi = pool[j]
        o = fixes[ov][oi]
        other[_remap(o.flat, o.shape, (h, w))] = True
    return other.reshape(h, w)


def evaluate(
    dataset: str,
    *,
    root: str | Path | None = None,
    split: str | None = None,
    predictions: str | Path | None = None,
    weights: str | Path | None = None,
    audio: bool = False,
    baseline: str | None = None,
    metrics: Sequence[str] | str | None = None,
    seed: int = DEFAULT_SEED,
    fps: float | None = None,
    quiet: bool = True,
    predictor: Any = None,
    predictor_factory: Callable[[str | Path | None, bool], Any] | None = None,
) -> EvalResult:
    """Score one dataset split (or ``all`` splits) and return an :class:`EvalResult`.

    Exactly one source: ``predictions`` (folder / .h5), ``baseline="center"``, or the
    model (``predictor`` if given, else ``Predictor(weights, audio=audio)``).
    """
    mets = parse_metrics(metrics)
    if baseline is not None and baseline != "center":
        raise UsageError(f"--baseline must be 'center', not {baseline!r}")
    if baseline and predictions is not None:
        raise UsageError("--baseline and --predictions exclude each other")
    if (predictions is not None or baseline) and (weights is not None or audio):
        raise UsageError("--weights / --audio run the model; they do not apply to --predictions")
    ds = Dataset(dataset, root)
    splits = ds.splits(None if split is None else str(split))
    items = {s: ds.videos(s) for s in splits}
    if predictions is not None:
        source: Source = DiskSource(predictions)
    elif baseline:
        source = CenterSource()
    else:
        if predictor is None:
            predictor = (predictor_factory or make_predictor)(weights, audio)
        source = ModelSource(predictor, audio=audio, fps=fps)

    counters = {"scored": 0, "skipped": 0, "resized": 0}
    progress = _Progress(quiet, sum(len(v) for v in items.values()))
    videos: list[VideoResult] = []
    per_split: dict[str, dict[str, float]] = {}
    try:
        for s in splits:
            res = _score_split(ds, items[s], source, mets, seed, progress, counters)
            videos.extend(res)
            if ds.protocol == "dhf1k":
                frames = [r.frame_scores for r in res]
                per_split[s] = M.aggregate_frames(np.concatenate(frames, axis=0), mets)
            else:
                per_split[s] = M.aggregate_videos([r.scores for r in res], mets)
    finally:
        progress.close()
        source.close()
    overall = (
        next(iter(per_split.values()))
        if len(per_split) == 1
        else M.aggregate_videos(list(per_split.values()), mets)
    )
    proto = PROTOCOLS[ds.protocol]
    kinds = sorted(source.kinds)
    conventions = {
        "aggregation": proto["aggregation"],
        "sauc_negatives": proto["sauc_negatives"],
        "resizing": RESIZING,
        "frames_resized": counters["resized"],
        "predictions": " and ".join(kinds) if kinds else "none",
        "source": source.description,
        "seed": seed,
        "metrics": list(mets),
        "auc_splits": M.AUC_SPLITS,
        "auc_step": M.AUC_STEP,
        "auc_judd_jitter": True,
        "frames_scored": counters["scored"],
        "frames_skipped": counters["skipped"],
    }
    split_label = "all" if len(splits) > 1 else splits[0]
    return EvalResult(
        dataset=ds.name,
        split=split_label,
        protocol=ds.protocol,
        metrics=mets,
        conventions=conventions,
        overall=overall,
        videos=videos,
        splits=per_split,
    )
