"""How much of what people look at a reframe keeps: on a dataset ``evaluate`` reads
(``salcli.evaluation.datasets``), the share of each frame's human fixations inside the
window, for three windows of the same size:

- ``salcli``: the reframed path (the track of the video's maps, from the model or from
  ``maps_from``);
- ``centre``: the centre crop, what a reframe without saliency keeps;
- ``best``: the window that holds the most fixations in each frame on its own (no
  smoothness, no knowledge a model could have): the upper bound.

A frame's share is its fixated pixels inside the window over all its fixated pixels;
frames without fixations are left out. A video's figure is the mean over its frames, the
overall figure the mean over videos. A video that cannot be reframed (unreadable frames,
maps of another video, no sound with ``--audio``) fails alone: it is listed with its
error line in ``KeptReport.failed`` and left out of the figures.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from salcli.errors import SalcliError
from salcli.evaluation.datasets import Dataset, VideoItem
from salcli.reframing.geometry import AXIS_X
from salcli.reframing.run import Reframer
from salcli.reframing.track import CropTrack

WINDOWS = ("salcli", "centre", "best")  # the windows compared, in the report's order


@dataclass
class VideoKept:
    """One video's shares of fixations inside the window (mean over scored frames)."""

    video: str
    split: str
    frames: int  # frames with fixations
    salcli: float
    centre: float
    best: float


@dataclass
class KeptReport:
    dataset: str
    aspect: float
    videos: list[VideoKept]
    failed: list[dict[str, str]] = field(default_factory=list)  # {"video", "error"}

    def overall(self) -> dict[str, float]:
        scored = [v for v in self.videos if v.frames]
        return {w: float(np.mean([getattr(v, w) for v in scored])) if scored else float("nan")
                for w in WINDOWS}  # fmt: skip

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "aspect": self.aspect,
            "measure": "share of fixations inside the window",
            "overall": self.overall(),
            "videos": [asdict(v) for v in self.videos],
            "failed": self.failed,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["video", "split", "frames", *WINDOWS])
        for v in self.videos:
            out.writerow([v.video, v.split, v.frames, *(f"{getattr(v, w):.6f}" for w in WINDOWS)])
        overall = self.overall()
        total = sum(v.frames for v in self.videos)
        out.writerow(["overall", "", total, *(f"{overall[w]:.6f}" for w in WINDOWS)])
        return buf.getvalue()

    def table(self) -> str:
        rows = [(v.video, str(v.frames), *(f"{100 * getattr(v, w):.1f}" for w in WINDOWS))
                for v in self.videos]  # fmt: skip
        overall = self.overall()
        total = str(sum(v.frames for v in self.videos))
        rows.append(("overall", total, *(f"{100 * overall[w]:.1f}" for w in WINDOWS)))
        head = ("video", "frames", *(f"{w} %" for w in WINDOWS))
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                           for i, c in enumerate(r)) for r in [head, *rows]]  # fmt: skip
        return "\n".join(lines) + "\n"


def fixation_shares(
    track: CropTrack, fixations: np.ndarray, index: int
) -> tuple[float, ...] | None:
    """(salcli, centre, best) shares of frame ``index``'s fixations (H', W') bool inside
    the window; None without fixations. Windows are scaled to the fixation map's size."""
    lay = track.layout
    total = int(fixations.sum())
    if total == 0:
        return None
    fh, fw = fixations.shape
    sx, sy = fw / lay.src_w, fh / lay.src_h
    line = fixations.sum(axis=0 if lay.axis == AXIS_X else 1).astype(np.float64)
    cum = np.concatenate([[0.0], np.cumsum(line)])
    scale = sx if lay.axis == AXIS_X else sy
    length = lay.length * scale

    def inside(position: float) -> float:
        a = int(round(position * scale))
        b = min(len(line), int(round(position * scale + length)))
        return (cum[b] - cum[a]) / total

    span = min(len(line), int(round(length)))  # the window, in fixation-map pixels
    best = float((cum[span:] - cum[: len(cum) - span]).max()) / total  # every position
    return inside(float(track.pixel_positions()[index])), inside(lay.centre), best


def score_video(track: CropTrack, item: VideoItem) -> VideoKept:
    shares = []
    for index, fix in item.iter_fixations():
        if fix is None or index >= track.frames:
            continue
        s = fixation_shares(track, fix, index)
        if s is not None:
            shares.append(s)
    mean = np.mean(shares, axis=0) if shares else np.full(3, np.nan)
    return VideoKept(item.name, item.split, len(shares), *(float(v) for v in mean))


def evaluate_reframe(
    reframer: Reframer,
    dataset: str,
    *,
    root: str | Path | None = None,
    split: str | None = None,
    on_video: Callable[[str], None] | None = None,
    on_failure: Callable[[str, SalcliError], None] | None = None,
) -> KeptReport:
    """The report of ``reframer``'s paths on ``dataset`` (see the module docstring). Maps
    of video ``<name>`` are read from ``maps_from/<name>.h5`` when the options name a
    folder of stacks, else the model is run on the video's frames. A video that fails is
    reported to ``on_failure`` (name, error) and listed in the report's ``failed``; the
    others are still scored."""
    ds = Dataset(dataset, root)
    videos: list[VideoKept] = []
    failed: list[dict[str, str]] = []
    for s in ds.splits(split):
        for item in ds.videos(s):
            if item.problem:
                continue
            if on_video is not None:
                on_video(item.name)
            maps = None
            if reframer.options.maps_from is not None:
                maps = Path(reframer.options.maps_from) / f"{item.name}.h5"
            wav = item.wav if reframer.predict_options.audio else None
            try:
                track = reframer.track(item.frames, maps_path=maps, fps=item.fps, audio_path=wav)
            except SalcliError as err:
                failed.append({"video": item.name, "error": str(err)})
                if on_failure is not None:
                    on_failure(item.name, err)
                continue
            videos.append(score_video(track, item))
    return KeptReport(ds.name, reframer.options.aspect, videos, failed)
