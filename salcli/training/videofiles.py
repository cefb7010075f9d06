"""Training data of a set distributed as video files (``ntire26``, the NTIRE 2026 / MSU
set; its layout in ``salcli.evaluation.datasets``).

The videos of the split file's ``train`` list; every ``VAL_EVERY``-th of them (the 1st,
the 11th, ... in the list's order) is held out for validation, the others are trained on
(the set's test lists have no public ground truth to validate on during a challenge).
A window's frames are decoded from the video file itself, by seeking
(``salcli.media.decode.seek_frames``), one frame in memory at a time; its target is the
same frame of the ground-truth saliency video, read as the challenge's bench.py reads it
(the grey mean of the channels, min-max normalised: ``salcli.metrics.bench_normalize``);
the fixations of a validation frame are its ``fixations.json`` entry (entry k: frame k)
drawn as a boolean map of the saliency video's size. The sound, for AViNet, is the
video's own soundtrack, silence where it has none (many of the set's videos have sound,
not all).

Before any training starts every video is checked (``datasets.video_file_items``): a missing
video, saliency video or fixations file, or a saliency video whose frame count differs
from its video's, is one ``DatasetError`` line naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from salcli.errors import DatasetError, NoAudioError
from salcli.evaluation import videosets
from salcli.evaluation.datasets import (
    VIDEO_SPLIT_FILE,
    VIDEO_TRAIN_SPLIT,
    VideoFileItem,
    video_file_items,
)
from salcli.media.audio import AudioTrack
from salcli.media.decode import probe, seek_frames
from salcli.metrics import bench_normalize, bench_points

VAL_EVERY = 10  # every 10th video of the train list (the 1st, 11th, ...) is held out
CACHED_FIXATION_FILES = 16  # fixations.json files kept parsed per process

Named = list[tuple[str, "VideoFiles"]]  # (video name, its files)


@dataclass(frozen=True)
class VideoFiles:
    """One video of the set as training reads it."""

    video: Path  # the source video (frames and soundtrack)
    saliency: Path  # its ground-truth saliency video, frame for frame
    fixations: Path  # its fixations.json
    n_frames: int
    fps: float  # the video's frame rate
    start_time: float  # s, presentation time of the video's first frame
    size: tuple[int, int]  # (H, W) of the saliency video

    def rgb(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(index, (H, W, 3) uint8 RGB) for each distinct frame of ``indices``."""
        return seek_frames(self.video, indices)

    def density(self, index: int) -> np.ndarray:
        """Frame ``index`` of the saliency video, (H, W) float64 in [0, 1]."""
        (_, frame), *_ = seek_frames(self.saliency, [index], png=True)
        return bench_normalize(frame)

    def points(self, index: int) -> np.ndarray | None:
        """(N, 2) [row, column] fixations of frame ``index``; None when it has none."""
        entries = _fixations(self.fixations)
        if index >= len(entries) or entries[index] is None:
            return None
        try:
            return bench_points(entries[index], self.size)
        except ValueError as exc:
            raise DatasetError(f"{self.fixations}: frame {index + 1}: {exc}") from None

    def fixation_map(self, index: int) -> np.ndarray:
        """(H, W) bool: the fixated pixels of frame ``index`` (none: all False)."""
        fixated = np.zeros(self.size, dtype=bool)
        pts = self.points(index)
        if pts is not None:
            fixated[pts[:, 0], pts[:, 1]] = True
        return fixated

    def audio(self) -> AudioTrack:
        """The video's own soundtrack on its timeline; silence when it has none."""
        try:
            return AudioTrack.open(self.video, video_start=self.start_time)
        except NoAudioError:
            return AudioTrack.silence()


@lru_cache(maxsize=CACHED_FIXATION_FILES)
def _fixations(path: Path) -> list[videosets.Points]:
    return videosets.read_fixations_json(path)


def held_out(names: list[str]) -> tuple[list[str], list[str]]:
    """(training, validation) names of the train list (see the module docstring)."""
    val = names[::VAL_EVERY]
    chosen = set(val)
    return [n for n in names if n not in chosen], val


def _files(item: VideoFileItem) -> VideoFiles:
    if item.problem is not None:
        raise DatasetError(f"ntire26: {item.problem}")
    if not item.frames.is_file():
        raise DatasetError(f"ntire26: no video {item.frames}")
    meta, sal = probe(item.frames), probe(item.saliency)
    return VideoFiles(
        video=item.frames,
        saliency=item.saliency,
        fixations=item.fixations_file,
        n_frames=item.n_frames,
        fps=meta.fps,
        start_time=meta.start_time,
        size=(sal.height, sal.width),
    )


def training_videos(root: Path) -> tuple[Named, Named]:
    """([(name, files)] to train on, [(name, files)] to validate on), each checked."""
    items = {item.name: item for item in video_file_items(root, VIDEO_TRAIN_SPLIT)}
    train, val = held_out(list(items))
    if not train:
        raise DatasetError(
            f"ntire26: {root / VIDEO_SPLIT_FILE} lists {len(items)} training video(s); "
            f"at least 2 are needed (every {VAL_EVERY}th is held out for validation)"
        )
    return [(n, _files(items[n])) for n in train], [(n, _files(items[n])) for n in val]
