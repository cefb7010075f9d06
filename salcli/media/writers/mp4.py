"""The MP4: the heat map blended over the video, with its sound (``salcli.media.writers``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from salcli.defaults import OVERLAY_ALPHA
from salcli.errors import InputError, OutputError, UsageError
from salcli.media.decode import fraction_fps, open_video
from salcli.media.writers.base import (
    Writer,
    _close_quietly,
    _run_record,
    _temp_name,
    overlay,
    to_uint8,
)

# --- mp4 -------------------------------------------------------------------------------------


MP4_CRF = 20  # libx264 constant rate factor (lower = better, 0-51)
MP4_PRESET = "veryfast"  # libx264 speed preset
VIDEO_CODECS = ("libx264", "mpeg4")  # first one PyAV's FFmpeg can encode is used
MPEG4_BITS_PER_PIXEL = 0.25  # bit/pixel/frame of the MPEG-4 part 2 fallback
MP4_ODD_MODES = ("exact", "pad")
AUDIO_LEAD = 0.5  # s, audio is muxed this far ahead of the last video frame
REMUX_AUDIO_CODECS = frozenset({"aac", "mp3", "opus", "alac", "ac3", "eac3", "flac"})
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
AAC_FALLBACK_RATE = 48_000  # Hz, for sources at a rate AAC does not have
AAC_FRAME = 1024  # samples per AAC frame
AAC_BITRATE = 128_000  # bit/s, transcoded audio


def _pick_video_codec(av) -> str:
    for name in VIDEO_CODECS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - not in this FFmpeg build
            continue
    raise OutputError(f"no video encoder among {', '.join(VIDEO_CODECS)} in PyAV's FFmpeg")


class Mp4Writer(Writer):
    """``DIR/<stem>_saliency.mp4``: heat map over the source frames, source audio carried."""

    fmt = "mp4"
    needs_frames = True

    def _configure(self) -> None:
        crf = self.options.get("mp4_crf", MP4_CRF)
        odd = self.options.get("mp4_odd", "exact")
        alpha = self.options.get("mp4_alpha", OVERLAY_ALPHA)
        if not isinstance(crf, int) or not 0 <= crf <= 51:
            raise UsageError(f"mp4_crf must be an integer in 0..51, got {crf!r}")
        if odd not in MP4_ODD_MODES:
            raise UsageError(f"mp4_odd must be one of {', '.join(MP4_ODD_MODES)}, got {odd!r}")
        if not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
            raise UsageError(f"mp4_alpha must be a number in [0, 1], got {alpha!r}")
        self.crf, self.odd, self.alpha = crf, odd, float(alpha)

    def _open(self) -> None:
        import av

        self._src = None  # a reader of our own, only for callers that give no frames
        self._frames = None
        self._last_rgb: np.ndarray | None = None
        self._ain = None
        self._tmp = _temp_name(self.out_dir, self.paths[0])
        self._temps.append(self._tmp)
        self._out = av.open(str(self._tmp), "w", format="mp4")
        self._out.metadata["comment"] = json.dumps(_run_record(self.meta, self.run))
        self._rate = fraction_fps(self.meta.fps)
        self._add_video(av)
        self._audio_mode = ""  # "" (none) | "copy" | "aac"
        if self.meta.has_audio and Path(self.meta.path).is_file():
            self._add_audio(av)

    def _frame_size(self) -> tuple[int, int]:
        """(width, height) of the pictures encoded (a subclass may make its own)."""
        return self.meta.width, self.meta.height

    def _add_video(self, av) -> None:
        w, h = self._frame_size()
        odd = w % 2 or h % 2
        self._pad = (w % 2, h % 2) if odd and self.odd == "pad" else (0, 0)
        codec = _pick_video_codec(av)
        vs = self._out.add_stream(codec, rate=self._rate)
        vs.width, vs.height = w + self._pad[0], h + self._pad[1]
        if codec == "libx264":
            vs.pix_fmt = "yuv444p" if odd and self.odd == "exact" else "yuv420p"
            vs.options = {"crf": str(self.crf), "preset": MP4_PRESET}
        else:  # MPEG-4 part 2 takes odd sizes in yuv420p
            vs.pix_fmt = "yuv420p"
            vs.bit_rate = int(w * h * float(self._rate) * MPEG4_BITS_PER_PIXEL)
        vs.time_base = 1 / self._rate
        self.video_codec = codec
        self._vs = vs

    def _add_audio(self, av) -> None:
        ain = av.open(str(self.meta.path), metadata_errors="ignore")
        self._ain = ain
        src = ain.streams.audio[0]
        self._t0 = float(self.meta.start_time or 0.0)  # s, the video's first frame
        self._apackets = ain.demux(src)
        self._pending = None
        name = src.codec_context.codec.canonical_name  # "mp3", not the decoder "mp3float"
        if name in REMUX_AUDIO_CODECS:
            try:
                self._as = self._out.add_stream_from_template(src)
                self._audio_mode = "copy"
                self._shift = int(round(self._t0 / src.time_base)) if src.time_base else 0
                self._last_dts: int | None = None
                self._last_ticks = 0  # source ticks between the last two packets
                return
            except ValueError:
                pass  # the MP4 muxer refuses it: transcode
        channels = src.codec_context.channels or 1
        rate = src.codec_context.sample_rate or AAC_FALLBACK_RATE
        rate = rate if rate in AAC_RATES else AAC_FALLBACK_RATE
        layout = "mono" if channels == 1 else "stereo"
        self._as = self._out.add_stream("aac", rate=rate)
        self._as.layout = layout
        self._as.bit_rate = AAC_BITRATE
        self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self._abuf: list[np.ndarray] = []  # (C, n) float32 pieces not yet encoded
        self._abuf_len = 0
        self._apos: int | None = None  # samples, pts of the next encoded frame
        self._skip = 0  # samples still to drop (audio that starts before the video)
        self._aend: int | None = None  # samples, where the audio stops (set at close)
        self._arate = rate
        self._alayout = layout
        self._audio_mode = "aac"

    def _write(self, index: int, saliency: np.ndarray, time: float, rgb) -> None:
        import av

        rgb = self._source_frame(index) if rgb is None else rgb
        picture = self._picture(index, saliency, rgb)
        if any(self._pad):
            import cv2

            picture = cv2.copyMakeBorder(
                picture, 0, self._pad[1], 0, self._pad[0], cv2.BORDER_REPLICATE
            )
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = index
        self._out.mux(self._vs.encode(frame))
        if self._audio_mode:
            self._pump_audio(float((index + 1) / self._rate) + AUDIO_LEAD)

    def _picture(self, index: int, saliency: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        """The (h, w, 3) uint8 picture of frame ``index``: the heat map over the frame."""
        if rgb.shape[:2] != saliency.shape:
            raise InputError(
                f"{self.meta.path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"its map {saliency.shape[1]}x{saliency.shape[0]}"
            )
        return overlay(rgb, to_uint8(saliency), self.alpha)

    def _source_frame(self, index: int) -> np.ndarray:
        """The source frame ``index`` (RGB), decoded here for a caller that gave none; the
        last one again if the source ended early."""
        if self._frames is None:
            self._src = open_video(self.meta.path, fps=self.meta.fps)
            self._frames = iter(self._src)
        for frame in self._frames:
            if frame.index < index:
                continue
            self._last_rgb = frame.rgb
            return frame.rgb
        if self._last_rgb is None:  # pragma: no cover - open_video refuses empty videos
            raise InputError(f"{self.meta.path}: no frames to overlay")
        return self._last_rgb

    def _pump_audio(self, until: float) -> None:
        """Mux source audio up to ``until`` seconds of output time."""
        while True:
            packet = self._pending if self._pending is not None else next(self._apackets, None)
            self._pending = None
            if packet is None:
                return
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None or packet.size == 0:
                continue
            t = float(ts * packet.time_base) - self._t0
            if t >= until:
                self._pending = packet
                return
            if self._audio_mode == "copy":
                packet.pts = None if packet.pts is None else packet.pts - self._shift
                packet.dts = None if packet.dts is None else packet.dts - self._shift
                if packet.dts is not None and self._last_dts is not None:
                    self._last_ticks = packet.dts - self._last_dts
                self._last_dts = packet.dts
                if not packet.duration and self._last_ticks > 0:
                    packet.duration = self._last_ticks  # Matroska leaves some out (ALAC)
                packet.stream = self._as
                self._out.mux(packet)
            else:
                self._transcode(packet)

    def _transcode(self, packet) -> None:
        """Decode ``packet`` (None: flush), buffer resampled audio, encode whole AAC frames."""
        frames = packet.decode() if packet is not None else []
        for decoded in frames:
            if self._apos is None:  # first samples: place them on the output timeline
                t = float(decoded.time or 0.0) - self._t0 if decoded.time is not None else 0.0
                self._apos = int(round(t * self._arate))
                self._skip = max(0, -self._apos)
                self._apos = max(0, self._apos)
            for piece in self._resampler.resample(decoded):
                self._add_samples(piece.to_ndarray())
        if packet is None:
            for piece in self._resampler.resample(None):
                self._add_samples(piece.to_ndarray())
        self._encode_samples(final=packet is None)

    def _add_samples(self, samples: np.ndarray) -> None:  # (C, n) float32
        if self._skip:
            cut = min(self._skip, samples.shape[1])
            samples, self._skip = samples[:, cut:], self._skip - cut
        if samples.shape[1]:
            self._abuf.append(np.ascontiguousarray(samples, dtype=np.float32))
            self._abuf_len += samples.shape[1]

    def _encode_samples(self, final: bool = False) -> None:
        """Encode the whole AAC frames buffered (``final``: all of it), up to ``_aend``."""
        import av

        if self._apos is None or not self._abuf:
            return
        buf = np.concatenate(self._abuf, axis=1)  # (C, n)
        if self._aend is not None:
            buf = buf[:, : max(0, self._aend - self._apos)]
        stop = buf.shape[1] if final else buf.shape[1] // AAC_FRAME * AAC_FRAME
        for start in range(0, stop, AAC_FRAME):
            chunk = np.ascontiguousarray(buf[:, start : min(stop, start + AAC_FRAME)])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self._alayout)
            frame.sample_rate = self._arate
            frame.pts = self._apos
            self._apos += chunk.shape[1]
            self._out.mux(self._as.encode(frame))
        rest = buf[:, stop:]
        self._abuf = [rest] if rest.shape[1] else []
        self._abuf_len = rest.shape[1]

    def _finish(self) -> None:
        self._out.mux(self._vs.encode())  # flush the video encoder
        if self._audio_mode:
            end_s = float(self.count / self._rate)
            if self._audio_mode == "aac":
                self._aend = int(round(end_s * self._arate))
            self._pump_audio(end_s)
            if self._audio_mode == "aac":
                self._transcode(None)
                self._out.mux(self._as.encode())
        self._out.close()
        self._close_inputs()
        os.replace(self._tmp, self.paths[0])

    def _close_inputs(self) -> None:
        for name in ("_src", "_ain"):
            handle = getattr(self, name, None)
            if handle is not None:
                try:
                    handle.close()
                except Exception:  # noqa: BLE001 - closing a reader must not mask errors
                    pass
                setattr(self, name, None)

    def _release(self) -> None:
        _close_quietly(getattr(self, "_out", None))
        self._close_inputs()
