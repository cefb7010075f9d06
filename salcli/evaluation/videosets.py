"""The NTIRE 2026 / MSU video saliency set (``ntire26``), distributed as video files.

The layout, as the challenge distributes it (docs/evaluate.md draws it)::

    ROOT/TrainTestSplit.json                      {"train": [...], "public_test": [...],
                                                   "private_test": [...]}: video names
    ROOT/VideoInfo.json                           per-video facts (licence...); not read
    ROOT/Videos/<name>.mp4                        the videos, many with their soundtrack
    ROOT/SaliencyTest/Test/<name>.mp4             ground-truth saliency as videos
    ROOT/SaliencyTrain/Train/<name>.mp4           (the inner folder may be left out)
    ROOT/FixationsTest/Test/<name>/fixations.json per-frame fixation points
    ROOT/FixationsTrain/Train/<name>/fixations.json

``public_test`` and ``private_test`` read ``SaliencyTest`` / ``FixationsTest``, ``train``
the ``*Train`` folders. ``fixations.json`` is a list with one entry per frame, in frame
order: a list of ``[row, column]`` integer points (bench.py indexes ``map[f[:, 0],
f[:, 1]]``), one per observer's fixation. The ``fixations_maps/`` PNGs beside it are lossy
and not read.

A video whose saliency video or fixations file is missing, or whose saliency video has
another frame count than its source video, is listed with ``VideoItem.problem`` saying so
(the scoring warns and does not score it); a missing split file, or a split it does not
list, is a ``DatasetError``. The source video is needed only to run a model on it (and to
check the frame counts when it is there): predictions on disk are scored without
``Videos/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from salcli.errors import DatasetError, InputError
from salcli.evaluation.datasets import VideoItem

SPLIT_FILE = "TrainTestSplit.json"
VIDEOS = "Videos"
VIDEO_SUFFIX = ".mp4"
FIXATIONS_FILE = "fixations.json"
TEST_SPLITS = ("public_test", "private_test")
TRAIN_SPLIT = "train"
SPLITS = (*TEST_SPLITS, TRAIN_SPLIT)  # the lists of the split file
GROUND_TRUTH = {  # split -> (saliency folder, fixations folder, their inner folder)
    "public_test": ("SaliencyTest", "FixationsTest", "Test"),
    "private_test": ("SaliencyTest", "FixationsTest", "Test"),
    "train": ("SaliencyTrain", "FixationsTrain", "Train"),
}
TOP_LEVEL = (SPLIT_FILE, VIDEOS, "SaliencyTest", "FixationsTest", "SaliencyTrain", "FixationsTrain")

Points = np.ndarray | None  # (N, 2) int64 [row, column] points of one frame; None: none


@dataclass
class VideoFileItem(VideoItem):
    """A video of a set distributed as video files: ``frames`` is the source video,
    ``saliency`` its ground-truth saliency video, ``fixations_file`` its points;
    ``n_frames`` the saliency video's frame count (the frames to score)."""

    saliency: Path | None = None
    fixations_file: Path | None = None

    @property
    def video_file(self) -> bool:
        """``frames`` is the source video, its soundtrack its own (there is no wav)."""
        return True


def looks_like(path: Path) -> bool:
    """``path`` holds part of the layout (its split file or one of its folders)."""
    return path.is_dir() and any((path / name).exists() for name in TOP_LEVEL)


def _inner(folder: Path, inner: str) -> Path:
    """``folder/inner`` when it exists (the archives' layout), else ``folder``."""
    return folder / inner if (folder / inner).is_dir() else folder


def split_names(root: Path, split: str) -> list[str]:
    """The video names the split file lists for ``split``, as strings, in its order."""
    path = root / SPLIT_FILE
    if not path.is_file():
        raise DatasetError(f"ntire26: no split file {path}")
    try:
        lists = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable JSON split file ({exc})") from None
    if not isinstance(lists, dict) or not isinstance(lists.get(split), list):
        raise DatasetError(f"{path}: no list {split!r} (expected keys {', '.join(SPLITS)})")
    return [str(name) for name in lists[split]]


def ground_truth_folders(root: Path, split: str) -> tuple[Path, Path]:
    """(saliency videos folder, fixations folder) of ``split``."""
    saliency, fixations, inner = GROUND_TRUTH[split]
    return _inner(root / saliency, inner), _inner(root / fixations, inner)


def _problem(video: Path, saliency: Path, fixations: Path) -> tuple[str | None, int]:
    """(what keeps the video from being scored or None, the saliency video's frames)."""
    from salcli.media.decode import frame_count

    if not saliency.is_file():
        return f"no saliency video {saliency}", 0
    if not fixations.is_file():
        return f"no fixations file {fixations}", 0
    try:
        n = frame_count(saliency)
        if video.is_file():
            m = frame_count(video)
            if m != n:
                return f"saliency video {saliency} has {n} frames, its source {video} {m}", n
    except InputError as exc:
        return str(exc), 0
    return None, n


def videos(root: Path, split: str) -> list[VideoFileItem]:
    """The videos of ``split`` (a list of the split file), each checked as the module
    docstring says."""
    names = split_names(root, split)
    if not names:
        raise DatasetError(f"ntire26: {root / SPLIT_FILE} lists no video for {split!r}")
    sal_dir, fix_dir = ground_truth_folders(root, split)
    items = []
    for name in names:
        video = root / VIDEOS / f"{name}{VIDEO_SUFFIX}"
        saliency = sal_dir / f"{name}{VIDEO_SUFFIX}"
        fixations = fix_dir / name / FIXATIONS_FILE
        problem, n = _problem(video, saliency, fixations)
        items.append(
            VideoFileItem(
                name=name,
                frames=video,
                fps=None,  # the video's own
                wav=None,  # the video's own soundtrack
                n_frames=n,
                split=split,
                problem=problem,
                saliency=saliency,
                fixations_file=fixations,
            )
        )
    return items


def read_fixations_json(path: Path) -> list[Points]:
    """The points of each frame of a ``fixations.json``: (N, 2) int64 arrays, None for a
    frame without any. ``DatasetError`` naming the file (and the frame) when it is not a
    list of lists of ``[row, column]`` integer pairs."""
    try:
        frames = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: malformed fixations JSON ({exc})") from None
    if not isinstance(frames, list):
        raise DatasetError(f"{path}: malformed fixations JSON (a list per frame expected)")
    out: list[Points] = []
    for k, points in enumerate(frames):
        if points in ([], None):
            out.append(None)
            continue
        arr = np.asarray(points) if isinstance(points, list) else np.empty(0)
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind not in "iu":
            raise DatasetError(
                f"{path}: malformed fixations JSON at frame {k + 1} "
                "(a list of [row, column] integer pairs expected)"
            )
        out.append(arr.astype(np.int64))
    return out


def bench_fixation_order(n_frames: int) -> np.ndarray:
    """(n_frames,) the entry of ``fixations.json`` that bench.py pairs with each frame.

    bench.py extracts frames to ``%03d.png`` files and pairs the sorted file names with
    the JSON's entries in order: names sort as strings, so from frame 1000 on (four
    digits) the order is no longer the frames' ("100.png" < "1000.png" < "101.png"). Up to
    999 frames entry k goes with frame k."""
    names = [f"{k:03d}.png" for k in range(1, n_frames + 1)]
    order = sorted(range(n_frames), key=names.__getitem__)  # frame of each sorted position
    entry = np.empty(n_frames, dtype=np.int64)
    entry[order] = np.arange(n_frames)
    return entry
