"""Per-video completion records: what makes a re-run skip finished videos.

After every output of a video is complete, ``<out_dir>/<stem>.salcli.json`` is written
(atomically, last). A video counts as finished when its record exists, was made from the
same source (its absolute path, or the same file name and size: a corpus that moved),
names the formats asked for, and every output of those formats still exists. A run killed
mid-video leaves no record, so the next run redoes that video; the temporaries it left
(``.<final name>.<pid>-<start>-<host>-<random>.tmp`` / ``.old``, see ``salcli.files``)
belong to a process that no longer runs and are removed by ``clean_stale_temps`` before
the video is redone: on this host when their process is gone (pid and start time,
``salcli.identity``), from another host when they have not changed for a lease. A video
being redone loses its record first (``remove_record``), so a redo that fails is never
mistaken for the older, finished one. The record also holds the settings that shape the
maps (model, weights' SHA-256, warm-up, input size): a re-run with other settings does
not take them for its own (``settings_changed``); and the run that wrote it (``run``,
``host``). The claims that keep two runs off one video live beside the records
(``claim_path``, ``salcli.corpus.claims``).
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

from salcli import identity
from salcli.defaults import (
    CLAIM_LOCK_SUFFIX,
    CLAIM_SUFFIX,
    DEFAULT_LEASE_S,
    FORMATS,
    RECORD_SUFFIX,
)
from salcli.files import write_text_atomic
from salcli.identity import Holder, from_tag

# hidden temporaries of salcli's atomic writers: .<final name>.<pid>-<start>-<host>-<hex>.tmp|old
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<tag>\d+-\d+-[A-Za-z0-9_-]+)-[0-9a-f]+\.(?:tmp|old)$")
# those of salcli 0.1 to 0.3: .<final name>.<pid>-<hex>.tmp|old
_PID_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]+\.(?:tmp|old)$")
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


def claim_path(out_dir: Path, stem: str) -> Path:
    """Where a run claims ``stem`` (``salcli.corpus.claims``): hidden, beside the outputs."""
    return Path(out_dir) / f".{stem}{CLAIM_SUFFIX}"


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


@dataclass(frozen=True)
class Temporary:
    """A salcli temporary: its path, the process that made it, whether it is a folder."""

    path: Path
    holder: Holder
    is_dir: bool

    def stale(self, lease_s: float) -> bool:
        """Its process is gone: on this host, by pid and start time; from another host,
        the temporary has not changed for ``lease_s`` seconds (a temporary grows while
        it is written; a corpus run sweeps only under its claim on the video)."""
        if self.holder.on_this_host():
            return not self.holder.alive_here()
        try:
            return identity.now() - self.path.stat().st_mtime > lease_s
        except OSError:
            return False  # gone already


def _parse_temp(entry: os.DirEntry) -> tuple[str, Holder] | None:
    match = _TEMP_RE.match(entry.name)
    if match is not None:
        holder = from_tag(match["tag"])
        return (match["name"], holder) if holder is not None else None
    match = _PID_TEMP_RE.match(entry.name) or _OLD_RECORD_TEMP_RE.match(entry.name)
    if match is None:
        return None
    return match["name"], Holder(identity.host_name(), int(match["pid"]))  # written on this host


def temporaries(out_dir: Path) -> dict[str, list[Temporary]]:
    """salcli temporaries in ``out_dir`` by the final name they stand for."""
    found: dict[str, list[Temporary]] = {}
    try:
        entries = list(os.scandir(out_dir))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        parsed = _parse_temp(entry)
        if parsed is None:
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        name, holder = parsed
        found.setdefault(name, []).append(Temporary(Path(entry.path), holder, is_dir))
    return found


def video_names(out_dir: Path, stem: str, naming: Naming = PREDICT_NAMING) -> set[str]:
    """The names of every file salcli keeps for ``stem`` in ``out_dir``: outputs of every
    format ``naming`` knows, record, claim and its take-over lock."""
    names = {p.name for p in expected_outputs(out_dir, stem, naming.formats, naming)}
    claim = claim_path(out_dir, stem).name
    return names | {record_path(out_dir, stem).name, claim, claim + CLAIM_LOCK_SUFFIX}


def _sweep(
    temps: dict[str, list[Temporary]],
    out_dir: Path,
    stem: str,
    lease_s: float,
    naming: Naming = PREDICT_NAMING,
) -> list[Path]:
    removed: list[Path] = []
    for name in video_names(out_dir, stem, naming):
        for temp in temps.get(name, []):
            if not temp.stale(lease_s):
                continue
            try:
                if temp.is_dir:
                    shutil.rmtree(temp.path)
                else:
                    temp.path.unlink()
                removed.append(temp.path)
            except OSError:
                pass
    return removed


def clean_stale_temps(
    out_dir: Path, stem: str, lease_s: float = DEFAULT_LEASE_S, naming: Naming = PREDICT_NAMING
) -> list[Path]:
    """Remove the temporaries of ``stem``'s outputs (every format of ``naming``), record
    and claim in ``out_dir`` whose process is gone (``Temporary.stale``). Temporaries of
    live processes are kept. Returns what was removed; never raises."""
    return _sweep(temporaries(Path(out_dir)), Path(out_dir), stem, lease_s, naming)


class StaleTemps:
    """``clean_stale_temps`` for a whole run: each output folder is listed once (a
    folder holding the outputs of thousands of videos is not listed per video), and
    listed again only for a video taken over from a dead run (``fresh``): its
    temporaries were made after the first listing."""

    def __init__(self, lease_s: float = DEFAULT_LEASE_S, naming: Naming = PREDICT_NAMING) -> None:
        self.lease_s = lease_s
        self._naming = naming
        self._listed: dict[Path, dict[str, list[Temporary]]] = {}

    def clean(self, out_dir: Path, stem: str, *, fresh: bool = False) -> list[Path]:
        key = Path(os.path.abspath(out_dir))
        if fresh or key not in self._listed:
            self._listed[key] = temporaries(key)
        return _sweep(self._listed[key], key, stem, self.lease_s, self._naming)
