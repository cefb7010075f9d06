"""The soundtrack for AViNet: decoded, placed on the video's timeline, cut per clip.

Conventions (the published pipeline's, see the README, "Conventions", "Audio in"):

- ``AudioTrack``: the audio of a media file (any container / codec FFmpeg decodes,
  the datasets' ``.wav`` files included), decoded with PyAV, resampled to
  ``AUDIO_RATE`` = 22 050 Hz, **downmixed to mono by averaging the channels** (as
  SoundNet's own loader did), and scaled to SoundNet's range: float samples in
  [-1, 1) times ``AUDIO_SCALE`` = 256, i.e. a 16-bit PCM value v becomes v * 2**-7.
- Samples are indexed on the **video's** timeline: sample i is at time
  ``video_start + i / AUDIO_RATE`` (``video_start`` = presentation time of the video's
  first frame, the reader's ``meta.start_time``). The audio is placed by the timestamp
  of its first decoded frame, so a stream that starts late (or early) lands where it
  plays; zeros wherever there is no audio (before it starts, in gaps, after it ends).
- ``frame_span`` / ``clip_excerpt`` / ``clip_batch``: each clip's excerpt, Hann-windowed
  and centred in a zero buffer of ``AUDIO_BUFFER`` = 70 560 samples, the model's input
  (B, 1, 70560, 1).

Memory stays bounded: the track is decoded lazily as requests reach further, and
samples before a low-water mark (``KEEP_BEHIND`` samples before the start of the
latest request) are dropped. Requests are expected in (roughly) increasing order of
start, as the prediction pipeline makes them; a request that starts before the dropped
region re-decodes the file from its beginning (correct, only slower).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from salcli.errors import InputError, NoAudioError, one_line

AUDIO_RATE = 22_050  # Hz, SoundNet's input rate: every family's soundtrack is resampled to it
AUDIO_SCALE = 256.0  # SoundNet's input range is [-256, 256] (16-bit PCM v -> v * 2**-7)
KEEP_BEHIND_S = 3.2  # s of audio kept before the latest request's start
KEEP_BEHIND = int(AUDIO_RATE * KEEP_BEHIND_S)  # samples
GAP_TOLERANCE = 0.005  # s; timestamp jumps larger than this are filled with silence
MAX_GAP_CHUNK = AUDIO_RATE  # samples (at the source rate) of silence made at a time
MAX_CORRUPT_PACKETS = 1000  # corrupt packets skipped before giving up on a track
MIN_CAPACITY = 1 << 16  # samples; smallest internal buffer allocated


def _av():
    import av  # imported lazily: `salcli --help` stays fast

    return av


class AudioTrack:
    """A mono 22 050 Hz soundtrack on a video's timeline, streamed through a bounded buffer.

    Make one with ``AudioTrack.open(path, video_start=...)`` or ``AudioTrack.silence()``.

    Attributes and properties:

    - ``samples(start, stop)``: float32 (stop - start,), the samples at timeline indices
      start ... stop-1, zeros where there is no audio (negative indices are before the
      video's first frame).
    - ``length``: the number of samples of the track on the video timeline (index of the
      end of the audio: start offset + audio samples), the ``len`` of the span rule.
      From the duration the container states (the stream's duration, or Matroska's
      ``DURATION`` tag), fixed at open; else ``None`` until decoding reaches the end of
      the stream, then the decoded count.
    - ``duration``: seconds of audio (the stated duration, or the decoded length once at
      the end), ``None`` when not known yet.
    - ``offset``: timeline index of the audio's first sample (> 0: starts after the
      video; < 0: starts before it).
    - ``buffered`` / ``capacity``: samples held now / allocated (memory is 4 bytes each).
    - ``rewinds``: how many times a request behind the dropped region re-decoded the file.
    """

    rate = AUDIO_RATE  # Hz

    def __init__(self, path: Path | None, video_start: float, keep_behind: int) -> None:
        # Use AudioTrack.open() or AudioTrack.silence().
        self.path = path
        self.video_start = float(video_start or 0.0)
        self.keep_behind = int(keep_behind)
        self.rewinds = 0
        self._container = None
        self._chunks: Iterator[np.ndarray] = iter(())
        self._meta_duration: float | None = None
        self._silent_length: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)  # (capacity,) samples
        self._lo = 0  # timeline index of self._buf[0]
        self._n = 0  # samples held, self._buf[:self._n]
        self._dropped_to: int | None = None  # samples before this index were discarded
        self._low_water: int | None = None  # may drop samples before this index
        self._eof = self.path is None  # a silent track has nothing to decode
        self._origin: int | None = 0 if self.path is None else None  # index of sample 0
        self._total = 0  # samples produced by the decoder so far
        self._frames_seen = 0  # audio frames decoded
        self._packets_seen = 0  # packets with data demuxed

    # --- construction ---------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | Path, *, video_start: float = 0.0, keep_behind: int = KEEP_BEHIND
    ) -> AudioTrack:
        """The first audio stream of the media file ``path``, sample 0 at ``video_start`` s.

        ``video_start`` is the presentation time (in the file's own clock) of the video's
        first frame; for an audio file separate from its video (the datasets' ``.wav``),
        pass 0.0: that file's time zero is the first frame.

        Raises ``NoAudioError`` when there is no audio stream (or it holds no packets),
        ``InputError`` when the file is missing, unreadable, or its audio undecodable.
        """
        track = cls(Path(path), video_start, keep_behind)
        track._start()
        return track

    @classmethod
    def silence(cls, length: int | None = None) -> AudioTrack:
        """An all-zero track (the "go on with silence" option); ``length`` as ``.length``."""
        track = cls(None, 0.0, KEEP_BEHIND)
        track._silent_length = length
        return track

    def _start(self) -> None:
        """Open the container, pick the audio stream, decode up to the first samples."""
        av = _av()
        path = self.path
        assert path is not None
        if path.is_dir():
            raise NoAudioError(f"{path}: a folder of frames has no audio track")
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file")
        try:
            container = av.open(str(path), metadata_errors="ignore")
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a readable media file ({one_line(exc)})") from None
        try:
            if not container.streams.audio:
                raise NoAudioError(f"{path}: no audio track")
            stream = container.streams.audio[0]
            if stream.codec_context is None:
                raise InputError(f"{path}: no decoder for the audio codec")
            self._meta_duration = _stated_duration(stream)
            self._container = container
            self._chunks = self._decode(container, stream)
            self._pull()  # the first samples: fails now if the track is undecodable
        except BaseException:
            self._chunks = iter(())
            self._container = None
            container.close()
            raise
        if self._frames_seen == 0:
            self.close()
            if self._packets_seen == 0:
                raise NoAudioError(f"{path}: the audio track is empty")
            raise InputError(f"{path}: the audio track cannot be decoded")

    # --- decoding -------------------------------------------------------------------

    def _decode(self, container, stream) -> Iterator[np.ndarray]:
        """Mono, 22 050 Hz, SoundNet-scaled chunks, contiguous from timeline ``_origin``.

        Sets ``_origin`` from the first decoded frame's timestamp before yielding.
        Timestamp jumps forward by more than ``GAP_TOLERANCE`` are filled with silence
        (fed through the resampler, so they stay sample-exact); small jitter and
        overlaps (timestamps going back) are ignored: samples stay contiguous.
        """
        av = _av()
        resampler = None
        setup = None  # (format, layout, rate) the resampler was made for
        expected = 0.0  # s, where the next frame should start if contiguous
        errors = 0
        try:
            for packet in container.demux(stream):
                if packet.size:  # (the empty packet at the end flushes the decoder)
                    self._packets_seen += 1
                try:
                    frames = packet.decode()
                except (av.InvalidDataError, av.error.PatchWelcomeError, ValueError):
                    errors += 1  # a corrupt packet: skip it, keep decoding
                    if errors > MAX_CORRUPT_PACKETS:
                        raise InputError(f"{self.path}: too many corrupt audio packets") from None
                    continue
                for frame in frames:
                    if frame.samples == 0:
                        continue
                    key = (frame.format.name, frame.layout.name, frame.sample_rate)
                    if key != setup:  # first frame, or the stream changed its layout/rate
                        if resampler is not None:
                            yield from self._mono(resampler.resample(None))
                        resampler = av.AudioResampler(format="fltp", rate=AUDIO_RATE)
                        setup = key
                    t = float(frame.time) if frame.time is not None else None
                    if self._origin is None:
                        first = t if t is not None else self.video_start
                        if t is None and stream.start_time is not None:
                            first = float(stream.start_time * stream.time_base)
                        self._origin = int(round((first - self.video_start) * AUDIO_RATE))
                        self._lo = self._origin
                        expected = first
                    self._frames_seen += 1
                    if t is not None and t - expected > GAP_TOLERANCE:
                        gap = int(round((t - expected) * frame.sample_rate))
                        for silent in _silent_frames(frame, gap):
                            yield from self._mono(resampler.resample(silent))
                        expected += gap / frame.sample_rate
                    yield from self._mono(resampler.resample(frame))
                    expected += frame.samples / frame.sample_rate
            if resampler is not None:
                yield from self._mono(resampler.resample(None))
        except av.FFmpegError as exc:
            if self._frames_seen == 0:
                raise InputError(
                    f"{self.path}: the audio track cannot be decoded ({one_line(exc)})"
                ) from None
            # samples decoded so far are kept; a broken tail ends the track

    def _mono(self, frames) -> Iterator[np.ndarray]:
        for out in frames:
            planes = out.to_ndarray()  # (C, n) float32 in [-1, 1)
            if planes.shape[1] == 0:
                continue
            mono = planes.mean(axis=0, dtype=np.float32) if planes.shape[0] > 1 else planes[0]
            self._total += mono.shape[0]
            yield mono * np.float32(AUDIO_SCALE)

    def _pull(self) -> bool:
        """Decode one more chunk into the buffer; False at the end of the stream."""
        if self._eof:
            return False
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._eof = True
            self._close_container()
            return False
        self._append(chunk)
        return True

    def _append(self, chunk: np.ndarray) -> None:
        need = self._n + chunk.shape[0]
        if need > self._buf.shape[0]:
            self._compact()
            need = self._n + chunk.shape[0]
            if need > self._buf.shape[0]:
                grown = np.empty(max(MIN_CAPACITY, 2 * self._buf.shape[0], need), np.float32)
                grown[: self._n] = self._buf[: self._n]
                self._buf = grown
        self._buf[self._n : need] = chunk
        self._n = need

    def _compact(self) -> None:
        """Drop the samples before the low-water mark."""
        if self._low_water is None:
            return
        drop = min(self._n, self._low_water - self._lo)
        if drop <= 0:
            return
        self._buf[: self._n - drop] = self._buf[drop : self._n]
        self._n -= drop
        self._lo += drop
        self._dropped_to = self._lo

    def _rewind(self) -> None:
        """Start decoding again from the beginning of the file."""
        self._close_container()
        self._reset()
        self.rewinds += 1
        self._start()

    # --- public ---------------------------------------------------------------------

    @property
    def length(self) -> int | None:
        if self.path is None:
            return self._silent_length
        if self._meta_duration is not None and self._origin is not None:
            return self._origin + int(round(self._meta_duration * AUDIO_RATE))
        return self._lo + self._n if self._eof else None  # the end of the decoded audio

    @property
    def duration(self) -> float | None:
        if self.path is None:
            return None
        if self._meta_duration is not None:
            return self._meta_duration
        return self._total / AUDIO_RATE if self._eof else None

    @property
    def offset(self) -> int:
        return self._origin or 0

    @property
    def buffered(self) -> int:
        return self._n

    @property
    def capacity(self) -> int:
        return int(self._buf.shape[0])

    def samples(self, start: int, stop: int) -> np.ndarray:
        """(stop - start,) float32: timeline samples start ... stop-1, zeros where no audio.

        Requests should come in increasing order of ``start``: samples more than
        ``keep_behind`` before the latest request's start may be dropped, and asking for
        them again re-decodes the file from its beginning.
        """
        start, stop = int(start), int(stop)
        out = np.zeros(max(0, stop - start), dtype=np.float32)
        if stop <= start or self.path is None:
            return out
        if self._dropped_to is not None and start < self._dropped_to:
            self._rewind()
        self._low_water = start - self.keep_behind
        while self._lo + self._n < stop and self._pull():
            pass
        lo = max(start, self._lo)
        hi = min(stop, self._lo + self._n)
        if hi > lo:
            out[lo - start : hi - start] = self._buf[lo - self._lo : hi - self._lo]
        return out

    def _close_container(self) -> None:
        chunks, self._chunks = self._chunks, iter(())
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        if self._container is not None:
            self._container.close()
            self._container = None

    def close(self) -> None:
        """Release the file and the buffer; the track reads as silence afterwards."""
        self._close_container()
        self._eof = True
        self._buf = np.zeros(0, dtype=np.float32)
        self._lo += self._n  # (the end of the audio stays where it was)
        self._n = 0

    def __enter__(self) -> AudioTrack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        what = str(self.path) if self.path is not None else "silence"
        return f"AudioTrack({what}, offset={self.offset}, length={self.length})"


def _stated_duration(stream) -> float | None:
    """Seconds of audio the container states: the stream's duration, or (Matroska/WebM,
    which state none) its ``DURATION`` tag, the end time, less the stream's start."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base) or None
    tag = (stream.metadata or {}).get("DURATION")
    try:
        h, m, sec = str(tag).split(":")
        end = int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None
    start = 0.0
    if stream.start_time is not None and stream.time_base is not None:
        start = float(stream.start_time * stream.time_base)
    return end - start if end > start else None


def _silent_frames(like, n: int):
    """Zero frames shaped like ``like`` (format, layout, rate), ``n`` samples in all."""
    av = _av()
    while n > 0:
        k = min(n, MAX_GAP_CHUNK)
        frame = av.AudioFrame(format=like.format.name, layout=like.layout.name, samples=k)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = like.sample_rate
        yield frame
        n -= k


# --- spans and excerpts (pure) ---------------------------------------------------------


def frame_span(n: int, fps: float, length: int | None) -> tuple[int, int]:
    """The audio samples owned by 0-based frame ``n``: (first, last), both inclusive.

    The conventions' rule for 1-based frame n+1, with Fs = 22 050 and N = Fs / fps:
    [max(0, n/fps*Fs - N/2), min(length, n/fps*Fs + N/2)]. Both ends are truncated to
    integers with ``int()`` (floor, as they are >= 0) and the products are evaluated in
    the same order as the authors' code (n * (1/fps) * Fs), so the spans, and hence
    the Hann window lengths, are the authors' to the sample, floating-point rounding
    included: e.g. at 25 fps frame 205's centre evaluates to 180809.99999999997, so its
    span is (180368, 181250), one sample before exact arithmetic's. ``length=None`` does not
    clamp the end. The start is not clamped to ``length`` (frames past the end of the
    audio get an empty span, as in the authors' pipeline).
    """
    if n < 0:
        raise ValueError(f"frame index must be >= 0, got {n}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    half = AUDIO_RATE / float(fps) / 2  # N / 2, samples
    centre = n * (1.0 / float(fps)) * AUDIO_RATE  # samples
    end = centre + half
    if length is not None:
        end = min(length, end)
    return int(max(0.0, centre - half)), int(end)


CODEC_PADDING = 2 * 1024 / 44_100  # s: an AAC encoder's priming frame plus its last, padded one


def duration_mismatch(meta, track: AudioTrack) -> float | None:
    """How much later (s) the soundtrack ends than the video (negative: earlier), when
    they differ by more than one frame plus an audio codec's padding; else None (also
    when either length is unknown).

    Both ends are taken on the video's timeline, from its first frame: the video ends
    after its last frame's duration (``n_frames / fps``), the audio at its first
    sample's place (``track.offset``: AAC's priming puts it before the first frame)
    plus its duration, so what every AAC file does (priming, a padded last frame) is
    not a mismatch.
    """
    fps = float(meta.fps or 0.0)
    if track.duration is None or not fps > 0:
        return None
    video_end = meta.n_frames / fps if meta.n_frames else meta.duration
    if video_end is None:
        return None
    audio_end = track.offset / track.rate + float(track.duration)
    diff = audio_end - float(video_end)
    return diff if abs(diff) > 1.0 / fps + CODEC_PADDING else None
