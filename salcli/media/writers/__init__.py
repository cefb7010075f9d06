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
- ``video``: ``DIR/<stem>.mp4``: the maps themselves as a grey video (the NTIRE 2026
  challenge's submission format), one frame per source frame at the source's rate,
  H.264 lossless (qp 0) 4:4:4 at full range: an FFmpeg extraction reads back exactly
  round(255 x) per pixel. No sound.

Per-format options (keyword arguments; options of the other formats are ignored, so
one dictionary can be given to every writer; anything else is a ``UsageError``):
``png_digits`` (minimum digits of the file numbers, default 4), ``h5_dtype``
("float16" | "float32"), ``h5_gzip`` (gzip level 0-9, 0 = uncompressed),
``mp4_crf`` (0-51), ``mp4_odd`` ("exact" | "pad"), ``mp4_alpha`` (heat-map weight).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from salcli.media.decode import VideoMeta
from salcli.media.writers.base import (
    RunInfo,
    Writer,
    WriterThread,
    _check_format,
    output_paths,
    overlay,
    to_uint8,
)
from salcli.media.writers.h5 import H5Writer
from salcli.media.writers.mp4 import Mp4Writer
from salcli.media.writers.png import PngWriter
from salcli.media.writers.video import SaliencyVideoWriter

WRITERS: dict[str, type[Writer]] = {
    "png": PngWriter,
    "h5": H5Writer,
    "mp4": Mp4Writer,
    "video": SaliencyVideoWriter,
}


def make_writer(fmt: str, out_dir: Path, meta: VideoMeta, run: RunInfo, **options: Any) -> Writer:
    """A writer of format ``fmt`` ("png" | "h5" | "mp4" | "video") into ``out_dir`` (created
    if needed)."""
    cls = WRITERS[_check_format(fmt)]
    return cls(out_dir, meta, run, **options)


__all__ = [
    "WRITERS",
    "H5Writer",
    "Mp4Writer",
    "PngWriter",
    "RunInfo",
    "SaliencyVideoWriter",
    "Writer",
    "WriterThread",
    "make_writer",
    "output_paths",
    "overlay",
    "to_uint8",
]
