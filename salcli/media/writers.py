"""Output writers of ``salcli predict``: one saliency map per frame in, finished files out.

A writer is made by ``make_writer(fmt, out_dir, meta, run, **options)`` and fed
``write(index, saliency, time, rgb=None)`` once per frame, in frame order (index 0, 1,
2...); ``saliency`` is a (H, W) float array in [0, 1] at the frame's own size, already
post-processed (``RunInfo.postprocess`` says how); ``rgb`` is the decoded frame, which
writers that show the picture (``needs_frames``: the overlay) take from the pipeline
(so the source is decoded once). ``close()`` finishes the outputs and moves them
to their final names atomically; ``abort()`` removes every temporary. Any error raised
by ``write``/``close`` has already aborted the writer, so nothing partial is left behind;
``abort`` is idempotent. Used as a context manager, a writer closes on success and
aborts on an exception.

Formats (final paths from ``output_paths``):

- ``png``: ``DIR/<stem>/0001.png ...``, 8-bit grayscale round(255 x), numbered from 1
  with at least 4 digits (more when the video has more than 9999 frames, decided from
  the real frame count at close). Each file carries a PNG ``tEXt`` chunk ``salcli``
  (JSON: the run information, the frame's index and time). Written into a hidden
  sibling folder, swapped in at close.
- ``h5``: ``DIR/<stem>.h5``; dataset ``saliency`` (N, H, W) float16 (or float32),
  one frame per chunk, gzip; dataset ``timestamps`` (N,) float64 seconds from the first
  frame; attributes ``fps, source, model, weights_sha256, clip_len, warmup,
  salcli_version, n_frames, width, height, value_range, postprocess`` plus
  ``RunInfo.extra``.
- ``mp4``: ``DIR/<stem>_saliency.mp4``: the JET heat map blended over the source
  frames (weight ``OVERLAY_ALPHA`` for the map), same size, constant frame rate
  ``meta.fps``; H.264 (libx264, CRF ``MP4_CRF``) when PyAV's FFmpeg has it, else
  MPEG-4 part 2. The source's first audio track is copied packet for packet when its
  codec fits in MP4 (``REMUX_AUDIO_CODECS``), otherwise transcoded to AAC; it is cut at
  the end of the last video frame (frame i is shown at i / fps: a variable-rate source
  becomes constant-rate, and its audio may drift). Odd frame sizes: H.264 yuv420p cannot
  hold them, so by default (``mp4_odd="exact"``) such videos are encoded as H.264
  yuv444p at their exact size (some browsers cannot play 4:4:4); ``mp4_odd="pad"``
  keeps yuv420p and pads the right/bottom edge by one replicated pixel instead. The
  writer decodes the source itself (``salcli.media.decode.open_video``), one frame per map,
  and muxes audio as it goes, so memory stays bounded whatever the video's length.

Per-format options (keyword arguments; options of the other formats are ignored, so
one dictionary can be given to every writer; anything else is a ``UsageError``):
``png_digits`` (minimum digits of the file numbers, default 4), ``h5_dtype``
("float16" | "float32"), ``h5_gzip`` (gzip level 0-9, 0 = uncompressed),
``mp4_crf`` (0-51), ``mp4_odd`` ("exact" | "pad"), ``mp4_alpha`` (heat-map weight).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import secrets
import shutil
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salcli.defaults import DEFAULT_H5_DTYPE, FORMATS, H5_DTYPES, OVERLAY_ALPHA, OVERLAY_SUFFIX
from salcli.errors import InputError, OutputError, UsageError, os_reason
from salcli.media.decode import VideoMeta, fraction_fps, open_video

PNG_MIN_DIGITS = 4  # digits of the file numbers: 0001.png ...
PNG_COMPRESSION = 1  # zlib level of cv2's PNG encoder (0-9): fastest that still packs well
PNG_TEXT_KEY = b"salcli"  # keyword of the tEXt chunk holding the run information

H5_GZIP_LEVEL = 1  # gzip level of `saliency` (0-9); see the report for the timing
H5_TIMESTAMP_CHUNK = 4096  # frames per chunk of `timestamps`

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

VALUE_RANGE = (0.0, 1.0)

OPTIONS = {
    "png": ("png_digits",),
    "h5": ("h5_dtype", "h5_gzip"),
    "mp4": ("mp4_crf", "mp4_odd", "mp4_alpha"),
}


@dataclass
class RunInfo:
    """What every output records about the run that produced it."""

    model: str  # "vinet" | "bilinear" | "transformer" | "concat"
    weights_sha256: str
    clip_len: int  # frames per clip (T)
    warmup: str  # "mirror" | "reference"
    salcli_version: str
    postprocess: str = ""  # how the model's maps became the frames' maps
    extra: dict = field(default_factory=dict)  # other attributes (precision, device...)


# --- the writer thread ---------------------------------------------------------------


class WriterThread:
    """Calls ``fn`` on each item put, in order, on a background thread.

    At most ``maxsize`` items wait; an exception raised by ``fn`` is re-raised by the
    next ``put`` or by ``close`` (the items after it are dropped).
    """

    _STOP = object()

    def __init__(self, fn: Callable[[Any], None], maxsize: int):
        self._fn = fn
        self._q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="salcli-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is self._STOP:
                return
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as exc:  # noqa: BLE001 - handed to the producer
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: Any) -> None:
        while True:
            self._raise()
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait until every item is handled; re-raise the first error."""
        self._q.put(self._STOP)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop as soon as possible, dropping waiting items; never raises."""
        if self._error is None:
            self._error = RuntimeError("aborted")
        with contextlib.suppress(queue.Full):
            while True:  # make room for the stop mark
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    break
            self._q.put(self._STOP, timeout=1.0)
        self._thread.join(timeout=5.0)


# --- paths and factory ----------------------------------------------------------------


def _check_format(fmt: str) -> str:
    name = str(fmt).strip().lower()
    if name not in FORMATS:
        raise UsageError(f"unknown output format {fmt!r} (choose from {', '.join(FORMATS)})")
    return name


def output_paths(fmt: str, out_dir: Path, stem: str) -> list[Path]:
    """The final outputs of format ``fmt`` for a video named ``stem``; creates nothing."""
    name = _check_format(fmt)
    out_dir = Path(out_dir)
    if name == "png":
        return [out_dir / stem]
    if name == "h5":
        return [out_dir / f"{stem}.h5"]
    return [out_dir / f"{stem}{OVERLAY_SUFFIX}"]


def make_writer(fmt: str, out_dir: Path, meta: VideoMeta, run: RunInfo, **options: Any) -> Writer:
    """A writer of format ``fmt`` ("png" | "h5" | "mp4") into ``out_dir`` (created if needed)."""
    cls = {"png": PngWriter, "h5": H5Writer, "mp4": Mp4Writer}[_check_format(fmt)]
    return cls(out_dir, meta, run, **options)


# --- helpers ----------------------------------------------------------------------------


def to_uint8(saliency: np.ndarray) -> np.ndarray:
    """(H, W) map in [0, 1] -> (H, W) uint8 round(255 x); NaN -> 0, clipped to [0, 255]."""
    x = np.nan_to_num(np.asarray(saliency, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def overlay(rgb: np.ndarray, saliency_u8: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """JET heat map of ``saliency_u8`` (H, W) blended over ``rgb`` (H, W, 3) -> (H, W, 3) uint8."""
    import cv2

    heat = cv2.cvtColor(cv2.applyColorMap(saliency_u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(heat, float(alpha), rgb, 1.0 - float(alpha), 0.0)


def _temp_name(out_dir: Path, final: Path, kind: str = "tmp") -> Path:
    """A hidden sibling of ``final``: ``.<name>.<pid>-<random>.<kind>``."""
    return out_dir / f".{final.name}.{os.getpid()}-{secrets.token_hex(3)}.{kind}"


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _take_options(fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of ``fmt``; those of other formats are dropped, unknown ones refused."""
    known = {name for names in OPTIONS.values() for name in names}
    for key in options:
        if key not in known:
            raise UsageError(f"unknown writer option {key!r}")
    return {k: v for k, v in options.items() if k in OPTIONS[fmt] and v is not None}


def _png_text_chunk(key: bytes, text: str) -> bytes:
    data = key + b"\0" + text.encode("latin-1", "replace")
    return (
        struct.pack(">I", len(data))
        + b"tEXt"
        + data
        + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    )


def _run_record(meta: VideoMeta, run: RunInfo) -> dict[str, Any]:
    record = asdict(run)
    record["source"] = os.path.abspath(meta.path)
    return record


# --- base class --------------------------------------------------------------------------


class Writer:
    """Writes one video's maps, one ``write`` per frame in order; see the module docstring."""

    fmt = ""
    needs_frames = False  # whether ``write`` should be given the decoded frame

    def __init__(self, out_dir: Path, meta: VideoMeta, run: RunInfo, **options: Any):
        self.out_dir = Path(out_dir)
        self.meta = meta
        self.run = run
        self.options = _take_options(self.fmt, options)
        self.paths: list[Path] = output_paths(self.fmt, self.out_dir, meta.stem)
        self.count = 0  # maps written so far
        self.shape: tuple[int, int] | None = None  # (H, W) of the maps
        self._temps: list[Path] = []
        self._state = "open"  # "open" | "closed" | "aborted"
        self._configure()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not self.out_dir.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder")
        except OSError as exc:
            self._state = "aborted"
            raise OutputError(
                f"{self.out_dir}: cannot create the output folder ({os_reason(exc)})"
            ) from None
        with self._guard():
            self._open()

    # the parts each format provides
    def _configure(self) -> None:
        """Validate ``self.options`` (raise ``UsageError``); nothing is created yet."""

    def _open(self) -> None:
        raise NotImplementedError

    def _write(self, index: int, saliency: np.ndarray, time: float, rgb) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Complete the temporaries and move them to ``self.paths``."""
        raise NotImplementedError

    def _release(self) -> None:
        """Close open handles (for ``abort``); must not raise."""

    # the public protocol
    def write(
        self, index: int, saliency: np.ndarray, time: float, rgb: np.ndarray | None = None
    ) -> None:
        """Add the map of frame ``index`` (0-based, in order): (H, W) in [0, 1], frame
        size; ``rgb`` (H, W, 3) uint8 is the frame itself, for writers that show it."""
        if self._state != "open":
            raise RuntimeError(f"{self.fmt} writer is {self._state}")
        with self._guard():
            if index != self.count:
                raise ValueError(f"map of frame {index} given, frame {self.count} expected")
            saliency = np.asarray(saliency)
            if saliency.ndim != 2:
                raise ValueError(f"a saliency map is (H, W), got shape {saliency.shape}")
            h, w = saliency.shape
            if self.shape is None:
                self.shape = (h, w)
            if (h, w) != self.shape or (w, h) != (self.meta.width, self.meta.height):
                raise InputError(
                    f"{self.meta.path}: frame {index} map is {w}x{h}, "
                    f"the video is {self.meta.width}x{self.meta.height}"
                )
            self._write(index, saliency, float(time), rgb)
            self.count += 1

    def close(self) -> list[Path]:
        """Finish the outputs, move them to their final names; returns ``self.paths``."""
        if self._state == "closed":
            return list(self.paths)
        if self._state != "open":
            raise RuntimeError(f"{self.fmt} writer is {self._state}")
        with self._guard():
            if self.count == 0:
                raise OutputError(f"{self.paths[0]}: no saliency maps were written")
            self._finish()
        self._state = "closed"
        self._temps.clear()
        return list(self.paths)

    def abort(self) -> None:
        """Remove every temporary; final outputs of an earlier run are left untouched."""
        if self._state != "open":
            return
        self._state = "aborted"
        try:
            self._release()
        except Exception:  # noqa: BLE001 - abort must always finish cleaning
            pass
        for path in self._temps:
            _remove(path)
        self._temps.clear()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Abort on any error; OS and FFmpeg output errors become one-line ``OutputError``."""
        try:
            yield
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError) or _is_av_output_error(exc):
                raise OutputError(f"{self.paths[0]}: cannot write ({os_reason(exc)})") from None
            raise

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _is_av_output_error(exc: BaseException) -> bool:
    av = sys.modules.get("av")  # only the mp4 writer imports PyAV
    return av is not None and isinstance(exc, av.FFmpegError)


def _pick_video_codec(av) -> str:
    for name in VIDEO_CODECS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - not in this FFmpeg build
            continue
    raise OutputError(f"no video encoder among {', '.join(VIDEO_CODECS)} in PyAV's FFmpeg")


def _replace_folder(tmp: Path, final: Path) -> None:
    """Move folder ``tmp`` to ``final``, replacing an older ``final`` only now."""
    if final.is_symlink() or final.exists() and not final.is_dir():
        raise OutputError(f"{final}: exists and is not a folder")
    if not final.exists():
        os.replace(tmp, final)
        return
    old = _temp_name(final.parent, final, "old")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        os.replace(old, final)  # put the older output back
        raise
    _remove(old)


# --- png ----------------------------------------------------------------------------------


class PngWriter(Writer):
    """``DIR/<stem>/0001.png ...``: 8-bit grayscale round(255 x), numbered from 1."""

    fmt = "png"

    def _configure(self) -> None:
        digits = self.options.get("png_digits", PNG_MIN_DIGITS)
        if not isinstance(digits, int) or not 1 <= digits <= 12:
            raise UsageError(f"png_digits must be an integer in 1..12, got {digits!r}")
        self.min_digits = digits

    def _open(self) -> None:
        final = self.paths[0]
        if final.is_symlink() or final.exists() and not final.is_dir():
            raise OutputError(f"{final}: exists and is not a folder")
        self._dir = _temp_name(self.out_dir, final)
        self._temps.append(self._dir)
        self._dir.mkdir()
        self.digits = max(self.min_digits, len(str(self.meta.n_frames or 0)))
        self._record = _run_record(self.meta, self.run)

    def _name(self, index: int, digits: int) -> str:
        return f"{index + 1:0{digits}d}.png"

    def _write(self, index: int, saliency: np.ndarray, time: float, rgb) -> None:
        import cv2

        ok, buf = cv2.imencode(
            ".png", to_uint8(saliency), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
        )
        if not ok:  # pragma: no cover - cv2 encodes any uint8 image
            raise OutputError(f"{self.paths[0]}: PNG encoding failed")
        data = buf.tobytes()
        text = json.dumps({**self._record, "frame": index, "time": round(time, 6)})
        ihdr_end = 8 + 25  # signature + IHDR chunk
        data = data[:ihdr_end] + _png_text_chunk(PNG_TEXT_KEY, text) + data[ihdr_end:]
        with open(self._dir / self._name(index, self.digits), "wb") as f:
            f.write(data)

    def _finish(self) -> None:
        digits = max(self.min_digits, len(str(self.count)))
        if digits != self.digits:  # the frame count was misjudged: renumber
            for i in range(self.count):
                os.replace(
                    self._dir / self._name(i, self.digits), self._dir / self._name(i, digits)
                )
            self.digits = digits
        _replace_folder(self._dir, self.paths[0])


# --- h5 -------------------------------------------------------------------------------------


class H5Writer(Writer):
    """``DIR/<stem>.h5``: ``saliency`` (N, H, W), ``timestamps`` (N,), run attributes."""

    fmt = "h5"

    def _configure(self) -> None:
        dtype = str(self.options.get("h5_dtype", DEFAULT_H5_DTYPE))
        if dtype not in H5_DTYPES:
            raise UsageError(f"h5_dtype must be one of {', '.join(H5_DTYPES)}, got {dtype!r}")
        level = self.options.get("h5_gzip", H5_GZIP_LEVEL)
        if not isinstance(level, int) or not 0 <= level <= 9:
            raise UsageError(f"h5_gzip must be an integer in 0..9, got {level!r}")
        self.dtype = dtype
        self.gzip = level

    def _open(self) -> None:
        import h5py

        self._tmp = _temp_name(self.out_dir, self.paths[0])
        self._temps.append(self._tmp)
        self._file = h5py.File(self._tmp, "w")
        self._ts = self._file.create_dataset(
            "timestamps",
            shape=(0,),
            maxshape=(None,),
            dtype="float64",
            chunks=(H5_TIMESTAMP_CHUNK,),
        )
        self._ts.attrs["units"] = "s"
        self._ts.attrs["description"] = "presentation time of each frame from the first frame"
        self._sal = None
        attrs = self._file.attrs
        for key, value in self.run.extra.items():  # first: the standard ones win
            if value is None:
                continue
            if isinstance(value, str | bool | int | float | np.number):
                attrs[key] = value
            else:
                attrs[key] = json.dumps(value, default=str)
        record = _run_record(self.meta, self.run)
        for key in ("source", "model", "weights_sha256", "clip_len", "warmup", "salcli_version"):
            attrs[key] = record[key]
        attrs["fps"] = float(self.meta.fps)
        attrs["value_range"] = np.array(VALUE_RANGE)
        attrs["postprocess"] = self.run.postprocess
        attrs["layout"] = "saliency (N, H, W): frame, row, column; timestamps (N,) seconds"
        attrs["width"] = int(self.meta.width)
        attrs["height"] = int(self.meta.height)
        attrs["n_frames"] = 0

    def _write(self, index: int, saliency: np.ndarray, time: float, rgb) -> None:
        if self._sal is None:
            h, w = saliency.shape
            self._sal = self._file.create_dataset(
                "saliency",
                shape=(0, h, w),
                maxshape=(None, h, w),
                dtype=self.dtype,
                chunks=(1, h, w),  # one frame per chunk
                compression="gzip" if self.gzip else None,
                compression_opts=self.gzip or None,
                shuffle=bool(self.gzip),
            )
        self._sal.resize(index + 1, axis=0)
        self._sal[index] = saliency.astype(self.dtype, copy=False)
        self._ts.resize(index + 1, axis=0)
        self._ts[index] = time

    def _finish(self) -> None:
        self._file.attrs["n_frames"] = self.count
        self._file.close()
        os.replace(self._tmp, self.paths[0])

    def _release(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None and file.id.valid:
            file.close()


# --- mp4 -------------------------------------------------------------------------------------


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

    def _add_video(self, av) -> None:
        w, h = self.meta.width, self.meta.height
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
        if rgb.shape[:2] != saliency.shape:
            raise InputError(
                f"{self.meta.path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"its map {saliency.shape[1]}x{saliency.shape[0]}"
            )
        picture = overlay(rgb, to_uint8(saliency), self.alpha)
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
        out = getattr(self, "_out", None)
        if out is not None:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - the file is deleted anyway
                pass
        self._close_inputs()
