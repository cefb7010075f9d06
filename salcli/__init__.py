"""salcli: where people look in a video, from its pictures and soundtrack, with the
published models; scored with each benchmark's metrics; trained.

The public API, imported on first use (``import salcli.metrics`` needs no torch)::

    salcli.predict(video)                     # (N, H, W) maps
    salcli.Predictor(weights, **options)      # a loaded model: iter_maps, predict, write
    salcli.predict_many(inputs, out, ...)     # a corpus, with resume and shards
    salcli.PredictOptions, salcli.BatchOptions
    salcli.reframe(video, aspect="9:16")      # the crop track of a video (a CropTrack)
    salcli.reframe_render(track, video, out)  # the track drawn: mp4, json, debug
    salcli.reframe_many(inputs, out, ...)     # reframe a corpus, with resume and shards
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {  # public name -> the module that defines it
    "BatchOptions": "salcli.options",
    "PredictOptions": "salcli.options",
    "BatchRun": "salcli.corpus.local",
    "predict_many": "salcli.corpus.local",
    "Predictor": "salcli.inference.predictor",
    "VideoResult": "salcli.inference.predictor",
    "predict": "salcli.inference.predictor",
    "ReframeOptions": "salcli.reframing.options",
    "CropTrack": "salcli.reframing.track",
    "reframe": "salcli.reframing.run",
    "reframe_render": "salcli.reframing.run",
    "reframe_many": "salcli.reframing.batch",
}

_RENAMED = {"reframe_render": "render"}  # public name -> its name in its module

if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors
    from salcli.corpus.local import BatchRun, predict_many
    from salcli.inference.predictor import Predictor, VideoResult, predict
    from salcli.options import BatchOptions, PredictOptions
    from salcli.reframing.batch import reframe_many
    from salcli.reframing.options import ReframeOptions
    from salcli.reframing.run import reframe
    from salcli.reframing.run import render as reframe_render
    from salcli.reframing.track import CropTrack


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'salcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = [
    "BatchOptions",
    "BatchRun",
    "CropTrack",
    "ReframeOptions",
    "PredictOptions",
    "Predictor",
    "VideoResult",
    "__version__",
    "predict",
    "predict_many",
    "reframe",
    "reframe_many",
    "reframe_render",
]
