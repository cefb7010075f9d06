"""Where a reframe's maps come from: a model run (``salcli.inference.Predictor``, any
family, ensemble or option of ``predict``) or ``predict``'s HDF5 stacks, read frame by
frame; each paired with its decoded frame, so the video is decoded once per pass.

A stack made for another video is refused: another source name (the stack's ``source``
attribute), another frame size, or another number of frames. For the ``debug`` output
of a model run, the maps are kept in a small temporary stack (``MapCache``: uint8, at
most ``CACHE_WIDTH`` pixels wide) beside the outputs, as the render pass needs them again
and never holds a video's frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from salcli.errors import InputError
from salcli.media.decode import Frame, VideoMeta, Warn, open_video

MAPS_SUFFIX = ".h5"  # predict's stack of a video: <stem>.h5
CACHE_WIDTH = 256  # pixels, the widest map the debug cache keeps
CACHE_SCALE = 255.0  # uint8 value of a map's 1.0 in the cache


class MapStack:
    """A stack of maps on disk: ``saliency`` (N, H, W), float in [0, 1] (predict's) or
    uint8 (the cache); ``map(i)`` is frame i's at the video's size, float32."""

    def __init__(self, path: Path):
        import h5py

        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
            self._data = self._file["saliency"]
        except (OSError, KeyError) as exc:
            self._file = None
            raise InputError(f"{self.path}: not a salcli map stack ({exc})") from None
        self.frames, self.height, self.width = (int(v) for v in self._data.shape)
        self.attrs: dict[str, Any] = dict(self._file.attrs)
        self._scale = CACHE_SCALE if self._data.dtype == np.uint8 else 1.0

    def map(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) float32 map of frame ``index``; ``size`` (w, h): resized to it."""
        m = np.asarray(self._data[index], dtype=np.float32)
        if self._scale != 1.0:
            m /= self._scale
        if size is not None and (m.shape[1], m.shape[0]) != size:
            import cv2

            m = cv2.resize(m, size, interpolation=cv2.INTER_LINEAR)
        return m

    def settings(self) -> dict[str, Any]:
        """What the maps were made with (a record compares them on a re-run)."""
        keys = ("model", "weights_sha256", "precision", "input_size", "warmup", "stride")
        out = {f"maps_{k}": _plain(self.attrs[k]) for k in keys if k in self.attrs}
        out["maps_frames"] = self.frames
        return out

    def check(self, source: Path, width: int, height: int) -> None:
        """Refuse a stack that is not of ``source`` (name) or not of its frame size."""
        made_from = self.attrs.get("source")
        if made_from is not None and Path(str(made_from)).stem != _stem(source):
            raise InputError(
                f"{self.path}: maps of {Path(str(made_from)).name}, not of {Path(source).name}"
            )
        if (self.width, self.height) != (width, height):
            raise InputError(
                f"{self.path}: maps of {self.width}x{self.height}, the video is {width}x{height}"
            )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _stem(source: Path) -> str:
    from salcli.corpus.inputs import source_stem

    return source_stem(Path(source))


def stack_path(maps_from: Path, source: Path) -> Path:
    """The stack of ``source`` in ``maps_from``: a file is the stack itself; a folder holds
    ``<stem>.h5``."""
    maps_from = Path(maps_from)
    if maps_from.suffix.lower() == MAPS_SUFFIX and not maps_from.is_dir():
        return maps_from
    return maps_from / f"{_stem(source)}{MAPS_SUFFIX}"


def open_stack(path: Path) -> MapStack:
    if not Path(path).is_file():
        raise InputError(f"{path}: no maps (run salcli predict -f h5 first, or leave out "
                         "{maps_from} to run the model)", options=("maps_from",))  # fmt: skip
    return MapStack(path)


def stack_pairs(
    source: Path, stack: MapStack, on_warning: Warn | None = None, fps: float | None = None
) -> tuple[VideoMeta, Iterator[tuple[Frame, np.ndarray]]]:
    """(meta, (frame, map) for every frame): ``source`` decoded, ``stack`` read beside it.
    A video with more or fewer frames than the stack, or of another size, is refused."""
    reader = open_video(source, fps=fps, on_warning=on_warning)

    def pairs() -> Iterator[tuple[Frame, np.ndarray]]:
        n = 0
        try:
            for frame in reader:
                if n == 0:
                    stack.check(source, frame.width, frame.height)
                if n >= stack.frames:
                    raise InputError(
                        f"{stack.path}: {stack.frames} maps, the video has more frames"
                    )
                yield frame, stack.map(n)
                n += 1
        finally:
            reader.close()
        if n != stack.frames:
            raise InputError(f"{stack.path}: {stack.frames} maps, the video has {n} frames")

    return reader.meta, pairs()


class MapCache:
    """The maps of a model run kept for the render pass (``debug``), in a temporary stack
    at ``path`` (uint8, at most ``CACHE_WIDTH`` wide); ``stack()`` reopens it to read."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = None
        self._data = None

    def add(self, index: int, saliency: np.ndarray) -> None:
        import cv2
        import h5py

        h, w = saliency.shape
        if w > CACHE_WIDTH:
            size = (CACHE_WIDTH, max(1, round(h * CACHE_WIDTH / w)))
            saliency = cv2.resize(saliency, size, interpolation=cv2.INTER_AREA)
        small = np.rint(np.clip(saliency, 0.0, 1.0) * CACHE_SCALE).astype(np.uint8)
        if self._file is None:
            self._file = h5py.File(self.path, "w")
            sh, sw = small.shape
            self._data = self._file.create_dataset(
                "saliency", shape=(0, sh, sw), maxshape=(None, sh, sw), dtype=np.uint8,
                chunks=(1, sh, sw),
            )  # fmt: skip
        self._data.resize(index + 1, axis=0)
        self._data[index] = small

    def stack(self) -> MapStack:
        if self._file is not None:
            self._file.close()
            self._file = None
        return MapStack(self.path)

    def remove(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)
