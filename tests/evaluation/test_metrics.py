"""Metrics on tiny arrays, values worked out by hand from the MATLAB definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salcli import metrics as M

# --- imresize ----------------------------------------------------------------------

# Keys' cubic (a = -0.5) at the offsets that occur below:
# k(0.25) = 0.8671875, k(0.75) = 0.2265625, k(1.25) = -0.0703125, k(1.75) = -0.0234375.


def test_imresize_upscale_1x2_to_1x4():
    # scale 2: output x=1 sits at u = 0.75 -> taps at 0(->1 by symmetric padding), 1, 2, ...
    # out1 = (k(.75) + k(.25)) a + (k(1.25) + k(1.75)) b = 1.09375 a - 0.09375 b
    # out2 = (k(1.25) + k(.25)) a + (k(.75) + k(1.75)) b = 0.796875 a + 0.203125 b
    got = M.imresize_matlab(np.array([[1.0, 2.0]]), (1, 4))
    np.testing.assert_allclose(got, [[0.90625, 1.203125, 1.796875, 2.09375]], atol=1e-12)


def test_imresize_shrink_1x4_to_1x2():
    # scale 1/2: kernel widened to 8 taps, weights k(d/2)/2 renormalized; at u = 1.5:
    # out1 = 0.546875 a + 0.3984375 b + 0.1015625 c - 0.046875 d (MATLAB: 1.4609 3.5391)
    got = M.imresize_matlab(np.array([[1.0, 2.0, 3.0, 4.0]]), (1, 2))
    np.testing.assert_allclose(got, [[1.4609375, 3.5390625]], atol=1e-12)


def test_imresize_2d_is_separable_hand_weights():
    shrink = np.array(
        [[0.546875, 0.3984375, 0.1015625, -0.046875], [-0.046875, 0.1015625, 0.3984375, 0.546875]]
    )
    grow = np.array(
        [[1.09375, -0.09375], [0.796875, 0.203125], [0.203125, 0.796875], [-0.09375, 1.09375]]
    )
    a = np.arange(16, dtype=np.float64).reshape(4, 4) ** 1.5
    np.testing.assert_allclose(M.imresize_matlab(a, (2, 2)), shrink @ a @ shrink.T, atol=1e-12)
    b = np.array([[1.0, 5.0], [2.0, -3.0]])
    np.testing.assert_allclose(M.imresize_matlab(b, (4, 4)), grow @ b @ grow.T, atol=1e-12)
    np.testing.assert_allclose(M.resize_weights(4, 2), shrink, atol=1e-15)
    np.testing.assert_allclose(M.resize_weights(2, 4), grow, atol=1e-15)


def test_imresize_equal_size_is_exact_and_weights_normalized():
    a = np.random.default_rng(0).random((5, 7))
    assert M.imresize_matlab(a, (5, 7)) is a
    # a dimension of scale 1 inside a 2-D resize is the identity
    np.testing.assert_allclose(M.resize_weights(7, 7), np.eye(7), atol=1e-15)
    for n_in, n_out in [(224, 360), (384, 640), (360, 224), (17, 5), (3, 11)]:
        np.testing.assert_allclose(M.resize_weights(n_in, n_out).sum(axis=1), 1.0, atol=1e-12)
    # a constant image stays constant; shapes as asked
    out = M.imresize_matlab(np.full((224, 384), 0.3), (360, 640))
    assert out.shape == (360, 640)
    np.testing.assert_allclose(out, 0.3, atol=1e-12)


def test_imresize_uint8_rounds_and_saturates_like_matlab():
    got = M.imresize_matlab(np.array([[0, 255]], dtype=np.uint8), (1, 4))
    # 255 * [-0.09375, 0.203125, 0.796875, 1.09375] = [-23.9, 51.8, 203.2, 278.9]
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, [[0, 52, 203, 255]])


# --- deterministic metrics ---------------------------------------------------------


def test_cc_by_hand():
    p = np.array([[1.0, 2.0], [3.0, 4.0]])
    d = np.array([[1.0, 2.0], [3.0, 5.0]])
    # x: -1.5 -0.5 0.5 1.5; y: -1.75 -0.75 0.25 2.25; sxy 6.5, sxx 5, syy 8.75
    assert M.cc(p, d) == pytest.approx(6.5 / math.sqrt(5 * 8.75), abs=1e-12)
    assert M.cc(d, d) == pytest.approx(1.0)
    assert M.cc(-d, d) == pytest.approx(-1.0)
    assert math.isnan(M.cc(np.ones((2, 2)), d))
    assert math.isnan(M.cc(p, np.zeros((2, 2))))


def test_cc_scale_invariant_uint8():
    rng = np.random.default_rng(1)
    d = rng.random((6, 8))
    p8 = (rng.random((6, 8)) * 255).astype(np.uint8)
    assert M.cc(p8, d) == pytest.approx(M.cc(p8.astype(float) / 255, d), abs=1e-12)


def test_sim_by_hand():
    p = np.array([[0.0, 1.0], [2.0, 3.0]])  # -> [0, 1/6, 1/3, 1/2]
    d = np.array([[1.0, 1.0], [1.0, 3.0]])  # -> [0, 0, 0, 1]
    assert M.sim(p, d) == pytest.approx(0.5)
    assert M.sim(d, d) == pytest.approx(1.0)
    assert M.sim(np.zeros((2, 2)), d) == 0.0  # an all-zero map stays zero
    assert math.isnan(M.sim(np.full((2, 2), 2.0), d))  # constant non-zero: 0/0 as MATLAB


def test_kld_by_hand():
    p = np.ones((2, 2))  # 0.25 each
    d = np.array([[1.0, 0.0], [0.0, 1.0]])  # 0.5, 0, 0, 0.5
    assert M.kld(p, d) == pytest.approx(math.log(2.0), abs=1e-12)
    assert M.kld(d, d) == pytest.approx(0.0, abs=1e-12)
    # P = 0 where Q > 0: ln(eps + q / eps) - large but finite
    big = M.kld(np.array([[0.0, 1.0], [1.0, 1.0]]), d)
    assert 15 < big < 40
    # an all-zero map stays zero (the benchmark's `if any(map(:))` guards): an empty ground
    # truth scores 0; an all-zero prediction scores sum q ln(eps + q / eps)
    assert M.kld(p, np.zeros((2, 2))) == 0.0
    eps = 2.220446049250313e-16
    assert M.kld(np.zeros((2, 2)), d) == pytest.approx(math.log(eps + 0.5 / eps), rel=1e-12)


def test_nss_by_hand():
    p = np.array([[0.0, 0.0], [0.0, 4.0]])  # mean 1, std (N-1) = 2
    f = np.array([[0, 0], [0, 1]])
    assert M.nss(p, f) == pytest.approx(1.5)
    assert M.nss(p, f * 7) == pytest.approx(1.5)  # a pixel counts once, whatever its value
    assert M.nss(p, np.array([[1, 0], [0, 1]])) == pytest.approx(0.5)
    assert math.isnan(M.nss(p, np.zeros((2, 2))))
    assert math.isnan(M.nss(np.ones((2, 2)), f))


def test_different_sizes_resize_prediction():
    rng = np.random.default_rng(2)
    d = rng.random((8, 12))
    f = rng.random((8, 12)) > 0.8
    p = 0.5 + rng.random((4, 6))  # positive after the bicubic overshoot (KLD needs p >= 0)
    big = M.imresize_matlab(p, (8, 12))
    assert M.cc(p, d) == pytest.approx(M.cc(big, d), abs=1e-12)
    assert M.sim(p, d) == pytest.approx(M.sim(big, d), abs=1e-12)
    assert M.kld(p, d) == pytest.approx(M.kld(big, d), abs=1e-12)
    assert M.nss(p, f) == pytest.approx(M.nss(big, f), abs=1e-12)
    assert M.auc_judd(p, f, jitter=False) == pytest.approx(M.auc_judd(big, f, jitter=False))


# --- AUC family --------------------------------------------------------------------


def test_auc_judd_by_hand():
    p = np.array([[0.1, 0.4], [0.35, 0.8]])  # min-max: 0, .4286, .3571, 1
    f = np.array([[0, 0], [1, 1]])
    # thresholds 1, .3571: (tp, fp) = (.5, 0), (1, (3-2)/2); area 0.875
    assert M.auc_judd(p, f, jitter=False) == pytest.approx(0.875)
    # the jitter (< 1e-7) does not change it here
    assert M.auc_judd(p, f, rng=np.random.default_rng(0)) == pytest.approx(0.875)
    assert math.isnan(M.auc_judd(p, np.zeros((2, 2))))
    assert math.isnan(M.auc_judd(np.ones((2, 2)), f, jitter=False))


def test_auc_judd_perfect_and_constant():
    f = np.random.default_rng(1003).random((30, 40)) > 0.97
    assert M.auc_judd(f.astype(float), f, rng=np.random.default_rng(0)) > 0.99
    # a constant map: the jitter makes it a random map, about 0.5
    vals = [M.auc_judd(np.ones(f.shape), f, rng=np.random.default_rng(s)) for s in range(8)]
    assert abs(np.mean(vals) - 0.5) < 0.1


def test_auc_judd_matches_plain_loop():
    """The vectorized count equals the benchmark's loop, on a map with many ties."""
    rng = np.random.default_rng(4)
    p = np.round(rng.random((9, 11)) * 6)
    f = rng.random((9, 11)) > 0.7
    s = (p - p.min()) / (p.max() - p.min())
    sth = np.sort(s[f])[::-1]
    nf, npx = sth.size, s.size
    tp, fp = [0.0], [0.0]
    for i, t in enumerate(sth, 1):
        tp.append(i / nf)
        fp.append(((s >= t).sum() - i) / (npx - nf))
    tp.append(1.0)
    fp.append(1.0)
    want = np.trapezoid(tp, fp) if hasattr(np, "trapezoid") else np.trapz(tp, fp)
    assert M.auc_judd(p, f, jitter=False) == pytest.approx(want, abs=1e-12)


def test_count_at_least_is_exact_with_ties():
    rng = np.random.default_rng(6)
    s = np.concatenate(
        [rng.random(5000), np.arange(0, 4097) / 4096, [0.0, 1.0, 1.0, 0.5, 0.5, 1 / 3]]
    )
    for th in [
        np.sort(rng.choice(s, 50)),
        np.array([0.0, 0.5, 1.0, 1 / 3, 1 / 4096, np.nextafter(0.5, 0), np.nextafter(0.5, 1)]),
    ]:
        want = np.array([(s >= t).sum() for t in th])
        np.testing.assert_array_equal(M.count_at_least(s, th), want)


def test_matlab_colon():
    np.testing.assert_allclose(M.matlab_colon(0, 0.1, 1.0), np.arange(11) / 10, atol=1e-15)
    assert M.matlab_colon(0, 0.1, 0.95).size == 10
    assert M.matlab_colon(0, 0.1, 0.3).size == 4  # 0.3/0.1 = 2.9999999999999996 -> 4 values
    assert M.matlab_colon(0, 0.1, 0.0).tolist() == [0.0]
    assert M.matlab_colon(0, 0.1, 0.05).tolist() == [0.0]


def test_auc_shuffled_by_hand():
    # fixated 0.5, 1.0; negatives 0, 0.75 (both sampled in every split: N = 2)
    # thresholds 1.0 .. 0: (fp, tp) = (0, .5) x3, (.5, .5) x2, (.5, 1) x5, (1, 1): area 0.75
    p = np.array([[0.0, 0.75], [0.5, 1.0]])
    f = np.array([[0, 0], [1, 1]])
    o = np.array([[1, 1], [0, 0]])
    assert M.auc_shuffled(p, f, o, rng=np.random.default_rng(0)) == pytest.approx(0.75)
    assert M.auc_shuffled(p * 3 + 1, f, o) == pytest.approx(0.75)  # min-max first


def test_auc_shuffled_sampling_spread():
    # one fixation (0.5), negatives 0.25 or 1.0, one drawn per split: AUC 1 or 0 -> ~0.5
    p = np.array([[0.0, 0.25], [0.5, 1.0]])
    f = np.array([[0, 0], [1, 0]])
    o = np.array([[0, 1], [0, 1]])
    vals = [M.auc_shuffled(p, f, o, rng=np.random.default_rng(s)) for s in range(20)]
    assert set(np.round(np.array(vals) * 100) % 1) == {0}  # multiples of 1/100
    assert abs(np.mean(vals) - 0.5) < 3 * 0.05 / math.sqrt(20)  # binomial spread
    a = M.auc_shuffled(p, f, o, rng=np.random.default_rng(7))
    assert a == M.auc_shuffled(p, f, o, rng=np.random.default_rng(7))  # seeded


def test_auc_shuffled_nan_cases():
    p = np.array([[0.0, 0.25], [0.5, 1.0]])
    f = np.array([[0, 0], [1, 0]])
    assert math.isnan(M.auc_shuffled(p, np.zeros((2, 2)), f))
    assert math.isnan(M.auc_shuffled(p, f, np.zeros((2, 2))))
    assert math.isnan(M.auc_shuffled(np.ones((2, 2)), f, f))
    with pytest.raises(ValueError):
        M.auc_shuffled(p, f, np.ones((3, 3)))


def test_auc_borji():
    rng = np.random.default_rng(5)
    f = rng.random((40, 50)) > 0.98
    perfect = f.astype(float)
    assert M.auc_borji(perfect, f, rng=rng) > 0.95
    noise = [M.auc_borji(rng.random(f.shape), f, rng=rng) for _ in range(5)]
    assert abs(np.mean(noise) - 0.5) < 0.08
    one = np.zeros((4, 4))
    one[1, 1] = 1
    assert math.isnan(M.auc_borji(rng.random((4, 4)), one))


# --- aggregation -------------------------------------------------------------------


def test_aggregation_skips_nans():
    frames = [{"cc": 0.5, "nss": math.nan}, {"cc": 0.7, "nss": 2.0}, {"cc": math.nan, "nss": 1.0}]
    out = M.aggregate_frames(frames, ("cc", "nss"))
    assert out == {"cc": pytest.approx(0.6), "nss": pytest.approx(1.5)}
    arr = np.array([[0.5, math.nan], [0.7, 2.0], [math.nan, 1.0]])
    assert M.aggregate_frames(arr, ("cc", "nss")) == out
    # per-video means, then the mean of videos (not of frames)
    v = M.aggregate_videos([{"cc": 0.2}, {"cc": 0.4}, {"cc": math.nan}], ("cc",))
    assert v["cc"] == pytest.approx(0.3)
    assert math.isnan(M.aggregate_frames([], ("cc",))["cc"])
