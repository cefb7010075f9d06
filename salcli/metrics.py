"""Saliency metrics, defined exactly as the MIT saliency benchmark's MATLAB functions.

Every function scores ONE frame and is a pure, vectorized numpy function of arrays:

- ``p``: the predicted map, (H', W'), any real dtype. A ``uint8`` map passed as it is
  gets what the benchmark's metric functions give it (``imresize`` keeps it 8-bit,
  ``im2double`` divides by 255); ``salcli.evaluation.evaluate`` converts predictions to float
  before calling them, as the benchmark's evaluation loops do.
- ``d``: the ground-truth density map, (H, W).
- ``f``: the binary fixation map, (H, W); a pixel counts once if ``f > 0``, whatever
  its value (the benchmark's ``fixationMap > 0``).
- ``other``: the "other" fixations of shuffled AUC, (H, W), pixels with ``other > 0``.

Conventions (the README's "Evaluate" section states them for users):

- ``p`` is resized to the ground truth's size with :func:`imresize_matlab` (MATLAB's
  default ``imresize``: bicubic, antialiased when shrinking) when the sizes differ;
  equal sizes are never touched. Everything is computed in float64.
- CC: Pearson correlation; a constant map gives NaN.
- SIM: each map min-max normalized then divided by its sum (an all-zero map stays zero;
  a constant non-zero map gives NaN, as in MATLAB); score sum(min(p, q)).
- KLD: each map divided by its sum (an all-zero map stays zero: an all-zero D scores 0);
  sum(q * ln(eps + q / (p + eps))), eps = MATLAB's eps.
- NSS: z-score (std with N-1) averaged over fixated pixels; constant map or no
  fixation gives NaN.
- AUC-Judd: jitter in [0, 1e-7), min-max, thresholds at the fixated values; NaN when no
  fixation.
- sAUC / AUC-Borji: thresholds ``0:step:max`` (MATLAB colon), 100 splits of sampled
  negatives, trapezoidal area, mean over splits. NaN when no fixation / no negative
  (sAUC), or at most one fixation (Borji).

Random draws use a ``numpy.random.Generator`` (``rng``); ``None`` means a fresh,
unseeded one, as the MATLAB code. Pass a seeded generator for reproducible scores.

Aggregation is kept apart: :func:`aggregate_frames` (mean over frames, NaNs skipped
per metric) and :func:`aggregate_videos` (the mean of per-video means).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

MATLAB_EPS = 2.220446049250313e-16  # MATLAB's eps (float64 spacing at 1.0)
JUDD_JITTER = 1e-7  # AUC-Judd noise amplitude: uniform in [0, 1e-7)
AUC_SPLITS = 100  # sAUC / AUC-Borji: number of random splits
AUC_STEP = 0.1  # sAUC / AUC-Borji: threshold step on the min-max normalized map
CUBIC_A = -0.5  # Keys' cubic convolution parameter (MATLAB's "bicubic")
CUBIC_WIDTH = 4.0  # samples, support of the cubic kernel

METRICS = ("cc", "nss", "auc_j", "sauc", "sim", "kld")  # the default set, in table order
ALL_METRICS = METRICS + ("auc_b",)  # AUC-Borji on request


# --- MATLAB imresize ---------------------------------------------------------------


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    a = CUBIC_A
    near = ((a + 2.0) * ax3 - (a + 3.0) * ax2 + 1.0) * (ax <= 1)
    far = (a * ax3 - 5.0 * a * ax2 + 8.0 * a * ax - 4.0 * a) * ((ax > 1) & (ax <= 2))
    return near + far


@functools.lru_cache(maxsize=64)
def _contributions(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``imresize``'s taps along one dimension: (out_len, taps) input indices
    (0-based, folded back into range) and their weights (rows sum to 1). Read-only,
    cached: every frame of a video shares them."""
    scale = out_len / in_len
    width = CUBIC_WIDTH
    if scale < 1.0:
        width = CUBIC_WIDTH / scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)  # 1-based output coordinates
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # their positions in input coordinates
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # (out, taps), 1-based, unfolded
    w = kernel(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])  # 0-based
    folded = aux[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    folded.setflags(write=False)
    w.setflags(write=False)
    return folded, w


def resize_weights(in_len: int, out_len: int) -> np.ndarray:
    """The (out_len, in_len) matrix MATLAB's ``imresize`` applies along one dimension.

    Bicubic; when shrinking the kernel is widened by 1/scale (antialiasing); each row's
    weights are normalized to sum 1; out-of-range taps are folded back by symmetric
    padding (``[1..n, n..1]`` repeated), as MATLAB's ``contributions`` does.
    """
    folded, w = _contributions(in_len, out_len)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], folded.shape)
    np.add.at(mat, (rows, folded), w)
    return mat


def _resize_axis(img: np.ndarray, out_len: int, axis: int) -> np.ndarray:
    """``img`` (H, W) float64 resized along ``axis``: each output row (column) is the
    weighted sum of a few input rows (columns), the taps, not a dense matrix product."""
    folded, w = _contributions(img.shape[axis], out_len)
    shape = (out_len, img.shape[1]) if axis == 0 else (img.shape[0], out_len)
    out = np.zeros(shape, dtype=np.float64)
    for t in range(folded.shape[1]):  # taps: 6, more when shrinking
        if axis == 0:
            out += w[:, t, None] * img[folded[:, t]]
        else:
            out += w[None, :, t] * img[:, folded[:, t]]
    return out


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB's conversion to uint8: round half away from zero, saturate."""
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def imresize_matlab(img: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``imresize(img, shape)`` as MATLAB computes it (default bicubic, antialiasing on).

    ``img`` (H, W); ``shape`` (H2, W2). Equal sizes return ``img`` untouched. The
    dimension with the smaller scale factor is resized first (rows on a tie), as MATLAB
    does. A ``uint8`` image stays ``uint8`` and, like MATLAB, is rounded after each
    dimension; any other dtype is computed and returned as float64.
    """
    img = np.asarray(img)
    if img.ndim != 2:
        raise ValueError(f"imresize_matlab: expected a 2-D map, got shape {img.shape}")
    out_h, out_w = int(shape[0]), int(shape[1])
    if (out_h, out_w) == img.shape:
        return img
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"imresize_matlab: bad output size {shape}")
    is_u8 = img.dtype == np.uint8
    cur = img.astype(np.float64)
    scales = (out_h / img.shape[0], out_w / img.shape[1])
    for dim in sorted((0, 1), key=lambda k: scales[k]):  # stable: rows first on a tie
        if dim == 0 and cur.shape[0] != out_h:
            cur = _resize_axis(cur, out_h, 0)
        elif dim == 1 and cur.shape[1] != out_w:
            cur = _resize_axis(cur, out_w, 1)
        else:
            continue
        if is_u8:
            cur = _round_uint8(cur)
    return cur if is_u8 else np.asarray(cur, dtype=np.float64)


# --- preparation -------------------------------------------------------------------


def im2double(a: np.ndarray) -> np.ndarray:
    """MATLAB's ``im2double``: uint8 / 255, uint16 / 65535, bool and floats as float64."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    return np.asarray(a, dtype=np.float64)  # no copy when already float64 (never mutated)


def prepare(p: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The prediction as every metric sees it: resized to ``shape`` if needed, float64."""
    return im2double(imresize_matlab(np.asarray(p), shape))


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x - lo) / (hi - lo)


def _check_same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {a.shape} and {b.shape}")


# --- deterministic metrics ---------------------------------------------------------


def cc(p: np.ndarray, d: np.ndarray) -> float:
    """Pearson's linear correlation coefficient of P and D. Constant map -> NaN."""
    d = im2double(d)
    x = prepare(p, d.shape).ravel()
    y = d.ravel()
    x = x - x.mean()
    y = y - y.mean()
    # einsum's own loop, not BLAS dot: no thread pool for a 0.2-Mpixel vector
    den = math.sqrt(float(np.einsum("i,i->", x, x)) * float(np.einsum("i,i->", y, y)))
    if den == 0.0 or not math.isfinite(den):
        return math.nan
    return float(np.einsum("i,i->", x, y) / den)


def _sim_normalize(x: np.ndarray) -> np.ndarray:
    if not np.any(x):
        return x  # an all-zero map stays zero
    x = _minmax(x)
    return x / x.sum()


def sim(p: np.ndarray, d: np.ndarray) -> float:
    """Similarity (histogram intersection) of the min-max, sum-normalized maps."""
    d = im2double(d)
    x = _sim_normalize(prepare(p, d.shape))
    y = _sim_normalize(d)
    return float(np.minimum(x, y).sum())


def kld(p: np.ndarray, d: np.ndarray) -> float:
    """KL divergence of P from D: sum q * ln(eps + q / (p + eps)), each map divided by its
    sum; an all-zero map stays zero (the benchmark's ``if any(map(:))`` guards), so an
    all-zero D scores 0 and an all-zero P scores sum q * ln(eps + q / eps)."""
    d = im2double(d)
    x = prepare(p, d.shape)
    sx, sq = float(x.sum()), float(d.sum())
    if not np.any(d):
        return 0.0  # q = 0 everywhere: every term is 0 * ln(eps) = 0
    # pixels with q = 0 add exactly 0 * ln(eps) = 0: only the others are computed
    nz = d != 0
    q = d[nz] / sq
    px = x[nz] / sx if np.any(x) else x[nz]  # an all-zero P stays zero
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(q * np.log(MATLAB_EPS + q / (px + MATLAB_EPS))))


def nss(p: np.ndarray, f: np.ndarray) -> float:
    """Normalized scanpath saliency: z-scored P (std with N-1) at the fixated pixels."""
    fix = np.asarray(f) > 0
    if not fix.any():
        return math.nan
    x = prepare(p, fix.shape)
    sd = x.std(ddof=1) if x.size > 1 else 0.0
    if sd == 0.0 or not math.isfinite(sd):
        return math.nan
    return float(((x[fix] - x.mean()) / sd).mean())


# --- AUC family --------------------------------------------------------------------


def auc_judd(
    p: np.ndarray,
    f: np.ndarray,
    *,
    jitter: bool = True,
    rng: np.random.Generator | None = None,
) -> float:
    """AUC-Judd: every fixated value is a threshold; negatives are all other pixels.

    With ``jitter`` (default, as the benchmark), uniform noise in [0, 1e-7) is added to
    P before min-max normalization, which breaks ties. TP at the i-th threshold (sorted
    descending) is i / Nfix; FP is (#{P >= t} - i) / (Npix - Nfix); (0,0) and (1,1) close
    the curve; trapezoidal area. NaN when there is no fixation or P is constant without
    jitter.
    """
    fix = np.asarray(f) > 0
    if not fix.any():
        return math.nan
    s = prepare(p, fix.shape)
    if jitter:
        rng = rng if rng is not None else np.random.default_rng()
        s = s + rng.random(s.shape) / 10_000_000  # the benchmark's rand/1e7
    s = _minmax(s).ravel()
    if np.isnan(s).all():
        return math.nan
    th_desc = np.sort(s[fix.ravel()])[::-1]  # (Nfix,) thresholds, descending
    n_fix, n_pix = th_desc.size, s.size
    above = count_at_least(s, th_desc).astype(np.float64)  # #{S >= t} per threshold
    i = np.arange(1, n_fix + 1, dtype=np.float64)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    with np.errstate(invalid="ignore", divide="ignore"):
        fp = np.concatenate([[0.0], (above - i) / (n_pix - n_fix), [1.0]])
    return float(_trapz(fp, tp))


def count_at_least(s: np.ndarray, th: np.ndarray) -> np.ndarray:
    """#{s >= t} for each t of ``th``: (N,) values, (K,) thresholds -> (K,) counts.

    O(N log K): each value is placed among the sorted thresholds (only the values that
    reach the lowest one are searched), then the counts are a reverse cumulative sum.
    """
    order = np.argsort(th, kind="stable")
    th_asc = th[order]
    high = s[s >= th_asc[0]]  # values below every threshold count nowhere
    reached = np.searchsorted(th_asc, high, side="right")  # (Nhigh,) in 1..K
    ge_asc = np.cumsum(np.bincount(reached, minlength=th.size + 1)[::-1])[::-1][1:]
    out = np.empty_like(ge_asc)
    out[order] = ge_asc
    return out


def _trapz(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoidal area along the last axis (MATLAB's ``trapz(x, y)``)."""
    return np.sum(np.diff(x, axis=-1) * (y[..., 1:] + y[..., :-1]) / 2.0, axis=-1)


def _colon_count(a: float, step: float, b: np.ndarray) -> np.ndarray:
    """The number of steps n of MATLAB's ``a:step:b`` (step > 0), for each b (-1: empty)."""
    b = np.asarray(b, dtype=np.float64)
    tol = 2.0 * MATLAB_EPS * np.maximum(abs(a), np.abs(b))
    n = np.round((b - a) / step)
    n = n - ((a + n * step - b) > tol)
    return np.where(b < a, -1, n).astype(np.int64)


def _colon_values(a: float, step: float, n: int) -> np.ndarray:
    """The n + 1 values of a MATLAB colon range: the first half counted up from ``a``,
    the second half down from ``a + n*step`` (how MATLAB keeps both ends exact)."""
    if n < 0:
        return np.empty(0)
    end = a + n * step
    out = np.empty(n + 1)
    k = np.arange(n + 1, dtype=np.float64)
    up = k <= n // 2
    out[up] = a + k[up] * step
    out[~up] = end - (n - k[~up]) * step
    return out


def matlab_colon(a: float, step: float, b: float) -> np.ndarray:
    """``a:step:b`` as MATLAB computes it (step > 0)."""
    return _colon_values(a, step, int(_colon_count(a, step, np.float64(b))))


def _auc_from_negatives(sth: np.ndarray, neg: np.ndarray, step: float) -> float:
    """Mean over splits of the stepped-threshold AUC.

    ``sth`` (Nfix,) the normalized values at fixations; ``neg`` (Nsplits, Nneg) the
    sampled negatives of each split. Each split's thresholds are ``0:step:max`` of its
    own values (MATLAB colon), descending; (0,0) and (1,1) close each curve.
    """
    n_splits, n_neg = neg.shape
    if n_neg == 0 or sth.size == 0:
        return math.nan
    sth_sorted = np.sort(sth)
    top = np.maximum(sth_sorted[-1], neg.max(axis=1))  # (Nsplits,)
    steps = _colon_count(0.0, step, top)  # a split's grid depends on its length only
    aucs = np.empty(n_splits)
    for n in np.unique(steps):
        rows = np.flatnonzero(steps == n)
        th = _colon_values(0.0, step, int(n))[::-1]  # (K,) descending
        tp = (sth.size - np.searchsorted(sth_sorted, th, side="left")) / sth.size  # (K,)
        fp = (neg[rows][:, :, None] >= th[None, None, :]).sum(axis=1) / n_neg  # (G, K)
        g = rows.size
        zeros, ones = np.zeros((g, 1)), np.ones((g, 1))
        tp_full = np.concatenate([zeros, np.broadcast_to(tp, fp.shape), ones], axis=1)
        fp_full = np.concatenate([zeros, fp, ones], axis=1)
        aucs[rows] = _trapz(fp_full, tp_full)
    return float(aucs.mean())


def auc_shuffled(
    p: np.ndarray,
    f: np.ndarray,
    other: np.ndarray,
    *,
    n_splits: int = AUC_SPLITS,
    step: float = AUC_STEP,
    rng: np.random.Generator | None = None,
) -> float:
    """Shuffled AUC: negatives are P at the "other" fixations (``other > 0``).

    P min-max normalized; per split, min(Nfix, #others) negatives drawn without
    replacement; thresholds ``0:step:max(fixated, sampled)`` descending; TP / FP the
    fractions of fixated / sampled values >= t; (0,0) and (1,1) added; trapezoidal area;
    mean over ``n_splits``. NaN with no fixation, no other fixation or a constant P.
    """
    fix = np.asarray(f) > 0
    oth = np.asarray(other) > 0
    _check_same(fix, oth, "auc_shuffled: fixations and other fixations")
    if not fix.any() or not oth.any():
        return math.nan
    s = _minmax(prepare(p, fix.shape)).ravel()
    if np.isnan(s).all():
        return math.nan
    sth = s[fix.ravel()]
    cand = s[np.flatnonzero(oth.ravel())]
    n = min(sth.size, cand.size)
    rng = rng if rng is not None else np.random.default_rng()
    neg = np.empty((n_splits, n))
    for k in range(n_splits):
        neg[k] = cand[rng.choice(cand.size, size=n, replace=False)]
    return _auc_from_negatives(sth, neg, step)


def auc_borji(
    p: np.ndarray,
    f: np.ndarray,
    *,
    n_splits: int = AUC_SPLITS,
    step: float = AUC_STEP,
    rng: np.random.Generator | None = None,
) -> float:
    """AUC-Borji: as sAUC, but Nfix negatives per split drawn uniformly from all pixels
    with replacement. NaN with at most one fixation or a constant P."""
    fix = np.asarray(f) > 0
    if fix.sum() <= 1:
        return math.nan
    s = _minmax(prepare(p, fix.shape)).ravel()
    if np.isnan(s).all():
        return math.nan
    sth = s[fix.ravel()]
    rng = rng if rng is not None else np.random.default_rng()
    neg = s[rng.integers(0, s.size, size=(n_splits, sth.size))]
    return _auc_from_negatives(sth, neg, step)


# --- aggregation -------------------------------------------------------------------


def _nanmean(values: Iterable[float]) -> float:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def aggregate_frames(
    frames: Sequence[Mapping[str, float]] | np.ndarray, metrics: Sequence[str] = METRICS
) -> dict[str, float]:
    """Mean over frames of each metric, NaNs skipped per metric (NaN if none left).

    ``frames``: one mapping metric -> score per frame, or an array (n_frames,
    len(metrics)) whose columns follow ``metrics``. The DHF1K protocol applies it to all
    frames of the evaluated set; the audio-visual protocol within each video.
    """
    if isinstance(frames, np.ndarray):
        cols = frames.reshape(-1, len(metrics))
        return {m: _nanmean(cols[:, k]) for k, m in enumerate(metrics)}
    return {m: _nanmean(fr.get(m, math.nan) for fr in frames) for m in metrics}


def aggregate_videos(
    videos: Sequence[Mapping[str, float]], metrics: Sequence[str] = METRICS
) -> dict[str, float]:
    """Mean over videos of their per-video means (NaN videos skipped per metric).

    The audio-visual protocol (STAViS / AViNet); also the mean over splits for ``all``.
    """
    return aggregate_frames(videos, metrics)


# --- the NTIRE 2026 challenge's bench.py ---------------------------------------------
#
# The NTIRE 2026 Video Saliency Prediction challenge (msu-video-group/NTIRE26_Saliency_
# Prediction) scores with its own definitions, not the MIT ones above: its bench.py reads
# each frame as a grey image (the mean of its channels), min-max normalises it with
# float32's eps in the denominator, resizes the prediction to the ground truth's size with
# OpenCV's default (bilinear) resize, and puts 1e-7 in the denominators. Fixations are
# (N, 2) integer points indexed as ``map[f[:, 0], f[:, 1]]`` (row, column). Nothing is
# random. Each function below restates one of its definitions, operation for operation in
# the same order, so that the float64 results are the same numbers.

BENCH_NORM_EPS = float(np.finfo(np.float32).eps)  # min-max denominator: max - min + eps
BENCH_DENOM_EPS = 1e-7  # the 1e-7 added to bench.py's std and sum denominators
BENCH_KLD_EPS = 2.2204e-16  # bench.py's KLD constant (MATLAB's eps, as it spells it)
BENCH_METRICS = ("cc", "sim", "nss", "auc_j")  # what the challenge scores, its order
BENCH_EXTRA = ("kld",)  # defined in bench.py, not scored by the challenge: on request


def bench_gray(img: np.ndarray) -> np.ndarray:
    """A frame as bench.py makes it grey: the mean of its channels (alpha included) for an
    (H, W, C) image, float64; a 2-D map as float64 values."""
    img = np.asarray(img)
    if img.ndim == 3:
        return img.mean(axis=2)
    if img.ndim != 2:
        raise ValueError(f"bench_gray: expected (H, W) or (H, W, C), got shape {img.shape}")
    return img.astype(np.float64)


def bench_normalize(img: np.ndarray) -> np.ndarray:
    """(x - min) / (max - min + float32 eps), float64: bench.py's reading of a map."""
    x = bench_gray(img)
    return (x - x.min()) / (x.max() - x.min() + BENCH_NORM_EPS)


def bench_resize(p: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``p`` (H', W') float64 at ``shape`` (H, W) by OpenCV's default resize (bilinear),
    called even when the sizes agree, as bench.py calls it."""
    import cv2

    return cv2.resize(np.asarray(p, dtype=np.float64), (int(shape[1]), int(shape[0])))


def _bench_zscore(x: np.ndarray) -> np.ndarray:
    return (x - np.mean(x)) / (np.std(x) + BENCH_DENOM_EPS)


def bench_points(points: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Fixation points as bench.py indexes them: (N, 2) integers, row then column, each
    inside ``shape`` (negative values count from the end, as numpy indexes them).
    ``ValueError`` for anything else (bench.py's IndexError)."""
    f = np.asarray(points)
    if f.ndim != 2 or f.shape[1] != 2 or f.shape[0] == 0:
        raise ValueError(f"fixations of shape {f.shape}, expected (N, 2) with N >= 1")
    if f.dtype.kind not in "iu":
        raise ValueError(f"fixation coordinates of type {f.dtype}, expected integers")
    for axis, size in enumerate(shape[:2]):
        bad = (f[:, axis] >= size) | (f[:, axis] < -size)
        if bad.any():
            row = f[np.flatnonzero(bad)[0]].tolist()
            raise ValueError(f"fixation {row} lies outside a {shape[0]}x{shape[1]} map")
    return f


def _at(s: np.ndarray, f: np.ndarray) -> np.ndarray:
    return s[f[:, 0], f[:, 1]]


def bench_cc(p: np.ndarray, g: np.ndarray) -> float:
    """bench.py's CC: both maps z-scored (population std + 1e-7), then
    sum(a b) / sqrt(sum(a a) sum(b b) + 1e-7)."""
    a, b = _bench_zscore(p), _bench_zscore(g)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + BENCH_DENOM_EPS))


def bench_sim(p: np.ndarray, g: np.ndarray) -> float:
    """bench.py's SIM: each map divided by (its sum + 1e-7); sum of the pixelwise minimum."""
    x = p / (np.sum(p) + BENCH_DENOM_EPS)
    y = g / (np.sum(g) + BENCH_DENOM_EPS)
    return float(np.sum(np.minimum(x, y)))


def bench_nss(p: np.ndarray, points: np.ndarray) -> float:
    """bench.py's NSS: the z-scored map (population std + 1e-7) averaged over the fixation
    points, a point counted as often as it is listed."""
    return float(np.mean(_at(_bench_zscore(p), points)))


def bench_kld(p: np.ndarray, g: np.ndarray) -> float:
    """bench.py's KLD (which the challenge does not score): sum g ln(eps + g / (p + eps)),
    each map divided by its sum, eps = 2.2204e-16. An all-zero map gives NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        x = p / (np.sum(p) * 1.0)
        y = g / (np.sum(g) * 1.0)
        return float(np.sum(y * np.log(BENCH_KLD_EPS + y / (x + BENCH_KLD_EPS))))


def _distinct_columns(points: np.ndarray) -> int:
    """``np.unique(points, axis=1).shape[-1]``, as bench.py writes it: the number of
    distinct *columns* of the (N, 2) array, 1 when the row and column coordinates agree
    at every point, else 2 (not the number of distinct points)."""
    return 1 if np.array_equal(points[:, 0], points[:, 1]) else 2


_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed trapz


def bench_auc_judd(p: np.ndarray, points: np.ndarray) -> float:
    """bench.py's AUC-Judd: no jitter and no normalisation (``p`` is already min-max
    normalised); thresholds the map's values at the points, sorted descending; TP at the
    i-th is i / N; FP (#{p >= t} - i) / (possible - N), possible = H*W + N - the distinct
    columns of the points (see :func:`_distinct_columns`); (0, 0) and (1, 1) close the
    curve; trapezoidal area."""
    values = _at(p, points)
    n_fix = len(values)
    possible = int(np.prod(p.shape)) + (n_fix - _distinct_columns(points))
    thresholds = np.sort(values)[::-1]
    above = count_at_least(p.ravel(), thresholds)  # (N,) #{p >= t}, integers
    ranks = np.arange(1, n_fix + 1)
    tp = np.zeros(n_fix + 2)
    fp = np.zeros(n_fix + 2)
    tp[-1] = fp[-1] = 1
    fp[1:-1] = (above - ranks) / (possible - n_fix)
    tp[1:-1] = ranks / n_fix
    return float(_trapezoid(tp, fp))


def bench_scores(
    p: np.ndarray, g: np.ndarray, points: np.ndarray | None, metrics: Sequence[str]
) -> list[float]:
    """The ``metrics`` (names of ``BENCH_METRICS + BENCH_EXTRA``) of one frame, bench.py's
    way: ``p`` the prediction as read (any size, any channels), ``g`` the ground-truth
    frame as read; both normalised (:func:`bench_normalize`), ``p`` resized to ``g``'s
    size. ``points`` (N, 2) checked by :func:`bench_points`; None: a frame without
    fixations (NSS and AUC-J NaN)."""
    gt = bench_normalize(g)
    pred = bench_resize(bench_normalize(p), gt.shape)
    out = []
    for m in metrics:
        if m == "cc":
            out.append(bench_cc(pred, gt))
        elif m == "sim":
            out.append(bench_sim(pred, gt))
        elif m == "kld":
            out.append(bench_kld(pred, gt))
        elif m == "nss":
            out.append(math.nan if points is None else bench_nss(pred, points))
        elif m == "auc_j":
            out.append(math.nan if points is None else bench_auc_judd(pred, points))
        else:
            raise ValueError(f"{m!r} is not one of bench.py's metrics")
    return out
