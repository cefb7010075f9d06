"""The soundtrack for AViNet: decoding, placement on the video timeline, clip excerpts."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from salcli.errors import InputError, NoAudioError
from salcli.media.audio import AUDIO_RATE, AUDIO_SCALE, AudioTrack, duration_mismatch, frame_span
from salcli.models.vinet_procedure import AUDIO_BUFFER, CLIP_LEN, clip_batch, clip_excerpt

FS = AUDIO_RATE  # Hz
MID = AUDIO_BUFFER // 2  # buffer index of an excerpt's middle sample


class ArrayTrack:
    """A track held in memory (the reference the streamed track must agree with)."""

    def __init__(self, data: np.ndarray, length: int | None = None):
        self.data = np.asarray(data, dtype=np.float32)
        self.length = len(self.data) if length is None else length

    def samples(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros(max(0, stop - start), np.float32)
        lo, hi = max(start, 0), min(stop, len(self.data))
        if hi > lo:
            out[lo - start : hi - start] = self.data[lo:hi]
        return out


def burst(n: int, rate: int, at: float, width: float = 0.02, hz: float = 1000.0) -> np.ndarray:
    """(n,) a smooth (Hann-enveloped) tone burst of amplitude 0.5 centred at ``at`` s."""
    t = np.arange(n) / rate
    u = (t - at) / width + 0.5  # 0 ... 1 over the burst
    env = np.where((u > 0) & (u < 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)
    return 0.5 * env * np.sin(2 * np.pi * hz * t)


def encode(
    path: Path,
    audio: np.ndarray | None,
    rate: int = 44_100,
    *,
    codec: str = "pcm_s16le",
    audio_start: float = 0.0,
    gap: tuple[float, float] | None = None,
    fps: int = 25,
    n_frames: int = 0,
    video_start: int = 0,
) -> Path:
    """A small media file: ``n_frames`` of mpeg4 video (first pts ``video_start`` frames)
    and ``audio`` (C, n) in [-1, 1] starting at ``audio_start`` s; ``gap=(at, len)``
    leaves a hole of ``len`` s in the audio timestamps at audio time ``at``."""
    import av

    with av.open(str(path), "w") as out:
        vs = None
        if n_frames:
            vs = out.add_stream("mpeg4", rate=fps)
            vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        astream = None
        if audio is not None:
            layout = "stereo" if audio.shape[0] == 2 else "mono"
            astream = out.add_stream(codec, rate=rate, layout=layout)
        if vs is not None:
            for i in range(n_frames):
                rgb = np.full((32, 32, 3), (i * 7) % 255, np.uint8)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = video_start + i
                frame.time_base = Fraction(1, fps)
                for pkt in vs.encode(frame):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
        if astream is not None:
            fmt = astream.codec_context.codec.audio_formats[0].name
            block = astream.codec_context.frame_size or 1024
            offset = int(round(audio_start * rate))
            for s in range(0, audio.shape[1], block):
                chunk = audio[:, s : s + block].astype(np.float32)
                if fmt.startswith("s16"):  # packed (interleaved) 16-bit
                    chunk = np.round(chunk.T.reshape(1, -1) * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(chunk, format=fmt, layout=layout)
                af.sample_rate = rate
                af.pts = offset + s
                if gap is not None and s >= gap[0] * rate:
                    af.pts += int(round(gap[1] * rate))
                af.time_base = Fraction(1, rate)
                for pkt in astream.encode(af):
                    out.mux(pkt)
            for pkt in astream.encode():
                out.mux(pkt)
    return path


def frame_clips(n_frames: int) -> list[tuple[int, int]]:
    """(first, last) of the clip of every frame, in frame order (plain past window)."""
    return [(max(0, t - CLIP_LEN + 1), t) for t in range(n_frames)]


def expected_excerpt(signal: np.ndarray, length: int, first: int, last: int, fps: float):
    """The conventions' excerpt, written out directly from the rule (independent code)."""
    n_half = FS / fps / 2
    start = int(max(0.0, first * (1.0 / fps) * FS - n_half))
    end = int(min(length, last * (1.0 / fps) * FS + n_half))
    x = np.zeros(max(0, end + 1 - start))
    avail = signal[start : min(end + 1, length)]
    x = x[: len(avail)]
    x[:] = avail
    w = x * np.hanning(len(x))
    buf = np.zeros(AUDIO_BUFFER)
    buf[MID - len(w) // 2 : MID - len(w) // 2 + len(w)] = w
    return buf.astype(np.float32)


# --- pure rules -----------------------------------------------------------------------


def test_frame_span_rule():
    # 25 fps: N = 882 samples per frame, frame n owns [n*882 - 441, n*882 + 441]
    assert frame_span(0, 25, None) == (0, 441)
    assert frame_span(1, 25, None) == (441, 1323)
    assert frame_span(10, 25, 10**9) == (8379, 9261)
    # clamped at the track's length (end only)
    assert frame_span(10, 25, 9000) == (8379, 9000)
    assert frame_span(20, 25, 9000) == (17199, 9000)  # past the end: empty span
    # 30 fps: N = 735, N/2 = 367.5 -> int() truncates
    assert frame_span(0, 30, None) == (0, 367)
    assert frame_span(2, 30, None) == (1102, 1837)
    # the authors' float evaluation order: 205 * (1/25) * 22050 = 180809.99999999997
    assert frame_span(205, 25, None) == (180368, 181250)
    with pytest.raises(ValueError):
        frame_span(-1, 25, None)
    with pytest.raises(ValueError):
        frame_span(0, 0, None)


def test_excerpt_is_hann_window_centred_extra_zero_left():
    ones = ArrayTrack(np.ones(10 * FS))
    # clip 0..31 at 25 fps: samples 0 ... 31*882+441 = 27783 -> L = 27784 (even)
    out = clip_excerpt(ones, 0, 31, 25)
    assert out.shape == (AUDIO_BUFFER,) and out.dtype == np.float32
    L = 27784
    lo = MID - L // 2
    np.testing.assert_allclose(out[lo : lo + L], np.hanning(L), atol=1e-6)
    assert not out[:lo].any() and not out[lo + L :].any()
    # clip 1..32: samples 441 ... 28665 -> L = 28225 (odd): left 21168 zeros, right 21167
    out = clip_excerpt(ones, 1, 32, 25)
    L = 28225
    lo = MID - L // 2
    assert lo == 21168 and AUDIO_BUFFER - lo - L == 21167
    np.testing.assert_allclose(out[lo : lo + L], np.hanning(L), atol=1e-6)
    assert not out[:lo].any() and not out[lo + L :].any()
    assert out[MID] == pytest.approx(1.0)  # the excerpt's middle at the buffer's middle


def test_excerpt_clamped_at_track_end():
    rng = np.random.default_rng(0)
    data = rng.standard_normal(20_000).astype(np.float32)
    track = ArrayTrack(data)
    out = clip_excerpt(track, 0, 31, 25)  # wants up to 27783, the track ends at 19999
    L = 20_000  # samples 0 ... 19999 (the span end clamps to len, slicing stops before)
    lo = MID - L // 2
    np.testing.assert_allclose(out[lo : lo + L], data * np.hanning(L), rtol=1e-5, atol=1e-5)
    assert not out[:lo].any() and not out[lo + L :].any()
    # frames wholly past the end: empty excerpt, zero buffer
    assert not clip_excerpt(track, 40, 71, 25).any()


def test_excerpt_longer_than_buffer_keeps_the_centre():
    """Under 10 fps a clip's excerpt exceeds 70 560 samples: the windowed excerpt's centred
    70 560 samples are kept."""
    rng = np.random.default_rng(1)
    data = rng.standard_normal(200_000).astype(np.float32)
    fps = 5.0  # N = 4410: clip 0..31 covers samples 0 ... 31*4410 + 2205 = 138915
    out = clip_excerpt(ArrayTrack(data), 0, 31, fps)
    L = 138_916
    assert out.shape == (AUDIO_BUFFER,)
    full = (data[:L].astype(np.float64) * np.hanning(L)).astype(np.float32)
    cut = L // 2 - MID
    np.testing.assert_array_equal(out, full[cut : cut + AUDIO_BUFFER])
    assert out[0] != 0 and out[-1] != 0  # no zero padding: the buffer is full
    # a clip of 9 fps: also longer (31*2450 + 2450 + 1 = 78401); odd length, same rule
    out9 = clip_excerpt(ArrayTrack(data), 0, 31, 9.0)
    L9 = int(31 * (1 / 9.0) * FS + FS / 9.0 / 2) + 1
    assert L9 > AUDIO_BUFFER
    full9 = (data[:L9].astype(np.float64) * np.hanning(L9)).astype(np.float32)
    np.testing.assert_array_equal(out9, full9[L9 // 2 - MID : L9 // 2 - MID + AUDIO_BUFFER])


def _meta(n_frames=250, fps=25.0, duration=10.0):
    from types import SimpleNamespace

    return SimpleNamespace(n_frames=n_frames, fps=fps, duration=duration)


def _track(duration, offset=0):
    from types import SimpleNamespace

    return SimpleNamespace(duration=duration, offset=offset, rate=AUDIO_RATE)


def test_duration_mismatch_ignores_what_every_aac_file_does():
    # 250 frames at 25 fps end at 10.0 s, after the last frame's duration, even where the
    # stream states the last frame's start (9.96 s) as its duration; AAC adds a priming
    # frame and pads its last one (here 2 x 1024 samples at 44.1 kHz = 0.046 s)
    aac = 10.0 + 2 * 1024 / 44_100
    assert duration_mismatch(_meta(duration=9.96), _track(aac)) is None
    # the priming placed before the first frame (a negative offset) is no mismatch either
    assert (
        duration_mismatch(_meta(), _track(aac, offset=-round(1024 / 44_100 * AUDIO_RATE))) is None
    )
    assert duration_mismatch(_meta(n_frames=None, duration=10.0), _track(10.03)) is None


def test_duration_mismatch_reports_real_ones():
    assert duration_mismatch(_meta(), _track(9.5)) == pytest.approx(-0.5)
    assert duration_mismatch(_meta(), _track(10.6)) == pytest.approx(0.6)
    # audio that starts 1 s into the video and lasts 10 s ends 1 s late
    assert duration_mismatch(_meta(), _track(10.0, offset=AUDIO_RATE)) == pytest.approx(1.0)
    assert duration_mismatch(_meta(n_frames=None, duration=None), _track(10.0)) is None
    assert duration_mismatch(_meta(), _track(None)) is None


# --- decoding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix,codec,src_rate,atol",
    [
        (".mov", "pcm_s16le", 44_100, 0.3),
        (".mp4", "aac", 44_100, 3.0),
        (".mkv", "libopus", 48_000, 3.0),
    ],
)
def test_tone_burst_lands_in_exactly_the_covering_clips(tmp_path, suffix, codec, src_rate, atol):
    fps, n_frames, at = 25, 100, 2.0  # burst at 2.0 s = frame 50's time, +-10 ms
    n = n_frames * src_rate // fps
    mono = burst(n, src_rate, at)
    stereo = np.stack([mono, mono])
    path = encode(tmp_path / f"v{suffix}", stereo, src_rate, codec=codec, n_frames=n_frames)
    ideal = AUDIO_SCALE * burst(n_frames * FS // fps, FS, at)  # on the 22 050 Hz timeline
    clips = frame_clips(n_frames)
    with AudioTrack.open(path, video_start=0.0) as track:
        assert track.offset == 0
        got = np.concatenate([clip_batch(track, clips[i : i + 8], fps) for i in range(0, 100, 8)])
        length = track.length
    assert got.shape == (n_frames, 1, AUDIO_BUFFER, 1) and got.dtype == np.float32
    assert abs(length - n_frames * FS // fps) <= FS // 100  # (opus: + its padding)
    burst_lo, burst_hi = int((at - 0.01) * FS), int((at + 0.01) * FS)
    heard = set()
    for (first, last), buf in zip(clips, got[:, 0, :, 0], strict=True):
        start = frame_span(first, fps, length)[0]
        end = frame_span(last, fps, length)[1]
        covers = start <= burst_hi and end >= burst_lo
        want = expected_excerpt(ideal, length, first, last, fps)
        np.testing.assert_allclose(buf, want, atol=atol)  # Hann-weighted, centred
        if np.abs(buf).max() > 1.0:
            heard.add(last)
        if not covers:
            assert np.abs(buf).max() < atol
    # clips of frames 50 ... 81 contain frame 50; frame 49's span ends 10 ms before it
    # (and frame 82's clip starts with frame 51, 10 ms after it): in those the burst sits
    # at the very edge of the window, where the Hann weight is ~0.
    covering = {last for first, last in clips if first <= 51 and last >= 49}
    assert heard <= covering and set(range(51, 81)) <= heard
    # the middle clip (frames 35..66, centred on 50.5) hears it at ~full weight, centred
    buf = got[66, 0, :, 0]
    peak = np.argmax(np.abs(buf))
    start = frame_span(35, fps, length)[0]
    L = frame_span(66, fps, length)[1] + 1 - start
    assert abs(peak - (MID - L // 2 + (int(at * FS) - start))) < 30
    assert np.abs(buf).max() == pytest.approx(0.5 * AUDIO_SCALE, rel=0.05)


@pytest.mark.parametrize("rate", [44_100, 48_000])
def test_resampled_stereo_keeps_frequency_and_amplitude(tmp_path, rate):
    t = np.arange(rate) / rate  # 1 s
    left, right = 0.6 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 440 * t)
    path = encode(tmp_path / "s.mov", np.stack([left, right]), rate)
    with AudioTrack.open(path) as track:
        assert track.length == FS and track.duration == pytest.approx(1.0)
        x = track.samples(0, FS + 100)
    assert not x[FS + 2 :].any()  # zeros after the end of the track
    x = x[:FS].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) == 440  # 1 Hz bins over 1 s
    # mono = mean of the channels = 0.4 sin, scaled by 256 (away from the edges)
    core = x[1000:-1000]
    amp = np.sqrt(2 * np.mean(core**2))
    assert amp == pytest.approx(0.4 * AUDIO_SCALE, rel=0.01)
    assert np.abs(core).max() == pytest.approx(0.4 * AUDIO_SCALE, rel=0.01)


@pytest.mark.parametrize("suffix", [".mov", ".mkv"])
def test_late_audio_stream_is_placed_by_its_timestamps(tmp_path, suffix):
    rate = 44_100
    audio = burst(rate * 2, rate, at=0.25)  # at 0.25 s of the audio = 0.75 s of the video
    path = encode(tmp_path / f"late{suffix}", audio[None], rate, audio_start=0.5, n_frames=75)
    with AudioTrack.open(path) as track:
        assert track.offset == FS // 2  # sample 11025: 0.5 s after the first frame
        assert track.duration == pytest.approx(2.0, abs=1e-3)  # the audio's own length
        assert track.length == FS // 2 + 2 * FS  # where it ends on the video timeline
        x = track.samples(0, int(1.5 * FS))
    assert not x[: FS // 2].any()  # zeros before the audio starts
    ideal = AUDIO_SCALE * burst(int(1.5 * FS), FS, at=0.75)
    np.testing.assert_allclose(x, ideal, atol=0.3)
    env_peak = np.argmax(np.abs(x))
    assert abs(env_peak / FS - 0.75) < 0.001


def test_video_starting_late_shifts_the_timeline(tmp_path):
    """A video whose first frame is at 0.2 s: sample 0 is at 0.2 s of the file's clock."""
    from salcli.media.decode import open_video

    rate = 44_100
    audio = burst(rate * 2, rate, at=1.0)
    path = encode(tmp_path / "vlate.mov", audio[None], rate, n_frames=30, video_start=5)
    with open_video(path) as reader:
        start = reader.meta.start_time
    assert start == pytest.approx(0.2)
    with AudioTrack.open(path, video_start=start) as track:
        assert track.offset == -int(0.2 * FS)  # the audio starts 0.2 s before frame 0
        x = track.samples(0, 2 * FS)
    assert abs(np.argmax(np.abs(x)) / FS - 0.8) < 0.001


def test_gap_in_audio_timestamps_is_silence(tmp_path):
    rate, block = 44_100, 1024  # (pcm frames of 1024 samples: the hole starts at one)
    t = np.arange(rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 300 * t)
    path = encode(tmp_path / "gap.mkv", tone[None], rate, gap=(0.5, 0.3))
    hole = -(-int(0.5 * rate) // block) * block / rate  # audio time where the hole starts
    with AudioTrack.open(path) as track:
        # from Matroska's DURATION tag (its timestamps are in ms: within 1 ms)
        assert abs(track.length - int(1.3 * FS)) <= FS // 1000
        x = track.samples(0, int(1.4 * FS))
    assert np.abs(x[int((hole + 0.002) * FS) : int((hole + 0.298) * FS)]).max() < 1.0
    tf = np.arange(len(x)) / FS

    def lag(part: slice, delay: float) -> int:
        """Samples by which x[part] lags the tone played ``delay`` s late (within 2 ms)."""
        shifts = range(-44, 45)
        ref = [
            np.dot(x[part], np.sin(2 * np.pi * 300 * (tf[part] - delay - k / FS))) for k in shifts
        ]
        return shifts[int(np.argmax(ref))]

    assert lag(slice(int(0.3 * FS), int(0.4 * FS)), 0.0) == 0  # before the hole: on time
    # after the hole: 0.3 s late, to the timestamps' 1 ms resolution
    assert abs(lag(slice(int(1.0 * FS), int(1.1 * FS)), 0.3)) <= FS // 1000


def test_wav_file_read_directly(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(2)
    pcm = rng.integers(-20000, 20000, size=FS // 2, dtype=np.int16)
    path = tmp_path / "clip.wav"
    sf.write(path, pcm, FS, subtype="PCM_16")
    with AudioTrack.open(path) as track:
        assert track.offset == 0 and track.length == len(pcm)
        x = track.samples(-10, len(pcm) + 10)
    # 22 050 Hz mono 16-bit: exactly v * 2**-7, zeros outside
    np.testing.assert_array_equal(x[10:-10], pcm.astype(np.float32) * 2.0**-7)
    assert not x[:10].any() and not x[-10:].any()
    # a 44.1 kHz stereo wav (the datasets' other layout) decodes too
    stereo = tmp_path / "st.wav"
    t = np.arange(44_100) / 44_100
    sf.write(stereo, np.stack([np.sin(2 * np.pi * 100 * t)] * 2, axis=1) * 0.25, 44_100)
    with AudioTrack.open(stereo) as track:
        assert track.length == FS
        y = track.samples(0, FS)
    assert np.abs(y[100:-100]).max() == pytest.approx(0.25 * AUDIO_SCALE, rel=0.01)


def test_unknown_length_is_clamped_at_the_end_of_the_stream(tmp_path):
    """NUT states no stream duration: ``length`` is None until decoding reaches the end,
    and the last clips are clamped there exactly as with a known length."""
    rate, fps, n_frames = 22_050, 25, 60
    rng = np.random.default_rng(3)
    signal = 0.3 * rng.standard_normal(int(2.2 * rate)).clip(-3, 3) / 3  # 2.2 s
    path = encode(tmp_path / "u.nut", signal[None], rate)
    clips = frame_clips(n_frames)
    with AudioTrack.open(path) as track:
        assert track.length is None and track.duration is None
        got = clip_batch(track, clips, fps)
        assert track.length == len(signal) and track.duration == pytest.approx(2.2)
    ref_data = np.round(signal.astype(np.float32) * 32767).astype(np.int16) * 2.0**-7
    ref = ArrayTrack(ref_data, length=len(signal))
    want = clip_batch(ref, clips, fps)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert frame_span(59, fps, None)[1] > len(signal)  # the last clips were clamped


def test_memory_stays_bounded_walking_a_long_track(tmp_path):
    import soundfile as sf

    fps, seconds = 25, 40
    rng = np.random.default_rng(4)
    pcm = rng.integers(-8000, 8000, size=seconds * FS, dtype=np.int16)
    path = tmp_path / "long.wav"
    sf.write(path, pcm, FS, subtype="PCM_16")
    data = pcm.astype(np.float32) * 2.0**-7
    n_frames = seconds * fps
    clips = frame_clips(n_frames)
    most_held = most_alloc = 0
    with AudioTrack.open(path) as track:
        for i in range(0, n_frames, 4):
            got = clip_batch(track, clips[i : i + 4], fps)
            most_held = max(most_held, track.buffered)
            most_alloc = max(most_alloc, track.capacity)
        assert track.rewinds == 0
        # a few clips' worth, not the 1.3 M samples of the track
        assert most_held <= 2 * AUDIO_BUFFER
        assert most_alloc <= 4 * AUDIO_BUFFER
        # what was streamed through the sliding buffer is still right
        ref = ArrayTrack(data)
        np.testing.assert_array_equal(got, clip_batch(ref, clips[-4:], fps))
        # the reference warm-up goes back T-2 frames once: still held, no re-decoding
        back = (n_frames - 2 * CLIP_LEN + 1, n_frames - CLIP_LEN)
        np.testing.assert_array_equal(clip_batch(track, [back], fps), clip_batch(ref, [back], fps))
        assert track.rewinds == 0
        # far behind the dropped region: re-decoded from the start, still correct
        x = track.samples(FS, 2 * FS)
        assert track.rewinds == 1
        np.testing.assert_array_equal(x, data[FS : 2 * FS])
        assert track.buffered <= 2 * AUDIO_BUFFER


# --- errors and silence -------------------------------------------------------------------


def test_no_audio_track_is_a_clear_error(tmp_path):
    path = encode(tmp_path / "mute.mp4", None, n_frames=10)
    with pytest.raises(NoAudioError) as err:
        AudioTrack.open(path)
    assert "no audio track" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(NoAudioError):
        AudioTrack.open(tmp_path)  # a folder of frames has no soundtrack
    with pytest.raises(InputError, match="no such file"):
        AudioTrack.open(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a media file" * 50)
    with pytest.raises(InputError) as err:
        AudioTrack.open(junk)
    assert not isinstance(err.value, NoAudioError) and "\n" not in str(err.value)


def test_silence():
    track = AudioTrack.silence()
    assert track.length is None and track.duration is None
    assert not track.samples(0, 1000).any() and track.samples(0, 1000).shape == (1000,)
    batch = clip_batch(track, [(0, 31), (1, 32)], 25)
    assert batch.shape == (2, 1, AUDIO_BUFFER, 1) and batch.dtype == np.float32
    assert not batch.any()
    assert duration_mismatch(_meta(), track) is None  # silence has no length to compare
    track.close()
    with AudioTrack.silence(length=500) as quiet:
        assert quiet.length == 500
