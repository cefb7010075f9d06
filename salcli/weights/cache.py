"""Where checkpoint files are: the known checkpoints, the cache, and ``--weights``.

- The known checkpoints are ``salcli.models.registry.CHECKPOINTS`` (declared with the
  models), plus the entries of a JSON file named by ``$SALCLI_REGISTRY`` (a site mirror,
  a private checkpoint), which replace declared ones of the same name (``load_registry``).
- The cache is ``cache_dir()``: ``$SALCLI_WEIGHTS``, else
  ``$XDG_CACHE_HOME/salcli/weights`` (``~/.cache/salcli/weights``). A known checkpoint
  lives there under its ``file`` name; downloads and imports land there atomically, with
  the user's umask (``salcli.weights.store``).
- ``resolve_weights(spec, arch)`` is the one look-up: a path is used as is; a bare file
  name, a registry name (its ``file``) and None (the default file of ``arch``,
  ``salcli.models.registry.DEFAULT_FILES``) are looked for in ``search_dirs()``: the
  current folder, ``./weights``, the checkout's ``weights/``, the cache.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from salcli.errors import WeightsError, escape
from salcli.models.registry import (
    ARCHS,
    CHECKPOINTS,
    DEFAULT_FILES,
    Checkpoint,
    label,
    published,
    where_published,
)
from salcli.weights.download import normalize_checksum

WEIGHTS_ENV = "SALCLI_WEIGHTS"  # a folder searched for weights (and the cache)
REGISTRY_ENV = "SALCLI_REGISTRY"  # path of an extra registry JSON merged over the built-in one
REGISTRY_FORMAT = 1
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
CLOSE_MATCH = 0.8  # difflib ratio above which an unknown name gets a "did you mean"


# ---------------------------------------------------------------------------
# Loading the registry
# ---------------------------------------------------------------------------


def load_registry(path: str | Path | None = None) -> dict[str, Checkpoint]:
    """name -> Checkpoint: the entries of the JSON file ``path``, or the declared
    checkpoints merged with ``$SALCLI_REGISTRY``'s."""
    if path is not None:
        return _read_registry(Path(path))
    entries = {c.name: c for c in CHECKPOINTS}
    extra = os.environ.get(REGISTRY_ENV)
    if extra:
        entries.update(_read_registry(Path(extra).expanduser()))
        _check_unique_files(entries.values(), Path(extra))
    return entries


def get(name: str, registry: Mapping[str, Checkpoint] | None = None) -> Checkpoint:
    """The registry entry called ``name``; a one-line WeightsError if there is none."""
    reg = load_registry() if registry is None else registry
    try:
        return reg[name]
    except KeyError:
        raise WeightsError(
            f"unknown weights name {name!r} (`salcli weights list` shows the known ones)"
        ) from None


def _read_registry(path: Path) -> dict[str, Checkpoint]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"weights registry not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not a readable weights registry ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise WeightsError(f"{path}: not a weights registry (no list of entries)")
    if doc.get("format", REGISTRY_FORMAT) != REGISTRY_FORMAT:
        raise WeightsError(f"{path}: registry format {doc.get('format')!r} is not supported")
    entries: dict[str, Checkpoint] = {}
    for i, raw in enumerate(doc["entries"]):
        entry = _parse_entry(raw, f"{path}: entry {i + 1}")
        if entry.name in entries:
            raise WeightsError(f"{path}: the name {entry.name!r} appears twice")
        entries[entry.name] = entry
    _check_unique_files(entries.values(), path)
    return entries


def _parse_entry(raw: object, where: str) -> Checkpoint:
    if not isinstance(raw, dict):
        raise WeightsError(f"{where}: not an object")
    for key in ("name", "arch", "file"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise WeightsError(f"{where}: {key!r} is missing")
    name, arch, file = raw["name"], raw["arch"], raw["file"]
    if arch not in ARCHS:
        raise WeightsError(f"{where} ({name}): unknown architecture {arch!r}")
    if Path(file).name != file or file.startswith("."):
        raise WeightsError(f"{where} ({name}): 'file' must be a plain file name, not {file!r}")
    urls = raw.get("urls") or []
    if isinstance(urls, str):
        urls = [urls]
    if not all(isinstance(u, str) and u for u in urls):
        raise WeightsError(f"{where} ({name}): 'urls' must be a list of strings")
    try:
        sha256 = normalize_checksum(raw.get("sha256"))
        prefix = normalize_checksum(raw.get("sha256_prefix"))
    except WeightsError as exc:
        raise WeightsError(f"{where} ({name}): {exc}") from None
    if sha256 is not None and len(sha256) != 64:
        raise WeightsError(f"{where} ({name}): 'sha256' must have 64 hex digits")
    return Checkpoint(
        name=name,
        arch=arch,
        file=file,
        trained_on=str(raw.get("trained_on") or ""),
        page=raw.get("page") or None,
        licence=str(raw.get("licence") or ""),
        urls=tuple(urls),
        sha256=sha256,
        sha256_prefix=prefix,
        note=str(raw.get("description") or ""),
    )


def _check_unique_files(entries: Iterable[Checkpoint], path: Path) -> None:
    seen: dict[str, str] = {}
    for e in entries:
        if e.file in seen:
            raise WeightsError(
                f"{path}: {e.name!r} and {seen[e.file]!r} share the file name {e.file}"
            )
        seen[e.file] = e.name


# ---------------------------------------------------------------------------
# Where weights are looked for, and resolving --weights
# ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """The user cache: ``$SALCLI_WEIGHTS``, else ``$XDG_CACHE_HOME/salcli/weights``
    (``~/.cache/salcli/weights``)."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "salcli" / "weights"


def repo_weights_dir() -> Path | None:
    """The ``weights/`` folder of the source checkout salcli runs from; None when salcli
    is installed as a package (no ``pyproject.toml`` beside the package)."""
    root = Path(__file__).resolve().parents[2]
    return root / "weights" if (root / "pyproject.toml").is_file() else None


def search_dirs() -> list[Path]:
    """Where a weights file name is looked for, in order, each folder once: the current
    folder, ``./weights``, the checkout's ``weights/``, the cache (``cache_dir()``)."""
    cwd = Path.cwd()
    dirs: list[Path] = []
    for d in (cwd, cwd / "weights", repo_weights_dir(), cache_dir()):
        if d is not None and d.absolute() not in dirs:
            dirs.append(d.absolute())
    return dirs


def resolve_weights(spec: str | Path | None, arch: str, *, option: str = "weights") -> Path:
    """The existing checkpoint file meant by a ``--weights`` value; the one look-up.

    - a ``Path``, or a string with a folder in it (``my/w.pt``, ``~/w.pt``): that file;
    - a bare word: a file of that name in the current folder, else a registry name (its
      ``file``), else a file name; the file is looked for in ``search_dirs()``
      (``salcli predict --weights ViNet_DHF1K.pt`` finds what ``weights import`` filed);
    - None: the default file of ``arch`` (``DEFAULT_FILES``), in the same folders.

    Raises a one-line WeightsError naming the folders it looked in and how to get the
    file (the registry name that has this file name, ``salcli weights import FILE``).
    The architecture of the file is checked when it is loaded, not here.
    """
    if spec is not None and (isinstance(spec, Path) or not _is_bare(str(spec))):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path
    entry = None
    if spec is None:
        file = DEFAULT_FILES[arch]  # the registry is read only if it is not found
    elif Path(spec).is_file():  # a file in the current folder wins over a registry name
        return Path(spec)
    else:
        entry = load_registry().get(str(spec))
        file = entry.file if entry is not None else str(spec)
    dirs = search_dirs()
    for d in dirs:
        if (d / file).is_file():
            return d / file
    line = _not_found(spec, file, entry, arch, dirs, load_registry(), option)
    raise WeightsError(line, options=(option,))


def _is_bare(text: str) -> bool:
    """A plain file or registry name, without any folder (nor ``~``)."""
    return bool(text) and "/" not in text and os.sep not in text and not text.startswith("~")


def _close_match(word: str, known: list[str]) -> str | None:
    """The known name or file name ``word`` most likely misspells (case aside), if any."""
    lower = {k.lower(): k for k in reversed(known)}  # the first spelling wins
    close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=CLOSE_MATCH)
    return lower[close[0]] if close else None


def _not_found(
    spec: str | Path | None,
    file: str,
    entry: Checkpoint | None,
    arch: str,
    dirs: list[Path],
    reg: Mapping[str, Checkpoint],
    option: str = "weights",
) -> str:
    """The one line saying what was not found where, and how to get it: a message
    template naming ``option``, the option the spec came from (``{weights}``; see
    ``salcli.errors.SalcliError``)."""
    flag = "{" + option + "}"
    places = ", ".join(map(str, dirs))
    if spec is None:  # the default file of arch
        named = entry_with_file(reg, file)
        source = where_published(arch)
        head = f"no {label(arch)} weights: {file} not found in {places}"
        if named is not None and named.downloadable:
            how = named.where_to_get()
        else:
            command = f"`salcli weights import FILE --name {named.name if named else file}`"
            if source is None:
                how = f"none are published: import your own with {command}"
            else:
                one = "one" if len(published(arch)) > 1 else "it"
                how = f"get {one} from {source}, then run {command}"
        others = [e for e in reg.values() if e.arch == arch and e is not named]
        there = [e.name for e in others if any((d / e.file).is_file() for d in dirs)]
        also = f"; these are there: {flag} {escape(' | '.join(there))}" if there else ""
        return f"{escape(head)}; {escape(how)} (or pass {flag} PATH|NAME){also}"
    if entry is not None:  # a registry name
        return escape(
            f"weights {entry.name} ({file}) not found in {places}: {entry.where_to_get()}"
        )
    named = entry_with_file(reg, file)
    if named is not None:  # the file name of a registry entry
        return escape(
            f"weights file {file} not found in {places} (it is registry entry {named.name}): "
            f"{named.where_to_get()}"
        )
    close = _close_match(file, [*(e.file for e in reg.values()), *reg])
    hint = f"did you mean {close}? " if close else ""
    if file.lower().endswith(CHECKPOINT_SUFFIXES):
        return escape(
            f"weights file {file} not found in {places} ({hint}give its path, or run "
            f"`salcli weights import FILE --name {file}` to keep a copy in the cache)"
        )
    return f"{flag} " + escape(
        f"{file}: no such file (looked in {places}) and no such registry name "
        f"({hint}`salcli weights list` shows the names)"
    )


def cache_path(entry: Checkpoint) -> Path:
    """Where a known checkpoint lives in the cache (whether it is there or not)."""
    return cache_dir() / entry.file


def entry_with_file(reg: Mapping[str, Checkpoint], file_name: str) -> Checkpoint | None:
    """The known checkpoint whose file is called ``file_name``, if any."""
    return next((e for e in reg.values() if e.file == file_name), None)
