"""salcli: video saliency prediction with ViNet / AViNet, and its evaluation."""

__version__ = "0.1.0"

from .predict import Predictor, VideoResult, predict  # noqa: E402

__all__ = ["Predictor", "VideoResult", "predict", "__version__"]
