"""salcli: video saliency prediction with ViNet / AViNet, and its evaluation."""

__version__ = "0.1.0"

from .batch import BatchRun, predict_many  # noqa: E402
from .options import BatchOptions, PredictOptions  # noqa: E402
from .predict import Predictor, VideoResult, predict  # noqa: E402

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
