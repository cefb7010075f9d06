"""salcli: where people look in a video, from its pictures and soundtrack, with the
published models; scored with each benchmark's metrics; trained.

The public API, imported on first use (``import salcli.metrics`` needs no torch)::

    salcli.predict(video)                     # (N, H, W) maps
    salcli.Predictor(weights, **options)      # a loaded model: iter_maps, predict, write
    salcli.predict_many(inputs, out, ...)     # a corpus, with resume and shards
    salcli.PredictOptions, salcli.BatchOptions
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
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors
    from salcli.corpus.local import BatchRun, predict_many
    from salcli.inference.predictor import Predictor, VideoResult, predict
    from salcli.options import BatchOptions, PredictOptions


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'salcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = [
    "BatchOptions",
    "BatchRun",
    "PredictOptions",
    "Predictor",
    "VideoResult",
    "__version__",
    "predict",
    "predict_many",
]
