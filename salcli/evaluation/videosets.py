"""The fixations of the NTIRE 2026 / MSU set (``ntire26``) and the order its bench.py
pairs them with the frames. The set's layout (videos, saliency videos, split file) is
read by ``salcli.evaluation.datasets`` (``video_file_items``; docs/evaluate.md draws it).

``fixations.json`` is a list with one entry per frame, in frame order: a list of
``[row, column]`` integer points (bench.py indexes ``map[f[:, 0], f[:, 1]]``), one per
observer's fixation. The ``fixations_maps/`` PNGs beside it are lossy and not read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from salcli.errors import DatasetError

Points = np.ndarray | None  # (N, 2) int64 [row, column] points of one frame; None: none


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
