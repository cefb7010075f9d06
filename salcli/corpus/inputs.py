"""From what the user typed to a list of (input, output folder) jobs.

- A file is one video. ``-`` reads paths from standard input, one per line (or
  NUL-separated, as ``find -print0`` writes them).
- A folder that holds media files is expanded to them (``--recursive`` descends,
  ``--glob`` filters by file name); hidden files and folders, the run's own output
  folder and salcli's overlay videos (``<stem>_saliency.mp4`` next to a completion
  record) are left out. Its outputs go to ``OUT/<path below the folder>/``, where OUT is
  ``-o`` or ``<folder>/saliency``: the output tree mirrors the input tree, so equal file
  names in different folders never overwrite each other.
- A folder that holds only images is one video given as frames; so is each such folder
  inside a folder that is expanded (``video_frames/DIEM/<video>/img_00001.jpg ...``).
  Where a folder holds a frame folder with a generic name (``images``, ``frames``: the
  DHF1K layout ``<video>/images/``), that one is the video and its sibling image
  folders (``maps/``, ``fixation/``: ground truth) are not. With ``--glob`` a frame
  folder is taken when its name matches. salcli's own PNG outputs (a folder beside
  its completion record) are left out.
- With ``--images`` (``images``), folders hold photos instead: every image file in a
  folder is an input of its own (a still image), as are its videos; no folder is a video.
  An image file named on its own is always a still image.
- Files named one by one (on the command line or on standard input) go, without
  ``-o``, to ``<file's folder>/saliency/``; with ``-o OUT``, to ``OUT/<folder below the
  deepest folder they all share>/`` (all from one folder: straight into ``OUT``).
- Any two inputs that would still share output names (``a/clip.mp4`` and ``a/clip.avi``,
  two folders with the same layout) are put in sub-folders named after their folders,
  or their file names when they share the folder.
- ``--shard K/N`` keeps the inputs whose CRC-32 of the path (as expanded) is K-1
  modulo N: deterministic, and the N shards partition the inputs exactly. Output
  folders are decided on the whole list first, so every shard agrees on them.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from salcli.defaults import OVERLAY_SUFFIX, RECORD_SUFFIX
from salcli.errors import UsageError, escape
from salcli.media.decode import GENERIC_FRAME_FOLDERS, IMAGE_SUFFIXES, folder_stem

VIDEO_SUFFIXES = (
    ".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".flv", ".wmv", ".ogv", ".3gp", ".y4m",
)  # fmt: skip
MAX_CLASH_ROUNDS = 3  # passes that move clashing outputs into sub-folders


def source_stem(path: Path) -> str:
    """The name a video's outputs take: a file's stem, a frame folder's full name
    (as ``salcli.media.decode.VideoMeta.stem``)."""
    return folder_stem(path) if path.is_dir() else path.stem


@dataclass(frozen=True)
class Job:
    source: Path  # a media file or a folder of frames
    out_dir: Path  # where its outputs go

    @property
    def stem(self) -> str:
        return source_stem(self.source)


def in_shard(path: Path, shard: tuple[int, int] | None) -> bool:
    """Deterministic membership: CRC-32 of the path as expanded, modulo N."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(str(path).encode("utf-8", "surrogateescape")) % n == k - 1


def select_shard(jobs: list[Job], shard: tuple[int, int] | None) -> list[Job]:
    """The jobs of shard ``(K, N)`` (all of them for None), order kept."""
    return [j for j in jobs if in_shard(j.source, shard)]


def _is_frame_folder(folder: Path) -> bool:
    has_images = False
    for p in folder.iterdir():
        if p.is_file():
            if p.suffix.lower() in VIDEO_SUFFIXES:
                return False
            if p.suffix.lower() in IMAGE_SUFFIXES:
                has_images = True
    return has_images


def _absolute(path: Path) -> Path:
    """Absolute and normalized (``..`` removed), symlinks kept."""
    return Path(os.path.abspath(path))


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _is_salcli_output(folder: Path, name: str) -> bool:
    """An overlay video or PNG folder salcli wrote (beside its completion record)."""
    stem = name[: -len(OVERLAY_SUFFIX)] if name.endswith(OVERLAY_SUFFIX) else name
    return (folder / f"{stem}{RECORD_SUFFIX}").exists()


def _frame_folders(here: Path, names: list[str], pattern: str | None) -> list[str]:
    """The sub-folders of ``here`` (``names``) that are videos given as frames."""
    frames = [d for d in names if _is_frame_folder(here / d) and not _is_salcli_output(here, d)]
    generic = [d for d in frames if d.lower() in GENERIC_FRAME_FOLDERS]
    if generic:  # <video>/images beside maps/, fixation/: only the frames are the video
        frames = generic[:1]
    return [d for d in frames if pattern is None or fnmatch.fnmatch(d, pattern)]


def _expand_folder(
    folder: Path,
    recursive: bool,
    pattern: str | None,
    skip: Path | None = None,
    images: bool = False,
) -> list[Path]:
    """Media files and frame folders in ``folder`` (sorted); with ``images``, media files
    and image files, no frame folders; ``skip``: an absolute folder left out."""
    suffixes = VIDEO_SUFFIXES + IMAGE_SUFFIXES if images else VIDEO_SUFFIXES
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        subdirs = sorted(
            d
            for d in dirs
            if not d.startswith(".") and (skip is None or not _is_within(_absolute(here / d), skip))
        )
        frames = [] if images else _frame_folders(here, subdirs, pattern)
        found.extend(here / d for d in frames)
        dirs[:] = [d for d in subdirs if recursive and d not in frames]
        for name in files:
            if name.startswith("."):
                continue
            path = here / name
            if pattern is not None:
                if not fnmatch.fnmatch(name, pattern):
                    continue
            elif Path(name).suffix.lower() not in suffixes:
                continue
            if _is_salcli_output(here, name):
                continue
            found.append(path)
    return sorted(found)


def read_stdin_paths(stream: TextIO | None = None) -> list[str]:
    """Paths on ``stream`` (standard input): one per line, or NUL-separated."""
    data = (stream or sys.stdin).read()
    if "\0" in data:
        return [p for p in data.split("\0") if p.strip()]
    return [line.strip() for line in data.splitlines() if line.strip()]


def _common_folder(folders: list[Path]) -> Path:
    common = os.path.commonpath([str(f) for f in folders])
    return Path(common)


def expand_inputs(
    inputs: Iterable[str],
    out_dir: Path | None,
    *,
    recursive: bool = False,
    pattern: str | None = None,
    default_subdir: str = "saliency",
    stdin: TextIO | None = None,
    images: bool = False,
) -> list[Job]:
    """Every job of the command line's inputs, in a stable order, duplicates removed
    (see the module docstring for where outputs go).

    Paths that do not exist are kept: they fail later, one line each, with the rest
    of the batch going on. ``UsageError`` when nothing at all is left to process.
    """
    raw: list[str] = []
    for item in inputs:
        raw.extend(read_stdin_paths(stdin) if item == "-" else [item])
    entries: list[tuple[Path, Path | None]] = []  # (source, folder it was found in)
    empty: list[Path] = []
    for item in raw:
        path = Path(item).expanduser()
        if path.is_dir() and (images or not _is_frame_folder(path)):
            skip = _absolute(out_dir if out_dir is not None else path / default_subdir)
            found = _expand_folder(path, recursive, pattern, skip, images)
            if not found:
                empty.append(path)
            entries.extend((f, path) for f in found)
        else:
            entries.append((path, None))
    if not entries:
        if empty:
            hint = "" if recursive else "; {recursive} descends into sub-folders"
            what = ", ".join(str(p) for p in empty[:3]) + (" ..." if len(empty) > 3 else "")
            raise UsageError(f"no videos found in {escape(what)}{hint}", options=("recursive",))
        raise UsageError("no inputs to process")

    singles = [_location(p).parent for p, folder in entries if folder is None]
    common = _common_folder(singles) if singles and out_dir is not None else None
    jobs: list[Job] = []
    seen: set[Path] = set()
    for path, folder in entries:
        key = path.resolve() if path.exists() else _absolute(path)
        if key in seen:
            continue
        seen.add(key)
        if folder is not None:
            base = out_dir if out_dir is not None else folder / default_subdir
            jobs.append(Job(path, base / path.parent.relative_to(folder)))
        elif out_dir is None:
            jobs.append(Job(path, _location(path).parent / default_subdir))
        else:
            assert common is not None
            jobs.append(Job(path, out_dir / _location(path).parent.relative_to(common)))
    return _separate_clashes(jobs)


def _location(path: Path) -> Path:
    """Where a video stands in the input tree: a frame folder with a generic name
    (``<video>/images``) stands for its parent folder, the video."""
    path = _absolute(path)
    if path.is_dir() and folder_stem(path) != path.name:
        return path.parent
    return path


def _clashes(jobs: list[Job]) -> list[list[Job]]:
    by_target: dict[tuple[Path, str], list[Job]] = {}
    for job in jobs:
        by_target.setdefault((_absolute(job.out_dir), job.stem), []).append(job)
    return [group for group in by_target.values() if len(group) > 1]


def _separate_clashes(jobs: list[Job]) -> list[Job]:
    """Jobs whose outputs would share a name get sub-folders: their folders below the
    folder the group shares, or their file names when they share a folder."""
    for _ in range(MAX_CLASH_ROUNDS):
        groups = _clashes(jobs)
        if not groups:
            return jobs
        fixed: dict[Job, Job] = {}
        for group in groups:
            parents = [_location(j.source).parent for j in group]
            common = _common_folder(parents)
            distinct = len(set(parents)) == len(parents)
            for job, parent in zip(group, parents, strict=True):
                sub = parent.relative_to(common)
                if not distinct:
                    sub = sub / job.source.name
                fixed[job] = Job(job.source, job.out_dir / sub)
        jobs = [fixed.get(j, j) for j in jobs]
    if _clashes(jobs):  # pragma: no cover - would need a contrived layout
        raise UsageError("inputs whose outputs would overwrite each other; use separate -o")
    return jobs
