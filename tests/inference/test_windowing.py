"""Which frames each clip sees, under both warm-up policies and for short videos."""

from __future__ import annotations

import weakref

import pytest

from salcli.inference.clips import iter_clips
from salcli.models.vinet_procedure import LastFrameClips, clip_indices, clip_span

T = 32


def test_mirror_matches_design_card():
    frames = list(range(100))
    s = frames[1:T][::-1] + frames  # reverse(frames[1:T]) ++ frames
    for t in range(100):
        assert clip_indices(t, 100, T, "mirror") == s[t : t + T]


def test_full_clips_are_the_past_T_frames():
    for policy in ("mirror", "reference"):
        assert clip_indices(31, None, T, policy) == list(range(0, 32))
        assert clip_indices(50, None, T, policy) == list(range(19, 51))


def test_reference_reverses_future_clip():
    assert clip_indices(0, None, T, "reference") == list(range(31, -1, -1))
    assert clip_indices(5, None, T, "reference") == list(range(36, 4, -1))
    assert clip_indices(30, 100, T, "reference") == list(range(61, 29, -1))


@pytest.mark.parametrize("n", [1, 2, 5, 31, 32, 40, 62, 63])
@pytest.mark.parametrize("policy", ["mirror", "reference"])
def test_every_frame_gets_one_clip_of_T_valid_frames_ending_with_itself(n, policy):
    got = list(iter_clips(range(n), LastFrameClips(T, policy)))
    assert [t for t, _, _ in got] == list(range(n))
    for t, frame, clip in got:
        assert len(clip) == T
        assert clip[-1] == frame == t
        assert all(0 <= i < n for i in clip)
        assert clip == clip_indices(t, n if n < 2 * T - 1 else None, T, policy)


def test_short_mirror_reflects_off_both_ends():
    # 3 frames, T = 8: positions -7..0 bounce between frames 0 and 2
    assert clip_indices(0, 3, 8, "mirror") == [1, 2, 1, 0, 1, 2, 1, 0]
    assert clip_indices(2, 3, 5, "mirror") == [2, 1, 0, 1, 2]
    assert clip_indices(0, 1, 4, "mirror") == [0, 0, 0, 0]


def test_short_reference_repeats_first_frame():
    # n = 3, T = 4: padded to 2T-1 = 7 frames [0,0,0,0,0,1,2]; frame 0 is padded index 4
    assert clip_indices(0, 3, 4, "reference") == [0, 0, 0, 0]
    assert clip_indices(2, 3, 4, "reference") == [0, 0, 1, 2]


@pytest.mark.parametrize("policy", ["mirror", "reference"])
def test_stream_holds_at_most_2T_minus_1_frames(policy):
    """What the stream still holds (not what it has read ahead): frames that are alive
    while the consumer keeps none of them."""

    class Frame:
        def __init__(self, i: int):
            self.i = i

    refs: list[weakref.ref] = []

    def frames():
        for i in range(200):
            f = Frame(i)
            refs.append(weakref.ref(f))
            yield f
            del f

    peak = 0
    for t, frame, clip in iter_clips(frames(), LastFrameClips(T, policy)):
        assert frame.i == t == clip[-1].i
        del frame, clip  # (reference counting frees the frames nobody holds at once)
        peak = max(peak, sum(r() is not None for r in refs))
    assert peak == 2 * T - 1  # the first 2T-1 frames decide a short video's padding
    assert all(r() is None for r in refs)  # nothing kept at the end


def test_clip_span():
    assert clip_span(clip_indices(0, None, T, "reference")) == (0, 31)
    assert clip_span(clip_indices(40, None, T, "mirror")) == (9, 40)
