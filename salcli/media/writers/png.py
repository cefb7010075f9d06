"""The PNG: one 8-bit file per frame (``salcli.media.writers``)."""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np

from salcli.errors import OutputError, UsageError
from salcli.media.writers.base import Writer, _replace_folder, _run_record, _temp_name, to_uint8

# --- png ----------------------------------------------------------------------------------


PNG_MIN_DIGITS = 4  # digits of the file numbers: 0001.png ...
PNG_COMPRESSION = 1  # zlib level of cv2's PNG encoder (0-9): fastest that still packs well
PNG_TEXT_KEY = b"salcli"  # keyword of the tEXt chunk holding the run information


def _png_text_chunk(key: bytes, text: str) -> bytes:
    data = key + b"\0" + text.encode("latin-1", "replace")
    return (
        struct.pack(">I", len(data))
        + b"tEXt"
        + data
        + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    )


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
