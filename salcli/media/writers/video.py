"""The saliency video: the maps themselves as a grey video, one frame per source frame
(``salcli.media.writers``), the submission format of the NTIRE 2026 challenge.

``DIR/<stem>.mp4``: H.264 (libx264), lossless (qp 0), 4:4:4 at full range, so that
every map comes back exactly as ``round(255 x)`` (the PNG writer's values) from any
decoder that honours the range, FFmpeg's extraction to PNG among them (it writes 8-bit
RGB frames, R = G = B = the map). The source's frame count and rate (constant, frame i at
i / fps); no sound. 4:4:4 takes odd sizes as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from salcli.errors import OutputError
from salcli.media.decode import fraction_fps
from salcli.media.writers.base import (
    Writer,
    _close_quietly,
    _run_record,
    _temp_name,
    to_uint8,
)

SALIENCY_CODEC = "libx264"
SALIENCY_PIX_FMT = "yuv444p"  # 4:4:4: no chroma subsampling, odd sizes allowed
SALIENCY_OPTIONS = {"qp": "0", "preset": "veryfast"}  # qp 0: lossless
FULL_RANGE = 2  # AVCOL_RANGE_JPEG: luma 0-255, not 16-235 (all 256 levels kept)


class SaliencyVideoWriter(Writer):
    """``DIR/<stem>.mp4``: the maps as a lossless grey H.264 video at the source's rate."""

    fmt = "video"

    def _open(self) -> None:
        import av

        final = self.paths[0]
        if Path(self.meta.path).is_file() and os.path.realpath(final) == os.path.realpath(
            self.meta.path
        ):
            raise OutputError(f"{final}: is the source video; write the maps elsewhere")
        try:
            av.codec.Codec(SALIENCY_CODEC, "w")
        except Exception:  # noqa: BLE001 - not in this FFmpeg build
            raise OutputError(f"no {SALIENCY_CODEC} encoder in PyAV's FFmpeg") from None
        self._tmp = _temp_name(self.out_dir, final)
        self._temps.append(self._tmp)
        self._out = av.open(str(self._tmp), "w", format="mp4")
        self._out.metadata["comment"] = json.dumps(_run_record(self.meta, self.run))
        rate = fraction_fps(self.meta.fps)
        vs = self._out.add_stream(SALIENCY_CODEC, rate=rate)
        vs.width, vs.height, vs.pix_fmt = self.meta.width, self.meta.height, SALIENCY_PIX_FMT
        vs.options = dict(SALIENCY_OPTIONS)
        vs.codec_context.color_range = FULL_RANGE
        vs.time_base = 1 / rate
        self._vs = vs

    def _write(self, index: int, saliency: np.ndarray, time: float, rgb) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(to_uint8(saliency), format="gray")  # (H, W) u8
        frame.color_range = FULL_RANGE
        frame.pts = index
        self._out.mux(self._vs.encode(frame))

    def _finish(self) -> None:
        self._out.mux(self._vs.encode())  # flush the encoder
        self._out.close()
        os.replace(self._tmp, self.paths[0])

    def _release(self) -> None:
        _close_quietly(getattr(self, "_out", None))
