"""From what the user typed to a list of (input, output folder) jobs.

- A file is one video. ``-`` reads paths from standard input, one per line.
- A folder that holds media files is expanded to them (``--recursive`` descends,
  ``--glob`` filters by name); the output tree then mirrors the input tree below it,
  so equal file names in different folders never overwrite each other.
- A folder that holds only images is one video given as frames.
- ``--shard K/N`` keeps a deterministic K-th of N of the inputs (1-based K).
"""

from __future__ import annotations

import fnmatch
import sys
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .decode import IMAGE_SUFFIXES
from .errors import UsageError

VIDEO_SUFFIXES = (
    ".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".flv", ".wmv", ".ogv", ".3gp", ".y4m",
)  # fmt: skip


@dataclass(frozen=True)
class Job:
    source: Path  # a media file or a folder of frames
    out_dir: Path  # where its outputs go

    @property
    def stem(self) -> str:
        return self.source.stem if self.source.is_file() else self.source.name


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """ "K/N" -> (K, N) with 1 <= K <= N."""
    if not text:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected K/N, e.g. 3/8") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text!r}: K must be between 1 and N")
    return k, n


def in_shard(path: Path, shard: tuple[int, int] | None) -> bool:
    """Deterministic membership: CRC-32 of the path as given, modulo N."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(str(path).encode()) % n == k - 1


def _is_frame_folder(folder: Path) -> bool:
    has_images = False
    for p in folder.iterdir():
        if p.is_file():
            if p.suffix.lower() in VIDEO_SUFFIXES:
                return False
            if p.suffix.lower() in IMAGE_SUFFIXES:
                has_images = True
    return has_images


def _expand_folder(folder: Path, recursive: bool, pattern: str | None) -> list[Path]:
    walker = folder.rglob("*") if recursive else folder.glob("*")
    found = []
    for p in walker:
        if not p.is_file() or p.name.startswith("."):
            continue
        if pattern is not None:
            if fnmatch.fnmatch(p.name, pattern):
                found.append(p)
        elif p.suffix.lower() in VIDEO_SUFFIXES:
            found.append(p)
    return sorted(found)


def read_stdin_paths(stream=None) -> list[str]:
    stream = stream or sys.stdin
    return [line.strip() for line in stream if line.strip()]


def collect_jobs(
    inputs: Iterable[str],
    out_dir: Path | None,
    *,
    recursive: bool = False,
    pattern: str | None = None,
    shard: tuple[int, int] | None = None,
    default_subdir: str = "saliency",
) -> list[Job]:
    """Expand the command line's inputs into jobs, in a stable order, duplicates removed.

    Without ``out_dir`` outputs go to ``<input's folder>/<default_subdir>/``.
    Paths that do not exist are kept: they fail later, one line each, with the rest
    of the batch going on.
    """
    raw: list[str] = []
    for item in inputs:
        raw.extend(read_stdin_paths() if item == "-" else [item])
    jobs: list[Job] = []
    seen: set[Path] = set()
    for item in raw:
        path = Path(item).expanduser()
        if path.is_dir() and not _is_frame_folder(path):
            for f in _expand_folder(path, recursive, pattern):
                base = (out_dir or path / default_subdir) / f.parent.relative_to(path)
                jobs.append(Job(f, base))
            continue
        base = out_dir if out_dir is not None else path.parent / default_subdir
        jobs.append(Job(path, base))
    unique: list[Job] = []
    for job in jobs:
        key = job.source.resolve() if job.source.exists() else job.source.absolute()
        if key in seen:
            continue
        seen.add(key)
        unique.append(job)
    unique = _separate_clashes(unique)
    return [j for j in unique if in_shard(j.source, shard)]


def _separate_clashes(jobs: list[Job]) -> list[Job]:
    """Jobs whose outputs would share a name get sub-folders mirroring their sources."""
    by_target: dict[tuple[Path, str], list[Job]] = {}
    for job in jobs:
        by_target.setdefault((job.out_dir, job.stem), []).append(job)
    fixed: dict[Job, Job] = {}
    for group in by_target.values():
        if len(group) < 2:
            continue
        parents = [j.source.absolute().parent for j in group]
        common = Path(*_common_parts([p.parts for p in parents]))
        for job, parent in zip(group, parents, strict=True):
            rel = parent.relative_to(common)
            fixed[job] = Job(job.source, job.out_dir / (rel if rel.parts else Path(".")))
    return [fixed.get(j, j) for j in jobs]


def _common_parts(parts_list: list[tuple[str, ...]]) -> tuple[str, ...]:
    common: list[str] = []
    for items in zip(*parts_list, strict=False):
        if all(x == items[0] for x in items):
            common.append(items[0])
        else:
            break
    return tuple(common) or ("/",)
