"""The results of an evaluation (``EvalResult``) and the documents written from them.

The JSON document (``EvalResult.to_json``; stable; NaN written as null)::

    {
      "dataset": "diem",            # salcli's dataset name
      "split": "1",                 # "1" | "2" | "3" | "all" | a split folder ("val")
      "protocol": "av",             # "av" | "dhf1k" (salcli.evaluation.protocols)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salcli.errors import OutputError, os_reason
from salcli.files import write_text_atomic

STDOUT = "-"  # the output name of standard output


@dataclass
class VideoScores:
    """The scores of one video of one split."""

    name: str
    split: str
    frames: int  # frames scored
    skipped: int  # frames not scored: missing ground truth (and empty ones when skipped)
    empty: int  # frames whose fixation map has no fixation (scored or skipped)
    scores: dict[str, float]  # per-video means (NaNs skipped)
    frame_scores: np.ndarray = field(repr=False)  # (frames, n_metrics) per-frame scores


@dataclass
class EvalResult:
    """An evaluation's scores and the conventions they were computed under."""

    dataset: str
    split: str
    protocol: str
    metrics: tuple[str, ...]
    conventions: dict[str, Any]
    overall: dict[str, float]
    videos: list[VideoScores]
    splits: dict[str, dict[str, float]] = field(default_factory=dict)
    unscored: list[str] = field(default_factory=list)  # videos without any ground truth
    warnings: list[str] = field(default_factory=list)  # what was reported to on_warning

    def video_key(self, v: VideoScores) -> str:
        """The video's key in the documents: its name, ``<name>@<split>`` when several
        scored splits list it."""
        dup = sum(1 for o in self.videos if o.name == v.name) > 1
        return f"{v.name}@{v.split}" if dup else v.name

    def split_counts(self, split: str) -> tuple[int, int, int]:
        """Frames scored, skipped and empty over the videos of ``split``."""
        vs = [v for v in self.videos if v.split == split]
        return sum(v.frames for v in vs), sum(v.skipped for v in vs), sum(v.empty for v in vs)

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
                w.writerow([f"overall:{s}", s, *self.split_counts(s), *scores])
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


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


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
