"""The camera path of a shot (``salcli.reframing.path``) and the window's geometry, on
saliency given directly: the decisions, the bounds, no jitter."""

from __future__ import annotations

import numpy as np
import pytest

import salcli.reframing.path as path_mod
from salcli.reframing.geometry import AXIS_X, AXIS_Y, layout
from salcli.reframing.options import ReframeOptions
from salcli.reframing.path import PathSettings, smooth_path, solve_shot
from salcli.reframing.profiles import bin_edges, candidate_grid, masses_on_grid, profile

FPS = 25.0
SPAN = 320  # pixels, the source's width
LENGTH = 90  # pixels, the window's width
TRAVEL = SPAN - LENGTH
SLACK = 1e-6  # pixels, the LP solver's tolerance on its constraints


def settings(max_speed: float = 0.5, max_accel: float = 1.0) -> PathSettings:
    return PathSettings.of(TRAVEL, LENGTH, SPAN, FPS, max_speed, max_accel)


def spot_masses(centres: np.ndarray, width: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """(masses (n, K), grid (K,)) of frames whose saliency is a box ``width`` pixels wide
    centred at ``centres`` (n,) along the axis."""
    xs = np.arange(SPAN)
    edges = bin_edges(SPAN)
    rows = [(np.abs(xs + 0.5 - c) <= width / 2)[None].astype(np.float32) for c in centres]
    profiles = np.stack([profile(r, AXIS_X, edges)[0] for r in rows])  # (n, bins)
    grid = candidate_grid(TRAVEL)
    return masses_on_grid(profiles, edges, grid, LENGTH), grid


def assert_within_bounds(x: np.ndarray, ps: PathSettings) -> None:
    assert np.abs(np.diff(x)).max() <= ps.v_max + SLACK
    assert np.abs(np.diff(x, 2)).max() <= ps.a_max + SLACK
    assert x.min() >= 0.0 and x.max() <= ps.travel


def test_saliency_wobbling_by_a_pixel_gives_a_constant_path():
    rng = np.random.default_rng(0)
    centres = 120.0 + rng.integers(-1, 2, size=200)  # a pixel each way
    masses, grid = spot_masses(centres, width=40.0)
    shot = solve_shot(masses, grid, settings(), "track", 0.9)
    assert np.ptp(shot.positions) < SLACK  # no wobble at all
    assert shot.positions[0] <= 120.0 - 21.0 and shot.positions[0] + LENGTH >= 120.0 + 21.0


def test_a_jump_of_the_target_is_followed_within_the_speed_and_acceleration_bounds():
    ps = settings()
    y = np.concatenate([np.full(60, 0.0), np.full(90, float(TRAVEL))])
    x = smooth_path(y, y, np.ones(150), ps)
    assert_within_bounds(x, ps)
    assert x[0] <= SLACK and x[-1] >= TRAVEL - SLACK  # on the target, then on the next
    assert np.all(np.diff(x) >= -SLACK)  # one way: no overshoot and back


def test_a_long_shot_is_solved_on_key_frames_and_keeps_the_bounds(monkeypatch):
    monkeypatch.setattr(path_mod, "MAX_LP_FRAMES", 40)
    ps = settings(max_speed=1.0, max_accel=2.0)
    t = np.arange(500)
    y = TRAVEL / 2 + TRAVEL / 2 * np.sin(2 * np.pi * t / 250)
    x = smooth_path(y, y, np.ones(500), ps)
    assert x.shape == (500,)
    assert_within_bounds(x, ps)
    assert np.corrcoef(x, y)[0, 1] > 0.9  # it follows


def test_saliency_that_stays_in_one_window_gives_a_still_shot():
    centres = 200.0 + 15.0 * np.sin(np.arange(50) / 5.0)  # wanders 30 px in a 90 px window
    masses, grid = spot_masses(centres)
    shot = solve_shot(masses, grid, settings(), "auto", 0.9)
    assert shot.decision == "still"
    assert np.ptp(shot.positions) == 0.0
    lo, hi = shot.positions[0], shot.positions[0] + LENGTH
    assert np.all((centres - 5 >= lo) & (centres + 5 <= hi))


def test_saliency_that_crosses_the_frame_is_tracked_and_still_mode_holds_one_place():
    centres = np.linspace(20.0, 300.0, 80)  # 3.5 px a frame, within 0.5 widths/s = 6.4
    masses, grid = spot_masses(centres)
    ps = settings()
    tracked = solve_shot(masses, grid, ps, "auto", 0.9)
    assert tracked.decision == "track"
    assert_within_bounds(tracked.positions, ps)
    inside = (centres - 5 >= tracked.positions) & (centres + 5 <= tracked.positions + LENGTH)
    assert inside.mean() > 0.9
    still = solve_shot(masses, grid, ps, "still", 0.9)
    assert still.decision == "still" and np.ptp(still.positions) == 0.0
    assert still.still_share < tracked.best_share


def test_a_map_without_saliency_gives_the_centre_and_no_motion():
    grid = candidate_grid(TRAVEL)
    edges = bin_edges(SPAN)
    flat = np.stack([profile(np.zeros((4, SPAN)), AXIS_X, edges)[0]] * 30)  # no mass
    masses = masses_on_grid(flat, edges, grid, LENGTH)
    shot = solve_shot(masses, grid, settings(), "track", 0.9)
    assert np.ptp(shot.positions) == 0.0
    assert abs(shot.positions[0] - TRAVEL / 2) <= 1.0


@pytest.mark.parametrize(
    ("size", "aspect", "axis", "crop", "pad"),
    [
        ((1280, 720), "9:16", AXIS_X, (404, 720), False),  # narrower: slides left-right
        ((720, 1280), "1:1", AXIS_X, (720, 1280), True),  # portrait to square: bars
        ((127, 71), "1:1", AXIS_X, (70, 70), False),  # odd sizes: even crops
        ((1280, 720), "21:9", AXIS_X, (1280, 720), True),  # wider: the frame within bars
        ((1280, 720), "16:9", AXIS_Y, (1280, 720), False),  # the same aspect: no motion
    ],
)
def test_the_window_is_the_largest_crop_at_the_aspect(size, aspect, axis, crop, pad):
    lay = layout(*size, ReframeOptions(aspect=aspect))
    assert (lay.axis, (lay.crop_w, lay.crop_h), lay.pad) == (axis, crop, pad)
    if not pad:
        assert (lay.out_w, lay.out_h) == crop
        assert lay.out_w % 2 == 0 and lay.out_h % 2 == 0


def test_a_wider_target_without_bars_crops_top_and_bottom():
    lay = layout(1280, 720, ReframeOptions(aspect="21:9", pad="never"))
    assert (lay.axis, lay.crop_w, lay.pad) == (AXIS_Y, 1280, False)
    assert lay.crop_h == 548  # 1280 * 9 / 21 = 548.6, even
    padded = layout(1280, 720, ReframeOptions(aspect="21:9"))
    assert abs(padded.out_w / padded.out_h - 21 / 9) < 0.01
