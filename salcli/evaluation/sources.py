"""Where the maps to score come from: a ``Source`` yields, video by video, the maps of its
frames (0-based index, (H, W) map).

- ``DiskSource``: predictions on disk, per-video PNG folders ``DIR/<video>/0001.png ...``
  or HDF5 stacks ``DIR/<video>.h5`` with dataset ``saliency`` (N, H, W), as ``salcli
  predict`` writes them, saliency videos ``DIR/<video>.mp4`` (a challenge's submission
  format; frames as an FFmpeg extraction to PNG holds them), or one ``.h5`` file with a
  dataset per video;
- ``ModelSource``: a model run over each test video's frame folder or video file (and its
  wav, or the video's own soundtrack, with ``audio``). The model is a ``ModelRun``: a
  salcli ``Predictor`` (``PredictorRun``), the cluster's
  ``salcli.evaluation.cluster.ClusterModel``, or any subclass;
- ``CenterSource``: the centre baseline, one centred Gaussian for every frame.

A prediction is read as the MATLAB scripts read it (:func:`read_prediction`), or, for
a protocol that makes its own grey (``channels="all"``: bench.py's channel mean), with all
its channels; the ``kinds`` of a source say what it gave ("8-bit images", "16-bit
images", "floats", "8-bit video frames"...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salcli.errors import InputError, NoAudioError
from salcli.evaluation.datasets import VideoItem, sorted_frames

if TYPE_CHECKING:
    from salcli.inference.predictor import Predictor
    from salcli.models.registry import ModelFamily

CENTER_SIGMA_FRACTION = 0.25  # centre baseline: sigma per axis, as a fraction of that side
H5_CHUNK = 16  # frames read from an HDF5 stack at a time
H5_DATASET = "saliency"  # dataset name in the HDF5 stacks salcli predict writes
VIDEO_SUFFIXES = (".mp4",)  # saliency videos among the predictions: DIR/<video>.mp4
CHANNELS = ("first", "all")  # a colour prediction: its first (red) channel, or all of them
REFERENCE_WARMUP = "reference"  # the warm-up policy of the published procedures

Maps = Iterator[tuple[int, np.ndarray]]  # (0-based frame index, (H, W) map)
MapStream = Generator[tuple[int, np.ndarray], None, None]  # the same, closable


# --- the model ---------------------------------------------------------------------


class ModelRun(ABC):
    """A model as evaluate runs it: its maps of a frame folder, and what the conventions
    say of it. A subclass sets the attributes that apply to it."""

    label: str | None = None  # the model for people, "AViNet (bilinear)"; None: not known
    family_label: str = ""  # its family, "STAViS"
    weights_path: str | Path | None = None  # the checkpoint it runs, when known
    warmup: str | None = None  # its warm-up policy, when known
    unmapped: int = 0  # first frames of each video it leaves unscored (published_unmapped)

    @abstractmethod
    def iter_maps(
        self, frames: Path, *, fps: float | None = None, audio_path: Path | None = None
    ) -> Maps:
        """(0-based index, (H, W) map) for the frames of the folder ``frames``."""

    def prepare(  # noqa: B027 - a hook: nothing by default
        self, videos: Iterable[tuple[Path, float | None, Path | None]]
    ) -> None:
        """(frames, fps, audio) of the videos whose maps will be asked for, in that order:
        a model that computes ahead starts here. Nothing by default."""

    def close(self) -> None:  # noqa: B027 - a hook: nothing by default
        """Release what the run holds. Nothing by default."""


def published_unmapped(family: ModelFamily, warmup: str | None) -> int:
    """The first frames of each video that ``family``'s published procedure gives no map
    (``ModelFamily.published_unmapped``) when run under ``warmup``: those of the
    published warm-up ("reference") only."""
    return int(family.published_unmapped) if warmup == REFERENCE_WARMUP else 0


def members_facts(members: Sequence[tuple[ModelFamily, str | None]]) -> tuple[str, int]:
    """(family label, first frames left unscored) of a model run of ``members`` ((family,
    warm-up) of each model: one, or an ensemble's): their families' labels joined, and
    the most frames any member's published procedure leaves unmapped."""
    label = " + ".join(dict.fromkeys(family.label for family, _ in members))
    return label, max(published_unmapped(family, warmup) for family, warmup in members)


def weights_text(weights: str | Path | Sequence[str | Path] | None) -> str:
    """``weights`` for the conventions: the one checkpoint, or an ensemble's joined."""
    if weights is None or isinstance(weights, str | Path):
        return str(weights)
    return " + ".join(str(w) for w in weights)


class PredictorRun(ModelRun):
    """A salcli ``Predictor`` (salcli.inference.predictor) as evaluate runs it."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        members = getattr(predictor, "members", ())  # an ensemble's models
        if members:
            self.label = predictor.label
            self.weights_path = weights_text([m.weights_path for m in members])
        else:
            self.label = predictor.variant.label
            self.weights_path = predictor.weights_path
            domain = predictor.domain_for(None)  # a video's (UNISAL); None: no domains
            if domain is not None:
                self.label = f"{self.label}, domain {domain}"
        self.family_label, self.unmapped = members_facts(
            [(m.family, m.warmup) for m in members or (predictor,)]
        )
        self.warmup = predictor.warmup

    def iter_maps(
        self, frames: Path, *, fps: float | None = None, audio_path: Path | None = None
    ) -> Maps:
        return self.predictor.iter_maps(frames, fps=fps, audio_path=audio_path)


def make_predictor(weights: str | Path | None, audio: bool, **options: Any) -> Predictor:
    """A salcli ``Predictor`` (imported here: torch loads only when a model is needed);
    ``options``: those of ``Predictor`` evaluate passes on (``warmup``, ``precision``).
    The one place evaluate builds a model (``evaluate``'s default ``predictor_factory``)."""
    from salcli.inference.predictor import Predictor

    return Predictor(weights, audio=audio, **options)


def as_model_run(model: Predictor | ModelRun) -> ModelRun:
    """``model`` as a ``ModelRun``: a salcli ``Predictor`` through ``PredictorRun``."""
    if isinstance(model, ModelRun):
        return model
    from salcli.inference.predictor import Predictor

    if isinstance(model, Predictor):
        return PredictorRun(model)
    raise TypeError(f"a model to score is a Predictor or a ModelRun, not {type(model).__name__}")


def model_label(audio: bool, label: str | None = None) -> str:
    """How the conventions name a model run: its family and variant when known (e.g.
    "AViNet (bilinear)"), else what ``audio`` implies ("AViNet" / "ViNet")."""
    if label is None:
        label = "AViNet" if audio else "ViNet"
    return f"model ({label}, {'audio' if audio else 'visual only'})"


# --- sources -----------------------------------------------------------------------


class Source(ABC):
    """Where the maps come from. ``maps(item, shape)`` yields (0-based index, map) for
    the frames of one video (``shape``: its ground truth's (H, W))."""

    description: str = ""  # how the conventions name it ("predictions DIR", ...)
    label: str = ""  # the same without the weights of a model
    warmup: str | None = None  # the model run's warm-up policy; None: not a model run
    unmapped: int = 0  # first frames of each video left unscored (no published map)
    unmapped_by: str = ""  # whose published procedure maps none of them ("STAViS")
    portable: bool = False  # can be pickled to worker processes (no model inside)

    def __init__(self) -> None:
        self.kinds: set[str] = set()  # "8-bit images", "16-bit images", "floats"

    @abstractmethod
    def maps(self, item: VideoItem, shape: tuple[int, int]) -> MapStream:
        """(0-based index, map) of the frames of ``item``, as a generator (the scoring
        closes it when it stops reading)."""

    def prepare(self, items: list[VideoItem]) -> None:  # noqa: B027 - a hook
        """The videos of a split (those with ground truth), in the order their maps
        will be asked for: a source that computes ahead starts here. Nothing by default."""

    def close(self) -> None:  # noqa: B027 - a hook: nothing by default
        """Release what the source holds."""


def _kind(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return "8-bit images"
    if dtype == np.uint16:
        return "16-bit images"
    return "floats"


def read_prediction(path: str | Path, channels: str = "first") -> np.ndarray:
    """A prediction image as the MATLAB scripts read it: (H, W) of its stored dtype, the
    first channel (red) of a colour image (``I(:, :, 1)``), alpha ignored; with
    ``channels="all"`` as OpenCV reads it (bench.py's ``cv2.imread(..., IMREAD_UNCHANGED)``):
    (H, W) or (H, W, C), every channel kept."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: not a readable prediction image")
    if img.ndim == 3 and channels == "first":
        img = img[:, :, 2] if img.shape[2] >= 3 else img[:, :, 0]  # OpenCV keeps BGR(A)
    return img


def first_channel(img: np.ndarray) -> np.ndarray:
    """The first (red) channel of an RGB(A) frame; a grey one as it is."""
    return img[:, :, 0] if img.ndim == 3 else img


def video_maps(path: Path, channels: str, kinds: set[str] | None = None) -> MapStream:
    """The frames of the saliency video ``path`` as an FFmpeg extraction to PNG holds
    them (``salcli.media.decode.png_frames``): every channel, or the first (red)."""
    from salcli.media.decode import png_frames

    for index, img in png_frames(path):
        if kinds is not None:
            kinds.add(f"{8 * img.dtype.itemsize}-bit video frames")
        yield index, img if channels == "all" else first_channel(img)


def h5_maps(path: Path, name: str, *, whole_file: bool, kinds: set[str] | None = None) -> MapStream:
    """The maps of video ``name`` in the HDF5 file ``path``: a per-video stack (dataset
    ``saliency``), or, ``whole_file``, the file's dataset named ``name`` (or the
    ``saliency`` of its group ``name``; else its one ``saliency`` stack). ``kinds`` gets
    the stack's kind."""
    import h5py

    try:
        f = h5py.File(str(path), "r")
    except OSError:
        raise InputError(f"{path}: not a readable HDF5 file") from None
    with f:
        if not whole_file:
            ds = f.get(H5_DATASET)
        elif name in f:
            ds = f[name]
            if isinstance(ds, h5py.Group):
                ds = ds.get(H5_DATASET)
        else:
            ds = f.get(H5_DATASET)  # a single-video stack
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
            raise InputError(f"{path}: no (N, H, W) dataset '{H5_DATASET}' for {name}")
        if kinds is not None:
            kinds.add(_kind(ds.dtype))
        for start in range(0, ds.shape[0], H5_CHUNK):
            block = ds[start : start + H5_CHUNK]  # (n, H, W)
            for k in range(block.shape[0]):
                yield start + k, block[k]


class DiskSource(Source):
    """Predictions on disk: a folder of ``<video>/`` PNG folders, ``<video>.h5`` stacks or
    ``<video>.mp4`` saliency videos, or one ``.h5`` file with a dataset (or group with
    ``saliency``) per video. ``channels``: what of a colour image is kept (``CHANNELS``)."""

    portable = True

    def __init__(self, path: str | Path, channels: str = "first"):
        super().__init__()
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, not {channels!r}")
        self.channels = channels
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such predictions folder or file")
        self.description = self.label = f"predictions {self.path}"

    def maps(self, item: VideoItem, shape: tuple[int, int]) -> MapStream:
        if self.path.is_file():
            yield from h5_maps(self.path, item.name, whole_file=True, kinds=self.kinds)
            return
        folder = self.path / item.name
        h5 = self.path / f"{item.name}.h5"
        videos = [self.path / f"{item.name}{s}" for s in VIDEO_SUFFIXES]
        if folder.is_dir():
            files = sorted_frames(folder)
            if not files:
                raise InputError(f"{folder}: no prediction images")
            for i, p in enumerate(files):
                arr = read_prediction(p, self.channels)
                self.kinds.add(_kind(arr.dtype))
                yield i, arr
        elif h5.is_file():
            yield from h5_maps(h5, item.name, whole_file=False, kinds=self.kinds)
        elif any(v.is_file() for v in videos):
            video = next(v for v in videos if v.is_file())
            yield from video_maps(video, self.channels, self.kinds)
        else:
            raise InputError(f"no predictions for video {item.name} in {self.path}")


class ModelSource(Source):
    """The maps of ``run`` over each test video's frame folder (and its wav with
    ``audio``); ``fps``: the frame rate of a video whose list gives none."""

    def __init__(self, run: ModelRun, *, audio: bool = False, fps: float | None = None):
        super().__init__()
        self.run = run
        self.audio = audio
        self.fps = fps
        self.label = model_label(audio, run.label)
        weights = run.weights_path
        self.description = self.label + (f", weights {weights}" if weights else "")
        self.warmup = run.warmup
        self.unmapped = run.unmapped
        self.unmapped_by = run.family_label

    def _hears(self, item: VideoItem) -> bool:
        """Whether the run has the sound it needs for ``item``: none asked, a wav, or the
        video file's own soundtrack."""
        return not self.audio or item.wav is not None or item.video_file

    def prepare(self, items: list[VideoItem]) -> None:
        """Hands the run the videos it can run on (a frame folder or a video file, and its
        sound with ``audio``)."""
        self.run.prepare(
            (item.frames, item.fps or self.fps, item.wav if self.audio else None)
            for item in items
            if Path(item.frames).exists() and self._hears(item)
        )

    def maps(self, item: VideoItem, shape: tuple[int, int]) -> MapStream:
        wav = None
        if not self._hears(item):
            where = item.wav_expected or "this dataset has no audio"
            raise NoAudioError(f"{item.name}: no audio file ({where})")
        if self.audio:
            wav = item.wav  # None for a video file: its own soundtrack
        if item.video_file and not Path(item.frames).is_file():
            raise InputError(f"{item.name}: no video {item.frames} to run the model on")
        if not item.video_file and not Path(item.frames).is_dir():
            raise InputError(f"{item.name}: no frame folder {item.frames} to run the model on")
        for index, m in self.run.iter_maps(item.frames, fps=item.fps or self.fps, audio_path=wav):
            self.kinds.add(_kind(np.asarray(m).dtype))
            yield index, m

    def close(self) -> None:
        self.run.close()


def center_map(shape: tuple[int, int]) -> np.ndarray:
    """The centre baseline: a Gaussian centred on the frame, sigma per axis =
    ``CENTER_SIGMA_FRACTION`` of that axis' length, peak 1. (H, W) float64."""
    h, w = shape
    y = (np.arange(h) - (h - 1) / 2.0) / (CENTER_SIGMA_FRACTION * h)
    x = (np.arange(w) - (w - 1) / 2.0) / (CENTER_SIGMA_FRACTION * w)
    return np.exp(-0.5 * y[:, None] ** 2) * np.exp(-0.5 * x[None, :] ** 2)


class CenterSource(Source):
    """A centre-bias baseline: the same centred Gaussian for every frame."""

    portable = True

    description = label = (
        f"baseline: centred Gaussian, sigma = {CENTER_SIGMA_FRACTION} x height, "
        f"{CENTER_SIGMA_FRACTION} x width"
    )

    def maps(self, item: VideoItem, shape: tuple[int, int]) -> MapStream:
        self.kinds.add("floats")
        m = center_map(shape)
        for i in range(item.n_frames):
            yield i, m
