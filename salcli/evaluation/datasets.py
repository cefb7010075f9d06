"""Readers for the published saliency datasets, in the layouts they are distributed in.

Three layouts (docs/evaluate.md, "Dataset layouts", draws them as trees), in one module
because every dataset reads through the same ``Dataset``/``VideoItem`` seam, which the
scoring, training and reframe evaluation share:

- frame folders (DHF1K and the processed Hollywood-2 / UCF-Sports)::

      ROOT/<split>/<video>/images/0001.png ...   frames
      ROOT/<split>/<video>/maps/0001.png ...     density maps (same names)
      ROOT/<split>/<video>/fixation/0001.png ... binary fixation maps (same names)

  ``<split>`` is a folder name: DHF1K's ground truth is public for ``val`` only,
  Hollywood-2 and UCF-Sports are evaluated on ``testing``.

- audio-visual sets (DIEM, Coutrot_db1, Coutrot_db2, AVAD, ETMD_av, SumMe)::

      ROOT/video_frames/<DS>/<video>/img_00001.jpg ...
      ROOT/video_audio/<DS>/<video>/<video>.wav
      ROOT/annotations/<DS>/<video>/maps/eyeMap_00001.jpg ...   density
      ROOT/annotations/<DS>/<video>/fixMap_00001.mat ...        fixations (var eyeMap)
      ROOT/fold_lists/<DS>_list_test_<k>_fps.txt                "name n_frames fps"

  splits 1, 2, 3; DIEM has one fixed split (``DIEM_list_test_fps.txt``).

- video files (NTIRE 2026 / MSU, ``ntire26``): the videos, their ground-truth saliency
  as videos and the fixations as JSON, listed by ``TrainTestSplit.json``
  (the last part of this module reads it; ``salcli.evaluation.videosets`` its fixations).

Fixation maps are read from images (``> 0``) or MAT files: v5 (scipy.io.loadmat) and
v7.3 (HDF5, read with h5py; MATLAB stores arrays column-major, so they come back
transposed and are turned back). Density maps are returned as float64 on MATLAB's
``im2double`` scale ([0, 1] for 8-bit images).

The data root: ``root``, else the environment variable ``SALCLI_DATA``, else
``$XDG_DATA_HOME/salcli`` (``~/.local/share/salcli``). The dataset is looked for as
``<root>/<DS-folder>`` (e.g. ``DIEM``, or the folder holding ``video_frames`` for the
audio-visual sets) or as the root itself. A folder that has some of the layout's
top-level folders but not what scoring needs is reported with what is missing.

A video whose ground truth is missing (no annotation folder, or no annotation files)
is still listed, with ``VideoItem.problem`` saying what is missing; the scoring
(salcli.evaluation.scoring) warns about it and does not score it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from salcli.errors import DatasetError, InputError, OptionError, UsageError, escape

DATA_ENV = "SALCLI_DATA"  # environment variable naming the data root
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MAT_VARIABLE = "eyeMap"  # the variable holding a fixation map in the AV sets' .mat files
SPLITS_AV = ("1", "2", "3")

FIXATION_SUFFIXES = (".png", ".jpg", ".jpeg", ".mat", ".bmp")  # frame-folder fixation maps
AV_DENSITY = "eyeMap_{:05d}"  # audio-visual sets: file stems of frame k (1-based)
AV_FIXATION = "fixMap_{:05d}"
AV_FOLDERS = ("video_frames", "video_audio", "annotations", "fold_lists")  # top level

FRAME_FOLDER = "frames"  # layout names
AUDIO_VISUAL = "av"
VIDEO_FILES = "videos"


@dataclass(frozen=True)
class DatasetSpec:
    """What salcli knows of one published dataset."""

    name: str  # salcli's name (evaluate's dataset)
    layout: str  # FRAME_FOLDER, AUDIO_VISUAL or VIDEO_FILES
    folders: tuple[str, ...]  # folder names on disk, the published one first
    protocol: str  # "dhf1k", "av" or "ntire26" (see salcli.evaluation.protocols)
    splits: tuple[str, ...]  # the evaluable splits
    fps: float | None = None  # frame rate of the frame-folder sets (no fold list)


DATASETS: dict[str, DatasetSpec] = {
    "dhf1k": DatasetSpec("dhf1k", FRAME_FOLDER, ("DHF1K", "dhf1k"), "dhf1k", ("val",), 30.0),
    "hollywood2": DatasetSpec(
        "hollywood2",
        FRAME_FOLDER,
        ("Hollywood2", "hollywood2", "Hollywood-2", "hollywood"),
        "dhf1k",
        ("testing", "test"),
    ),
    "ucf": DatasetSpec(
        "ucf",
        FRAME_FOLDER,
        ("UCF", "ucf", "UCF-Sports", "ucf_sports"),
        "dhf1k",
        ("testing", "test"),
    ),
    "diem": DatasetSpec("diem", AUDIO_VISUAL, ("DIEM",), "av", ("1",)),
    "coutrot1": DatasetSpec("coutrot1", AUDIO_VISUAL, ("Coutrot_db1",), "av", SPLITS_AV),
    "coutrot2": DatasetSpec("coutrot2", AUDIO_VISUAL, ("Coutrot_db2",), "av", SPLITS_AV),
    "avad": DatasetSpec("avad", AUDIO_VISUAL, ("AVAD",), "av", SPLITS_AV),
    "etmd": DatasetSpec("etmd", AUDIO_VISUAL, ("ETMD_av",), "av", SPLITS_AV),
    "summe": DatasetSpec("summe", AUDIO_VISUAL, ("SumMe",), "av", SPLITS_AV),
    "ntire26": DatasetSpec(
        "ntire26",
        VIDEO_FILES,
        ("NTIRE26", "ntire26", "VideoSaliencyChallenge"),
        "ntire26",
        ("public_test", "private_test", "train"),
    ),
}


# --- files -------------------------------------------------------------------------


def _number(path: Path) -> int | None:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def sorted_frames(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Files of ``folder`` with one of ``suffixes``, in frame order (by their last number,
    then by name)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes]
    return sorted(files, key=lambda p: (_number(p) is None, _number(p) or 0, p.name))


def read_gray(path: Path) -> np.ndarray:
    """An image as a 2-D array of its stored dtype (uint8 / uint16); colour -> luma."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: not a readable image")
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.shape[2] == 3 else img[:, :, 0]
    return img


def _to_double(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    return a.astype(np.float64)


def read_mat(path: Path, variable: str = MAT_VARIABLE) -> np.ndarray:
    """One variable of a MAT file, v4/v5/v7 (scipy) or v7.3 (HDF5, h5py; transposed back).

    A file holding a single array under another name is accepted too.
    """
    import h5py

    path = Path(path)
    if h5py.is_hdf5(str(path)):
        try:
            with h5py.File(str(path), "r") as f:
                names = [k for k in f.keys() if not k.startswith("#")]
                key = variable if variable in f else (names[0] if len(names) == 1 else None)
                if key is None or not isinstance(f[key], h5py.Dataset):
                    raise DatasetError(f"{path}: no variable {variable!r} in the MAT file")
                arr = np.asarray(f[key][()])
        except OSError as exc:
            raise DatasetError(f"{path}: unreadable MAT (v7.3) file ({exc})") from None
        return arr.T  # MATLAB writes column-major: HDF5 holds the transpose
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path))
    except (ValueError, OSError, NotImplementedError) as exc:
        raise DatasetError(f"{path}: unreadable MAT file ({exc})") from None
    names = [k for k in data if not k.startswith("__")]
    key = variable if variable in data else (names[0] if len(names) == 1 else None)
    if key is None:
        raise DatasetError(f"{path}: no variable {variable!r} in the MAT file")
    return np.asarray(data[key])


def read_fixations(path: Path) -> np.ndarray:
    """A binary fixation map, (H, W) bool, from an image or a MAT file (``> 0``)."""
    arr = read_mat(path) if path.suffix.lower() == ".mat" else read_gray(path)
    arr = np.asarray(arr)
    if arr.ndim != 2:
        arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise DatasetError(f"{path}: fixation map of shape {arr.shape}, expected 2-D")
    return arr > 0


def read_density(path: Path) -> np.ndarray:
    """A density map, (H, W) float64 on the im2double scale."""
    arr = read_mat(path) if path.suffix.lower() == ".mat" else read_gray(path)
    return _to_double(np.asarray(arr))


# --- items -------------------------------------------------------------------------


@dataclass
class GroundTruth:
    """The ground truth of one frame; ``density`` / ``fixations`` None when missing."""

    index: int  # 0-based frame index (= the prediction's index)
    density: np.ndarray | None  # (H, W) float64
    fixations: np.ndarray | None  # (H, W) bool

    @property
    def empty(self) -> bool:
        """No usable ground truth: missing files or no fixated pixel."""
        return self.density is None or self.fixations is None or not self.fixations.any()


@dataclass
class VideoItem:
    """One test video of a dataset split."""

    name: str
    frames: Path  # folder of the video's frames (what the model reads)
    fps: float | None  # frames/s (fold list; None when the layout does not say)
    wav: Path | None  # the audio track, None when absent
    n_frames: int  # frames with ground truth to score
    split: str
    density_paths: list[Path | None] = field(default_factory=list, repr=False)
    fixation_paths: list[Path | None] = field(default_factory=list, repr=False)
    wav_expected: Path | None = None  # where the layout puts the audio track
    problem: str | None = None  # why the video has no ground truth at all (None: it has)

    @property
    def video_file(self) -> bool:
        """Whether ``frames`` is a video file, its soundtrack its own (no separate wav)."""
        return False

    def missing(self) -> list[int]:
        """0-based indices of the frames whose density or fixation file is missing."""
        pairs = zip(self.density_paths, self.fixation_paths, strict=True)
        return [k for k, (d, f) in enumerate(pairs) if d is None or f is None]

    def iter_fixations(self) -> Iterator[tuple[int, np.ndarray | None]]:
        """(index, fixation map or None) per frame, lazily."""
        for i, path in enumerate(self.fixation_paths):
            yield i, (read_fixations(path) if path is not None else None)

    def ground_truth(self, index: int) -> GroundTruth:
        d, f = self.density_paths[index], self.fixation_paths[index]
        return GroundTruth(
            index,
            read_density(d) if d is not None else None,
            read_fixations(f) if f is not None else None,
        )

    def iter_ground_truth(self) -> Iterator[GroundTruth]:
        """The ground truth frame by frame, read lazily (one frame in memory)."""
        for i in range(self.n_frames):
            yield self.ground_truth(i)


def _none_complete(density: list[Path | None], fixations: list[Path | None]) -> bool:
    """No frame has both its density and its fixation file (also: no frame at all)."""
    return all(d is None or f is None for d, f in zip(density, fixations, strict=True))


def _find_same_stem(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for suf in suffixes:
        p = folder / f"{stem}{suf}"
        if p.is_file():
            return p
    return None


class Dataset:
    """A dataset on disk: ``Dataset("diem", root)``, then ``videos(split)``."""

    def __init__(self, name: str, root: str | Path | None = None):
        key = name.lower()
        if key not in DATASETS:
            raise UsageError(f"unknown dataset {name!r}; one of: {', '.join(DATASETS)}")
        self.spec = DATASETS[key]
        self.name = key
        self.root = locate(self.spec, root)

    @property
    def protocol(self) -> str:
        return self.spec.protocol

    @property
    def folder(self) -> str:
        return self.spec.folders[0]

    # --- splits ---------------------------------------------------------------

    def splits(self, split: str | None, *, models_per_split: bool = False) -> list[str]:
        """The concrete splits ``split`` stands for ("all" -> each of them).

        ``models_per_split``: each split is scored with its own model (a ``{split}``
        placeholder in the weights); a single-split set (DIEM) then has the splits 1-3
        too, all on its one test list, as STAViS evaluates it.
        """
        spec = self.spec
        if spec.layout == VIDEO_FILES:
            if split is None:
                return [spec.splits[0]]
            if split not in spec.splits:
                raise OptionError(
                    "split", f"must be one of {', '.join(spec.splits)}, not {split!r}"
                )
            return [split]
        if spec.layout == FRAME_FOLDER:
            if split in (None, "all"):
                for s in spec.splits:
                    if (self.root / s).is_dir():
                        return [s]
                return [spec.splits[0]]
            if not (self.root / split).is_dir():
                raise DatasetError(f"{self.name}: no split folder {self.root / split}")
            return [split]
        single = len(spec.splits) == 1 and not models_per_split
        if split in (None, "all"):
            return list(spec.splits) if single else list(SPLITS_AV)
        if split not in SPLITS_AV:
            raise OptionError("split", f"must be 1, 2, 3 or all, not {split!r}")
        if single and split != "1":
            raise UsageError(
                f"{self.name} has a single split; use {{split}} 1 or all (or weights with "
                "a {{split}} placeholder: its one test list scored with each split's model)",
                options=("split",),
            )
        return [split]

    def fold_list(self, split: str) -> Path:
        if len(self.spec.splits) == 1:
            name = f"{self.folder}_list_test_fps.txt"
        else:
            name = f"{self.folder}_list_test_{split}_fps.txt"
        return self.root / "fold_lists" / name

    # --- videos ---------------------------------------------------------------

    def videos(self, split: str) -> list[VideoItem]:
        """The test videos of one concrete split (see :meth:`splits`)."""
        if self.spec.layout == FRAME_FOLDER:
            return self._frame_folder_videos(split)
        if self.spec.layout == VIDEO_FILES:
            return list(video_file_items(self.root, split))
        return self._av_videos(split)

    def _frame_folder_videos(self, split: str) -> list[VideoItem]:
        base = self.root / split
        if not base.is_dir():
            raise DatasetError(f"{self.name}: no split folder {base}")
        items = []
        for vdir in sorted(p for p in base.iterdir() if p.is_dir()):
            maps_dir, fix_dir, img_dir = vdir / "maps", vdir / "fixation", vdir / "images"
            lacking = [f"{d.name}/" for d in (maps_dir, fix_dir) if not d.is_dir()]
            maps = sorted_frames(maps_dir, IMAGE_SUFFIXES + (".mat",)) if maps_dir.is_dir() else []
            if img_dir.is_dir():
                frames = sorted_frames(img_dir)
                by_stem = {p.stem: p for p in maps}
                density = [by_stem.get(p.stem) for p in frames]
            else:
                frames, density = maps, list(maps)
            fixations = [
                _find_same_stem(fix_dir, (p or q).stem, FIXATION_SUFFIXES) if not lacking else None
                for p, q in zip(density, frames, strict=True)
            ]
            problem = None
            if lacking:
                problem = f"no {' and no '.join(lacking)} folder in {vdir}"
            elif _none_complete(density, fixations):
                problem = (
                    f"no annotation files in {vdir} (expected maps/<frame>.png and "
                    "fixation/<frame>.png named as the frames)"
                )
            items.append(
                VideoItem(
                    name=vdir.name,
                    frames=img_dir,
                    fps=self.spec.fps,
                    wav=None,
                    n_frames=len(density),
                    split=split,
                    density_paths=density,
                    fixation_paths=fixations,
                    problem=problem,
                )
            )
        if not items:
            raise DatasetError(f"{self.name}: no videos in {base}")
        return items

    def _av_videos(self, split: str) -> list[VideoItem]:
        lst = self.fold_list(split)
        if not lst.is_file():
            raise DatasetError(f"{self.name}: no fold list {lst}")
        ds = self.folder
        items = []
        for lineno, line in enumerate(lst.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 3:
                raise DatasetError(f"{lst}:{lineno}: expected 'name n_frames fps'")
            name = parts[0]
            try:
                n_frames, fps = int(float(parts[1])), float(parts[2])
            except ValueError:
                raise DatasetError(f"{lst}:{lineno}: expected 'name n_frames fps'") from None
            frames = self.root / "video_frames" / ds / name
            ann = self.root / "annotations" / ds / name
            wav = self.root / "video_audio" / ds / name / f"{name}.wav"
            n_images = len(sorted_frames(frames)) if frames.is_dir() else 0
            if n_images:  # a list longer than the frames on disk: score what exists
                n_frames = min(n_frames, n_images)
            density, fixations = [], []
            for k in range(1, n_frames + 1):
                d = ann / "maps" / f"{AV_DENSITY.format(k)}.jpg"
                fm = ann / f"{AV_FIXATION.format(k)}.mat"
                density.append(
                    d if d.is_file() else _find_same_stem(ann / "maps", d.stem, (".png",))
                )
                if not fm.is_file():  # fixations as images are accepted too
                    fm = _find_same_stem(ann, fm.stem, (".png", ".jpg", ".bmp"))
                fixations.append(fm)
            problem = None
            if not ann.is_dir():
                problem = f"no annotation folder {ann}"
            elif _none_complete(density, fixations):
                problem = (
                    f"no annotation files in {ann} (expected maps/{AV_DENSITY.format(1)}.jpg "
                    f"and {AV_FIXATION.format(1)}.mat ...)"
                )
            items.append(
                VideoItem(
                    name=name,
                    frames=frames,
                    fps=fps,
                    wav=wav if wav.is_file() else None,
                    n_frames=n_frames,
                    split=split,
                    density_paths=density,
                    fixation_paths=fixations,
                    wav_expected=wav,
                    problem=problem,
                )
            )
        if not items:
            raise DatasetError(f"{self.name}: fold list {lst} lists no video")
        return items


# --- where the data are ------------------------------------------------------------


def default_root() -> Path:
    """``$SALCLI_DATA``, else ``$XDG_DATA_HOME/salcli`` (``~/.local/share/salcli``)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "salcli"


def _looks_like(spec: DatasetSpec, path: Path) -> bool:
    if not path.is_dir():
        return False
    if spec.layout == VIDEO_FILES:
        return looks_like_video_files(path)
    if spec.layout == AUDIO_VISUAL:
        return (path / "annotations" / spec.folders[0]).is_dir() and (path / "fold_lists").is_dir()
    return any((path / s).is_dir() for s in spec.splits)


def _listing(folder: Path, limit: int = 5) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "nothing"


def _what_is_missing(spec: DatasetSpec, path: Path) -> str | None:
    """For a folder that has part of the layout, what scoring needs and it lacks (one
    line); None when ``path`` has none of the layout's top-level folders."""
    if not path.is_dir() or spec.layout == VIDEO_FILES:
        return None  # a folder with any part of the layout is taken (_looks_like)
    if spec.layout == FRAME_FOLDER:
        if path.name not in spec.folders:
            return None
        want = " or ".join(f"{s}/" for s in spec.splits)
        return f"no split folder {want} in {path} (it holds {_listing(path)})"
    present = [f for f in AV_FOLDERS if (path / f).is_dir()]
    if not present:
        return None
    ds = spec.folders[0]
    missing = []
    ann = path / "annotations"
    if not (ann / ds).is_dir():
        held = f" (it holds {_listing(ann)})" if ann.is_dir() else ""
        missing.append(f"annotations/{ds}/{held}")
    if not (path / "fold_lists").is_dir():
        missing.append("fold_lists/")
    return f"{path} lacks " + ", ".join(missing)


def locate(spec: DatasetSpec, root: str | Path | None = None) -> Path:
    """The folder the dataset's layout starts in, under ``root`` (or the default root).

    For the frame-folder sets that is the folder holding the split folders; for the
    audio-visual sets the one holding ``video_frames/``, ``annotations/``, ``fold_lists/``.
    A candidate folder with part of the layout is reported with what it lacks.
    """
    base = Path(root).expanduser() if root is not None else default_root()
    candidates = [base / f for f in spec.folders] + [base]
    for c in candidates:
        if _looks_like(spec, c):
            return c
    for c in candidates:
        missing = _what_is_missing(spec, c)
        if missing:
            raise DatasetError(f"dataset {spec.name} is incomplete: {missing}")
    how = "" if root is not None else f" (no {{root}}: from ${DATA_ENV} or the user data folder)"
    looked = escape(", ".join(str(c) for c in candidates[:1] + candidates[-1:]))
    raise DatasetError(f"dataset {spec.name} not found: looked in {looked}{how}", options=("root",))


# --- the video-file layout (NTIRE 2026 / MSU, ``ntire26``) ---------------------------
#
# ROOT/TrainTestSplit.json ({"train", "public_test", "private_test"}: video names),
# ROOT/Videos/<name>.mp4, ROOT/SaliencyTest|SaliencyTrain/[Test|Train/]<name>.mp4 (the
# ground-truth saliency as videos), ROOT/FixationsTest|FixationsTrain/[Test|Train/]<name>/
# fixations.json (read by salcli.evaluation.videosets). public_test and private_test read
# the *Test folders, train the *Train ones. The source video is needed only to run a
# model on it (and to check the frame counts when it is there).

VIDEO_SPLIT_FILE = "TrainTestSplit.json"
VIDEOS_FOLDER = "Videos"
VIDEO_SUFFIX = ".mp4"
FIXATIONS_FILE = "fixations.json"
VIDEO_TEST_SPLITS = ("public_test", "private_test")
VIDEO_TRAIN_SPLIT = "train"
VIDEO_SPLITS = (*VIDEO_TEST_SPLITS, VIDEO_TRAIN_SPLIT)  # the lists of the split file
VIDEO_GROUND_TRUTH = {  # split -> (saliency folder, fixations folder, their inner folder)
    "public_test": ("SaliencyTest", "FixationsTest", "Test"),
    "private_test": ("SaliencyTest", "FixationsTest", "Test"),
    "train": ("SaliencyTrain", "FixationsTrain", "Train"),
}
VIDEO_TOP_LEVEL = (  # any of these marks a folder as the layout's root
    VIDEO_SPLIT_FILE,
    VIDEOS_FOLDER,
    "SaliencyTest",
    "FixationsTest",
    "SaliencyTrain",
    "FixationsTrain",
)


@dataclass
class VideoFileItem(VideoItem):
    """A video of a set distributed as video files: ``frames`` is the source video,
    ``saliency`` its ground-truth saliency video, ``fixations_file`` its points;
    ``n_frames`` the saliency video's frame count (the frames to score)."""

    saliency: Path | None = None
    fixations_file: Path | None = None

    @property
    def video_file(self) -> bool:
        """``frames`` is the source video, its soundtrack its own (there is no wav)."""
        return True


def looks_like_video_files(path: Path) -> bool:
    """``path`` holds part of the layout (its split file or one of its folders)."""
    return path.is_dir() and any((path / name).exists() for name in VIDEO_TOP_LEVEL)


def _inner_folder(folder: Path, inner: str) -> Path:
    """``folder/inner`` when it exists (the archives' layout), else ``folder``."""
    return folder / inner if (folder / inner).is_dir() else folder


def video_split_names(root: Path, split: str) -> list[str]:
    """The video names the split file lists for ``split``, as strings, in its order."""
    path = root / VIDEO_SPLIT_FILE
    if not path.is_file():
        raise DatasetError(f"ntire26: no split file {path}")
    try:
        lists = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable JSON split file ({exc})") from None
    if not isinstance(lists, dict) or not isinstance(lists.get(split), list):
        raise DatasetError(f"{path}: no list {split!r} (expected keys {', '.join(VIDEO_SPLITS)})")
    return [str(name) for name in lists[split]]


def video_ground_truth_folders(root: Path, split: str) -> tuple[Path, Path]:
    """(saliency videos folder, fixations folder) of ``split``."""
    saliency, fixations, inner = VIDEO_GROUND_TRUTH[split]
    return _inner_folder(root / saliency, inner), _inner_folder(root / fixations, inner)


def _video_file_problem(video: Path, saliency: Path, fixations: Path) -> tuple[str | None, int]:
    """(what keeps the video from being scored or None, the saliency video's frames)."""
    from salcli.media.decode import frame_count

    if not saliency.is_file():
        return f"no saliency video {saliency}", 0
    if not fixations.is_file():
        return f"no fixations file {fixations}", 0
    try:
        n = frame_count(saliency)
        if video.is_file():
            m = frame_count(video)
            if m != n:
                return f"saliency video {saliency} has {n} frames, its source {video} {m}", n
    except InputError as exc:
        return str(exc), 0
    return None, n


def video_file_items(root: Path, split: str) -> list[VideoFileItem]:
    """The videos of ``split`` (a list of the split file), each checked: a missing
    saliency video or fixations file, or a saliency video with another frame count than
    its source video, is the item's ``problem``."""
    names = video_split_names(root, split)
    if not names:
        raise DatasetError(f"ntire26: {root / VIDEO_SPLIT_FILE} lists no video for {split!r}")
    sal_dir, fix_dir = video_ground_truth_folders(root, split)
    items = []
    for name in names:
        video = root / VIDEOS_FOLDER / f"{name}{VIDEO_SUFFIX}"
        saliency = sal_dir / f"{name}{VIDEO_SUFFIX}"
        fixations = fix_dir / name / FIXATIONS_FILE
        problem, n = _video_file_problem(video, saliency, fixations)
        items.append(
            VideoFileItem(
                name=name,
                frames=video,
                fps=None,  # the video's own
                wav=None,  # the video's own soundtrack
                n_frames=n,
                split=split,
                problem=problem,
                saliency=saliency,
                fixations_file=fixations,
            )
        )
    return items
