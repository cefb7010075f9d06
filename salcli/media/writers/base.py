"""What the writers share: the run information they record, the writer thread, output
paths, the ``Writer`` base class (temporary names, rename on close, abort), helpers."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salcli.defaults import FORMATS, OVERLAY_ALPHA, OVERLAY_SUFFIX, SALIENCY_VIDEO_SUFFIX
from salcli.errors import InputError, OutputError, UsageError, os_reason
from salcli.files import make_folder, temp_name
from salcli.media.decode import VideoMeta

VALUE_RANGE = (0.0, 1.0)

OPTIONS = {
    "png": ("png_digits",),
    "h5": ("h5_dtype", "h5_gzip"),
    "mp4": ("mp4_crf", "mp4_odd", "mp4_alpha"),
    "video": (),
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
    if name == "video":
        return [out_dir / f"{stem}{SALIENCY_VIDEO_SUFFIX}"]
    return [out_dir / f"{stem}{OVERLAY_SUFFIX}"]


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
    """A hidden sibling of ``final`` in ``out_dir``, naming this process
    (``salcli.files.temp_name``)."""
    return temp_name(out_dir / final.name, kind)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _close_quietly(handle: Any) -> None:
    """Close ``handle`` (a PyAV container, or None) on the way out of a failed write: the
    file is deleted anyway, so a second error from closing it must not mask the first."""
    if handle is not None:
        try:
            handle.close()
        except Exception:  # noqa: BLE001 - see the docstring
            pass


def _take_options(fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of ``fmt``; those of other formats are dropped, unknown ones refused."""
    known = {name for names in OPTIONS.values() for name in names}
    for key in options:
        if key not in known:
            raise UsageError(f"unknown writer option {key!r}")
    return {k: v for k, v in options.items() if k in OPTIONS[fmt] and v is not None}


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
        self.paths: list[Path] = self._output_paths()
        self.count = 0  # maps written so far
        self.shape: tuple[int, int] | None = None  # (H, W) of the maps
        self._temps: list[Path] = []
        self._state = "open"  # "open" | "closed" | "aborted"
        self._configure()
        try:
            make_folder(self.out_dir)
        except OutputError:
            self._state = "aborted"
            raise
        with self._guard():
            self._open()

    # the parts each format provides
    def _output_paths(self) -> list[Path]:
        """The final outputs (``output_paths``; a subclass may name its own)."""
        return output_paths(self.fmt, self.out_dir, self.meta.stem)

    def _check(self, index: int, saliency: np.ndarray) -> None:
        """Refuse a map that is not (H, W) at the video's size."""
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
            self._check(index, saliency)
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
