"""The first pass over a video: maps, shots and profiles, then each shot's path.

Per frame only its saliency profile (``salcli.reframing.profiles``: at most 1 KiB) and its
time are kept, never the frame or its map; the paths are solved shot by shot once the
video has been read (``build_track``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from salcli.errors import InputError
from salcli.media.decode import Frame
from salcli.reframing.geometry import Layout, layout
from salcli.reframing.maps import MapCache
from salcli.reframing.options import ReframeOptions
from salcli.reframing.path import PathSettings, ShotPath, solve_shot
from salcli.reframing.profiles import bin_edges, candidate_grid, masses_at, masses_on_grid, profile
from salcli.reframing.shots import ShotDetector
from salcli.reframing.track import CropTrack, Shot

Progress = Callable[[int, int | None], None]


def read_video(
    pairs: Iterator[tuple[Frame, np.ndarray]],
    fps: float,
    opts: ReframeOptions,
    *,
    cache: MapCache | None = None,
    total: int | None = None,
    progress: Progress | None = None,
) -> tuple[Layout, np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Pass 1: (layout, edges, profiles (N, B) float32, times (N,), shots) from the
    (frame, map) ``pairs``; ``cache`` keeps the maps for the debug render."""
    detector = ShotDetector(fps, opts.shot_threshold, opts.min_shot)
    lay: Layout | None = None
    edges = np.zeros(0, dtype=np.int64)
    rows: list[np.ndarray] = []
    times: list[float] = []
    for frame, saliency in pairs:
        if lay is None:
            lay = layout(frame.width, frame.height, opts)
            edges = bin_edges(lay.span)
        if saliency.shape != (frame.height, frame.width):
            raise InputError(
                f"frame {frame.index}: map of {saliency.shape[1]}x{saliency.shape[0]}, the "
                f"frame is {frame.width}x{frame.height}"
            )
        detector.add(frame.rgb)
        rows.append(profile(saliency, lay.axis, edges)[0])
        times.append(frame.time)
        if cache is not None:
            cache.add(frame.index, saliency)
        frame.rgb = None
        if progress is not None:
            progress(len(times), total)
    if lay is None:
        raise InputError("no frames")
    return lay, edges, np.stack(rows), np.asarray(times, dtype=np.float64), detector.shots()


def build_track(
    source: str,
    fps: float,
    lay: Layout,
    edges: np.ndarray,
    profiles: np.ndarray,
    times: np.ndarray,
    shots: list[tuple[int, int]],
    opts: ReframeOptions,
) -> CropTrack:
    """Each shot's path (``salcli.reframing.path``), joined into the video's track."""
    n = profiles.shape[0]
    positions = np.empty(n, dtype=np.float64)
    grid = candidate_grid(lay.travel)
    ps = PathSettings.of(lay.travel, lay.length, lay.span, fps, opts.max_speed, opts.max_accel)
    decided: list[tuple[int, int, ShotPath]] = []
    for start, stop in shots:
        masses = masses_on_grid(profiles[start:stop], edges, grid, lay.length)
        path = solve_shot(masses, grid, ps, opts.mode, opts.still_threshold)
        positions[start:stop] = path.positions
        decided.append((start, stop, path))
    rounded = np.clip(np.rint(positions), 0, lay.travel)
    kept = masses_at(profiles, edges, rounded, lay.length)
    shot_list = [
        Shot(
            index=i,
            start=start,
            stop=stop,
            decision="pad" if lay.pad else path.decision,
            kept=float(kept[start:stop].mean()),
            still_share=path.still_share,
            best_share=path.best_share,
        )
        for i, (start, stop, path) in enumerate(decided)
    ]
    return CropTrack(source, fps, lay, times, positions, kept, shot_list, opts.aspect)
