"""The camera path of one shot: still, or solved over the whole shot.

A shot's saliency is given as the share of each frame's saliency inside the window at
each of K candidate positions (``masses``, (n, K)). Then:

- **still** (``mode`` still, or auto when it holds): the one position that keeps the
  most saliency over the shot. In auto mode a shot is still when that window keeps at
  least ``still_threshold`` of what the per-frame best window keeps (AutoFlip's
  "stationary" decision, with the comparison made on saliency rather than on boxes).
- **track**: in each frame the windows that keep nearly the most saliency (within
  ``NEAR_BEST`` of the frame's contrast of the best) form a target range [lo_t, hi_t];
  the path is the solution of one linear programme over the shot (the L1-optimal camera
  path of Grundmann, Kwatra and Essa, "Auto-directed video stabilization with robust L1
  optimal camera paths", CVPR 2011, with the target range taking the place of the
  stabilised frame)::

      minimise  c0 sum_t w_t e_t + c1 sum |D1 x| + c2 sum |D2 x| + c3 sum |D3 x|
      where     e_t >= lo_t - x_t,  e_t >= x_t - hi_t,  e_t >= 0,  0 <= x_t <= travel,
                |D1 x| <= v_max,  |D2 x| <= a_max

  ``D1``, ``D2``, ``D3``: the first, second and third differences (pixels per frame, per
  frame², per frame³); ``w_t`` how much the choice matters in frame t (the best window's
  share less the worst's: 0 on a uniform map); ``c0`` (``FOLLOW_COST``) is large beside
  the motion costs, so the window leaves the range only where the bounds make it. Inside
  its range the window costs nothing, so the camera rests while the saliency moves within
  the window (an object smaller than the window may wander in it; a broad blob gives a
  broad range): the range is the dead zone, sized by the map itself. L1 costs give paths
  made of holds, constant-speed pans and eased transitions: a person's camera; no
  frame-to-frame wobble (a static scene gives an exactly constant path). The speed and
  acceleration bounds are constraints, met by the solution (HiGHS, scipy's deterministic
  LP solver). Shots longer than ``MAX_LP_FRAMES`` are solved on every k-th frame with the
  bounds scaled so that the linear interpolation between them keeps them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from salcli.errors import SalcliError

HOLD_COST_S = 0.1  # c1, seconds: a target displacement shorter than this is not followed
EASE_COST_S = 0.1  # c2, seconds (per unit of acceleration)
SMOOTH_COST_S = 0.5  # c3, seconds (per unit of jerk): eased starts and stops
NEAR_BEST = 0.02  # of a frame's contrast: windows keeping this close to the best are targets
MAX_LP_FRAMES = 2000  # frames solved at once; longer shots are solved on every k-th
FOLLOW_COST = 20.0  # per pixel outside the target range, a frame, times its weight
CONTRAST_FLOOR = 1e-3  # a frame whose best and worst windows differ less is uninformative
PLATEAU = 1e-4  # windows within this share of the best are equally good


@dataclass(frozen=True)
class PathSettings:
    """The path's bounds in pixels and frames (``PathSettings.of`` converts the options)."""

    travel: float  # positions go from 0 to this
    length: int  # the window's length along the axis
    v_max: float  # pixels per frame
    a_max: float  # pixels per frame per frame
    fps: float

    @classmethod
    def of(cls, travel: int, length: int, span: int, fps: float, max_speed, max_accel):
        """From speeds in source lengths per second (``span`` pixels)."""
        return cls(
            travel=float(travel),
            length=int(length),
            v_max=max_speed * span / fps,
            a_max=max_accel * span / fps**2,
            fps=float(fps),
        )


@dataclass(frozen=True)
class ShotPath:
    """One shot's decision and path."""

    decision: str  # "still" | "track"
    positions: np.ndarray  # (n,) float64 window positions, pixels
    still_share: float  # mean share of saliency the best still window keeps
    best_share: float  # mean share the per-frame best window keeps


def _plateau_middle(values: np.ndarray, grid: np.ndarray) -> float:
    """The position in the middle of the best values (a uniform map: the centre)."""
    best = np.flatnonzero(values >= values.max() - PLATEAU)
    return float(grid[best[len(best) // 2]])


def target_ranges(
    masses: np.ndarray, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,) lo, (n,) hi: the run of positions around each frame's best window that keep
    nearly its saliency (``NEAR_BEST``); (n,) weights: the best share less the worst (0
    below ``CONTRAST_FLOOR``)."""
    top, bottom = masses.max(axis=1), masses.min(axis=1)
    w = (top - bottom).astype(np.float64)
    w[w < CONTRAST_FLOOR] = 0.0
    near = masses >= (top - NEAR_BEST * (top - bottom) - PLATEAU)[:, None]  # (n, K)
    lo, hi = np.empty(len(masses)), np.empty(len(masses))
    for t, (row, ok) in enumerate(zip(masses, near, strict=True)):
        best = np.flatnonzero(row >= row.max() - PLATEAU)
        b = best[len(best) // 2]
        left = np.flatnonzero(~ok[:b])  # the run of near-best positions holding b
        right = np.flatnonzero(~ok[b:])
        lo[t] = grid[left[-1] + 1 if left.size else 0]
        hi[t] = grid[b + right[0] - 1 if right.size else len(grid) - 1]
    return lo, hi, w


def solve_shot(masses: np.ndarray, grid: np.ndarray, ps: PathSettings, mode: str,
               still_threshold: float) -> ShotPath:  # fmt: skip
    """The path of one shot (see the module docstring); ``masses`` (n, K) on ``grid``."""
    mean = masses.mean(axis=0, dtype=np.float64)  # (K,)
    still_at = _plateau_middle(mean, grid)
    still_share = float(np.interp(still_at, grid, mean)) if grid.size > 1 else float(mean[0])
    best_share = float(masses.max(axis=1).mean(dtype=np.float64))
    n = masses.shape[0]
    still = (
        mode == "still"
        or ps.travel <= 0
        or (mode == "auto" and still_share >= still_threshold * best_share)
    )
    if still:
        return ShotPath("still", np.full(n, still_at), still_share, best_share)
    lo, hi, w = target_ranges(masses, grid)
    if not w.any():  # nothing to follow: the best still window
        return ShotPath("still", np.full(n, still_at), still_share, best_share)
    return ShotPath("track", smooth_path(lo, hi, w, ps), still_share, best_share)


def smooth_path(lo: np.ndarray, hi: np.ndarray, w: np.ndarray, ps: PathSettings) -> np.ndarray:
    """The L1-optimal path keeping within the target ranges [``lo``, ``hi``] (n,) where it
    can, each frame weighted by ``w`` (n,)."""
    n = lo.shape[0]
    if n == 1:
        return np.clip(np.array([(lo[0] + hi[0]) / 2]), 0.0, ps.travel)
    step = max(1, math.ceil((n - 1) / (MAX_LP_FRAMES - 1)))
    if step == 1:
        return _solve(lo, hi, w, ps, 1)
    keys = math.ceil((n - 1) / step) + 1  # key frames 0, step, 2 step... past the end
    padded = keys * step
    wk = np.concatenate([w, np.zeros(padded - n)]).reshape(keys, step)
    weight = wk.sum(axis=1)

    def merged(v: np.ndarray) -> np.ndarray:  # the weighted mean of each key frame's block
        vk = np.concatenate([v, np.full(padded - n, v[-1])]).reshape(keys, step)
        return np.where(weight > 0, (vk * wk).sum(axis=1) / np.maximum(weight, 1e-12), vk[:, 0])

    xk = _solve(merged(lo), merged(hi), weight, ps, step)
    path = np.interp(np.arange(n, dtype=np.float64), np.arange(keys) * float(step), xk)
    return np.clip(path, 0.0, ps.travel)


def _diff(n: int, order: int) -> sparse.csr_matrix:
    """(n - order, n) difference operator of ``order``."""
    d = sparse.identity(n, format="csr")
    for _ in range(order):
        d = d[1:] - d[:-1]
    return d.tocsr()


def _solve(
    lo: np.ndarray, hi: np.ndarray, w: np.ndarray, ps: PathSettings, step: int
) -> np.ndarray:
    """The LP on ``n`` key frames ``step`` frames apart (1: every frame). Variables, in
    order: x (n), e (n), s1 (n-1), s2 (n-2), s3 (n-3), the s_k bounding |D_k x|."""
    n = lo.shape[0]
    fps = ps.fps / step  # key frames per second
    costs = [HOLD_COST_S * fps, EASE_COST_S * fps, SMOOTH_COST_S * fps]
    # bounds per key-frame difference that keep the per-frame speed and acceleration
    # of the interpolated path within v_max and a_max (module docstring)
    limits = [ps.v_max * step, ps.a_max * step, None]
    diffs = [_diff(n, k) for k in (1, 2, 3) if n > k]
    sizes = [n, n] + [d.shape[0] for d in diffs]
    total = sum(sizes)
    offsets = np.cumsum([0, *sizes])
    c = np.zeros(total)
    c[offsets[1] : offsets[2]] = FOLLOW_COST * w
    for k in range(len(diffs)):
        c[offsets[2 + k] : offsets[3 + k]] = costs[k]
    eye = sparse.identity(n, format="csr")
    blocks = [  # rows: x - e <= hi; -x - e <= -lo; +-D x - s <= 0
        _row(eye, eye * -1.0, 1, offsets, total),
        _row(eye * -1.0, eye * -1.0, 1, offsets, total),
    ]
    rhs = [hi, -lo]
    for k, d in enumerate(diffs):
        minus = sparse.identity(d.shape[0], format="csr") * -1.0
        blocks += [
            _row(d, minus, 2 + k, offsets, total),
            _row(d * -1.0, minus, 2 + k, offsets, total),
        ]
        rhs += [np.zeros(d.shape[0])] * 2
    bounds = [(0.0, ps.travel)] * n + [(0.0, None)] * n
    for k, d in enumerate(diffs):
        bounds += [(0.0, limits[k])] * d.shape[0]
    result = linprog(
        c,
        A_ub=sparse.vstack(blocks, format="csr"),
        b_ub=np.concatenate(rhs),
        bounds=bounds,
        method="highs",
    )
    if result.status != 0 or result.x is None:  # pragma: no cover - the LP is always feasible
        raise SalcliError(f"the camera path could not be solved ({result.message})")
    return np.clip(result.x[:n], 0.0, ps.travel)


def _row(x_part, var_part, var_index: int, offsets: np.ndarray, total: int):
    """A block of constraint rows: ``x_part`` on x, ``var_part`` on variable block
    ``var_index`` (1: e, 2: s1...), zero elsewhere."""
    rows = x_part.shape[0]
    left = sparse.csr_matrix((rows, offsets[var_index] - x_part.shape[1]))
    right = sparse.csr_matrix((rows, total - offsets[var_index + 1]))
    return sparse.hstack([x_part, left, var_part, right], format="csr")
