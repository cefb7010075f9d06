"""Training data: which videos, which windows, and the tensors the model learns from.

- ``training_sets(names, root, split)``: the training and validation videos of one or
  more datasets (``"dhf1k"``, ``"diem,coutrot2"``, ``"av"`` = the six audio-visual sets),
  checked before any training starts (``check_sets``): a missing fold list, frame
  folder, density map or wav is one ``DatasetError`` line naming it.

  - Frame-folder sets (DHF1K, Hollywood-2, UCF-Sports): training videos in
    ``ROOT/<train folder>/`` (``train`` or ``training``, or the folder ``split`` names),
    validation on the evaluable split (DHF1K ``val``; Hollywood-2 / UCF-Sports ``testing``).
  - Audio-visual sets: training videos from ``fold_lists/<DS>_list_train_<K>_fps.txt``
    (DIEM: its single ``DIEM_list_train_fps.txt`` for every K), validation on the test
    list of the same split, as ``salcli evaluate`` reads it.

- ``epoch_order(n, seed, epoch)``: the order the training videos are visited in an epoch;
  ``draw_window(video, seed, epoch)``: the one window a video gives in that epoch: a
  uniformly drawn last frame among the frames with a density map (at least T-1 frames in,
  so that the T frames before it exist, when the video has T frames or more), redrawn
  while its density map is empty. Both are pure functions of their arguments, so a resumed
  run (or another number of DataLoader workers, or of ranks) sees the very same windows.
- ``WindowDataset``: decodes a window (frames resized and normalized by the model's
  frame transform, exactly as predict does: ``salcli.models.vinet_procedure.frame_to_tensor``
  by default, TASED-Net's ``tased_procedure.frame_to_tensor`` for it), its target
  (the last frame's density map resized to the model input with OpenCV's bilinear
  ``INTER_LINEAR``, as the authors' loader did) and, for AViNet, its audio excerpt
  (``salcli.models.vinet_procedure.clip_excerpt`` on the dataset's wav, as predict makes
  it). With ``flip`` (TASED-Net's recipe) frames and target are flipped left-right
  together with probability 1/2, a pure function of (seed, epoch, video).
- ``validation_windows``: fixed windows of the validation videos (every ``stride``-th
  frame from T-1 on, frames with an empty ground truth left out), scored after each epoch.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from salcli.errors import DatasetError, OptionError, UsageError, escape
from salcli.evaluation.datasets import (
    AUDIO_VISUAL,
    DATASETS,
    FRAME_FOLDER,
    VIDEO_FILES,
    Dataset,
    VideoItem,
    default_root,
    read_density,
    read_fixations,
    sorted_frames,
)
from salcli.media.audio import AudioTrack
from salcli.models.vinet_procedure import (
    AUDIO_BUFFER,
    CLIP_LEN,
    INPUT_H,
    INPUT_W,
    clip_excerpt,
    clip_indices,
    clip_span,
    frame_to_tensor,
)
from salcli.training.options import VAL_STRIDE
from salcli.training.recipe import flips
from salcli.training.videofiles import VAL_EVERY, VideoFiles, training_videos

AV_SETS = ("diem", "coutrot1", "coutrot2", "avad", "etmd", "summe")  # dataset "av"
AV_UNION = "av"
TRAIN_FOLDERS = ("train", "training")  # frame-folder sets: the training split's folder
DEFAULT_AV_SPLIT = "1"
MAX_REDRAWS = 64  # empty targets drawn before a video's frames are scanned in order
AUDIO_SHAPE = (1, -1, 1)  # (1, N, 1): one excerpt in SoundNet's layout


@dataclass(frozen=True)
class TrainVideo:
    """One video as training reads it: its frames, density maps and (optional) wav, or
    for a set of video files (``ntire26``) the files they are read from (``files``; the
    three tuples are then empty)."""

    dataset: str  # salcli's dataset name
    name: str
    frames: tuple[Path, ...]  # frame images in order
    density: tuple[Path | None, ...]  # density map of each frame (None: missing)
    fixations: tuple[Path | None, ...]  # fixation map of each frame (None: missing)
    fps: float | None
    wav: Path | None
    files: VideoFiles | None = None  # video, saliency video and fixations.json

    @property
    def key(self) -> str:
        """A stable identity (seeds this video's draws)."""
        return f"{self.dataset}/{self.name}"

    @property
    def n_frames(self) -> int:
        return self.files.n_frames if self.files else len(self.frames)

    def has_density(self, index: int) -> bool:
        return self.files is not None or self.density[index] is not None

    def has_fixations(self, index: int) -> bool:
        if self.files is not None:
            return self.files.points(index) is not None
        return self.fixations[index] is not None

    def density_map(self, index: int) -> np.ndarray:
        """(H, W) float64: frame ``index``'s density map."""
        if self.files is not None:
            return self.files.density(index)
        return read_density(self.density[index])

    def fixation_map(self, index: int) -> np.ndarray:
        """(H, W) bool: frame ``index``'s fixated pixels."""
        if self.files is not None:
            return self.files.fixation_map(index)
        return read_fixations(self.fixations[index])

    def rgb(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(index, (H, W, 3) uint8 RGB) for each distinct frame of ``indices``, one read
        at a time."""
        if self.files is not None:
            return self.files.rgb(indices)
        return ((i, _read_rgb(self.frames[i])) for i in dict.fromkeys(indices))

    def audio(self) -> AudioTrack:
        """The soundtrack on the video's timeline: its wav, or a video file's own."""
        if self.files is not None:
            return self.files.audio()
        return AudioTrack.open(self.wav, video_start=0.0)

    def window(self, last: int) -> list[int]:
        """The frame indices of the clip whose last frame is ``last`` (oldest first);
        before frame T-1 the mirror warm-up of predict."""
        return clip_indices(last, self.n_frames, CLIP_LEN, "mirror")

    def candidate_ends(self) -> list[int]:
        """Frames a training window may end on: with a density map, and at least T-1
        frames in when the video is that long."""
        first = CLIP_LEN - 1 if self.n_frames >= CLIP_LEN else 0
        return [i for i in range(first, self.n_frames) if self.has_density(i)]


@dataclass(frozen=True)
class TrainingSets:
    """The videos of a training run."""

    train: tuple[TrainVideo, ...]
    val: tuple[TrainVideo, ...]
    names: tuple[str, ...]  # the datasets, salcli's names
    description: str  # one line: where training and validation videos come from


# --- which datasets and videos -------------------------------------------------------


def parse_dataset_names(text: str) -> tuple[str, ...]:
    """``"dhf1k"``, ``"diem,coutrot2"`` or ``"av"`` (the six audio-visual sets)."""
    names: list[str] = []
    for part in (p.strip().lower() for p in str(text).split(",")):
        if not part:
            continue
        if part == AV_UNION:
            names += AV_SETS
        elif part in DATASETS:
            names.append(part)
        else:
            raise UsageError(
                f"unknown dataset {part!r}; one of: {', '.join(DATASETS)}, or {AV_UNION} "
                "(the six audio-visual sets together)"
            )
    if not names:
        raise UsageError("{dataset}: name at least one dataset", options=("dataset",))
    return tuple(dict.fromkeys(names))


def _from_item(dataset: str, item: VideoItem, frames: list[Path]) -> TrainVideo:
    n = min(len(frames), item.n_frames)
    dens = list(item.density_paths[:n]) + [None] * (n - len(item.density_paths[:n]))
    fix = list(item.fixation_paths[:n]) + [None] * (n - len(item.fixation_paths[:n]))
    return TrainVideo(
        dataset, item.name, tuple(frames[:n]), tuple(dens), tuple(fix), item.fps, item.wav
    )


def _from_files(dataset: str, name: str, files: VideoFiles) -> TrainVideo:
    return TrainVideo(dataset, name, (), (), (), files.fps, None, files)


def _frames_of(ds_name: str, item: VideoItem) -> list[Path]:
    if not item.frames.is_dir():
        raise DatasetError(f"{ds_name}: no frames for video {item.name} ({item.frames})")
    frames = sorted_frames(item.frames)
    if not frames:
        raise DatasetError(f"{ds_name}: no frame images in {item.frames}")
    return frames


def _train_list(ds: Dataset, split: str) -> Path:
    if len(ds.spec.splits) == 1:
        name = f"{ds.folder}_list_train_fps.txt"
    else:
        name = f"{ds.folder}_list_train_{split}_fps.txt"
    return ds.root / "fold_lists" / name


def _av_train_items(ds: Dataset, split: str) -> list[VideoItem]:
    """The training videos of an audio-visual set's split, from its train fold list."""
    lst = _train_list(ds, split)
    if not lst.is_file():
        raise DatasetError(f"{ds.name}: no training fold list {lst}")
    items = []
    for lineno, line in enumerate(lst.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            name, n_frames, fps = parts[0], int(float(parts[1])), float(parts[2])
        except (IndexError, ValueError):
            raise DatasetError(f"{lst}:{lineno}: expected 'name n_frames fps'") from None
        ann = ds.root / "annotations" / ds.folder / name
        maps = ann / "maps"
        if not maps.is_dir():
            raise DatasetError(f"{ds.name}: no density maps for {name} ({maps})")
        by_number = {}
        for p in sorted_frames(maps):
            digits = "".join(c for c in p.stem if c.isdigit())
            if digits:
                by_number.setdefault(int(digits), p)
        wav = ds.root / "video_audio" / ds.folder / name / f"{name}.wav"
        items.append(
            VideoItem(
                name=name,
                frames=ds.root / "video_frames" / ds.folder / name,
                fps=fps,
                wav=wav if wav.is_file() else None,
                n_frames=n_frames,
                split=split,
                density_paths=[by_number.get(k) for k in range(1, n_frames + 1)],
                fixation_paths=[None] * n_frames,
            )
        )
    if not items:
        raise DatasetError(f"{ds.name}: training fold list {lst} lists no video")
    return items


def _frame_folder_train_split(ds: Dataset, split: str | None) -> str:
    if split is not None:
        if not (ds.root / split).is_dir():
            raise DatasetError(f"{ds.name}: no training split folder {ds.root / split}")
        return split
    for name in TRAIN_FOLDERS:
        if (ds.root / name).is_dir():
            return name
    raise DatasetError(
        f"{ds.name}: no training split folder ({' or '.join(TRAIN_FOLDERS)}) in {ds.root}"
    )


def _open(name: str, root: str | Path | None) -> Dataset:
    try:
        return Dataset(name, root)
    except DatasetError:
        spec = DATASETS[name]
        if spec.layout != FRAME_FOLDER:
            raise
        base = Path(root).expanduser() if root is not None else default_root()
        for c in [base / f for f in spec.folders] + [base]:
            if any((c / t).is_dir() for t in TRAIN_FOLDERS):  # only validation is missing
                raise DatasetError(
                    f"{name}: no validation split folder ({' or '.join(spec.splits)}) in {c}"
                ) from None
        raise


def training_sets(
    names: str | Sequence[str],
    root: str | Path | None = None,
    split: str | None = None,
    *,
    audio: bool = False,
) -> TrainingSets:
    """The training and validation videos of ``names`` (see the module docstring).

    ``split``: the fold (1, 2, 3) of the audio-visual sets (default 1); for frame-folder
    sets alone, the training folder's name. Raises ``DatasetError`` / ``UsageError``.
    """
    keys = parse_dataset_names(names) if isinstance(names, str) else tuple(names)
    specs = [DATASETS[k] for k in keys]
    has_av = any(s.layout == AUDIO_VISUAL for s in specs)
    if split is not None and all(s.layout == VIDEO_FILES for s in specs):
        raise OptionError(
            "split", f"ntire26 trains on its train list (every {VAL_EVERY}th video held out)"
        )
    if audio:
        no_sound = [s.name for s in specs if s.layout == FRAME_FOLDER]
        if no_sound:
            raise UsageError(
                "{audio}: " + escape(", ".join(no_sound)) + " has no soundtrack (visual only)",
                options=("audio",),
            )
    if has_av:
        fold = DEFAULT_AV_SPLIT if split is None else str(split)
        if fold not in ("1", "2", "3"):
            raise OptionError("split", f"must be 1, 2 or 3 for the audio-visual sets, not {fold!r}")
    train: list[TrainVideo] = []
    val: list[TrainVideo] = []
    where = []
    for spec in specs:
        ds = _open(spec.name, root)
        if spec.layout == VIDEO_FILES:
            tr_files, va_files = training_videos(ds.root)
            train += [_from_files(spec.name, n, f) for n, f in tr_files]
            val += [_from_files(spec.name, n, f) for n, f in va_files]
            where.append(f"{spec.name} train list, every {VAL_EVERY}th video held out")
            continue
        if spec.layout == FRAME_FOLDER:
            tr_split = _frame_folder_train_split(ds, None if has_av else split)
            va_split = ds.splits(None)[0]
            tr_items, va_items = ds.videos(tr_split), ds.videos(va_split)
            where.append(f"{spec.name} {tr_split}/ -> {va_split}/")
        else:
            s = "1" if len(spec.splits) == 1 else fold
            tr_items, va_items = _av_train_items(ds, s), ds.videos(s)
            where.append(f"{spec.name} split {s}")
        train += [_from_item(spec.name, it, _frames_of(spec.name, it)) for it in tr_items]
        val += [_from_item(spec.name, it, _frames_of(spec.name, it)) for it in va_items]
    sets = TrainingSets(tuple(train), tuple(val), keys, "; ".join(where))
    check_sets(sets, audio=audio)
    return sets


def check_sets(sets: TrainingSets, *, audio: bool) -> None:
    """One ``DatasetError`` line for the first thing training would miss."""
    for role, videos in (("training", sets.train), ("validation", sets.val)):
        if not videos:
            raise DatasetError(f"no {role} videos")
        for v in videos:
            if v.files is not None:
                continue  # checked when listed; its sound: its own, or silence
            if not any(d is not None for d in v.density):
                raise DatasetError(f"{v.key}: no density maps ({role} video)")
            if audio and v.wav is None:
                raise DatasetError(
                    escape(v.key) + f": no wav file (needed by {{audio}}, {role} video)",
                    options=("audio",),
                )
            if audio and not (v.fps and v.fps > 0):
                raise DatasetError(
                    escape(v.key) + ": no frame rate in the fold list (needed by {audio})",
                    options=("audio",),
                )
    for v in sets.val:
        if v.files is None and not any(f is not None for f in v.fixations):
            raise DatasetError(f"{v.key}: no fixation maps (validation video)")


# --- which windows -------------------------------------------------------------------


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *stream])


def epoch_order(n_videos: int, seed: int, epoch: int) -> list[int]:
    """The order the training videos are visited in ``epoch`` (a permutation)."""
    return [int(i) for i in _rng(seed, 0, epoch).permutation(n_videos)]


def target_empty(density: np.ndarray) -> bool:
    """A density map without signal (its KL divergence would be undefined)."""
    return not np.isfinite(density).all() or float(density.sum()) <= 0.0


def draw_window(video: TrainVideo, seed: int, epoch: int) -> tuple[int, np.ndarray | None]:
    """(last frame, its density map) of ``video``'s window in ``epoch``; (-1, None) when
    none of its frames has a non-empty density map."""
    ends = video.candidate_ends()
    rng = _rng(seed, 1, epoch, zlib.crc32(video.key.encode()))
    tried: set[int] = set()
    for _ in range(min(MAX_REDRAWS, len(ends))):
        last = ends[int(rng.integers(len(ends)))]
        if last in tried:
            continue
        tried.add(last)
        dens = video.density_map(last)
        if not target_empty(dens):
            return last, dens
    start = int(rng.integers(len(ends))) if ends else 0
    for k in range(len(ends)):  # many empty maps: the first usable one from a random place
        last = ends[(start + k) % len(ends)]
        if last in tried:
            continue
        dens = video.density_map(last)
        if not target_empty(dens):
            return last, dens
    return -1, None


@dataclass(frozen=True)
class ValWindow:
    video: int  # index into the validation videos
    last: int  # the frame scored


def validation_windows(videos: Sequence[TrainVideo], stride: int = VAL_STRIDE) -> list[ValWindow]:
    """Every ``stride``-th frame of each validation video from frame T-1 on (the last
    frame of a video shorter than T), with a non-empty density map and a fixation map."""
    if stride < 1:
        raise UsageError("the validation stride must be at least 1 frame")
    out = []
    for vi, v in enumerate(videos):
        for last in range(min(CLIP_LEN - 1, v.n_frames - 1), v.n_frames, stride):
            if not (v.has_density(last) and v.has_fixations(last)):
                continue
            if target_empty(v.density_map(last)):
                continue
            out.append(ValWindow(vi, last))
    return out


# --- tensors -------------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # (H, W, 3) uint8, as predict decodes


def resize_target(density: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A density map at the model input ``size`` (h, w): OpenCV bilinear, float32."""
    d = np.asarray(density, dtype=np.float32)
    if d.shape != tuple(size):
        d = cv2.resize(d, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return d


def clip_tensor(
    video: TrainVideo,
    indices: Sequence[int],
    size: tuple[int, int],
    transform: Callable[..., torch.Tensor] = frame_to_tensor,
) -> torch.Tensor:
    """The frames ``indices`` of ``video`` as one model input, (3, T, h, w) float32, each
    through ``transform`` (rgb, size) -> (3, h, w)."""
    # warm-up clips repeat frames: each distinct one decoded once, kept at the input size
    cache = {i: transform(rgb, size) for i, rgb in video.rgb(indices)}
    return torch.stack([cache[i] for i in indices], dim=1)  # (3, T, h, w)


def audio_tensor(video: TrainVideo, indices: Sequence[int]) -> torch.Tensor:
    """The window's audio excerpt as predict makes it, (1, 70560, 1) float32."""
    first, last = clip_span(list(indices))
    with video.audio() as track:
        wave = clip_excerpt(track, first, last, float(video.fps))
    return torch.from_numpy(wave).reshape(AUDIO_SHAPE)  # (1, 70560, 1)


class WindowDataset(torch.utils.data.Dataset):
    """Training samples: index ``(epoch, video)`` -> a dict of tensors.

    ``clip`` (3, T, h, w), ``target`` (h, w), ``valid`` () bool (False: the video had no
    non-empty target; the sample is left out of the loss), ``audio`` (1, 70560, 1) with
    ``audio=True``. Frames through ``transform``; with ``flip``, clip and target flipped
    left-right together in half of the windows (``salcli.training.recipe.flips``).
    """

    def __init__(
        self,
        videos: Sequence[TrainVideo],
        *,
        seed: int,
        size: tuple[int, int] = (INPUT_H, INPUT_W),
        audio: bool = False,
        transform: Callable[..., torch.Tensor] = frame_to_tensor,
        flip: bool = False,
    ):
        self.videos = list(videos)
        self.seed = int(seed)
        self.size = tuple(size)
        self.audio = audio
        self.transform = transform
        self.flip = flip

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        video = self.videos[index]
        last, dens = draw_window(video, self.seed, epoch)
        h, w = self.size
        if dens is None:
            sample = {
                "clip": torch.zeros((3, CLIP_LEN, h, w)),  # (3, T, h, w)
                "target": torch.zeros((h, w)),
                "valid": torch.tensor(False),
            }
            if self.audio:
                sample["audio"] = torch.zeros((1, AUDIO_BUFFER, 1))
            return sample
        indices = video.window(last)
        sample = {
            "clip": clip_tensor(video, indices, self.size, self.transform),
            "target": torch.from_numpy(resize_target(dens, self.size)),  # (h, w)
            "valid": torch.tensor(True),
        }
        if self.flip and flips(self.seed, epoch, zlib.crc32(video.key.encode())):
            sample["clip"] = sample["clip"].flip(-1)  # (3, T, h, w): W reversed
            sample["target"] = sample["target"].flip(-1)
        if self.audio:
            sample["audio"] = audio_tensor(video, indices)
        return sample


class ValDataset(torch.utils.data.Dataset):
    """Validation samples: ``clip``, ``target`` (at the input size), ``audio`` as
    ``WindowDataset``, plus ``index`` (the window's position, to find its ground truth)."""

    def __init__(
        self,
        videos: Sequence[TrainVideo],
        windows: Sequence[ValWindow],
        *,
        size: tuple[int, int] = (INPUT_H, INPUT_W),
        audio: bool = False,
        transform: Callable[..., torch.Tensor] = frame_to_tensor,
    ):
        self.videos = list(videos)
        self.windows = list(windows)
        self.size = tuple(size)
        self.audio = audio
        self.transform = transform

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        w = self.windows[index]
        video = self.videos[w.video]
        indices = video.window(w.last)
        sample = {
            "clip": clip_tensor(video, indices, self.size, self.transform),
            "target": torch.from_numpy(resize_target(video.density_map(w.last), self.size)),
            "index": torch.tensor(index),
        }
        if self.audio:
            sample["audio"] = audio_tensor(video, indices)
        return sample

    def ground_truth(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(density float64, fixations bool) of window ``index`` at the dataset's size."""
        w = self.windows[index]
        video = self.videos[w.video]
        return video.density_map(w.last), video.fixation_map(w.last)
