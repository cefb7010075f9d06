"""Per-video completion records: what makes a re-run skip finished videos.

After every output of a video is complete, ``<out_dir>/<stem>.salcli.json`` is written
(atomically, last). A video counts as finished when its record exists, was made from the
same source (its absolute path, or the same file name and size: a corpus that moved),
names the formats asked for, and every output of those formats still exists. A run killed
mid-video leaves no record, so the next run redoes that video; the temporaries it left
(``.<final name>.<pid>-<random>.tmp`` / ``.old``, see ``salcli.media.writers``) belong to a
process that no longer exists and are removed by ``clean_stale_temps`` before the video
is redone. A video being redone loses its record first (``remove_record``), so a redo that
fails is never mistaken for the older, finished one. The record also holds the settings
that shape the maps (model, weights' SHA-256, warm-up, input size): a re-run with other
settings does not take them for its own (``settings_changed``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from salcli.defaults import FORMATS, RECORD_SUFFIX
from salcli.files import write_text_atomic

# hidden temporaries of salcli's atomic writers: .<final name>.<pid>-<hex>.tmp|old
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]+\.(?:tmp|old)$")
# the record temporaries of salcli 0.1.0: .<stem>.salcli.json.tmp-<pid>
_OLD_RECORD_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def _writer_paths(fmt: str, out_dir: Path, stem: str) -> list[Path]:
    from salcli.media.writers import output_paths

    return output_paths(fmt, Path(out_dir), stem)


@dataclass(frozen=True)
class Naming:
    """A command's outputs: the formats it writes and ``paths(fmt, out_dir, stem)``, the
    final outputs of one format (``predict``'s: the writers'; ``reframe`` has its own)."""

    formats: tuple[str, ...]
    paths: Callable[[str, Path, str], list[Path]]


PREDICT_NAMING = Naming(FORMATS, _writer_paths)


def record_path(out_dir: Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{RECORD_SUFFIX}"


def source_key(source: Path) -> str:
    """The absolute path a record stores for ``source`` (symlinks resolved)."""
    return str(Path(source).expanduser().resolve())


def _source_size(source: Path) -> int | None:
    try:
        return Path(source).stat().st_size if Path(source).is_file() else None
    except OSError:
        return None


def read_record(out_dir: Path, stem: str) -> dict | None:
    """The record of ``stem`` in ``out_dir``, or None (absent or unreadable)."""
    try:
        rec = json.loads(record_path(out_dir, stem).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def same_source(record: dict, source: Path) -> bool:
    """Whether ``record`` was made from ``source``: the same absolute path, or (a corpus
    that moved) the same file name and size."""
    recorded = record.get("source")
    if not recorded:
        return True  # a record without a source cannot say otherwise
    if recorded == source_key(source):
        return True
    size = _source_size(source)
    return (
        Path(recorded).name == Path(source).name
        and size is not None
        and record.get("source_size") == size
    )


def other_source(out_dir: Path, stem: str, source: Path) -> str | None:
    """The source of the record in ``out_dir`` for ``stem`` when it is not ``source``."""
    rec = read_record(out_dir, stem)
    if rec is None or same_source(rec, source):
        return None
    return str(rec.get("source"))


def settings_changed(record: dict, settings: dict) -> list[str]:
    """The names of ``settings`` (model, weights_sha256, warmup, input_size...) whose
    value in ``record`` differs; settings a record does not hold are not compared."""
    return [k for k, v in settings.items() if k in record and record[k] != v]


def expected_outputs(
    out_dir: Path, stem: str, formats: Sequence[str], naming: Naming = PREDICT_NAMING
) -> list[Path]:
    """The final outputs of ``formats`` for ``stem`` (the writers' names by default)."""
    return [p for fmt in formats for p in naming.paths(fmt, Path(out_dir), stem)]


def is_complete(
    out_dir: Path,
    stem: str,
    formats: Sequence[str],
    source: Path | None = None,
    naming: Naming = PREDICT_NAMING,
) -> bool:
    """True when the video ``stem`` (made from ``source``, when given) is finished in
    ``out_dir`` for every format of ``formats``."""
    rec = read_record(out_dir, stem)
    if rec is None:
        return False
    if source is not None and not same_source(rec, source):
        return False
    if not set(formats) <= set(rec.get("formats", [])):
        return False
    return all(p.exists() for p in expected_outputs(out_dir, stem, formats, naming))


def write_record(out_dir: Path, stem: str, payload: dict) -> Path:
    """Write the record atomically (temporary name, then ``os.replace``); a failure
    leaves no temporary behind. ``payload["source"]`` and ``["outputs"]`` are stored as
    absolute paths, with the source file's size in ``source_size``."""
    path = record_path(out_dir, stem)
    data = dict(payload)
    if "outputs" in data:
        data["outputs"] = [os.path.abspath(p) for p in data["outputs"]]
    if data.get("source"):
        data["source_size"] = _source_size(Path(data["source"]))
        data["source"] = source_key(Path(data["source"]))
    data.setdefault("finished_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return write_text_atomic(path, text, sync=False)


def merged(
    previous: dict | None,
    *,
    out_dir: Path,
    stem: str,
    source: str,
    formats: Sequence[str],
    outputs: Sequence[str],
    settings: dict,
    naming: Naming = PREDICT_NAMING,
    **fields,
) -> dict:
    """The record of a finished run: ``settings`` and ``fields`` at the top level, and
    the formats and outputs of this run plus those of ``previous`` (the record it
    replaces) made from the same source with the same settings and all still there."""
    formats, outputs = list(formats), [os.path.abspath(p) for p in outputs]
    same = previous is not None and same_source(previous, Path(source))
    if same and all(previous.get(k) == v for k, v in settings.items()):
        for fmt in previous.get("formats", []):
            if fmt in formats or fmt not in naming.formats:
                continue
            paths = expected_outputs(out_dir, stem, [fmt], naming)
            if all(p.exists() for p in paths):
                formats.append(fmt)
                outputs.extend(os.path.abspath(p) for p in paths)
    return {"source": source, "formats": formats, "outputs": outputs, **settings, **fields}


def missing_parents(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first: what creating
    it would create (``remove_empty`` takes them back after a failure)."""
    missing = []
    path = Path(os.path.abspath(folder))
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    return missing


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that exist and are empty; never raises."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break  # not empty (or gone): its parents are not empty either


def remove_record(out_dir: Path, stem: str) -> None:
    """Forget that ``stem`` was finished (before redoing it)."""
    record_path(out_dir, stem).unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return True  # cannot tell: keep its files
    return True


def _temporaries(out_dir: Path) -> dict[str, list[tuple[Path, int, bool]]]:
    """salcli temporaries in ``out_dir`` by the final name they stand for:
    (path, pid of the process that made it, is a folder)."""
    found: dict[str, list[tuple[Path, int, bool]]] = {}
    try:
        entries = list(os.scandir(out_dir))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        match = _TEMP_RE.match(entry.name) or _OLD_RECORD_TEMP_RE.match(entry.name)
        if match is None:
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        found.setdefault(match["name"], []).append((Path(entry.path), int(match["pid"]), is_dir))
    return found


def _sweep(
    temps: dict[str, list[tuple[Path, int, bool]]], out_dir: Path, stem: str, naming: Naming
) -> list[Path]:
    names = {p.name for p in expected_outputs(out_dir, stem, naming.formats, naming)}
    names.add(record_path(out_dir, stem).name)
    removed: list[Path] = []
    for name in names:
        for path, pid, is_dir in temps.get(name, []):
            if pid_alive(pid):
                continue
            try:
                if is_dir:
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


def clean_stale_temps(out_dir: Path, stem: str, naming: Naming = PREDICT_NAMING) -> list[Path]:
    """Remove the temporaries of ``stem``'s outputs (every format) and record in
    ``out_dir`` left by processes that no longer run on this machine (a killed run).
    Temporaries of live processes are kept. Returns what was removed; never raises.

    The process check is local: on a file system shared by several machines, two
    runs must not work on the same video at once (``--shard`` never lets them).
    """
    return _sweep(_temporaries(Path(out_dir)), Path(out_dir), stem, naming)


class StaleTemps:
    """``clean_stale_temps`` for a whole run: each output folder is listed once (a
    folder holding the outputs of thousands of videos is not listed per video).
    Temporaries made after the listing are this run's own and are not touched."""

    def __init__(self, naming: Naming = PREDICT_NAMING) -> None:
        self._listed: dict[Path, dict[str, list[tuple[Path, int, bool]]]] = {}
        self._naming = naming

    def clean(self, out_dir: Path, stem: str) -> list[Path]:
        key = Path(os.path.abspath(out_dir))
        if key not in self._listed:
            self._listed[key] = _temporaries(key)
        return _sweep(self._listed[key], key, stem, self._naming)
