"""Scoring saliency predictions against a dataset's eye-tracking ground truth.

``evaluate(dataset, ...)`` scores, for every test video of a split, either predictions
on disk (per-video PNG folders ``DIR/<video>/0001.png ...`` or HDF5 stacks
``DIR/<video>.h5`` with dataset ``saliency`` (N, H, W), as ``salcli predict`` writes
them), the model itself (``make_predictor``: ``salcli.inference.predictor.Predictor``), or a
centre baseline, with the metrics of :mod:`salcli.metrics`, following the dataset's
published protocol:

- ``dhf1k`` protocol (DHF1K, Hollywood-2, UCF-Sports), as the benchmark's MATLAB loop
  (``eval1.m``) scores: every frame, also one without fixations (SIM and KLD against
  its all-zero density map are 0 and kept, CC / NSS / AUCs are NaN and dropped); the
  sAUC negatives of a frame are the union of the fixations of 10 frames drawn at random
  (without replacement) from all frames of the evaluated set, empty ones and the
  current one included; the overall score is the mean over frames, NaNs skipped per
  metric.
- ``av`` protocol (DIEM, Coutrot1/2, AVAD, ETMD, SumMe; STAViS / AViNet): frames without
  fixations are skipped; the sAUC negatives are the union of the fixations of all
  frames of the same video minus the current frame's fixated pixels; scores are
  averaged per video, then over videos; ``--split all`` is the mean of the splits.

``skip_empty`` overrides the protocol's handling of frames without fixations. Frames
whose ground-truth files are missing are skipped and counted; a video with none at all
is reported (``on_warning``, ``EvalResult.unscored``). No frame is subsampled.

Both protocols read a prediction as the MATLAB scripts do: the first (red) channel of
a colour image, converted to float first (8-bit values as they are under ``dhf1k``,
its ``double()``; on [0, 1] under ``av``, its ``im2double``; all metrics are invariant
to that scale but for AUC-J's 1e-7 jitter), then resized once, as floats, to the ground
truth's size with MATLAB's ``imresize``. Every random draw (AUC-J's jitter, the sAUC
and AUC-B samples, the DHF1K protocol's 10 frames) comes from its own generator seeded
by (seed, video, frame, metric): a metric's value depends only on the seed and its
inputs, not on the other metrics asked for or the order frames are scored in.

A ``{split}`` in ``weights`` (or ``predictions``) scores each split with its own
checkpoint (or predictions), the paper's protocol for the 3-split sets; a single-split
set (DIEM) then scores its one test list once per split 1-3.

The model run takes ``warmup`` (and ``precision``) as ``salcli predict`` does. Under
``warmup="reference"`` a family whose published procedure gives its first frames no map
(``ModelFamily.published_unmapped``: STAViS, frames 1-8) has those frames left unscored,
as the published evaluation never reads them: ``salcli evaluate --dataset diem --audio
--weights 'audiovisual_split{split}_save_60.pth' --split all --warmup reference`` is the
STAViS paper's protocol. Under ``mirror`` (the default) every frame is scored.

The JSON document (``EvalResult.to_json``; stable; NaN written as null)::

    {
      "dataset": "diem",            # salcli's dataset name
      "split": "1",                 # "1" | "2" | "3" | "all" | a split folder ("val")
      "protocol": "av",             # "av" | "dhf1k"
      "conventions": {
        "aggregation": str,         # how frames and videos (and splits) are averaged
        "sauc_negatives": str,      # where the sAUC "other" fixations come from
        "reading": str,             # channel and float conversion of predictions
        "resizing": str,            # MATLAB imresize when sizes differ
        "frames_resized": int,      # frames whose prediction had another size
        "predictions": str,         # "8-bit images" | "16-bit images" | "floats"
        "source": str,              # "predictions DIR" | "model (...)" | "baseline: ..."
        "warmup": str | null,       # the model run's warm-up policy; null: not a model run
        "frames_unmapped": int,     # frames left unscored: the published procedure maps none
        "unmapped_rule": str,       # which frames those are, and why
        "seed": int,
        "random_streams": str,      # one stream per (seed, video, frame, metric)
        "metrics": [str, ...],
        "auc_splits": 100, "auc_step": 0.1, "auc_judd_jitter": true,
        "empty_frames": "scored" | "skipped",   # frames without fixations
        "empty_frames_rule": str,   # what a scored empty frame contributes
        "frames_scored": int,       # frames with scores (empty ones included if scored)
        "frames_skipped": int,      # missing ground truth, unmapped frames, empty if skipped
        "frames_empty": int,        # frames without fixations (scored or skipped)
        "frames_missing": int,      # frames whose ground-truth files are missing
        "videos_without_ground_truth": [str, ...],
        "per_split": {"1": str, ...}  # only with {split}: each split's source
      },
      "overall": {"cc": float, "nss": ..., "auc_j": ..., "sauc": ..., "sim": ..., "kld": ...},
      "splits": {"1": {...}, "2": {...}, "3": {...}},   # only when several splits
      "videos": {"<name>": {"split": "1", "frames": int, "skipped": int, "empty": int,
                            "cc": float, ...}}
    }

Only the requested metrics appear (``auc_b`` for AUC-Borji when asked). A video listed
in several scored splits is keyed ``<name>@<split>``. The CSV has the columns
``video,split,frames,skipped,empty,<metrics...>``: one row per video,
``overall:<split>`` rows when several splits, and a last ``overall`` row.
:func:`write_output` writes either to a file (atomically), a pipe or device, or ``-``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salcli import metrics as M
from salcli.errors import (
    DatasetError,
    InputError,
    NoAudioError,
    OutputError,
    UsageError,
    WeightsError,
    os_reason,
)
from salcli.evaluation.datasets import Dataset, VideoItem, read_density, sorted_frames
from salcli.files import write_text_atomic

DEFAULT_SEED = 0  # seed of every sampled metric and of the DHF1K "other" frames
DHF1K_OTHER_FRAMES = 10  # frames whose fixations make the sAUC negatives (DHF1K protocol)
CENTER_SIGMA_FRACTION = 0.25  # centre baseline: sigma per axis, as a fraction of that side
H5_CHUNK = 16  # frames read from an HDF5 stack at a time
H5_DATASET = "saliency"  # dataset name in the HDF5 stacks salcli predict writes
SPLIT_PLACEHOLDER = "{split}"  # in --weights / --predictions: one per split
STDOUT = "-"  # --json / --csv name for standard output
OTHERS_STREAM = "sauc_frames"  # random stream of the DHF1K protocol's draw of other frames

# Frames without a fixation: the published loops differ. The DHF1K benchmark loop
# (eval1.m) scores every frame (SIM 0 and KLD 0 against an all-zero density map are kept,
# CC / NSS / AUCs come out NaN and drop out of the mean); the audio-visual sets skip them.
SKIP_EMPTY_DEFAULT = {"dhf1k": False, "av": True}

PROTOCOLS = {
    "dhf1k": {
        "sauc_negatives": (
            f"union of the fixations of {DHF1K_OTHER_FRAMES} frames drawn at random (without "
            "replacement) from all frames of the evaluated set, empty ones and the current "
            "one included; a frame of another size has its fixations (1-based row r, column "
            "c) placed at row round(r x W/W0), column round(c x H/H0) as the benchmark's "
            "loop does, points outside dropped"
        ),
        "aggregation": "mean over all scored frames, NaNs skipped per metric",
        "sauc_short": (
            f"fixations of {DHF1K_OTHER_FRAMES} random frames of the whole set, empty ones "
            "included (another size placed as the benchmark's loop places it)"
        ),
        "reading": (
            "colour predictions: first (red) channel; 8-bit / 16-bit values converted to "
            "float as they are (MATLAB double()) before any resize"
        ),
    },
    "av": {
        "sauc_negatives": (
            "union of the fixations of all frames of the same video, minus the current "
            "frame's fixated pixels"
        ),
        "aggregation": "mean per video (NaNs skipped), then mean over videos",
        "sauc_short": "fixations of the video's other frames",
        "reading": (
            "colour predictions: first (red) channel; 8-bit / 16-bit values converted to "
            "float on [0, 1] (MATLAB im2double) before any resize"
        ),
    },
}
RESIZING = (
    "float prediction resized once to the ground truth's size with MATLAB imresize "
    "(bicubic, a=-0.5, antialiased when shrinking), no rounding or clipping between the "
    "two passes; equal sizes untouched"
)
EMPTY_TEXT = {
    False: (
        "scored as the benchmark's loop does: SIM and KLD kept (0 against an all-zero "
        "density map), CC, NSS and the AUCs NaN and dropped"
    ),
    True: "skipped",
}
RANDOM_STREAMS = (
    "one random stream per (seed, video, frame, metric): a metric's value does not "
    "depend on the other metrics asked for or on the scoring order"
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

    def prepare(self, items: list[VideoItem]) -> None:
        """The videos of a split (those with ground truth), in the order their maps
        will be asked for: a source that computes ahead starts here (salcli.corpus.cluster)."""

    def close(self) -> None:
        pass


def _kind(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return "8-bit images"
    if dtype == np.uint16:
        return "16-bit images"
    return "floats"


def read_prediction(path: str | Path) -> np.ndarray:
    """A prediction image as the MATLAB scripts read it: (H, W) of its stored dtype, the
    first channel (red) of a colour image (``I(:, :, 1)``), alpha ignored."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: not a readable prediction image")
    if img.ndim == 3:
        img = img[:, :, 2] if img.shape[2] >= 3 else img[:, :, 0]  # OpenCV keeps BGR(A)
    return img


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
                arr = read_prediction(p)
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


def model_family(audio: bool, label: str | None = None) -> str:
    """How the conventions name the model: its family and variant when known (a loaded
    ``Predictor`` says, e.g. "AViNet (bilinear)"), else what ``audio`` implies."""
    if label is None:
        label = "AViNet" if audio else "ViNet"
    return f"model ({label}, {'audio' if audio else 'visual only'})"


class ModelSource(Source):
    """The model run over each test video's frame folder (and its wav with ``audio``)."""

    def __init__(self, predictor: Any, *, audio: bool = False, fps: float | None = None):
        super().__init__()
        self.predictor = predictor
        self.audio = audio
        self.fps = fps
        weights = getattr(predictor, "weights_path", None)
        label = getattr(getattr(predictor, "variant", None), "label", None)
        self.label = model_family(audio, label)
        self.description = self.label + (f", weights {weights}" if weights else "")
        self.warmup = getattr(predictor, "warmup", None)
        family = getattr(predictor, "family", None)
        # the published procedure's warm-up leaves these frames without a map of theirs
        unmapped = getattr(family, "published_unmapped", 0) if self.warmup == "reference" else 0
        self.unmapped = int(unmapped)
        self.family_label = getattr(family, "label", "")

    def maps(self, item: VideoItem, shape: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
        wav = None
        if self.audio:
            if item.wav is None:
                where = item.wav_expected or "this dataset has no audio"
                raise NoAudioError(f"{item.name}: no audio file ({where})")
            wav = item.wav
        if not Path(item.frames).is_dir():
            raise InputError(f"{item.name}: no frame folder {item.frames} to run the model on")
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


def make_predictor(weights: str | Path | None, audio: bool, **options: Any) -> Any:
    """A ``salcli.inference.predictor.Predictor`` (imported lazily: torch loads only when needed);
    ``options``: those of ``Predictor`` evaluate passes on (``warmup``, ``precision``).

    The one place evaluate builds a model; anything with ``iter_maps(frames, fps=,
    audio_path=)`` yielding (0-based index, (H, W) map) serves (``predictor_factory``,
    called with ``options`` only when some are given). A ``warmup`` and a ``family``
    (``salcli.models.registry.ModelFamily``) attribute, when it has them, say which first frames
    the published procedure leaves unmapped.
    """
    from salcli.inference.predictor import Predictor

    return Predictor(weights, audio=audio, **options)


def per_split(value: str | Path | None) -> bool:
    """Whether ``value`` (--weights / --predictions) holds the ``{split}`` placeholder."""
    return value is not None and SPLIT_PLACEHOLDER in str(value)


def fill_split(value: str | Path, split: str) -> str:
    """``value`` with ``{split}`` replaced by the split's name (other braces untouched)."""
    return str(value).replace(SPLIT_PLACEHOLDER, split)


def _model_options(warmup: str | None, precision: str | None) -> dict[str, Any]:
    """The options of the model run given (checked here: a usage error names the flag)."""
    from salcli.defaults import PRECISIONS, WARMUP_POLICIES

    options: dict[str, Any] = {}
    if warmup is not None:
        if warmup not in WARMUP_POLICIES:
            raise UsageError(f"--warmup {warmup!r}: choose from {', '.join(WARMUP_POLICIES)}")
        options["warmup"] = warmup
    if precision is not None:
        if precision not in PRECISIONS:
            raise UsageError(f"--precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        options["precision"] = precision
    return options


def _unmapped_rule(unmapped: int, family: str) -> str:
    """What the conventions say of the frames left without a published map."""
    if not unmapped:
        return "none: every frame with ground truth is scored"
    return (
        f"frames 1-{unmapped} of every video not scored: the published {family} procedure "
        f"gives them no map and its evaluation never reads them (warm-up 'reference'); "
        "their fixations still count among the sAUC negatives of the other frames"
    )


# --- results -----------------------------------------------------------------------


@dataclass
class VideoResult:
    name: str
    split: str
    frames: int  # frames scored
    skipped: int  # frames not scored: missing ground truth (and empty ones when skipped)
    empty: int  # frames whose fixation map has no fixation (scored or skipped)
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
    unscored: list[str] = field(default_factory=list)  # videos without any ground truth
    warnings: list[str] = field(default_factory=list)  # what was reported to on_warning

    def video_key(self, v: VideoResult) -> str:
        dup = sum(1 for o in self.videos if o.name == v.name) > 1
        return f"{v.name}@{v.split}" if dup else v.name

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON document (NaN -> null); see the module docs and README."""
        videos = {}
        for v in self.videos:
            row: dict[str, Any] = {
                "split": v.split,
                "frames": v.frames,
                "skipped": v.skipped,
                "empty": v.empty,
            }
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

    def _split_counts(self, split: str) -> tuple[int, int, int]:
        vs = [v for v in self.videos if v.split == split]
        return sum(v.frames for v in vs), sum(v.skipped for v in vs), sum(v.empty for v in vs)

    def to_csv(self) -> str:
        """One row per video, then one ``overall`` row (and one per split for ``all``)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["video", "split", "frames", "skipped", "empty", *self.metrics])
        for v in self.videos:
            scores = (_fmt_csv(v.scores[m]) for m in self.metrics)
            w.writerow([v.name, v.split, v.frames, v.skipped, v.empty, *scores])
        if len(self.splits) > 1:
            for s, sc in self.splits.items():
                scores = (_fmt_csv(sc[m]) for m in self.metrics)
                w.writerow([f"overall:{s}", s, *self._split_counts(s), *scores])
        c = self.conventions
        w.writerow(
            [
                "overall",
                self.split,
                c["frames_scored"],
                c["frames_skipped"],
                c["frames_empty"],
                *(_fmt_csv(self.overall[m]) for m in self.metrics),
            ]
        )
        return buf.getvalue()

    def caption(self) -> str:
        c = self.conventions
        empty, scored = c["frames_empty"], c["empty_frames"] == "scored"
        if not empty:
            empties = ""
        elif scored:
            empties = (
                f", {empty} of them without fixations (SIM and KLD kept, CC, NSS and AUCs "
                "NaN, as the benchmark's loop; --skip-empty skips them)"
            )
        else:
            empties = f"; {empty} without fixations skipped (--score-empty scores them)"
        missing = c["frames_missing"]
        missing_text = f"; {missing} skipped (missing ground truth)" if missing else ""
        unmapped = c.get("frames_unmapped", 0)
        if unmapped:
            missing_text += (
                f"; {unmapped} not scored (the first frames of each video, which the "
                "published procedure never maps: --warmup reference)"
            )
        return (
            f"protocol {self.protocol}: {c['aggregation']}. sAUC negatives: "
            f"{PROTOCOLS[self.protocol]['sauc_short']}. Predictions: {c['predictions']} "
            f"({c['source']}; colour: first channel), resized as floats with MATLAB "
            f"imresize where sizes differ ({c['frames_resized']} frames). Seed {c['seed']}, "
            f"one random stream per video, frame and metric. {c['frames_scored']} frames scored"
            f"{empties}{missing_text}."
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
                n = self._split_counts(s)[0]
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


# --- writing results ---------------------------------------------------------------


def is_stdout(path: str | Path) -> bool:
    """``-``, or a path that is this process' standard output (``/dev/stdout``, ...)."""
    if str(path) == STDOUT:
        return True
    try:
        out = os.fstat(sys.stdout.fileno())
        st = os.stat(path)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False
    return (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino)


def write_output(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` (``-``: standard output).

    A regular file (or a new one) is written through a temporary file in its folder and
    renamed over it, so it is never half-written; a link to one has its target replaced
    and stays a link. Anything else that exists (a character device such as
    ``/dev/stdout``, a pipe, a socket) is opened and written through, never replaced.
    """
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path)
    try:
        st: os.stat_result | None = os.stat(path)  # follows links
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({os_reason(exc)})") from None
    try:
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{path}: is a folder, not a file")
        if st is not None and not stat.S_ISREG(st.st_mode):
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            return
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({os_reason(exc)})") from None
    target = Path(os.path.realpath(path))  # a link to a regular file: replace its target
    write_text_atomic(target, text, sync=False)


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


def frame_rng(seed: int, video: str, index: int, stream: str) -> np.random.Generator:
    """The random stream of one draw on one frame: a generator seeded by (seed, video
    name, 0-based frame index, stream name), e.g. ``stream="sauc"``. Each metric has its
    own, so its value depends only on the seed and its inputs."""
    key = [seed, zlib.crc32(video.encode()), index, zlib.crc32(stream.encode())]
    return np.random.default_rng(key)


def to_float(p: np.ndarray, protocol: str) -> np.ndarray:
    """A prediction as the protocol's loop holds it before the resize, (H, W) float64:
    integer images as their values (the DHF1K loop's ``double(imread(...))``) or on
    ``im2double``'s [0, 1] scale (the audio-visual scripts); floats as they are."""
    p = np.asarray(p)
    if p.dtype.kind in "ui" and protocol == "dhf1k":
        return p.astype(np.float64)
    return M.im2double(p)


def _two_d(pm: np.ndarray) -> np.ndarray:
    pm = np.asarray(pm)
    if pm.ndim == 3:  # (1, H, W) or (H, W, 1) from a source that kept an axis
        pm = pm[0] if pm.shape[0] == 1 else pm[..., 0]
    return pm


# --- scoring -----------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Run:
    """The settings of one evaluation."""

    protocol: str
    metrics: tuple[str, ...]
    seed: int
    skip_empty: bool
    warn: Callable[[str], None]


def _score_split(
    items: list[VideoItem],
    source: Source,
    run: _Run,
    progress: _Progress,
    counters: dict[str, int],
    unscored: list[str],
) -> list[VideoResult]:
    source.prepare([item for item in items if item.problem is None])
    progress.video("reading fixations", len(items))
    fixes = []  # pass 1: fixations only (flat indices: small), for the sAUC negatives
    for item in items:
        fixes.append(_read_fixations(item) if item.problem is None else [])
        progress.frame()
    # the DHF1K loop draws its 10 frames among all frames, empty ones included
    pool = [(v, i) for v, fr in enumerate(fixes) for i, fx in enumerate(fr) if fx.flat is not None]
    results = []
    for v, item in enumerate(items):
        progress.video(item.name, item.n_frames)
        if item.problem is not None:
            run.warn(f"{item.name}: {item.problem}; video not scored")
            unscored.append(item.name)
            counters["missing"] += item.n_frames
            counters["skipped"] += item.n_frames
            none = np.empty((0, len(run.metrics)))  # (0, n_metrics)
            scores = M.aggregate_frames(none, run.metrics)
            results.append(VideoResult(item.name, item.split, 0, item.n_frames, 0, scores, none))
        else:
            missing = item.missing()
            if missing:
                run.warn(
                    f"{item.name}: {len(missing)} of {item.n_frames} frames have no "
                    f"ground-truth files (the first: frame {missing[0] + 1}); they are skipped"
                )
            results.append(_score_video(item, v, fixes, pool, source, run, progress, counters))
        progress.video_done()
    return results


def _score_video(
    item: VideoItem,
    v: int,
    fixes: list[list[_Fix]],
    pool: list[tuple[int, int]],
    source: Source,
    run: _Run,
    progress: _Progress,
    counters: dict[str, int],
) -> VideoResult:
    """Pass 2 over one video: its predictions, frame by frame, against its ground truth."""
    metrics = run.metrics
    shapes = [fx.shape for fx in fixes[v] if fx.shape is not None]
    shape = shapes[0] if shapes else (1, 1)
    union = None
    if run.protocol == "av" and "sauc" in metrics and shapes:
        union = np.zeros(shape[0] * shape[1], dtype=bool)
        for fx in fixes[v]:
            if fx.flat is not None:
                union[_remap(fx.flat, fx.shape, shape)] = True
    rows, skipped, empty = [], 0, 0
    unmapped = getattr(source, "unmapped", 0)  # first frames the published procedure skips
    preds = source.maps(item, shape)
    try:
        seen = -1
        for index, pmap in preds:
            if index >= item.n_frames:
                break
            seen = index
            fx = fixes[v][index]
            progress.frame()
            if index < unmapped:
                skipped += 1
                counters["unmapped"] += 1
                continue
            if fx.flat is None or item.density_paths[index] is None:
                skipped += 1
                counters["missing"] += 1
                continue
            if fx.flat.size == 0:
                empty += 1
                if run.skip_empty:
                    skipped += 1
                    continue
            d = read_density(item.density_paths[index])
            if d.shape != fx.shape:
                raise InputError(
                    f"{item.name}: frame {index + 1}: density {d.shape} and fixation "
                    f"{fx.shape} maps differ in size"
                )
            fix = np.zeros(fx.shape[0] * fx.shape[1], dtype=bool)
            fix[fx.flat] = True
            other = None
            if "sauc" in metrics and fx.flat.size:
                other = _other(run, fixes, pool, union, v, index, fx, item.name)
            pm = to_float(_two_d(pmap), run.protocol)
            if pm.shape != fx.shape:
                counters["resized"] += 1

            def rng(m: str, _i: int = index) -> np.random.Generator:
                return frame_rng(run.seed, item.name, _i, m)

            rows.append(score_frame(pm, d, fix.reshape(fx.shape), other, metrics, rng))
    finally:
        close = getattr(preds, "close", None)
        if close:
            close()
    if seen + 1 < item.n_frames:
        raise InputError(f"{item.name}: {seen + 1} predicted maps for {item.n_frames} frames")
    arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(metrics))
    counters["scored"] += len(rows)
    counters["skipped"] += skipped
    counters["empty"] += empty
    scores = M.aggregate_frames(arr, metrics)  # the video's mean, NaNs skipped
    return VideoResult(item.name, item.split, len(rows), skipped, empty, scores, arr)


def _other(
    run: _Run,
    fixes: list[list[_Fix]],
    pool: list[tuple[int, int]],
    union: np.ndarray | None,
    v: int,
    index: int,
    fx: _Fix,
    name: str,
) -> np.ndarray:
    """The sAUC "other" fixations of one frame, (H, W) bool, per the protocol."""
    h, w = fx.shape
    if run.protocol == "av":
        other = union.copy() if union is not None else np.zeros(h * w, dtype=bool)
        other[fx.flat] = False
        return other.reshape(h, w)
    rng = frame_rng(run.seed, name, index, OTHERS_STREAM)
    k = min(DHF1K_OTHER_FRAMES, len(pool))
    other = np.zeros(h * w, dtype=bool)
    for j in rng.choice(len(pool), size=k, replace=False):
        ov, oi = pool[j]
        o = fixes[ov][oi]
        other[_remap_dhf1k(o.flat, o.shape, (h, w))] = True
    return other.reshape(h, w)


def _split_weights(template: str, splits: Sequence[str]) -> dict[str, str]:
    """Each split's checkpoint; when the first is a file, every one must be (checked
    before anything runs; registry names are left to the model's loader)."""
    names = {s: fill_split(template, s) for s in splits}
    first = Path(names[splits[0]]).expanduser()
    if first.is_file():
        missing = [n for n in names.values() if not Path(n).expanduser().is_file()]
        if missing:
            raise WeightsError(
                f"no checkpoint {', '.join(missing)} for --weights {template} "
                f"(splits {', '.join(splits)})"
            )
    return names


def _source_maker(
    splits: Sequence[str],
    *,
    predictions: str | Path | None,
    baseline: str | None,
    weights: str | Path | None,
    audio: bool,
    fps: float | None,
    predictor: Any,
    factory: Callable[..., Any],
    options: dict[str, Any],
    model_source: Callable[..., Source] | None = None,
) -> tuple[Callable[[str], Source], str | None]:
    """The source of each split (one shared, or one per split with ``{split}``) and how
    the conventions name it (None for a model per split: named once the first is built).
    Per-split predictions are all checked first; a per-split model is built when its
    split starts (one model in memory at a time). ``options`` go to ``factory`` (or to
    ``model_source``, which builds the model elsewhere, e.g. on a Ray cluster)."""
    if predictions is not None and per_split(predictions):
        disk = {s: DiskSource(fill_split(predictions, s)) for s in splits}
        return disk.__getitem__, f"predictions {predictions}"

    def model(w: str | Path | None, split: str | None) -> Source:
        if model_source is not None:
            return model_source(w, audio, fps, split, **options)
        return ModelSource(factory(w, audio, **options), audio=audio, fps=fps)

    if weights is not None and per_split(weights):
        names = _split_weights(str(weights), splits)

        def build(split: str) -> Source:
            return model(names[split], split)

        return build, None
    shared: Source
    if predictions is not None:
        shared = DiskSource(predictions)
    elif baseline:
        shared = CenterSource()
    else:
        shared = (
            ModelSource(predictor, audio=audio, fps=fps)
            if predictor is not None
            else model(weights, None)
        )

    def same(split: str) -> Source:
        return shared

    return same, shared.description


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
    skip_empty: bool | None = None,
    quiet: bool = True,
    predictor: Any = None,
    predictor_factory: Callable[..., Any] | None = None,
    on_warning: Callable[[str], None] | None = None,
    warmup: str | None = None,
    precision: str | None = None,
    model_source: Callable[..., Source] | None = None,
) -> EvalResult:
    """Score one dataset split (or ``all`` splits) and return an :class:`EvalResult`.

    Exactly one source: ``predictions`` (folder / .h5), ``baseline="center"``, or the
    model (``predictor`` if given, else ``predictor_factory(weights, audio)``, by
    default :func:`make_predictor`). A ``{split}`` in ``weights`` or ``predictions``
    scores each split with its own checkpoint / predictions (a single-split set then
    has the splits 1-3, all on its one test list).

    ``warmup`` / ``precision``: the model run's (``salcli predict``'s options; None: the
    predictor's defaults). Under ``warmup="reference"`` the first frames a family's
    published procedure never maps (STAViS: frames 1-8) are not scored (see the module
    docstring); they count in ``frames_unmapped`` and in each video's ``skipped``.

    ``skip_empty``: skip the frames without fixations (None: the protocol's published
    convention, no for ``dhf1k``, yes for ``av``). ``on_warning`` receives one line per
    video without ground truth (default: ``warnings.warn``); those videos are listed in
    ``EvalResult.unscored``.

    ``model_source(weights, audio, fps, split)``: the Source of the model's maps instead
    of a ``ModelSource`` (``split`` None: one model for every split);
    ``salcli.corpus.cluster.model_source`` runs the model on a Ray cluster.
    """
    mets = parse_metrics(metrics)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, not {seed!r}")
    if baseline is not None and baseline != "center":
        raise UsageError(f"--baseline must be 'center', not {baseline!r}")
    if baseline and predictions is not None:
        raise UsageError("--baseline and --predictions exclude each other")
    if (predictions is not None or baseline) and (weights is not None or audio):
        raise UsageError("--weights / --audio run the model; they do not apply to --predictions")
    if model_source is not None and (predictor is not None or predictions is not None or baseline):
        raise UsageError("--ray runs the model; it does not apply to --predictions / --baseline")
    if predictor is not None and per_split(weights):
        raise UsageError("a {split} placeholder in the weights needs a model built per split")
    options = _model_options(warmup, precision)
    if options and (predictions is not None or baseline):
        raise UsageError("--warmup / --precision run the model; they do not apply to --predictions")
    if options and predictor is not None:
        raise UsageError("warmup / precision are the given predictor's own")
    templated = per_split(weights) or per_split(predictions)
    ds = Dataset(dataset, root)
    splits = ds.splits(None if split is None else str(split), models_per_split=templated)
    items = {s: ds.videos(s) for s in splits}

    make, family = _source_maker(
        splits,
        predictions=predictions,
        baseline=baseline,
        weights=weights,
        audio=audio,
        fps=fps,
        predictor=predictor,
        factory=predictor_factory or make_predictor,
        options=options,
        model_source=model_source,
    )

    warned: list[str] = []

    def warn(msg: str) -> None:
        warned.append(msg)
        if on_warning is not None:
            on_warning(msg)
        else:
            warnings.warn(msg, stacklevel=3)

    run = _Run(
        ds.protocol,
        mets,
        seed,
        SKIP_EMPTY_DEFAULT[ds.protocol] if skip_empty is None else bool(skip_empty),
        warn,
    )
    counters = {"scored": 0, "skipped": 0, "empty": 0, "missing": 0, "resized": 0, "unmapped": 0}
    unscored: list[str] = []
    progress = _Progress(quiet, sum(len(v) for v in items.values()))
    videos: list[VideoResult] = []
    per_split_scores: dict[str, dict[str, float]] = {}
    kinds: set[str] = set()
    used: dict[str, str] = {}
    first: Source | None = None
    try:
        for s in splits:
            source = make(s)
            if first is None:
                first = source
            try:
                res = _score_split(items[s], source, run, progress, counters, unscored)
            finally:
                kinds |= source.kinds
                used[s] = source.description
                if templated:
                    source.close()
            videos.extend(res)
            if ds.protocol == "dhf1k":
                frames = [r.frame_scores for r in res]
                per_split_scores[s] = M.aggregate_frames(np.concatenate(frames, axis=0), mets)
            else:
                per_split_scores[s] = M.aggregate_videos([r.scores for r in res], mets)
    finally:
        progress.close()
        if not templated:
            make(splits[0]).close()
    if not counters["scored"] and unscored:
        bad = next(item for s in splits for item in items[s] if item.problem)
        raise DatasetError(
            f"{ds.name}: no video of split {', '.join(splits)} has ground truth to score "
            f"({bad.name}: {bad.problem})"
        )
    if family is None:  # a model per split: named as the first one built
        family = f"{getattr(first, 'label', model_family(audio))}, weights {weights}"
    warmup_used = getattr(first, "warmup", None)
    unmapped_n = getattr(first, "unmapped", 0)
    overall = (
        next(iter(per_split_scores.values()))
        if len(per_split_scores) == 1
        else M.aggregate_videos(list(per_split_scores.values()), mets)
    )
    proto = PROTOCOLS[ds.protocol]
    aggregation = proto["aggregation"]
    if len(splits) > 1:
        aggregation += f"; split 'all' = mean of the {len(splits)} splits"
        if len(ds.spec.splits) == 1:
            aggregation += f" ({ds.name}'s one test list scored with each split's model)"
    conventions: dict[str, Any] = {
        "aggregation": aggregation,
        "sauc_negatives": proto["sauc_negatives"],
        "reading": proto["reading"],
        "resizing": RESIZING,
        "frames_resized": counters["resized"],
        "predictions": " and ".join(sorted(kinds)) if kinds else "none",
        "source": family,
        "warmup": warmup_used,
        "frames_unmapped": counters["unmapped"],
        "unmapped_rule": _unmapped_rule(unmapped_n, getattr(first, "family_label", "")),
        "seed": seed,
        "random_streams": RANDOM_STREAMS,
        "metrics": list(mets),
        "auc_splits": M.AUC_SPLITS,
        "auc_step": M.AUC_STEP,
        "auc_judd_jitter": True,
        "empty_frames": "skipped" if run.skip_empty else "scored",
        "empty_frames_rule": EMPTY_TEXT[run.skip_empty],
        "frames_scored": counters["scored"],
        "frames_skipped": counters["skipped"],
        "frames_empty": counters["empty"],
        "frames_missing": counters["missing"],
        "videos_without_ground_truth": list(unscored),
    }
    if templated:
        conventions["per_split"] = used
    split_label = "all" if len(splits) > 1 else splits[0]
    return EvalResult(
        dataset=ds.name,
        split=split_label,
        protocol=ds.protocol,
        metrics=mets,
        conventions=conventions,
        overall=overall,
        videos=videos,
        splits=per_split_scores,
        unscored=unscored,
        warnings=warned,
    )
