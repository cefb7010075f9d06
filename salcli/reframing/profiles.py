"""A frame's saliency as the path needs it: its mass along the window's axis.

The window spans the whole source across its axis, so how much saliency it holds
depends only on the map summed across that axis: a profile of ``span`` values. It is
kept in at most ``PROFILE_BINS`` bins (float32, summing to 1), so a shot costs
``4 x PROFILE_BINS`` bytes a frame whatever the frame size, and the mass inside any
window is read from the profile's cumulative sum, interpolated linearly inside a bin.
"""

from __future__ import annotations

import numpy as np

from salcli.reframing.geometry import AXIS_X

PROFILE_BINS = 256  # bins of a profile, at most (one per pixel for smaller sources)
CANDIDATES = 257  # window positions compared for a shot's still window and targets
CHUNK_FRAMES = 4096  # frames whose window masses are computed at once (memory)


def bin_edges(span: int) -> np.ndarray:
    """(B + 1,) pixel edges of the bins of a profile along ``span`` pixels."""
    bins = min(span, PROFILE_BINS)
    return np.floor(np.linspace(0, span, bins + 1)).astype(np.int64)


def profile(saliency: np.ndarray, axis: int, edges: np.ndarray) -> tuple[np.ndarray, float]:
    """(B,) float32 share of the map's mass in each bin, and the map's total mass.
    A map without mass gives a uniform profile (every window holds its share)."""
    sal = np.asarray(saliency, dtype=np.float32)  # (H, W)
    across = 0 if axis == AXIS_X else 1
    line = sal.sum(axis=across)  # (span,) one pass, no copy: predict's maps are in [0, 1]
    if not np.isfinite(line).all() or sal.min() < 0.0:  # another map: cleaned first
        line = np.clip(np.nan_to_num(sal, nan=0.0, posinf=0.0), 0.0, None).sum(axis=across)
    binned = np.add.reduceat(line.astype(np.float64), edges[:-1])  # (B,)
    total = float(binned.sum())
    if total <= 0.0:
        widths = np.diff(edges).astype(np.float64)
        return (widths / widths.sum()).astype(np.float32), 0.0
    return (binned / total).astype(np.float32), total


def cumulative(profiles: np.ndarray) -> np.ndarray:
    """(N, B) profiles -> (N, B + 1) cumulative mass from the axis's start (float64)."""
    out = np.zeros((profiles.shape[0], profiles.shape[1] + 1), dtype=np.float64)
    np.cumsum(profiles, axis=1, out=out[:, 1:])
    return out


def _interp(
    cum: np.ndarray, edges: np.ndarray, points: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """The cumulative mass of ``cum`` (N, B + 1) at pixel ``points``: (K,) points shared
    by every row -> (N, K); with ``rows`` (N,), one point per row -> (N,)."""
    points = np.clip(np.asarray(points, dtype=np.float64), edges[0], edges[-1])
    k = np.clip(np.searchsorted(edges, points, side="right") - 1, 0, len(edges) - 2)
    frac = (points - edges[k]) / np.maximum((edges[k + 1] - edges[k]).astype(np.float64), 1.0)
    lo, hi = (cum[:, k], cum[:, k + 1]) if rows is None else (cum[rows, k], cum[rows, k + 1])
    return lo + (hi - lo) * frac


def masses_on_grid(
    profiles: np.ndarray, edges: np.ndarray, grid: np.ndarray, length: int
) -> np.ndarray:
    """(N, K): the share of each frame's saliency inside the window at each position of
    ``grid`` (K,), computed ``CHUNK_FRAMES`` frames at a time."""
    out = np.empty((profiles.shape[0], grid.shape[0]), dtype=np.float32)
    for start in range(0, profiles.shape[0], CHUNK_FRAMES):
        cum = cumulative(profiles[start : start + CHUNK_FRAMES])
        stop = start + cum.shape[0]
        out[start:stop] = _interp(cum, edges, grid + length) - _interp(cum, edges, grid)
    return out


def masses_at(
    profiles: np.ndarray, edges: np.ndarray, positions: np.ndarray, length: int
) -> np.ndarray:
    """(N,): the share of frame t's saliency inside the window at ``positions[t]``."""
    out = np.empty(profiles.shape[0], dtype=np.float64)
    for start in range(0, profiles.shape[0], CHUNK_FRAMES):
        cum = cumulative(profiles[start : start + CHUNK_FRAMES])
        stop = start + cum.shape[0]
        pos = np.asarray(positions[start:stop], dtype=np.float64)
        rows = np.arange(cum.shape[0])
        out[start:stop] = _interp(cum, edges, pos + length, rows) - _interp(cum, edges, pos, rows)
    return out


def candidate_grid(travel: int) -> np.ndarray:
    """(K,) window positions, in pixels, from 0 to ``travel`` (K <= CANDIDATES)."""
    return np.linspace(0.0, float(travel), min(travel + 1, CANDIDATES))
