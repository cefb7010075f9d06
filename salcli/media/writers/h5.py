"""The HDF5: one stack per video (``salcli.media.writers``)."""

from __future__ import annotations

import json
import os

import numpy as np

from salcli.defaults import DEFAULT_H5_DTYPE, H5_DTYPES
from salcli.errors import UsageError
from salcli.media.writers.base import VALUE_RANGE, Writer, _run_record, _temp_name

# --- h5 -------------------------------------------------------------------------------------


H5_GZIP_LEVEL = 1  # gzip level of `saliency` (0-9); see the report for the timing
H5_TIMESTAMP_CHUNK = 4096  # frames per chunk of `timestamps`


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
