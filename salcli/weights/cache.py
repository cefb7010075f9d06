"""The registry of known checkpoints, the weights cache, and ``--weights`` resolution.

Conventions:

- The registry is ``salcli/registry.json`` (shipped inside the package, so an installed
  salcli has it too). ``$SALCLI_REGISTRY`` may name another JSON file of the same format
  whose entries are added to it, replacing built-in ones of the same name (a site mirror,
  a private checkpoint).
- The cache is ``cache_dir()``: ``$SALCLI_WEIGHTS``, else
  ``$XDG_CACHE_HOME/salcli/weights`` (``~/.cache/salcli/weights``). A registry entry lives
  there under its ``file`` name; downloads and imports land there atomically, with the
  user's umask.
- ``resolve_weights(spec, arch)`` is the one look-up: a path is used as is; a bare file
  name, a registry name (its ``file``) and None (the default file of ``arch``,
  ``salcli.defaults.DEFAULT_WEIGHTS``) are looked for in ``search_dirs()``: the current
  folder, ``./weights``, the checkout's ``weights/``, the cache.
- ``cached()`` lists every checkpoint file in the cache, registry-known or not.
- Architectures: those of ``salcli.models.checkpoints.ARCHS`` plus two S3D backbone layouts:
  ``s3d`` (the S3D author's ``S3D_kinetics400.pt``: ViNet's backbone names, or the
  author's flat ``base.N`` names, plus a classifier head) and ``s3d-torchvision``
  (torchvision's ``features.*`` names, the same 462 entries and shapes in the same order).
- Every checkpoint is read with ``torch.load(weights_only=True)`` (``read_checkpoint``):
  a pickle that would run code is refused.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from salcli.defaults import DEFAULT_WEIGHTS, WEIGHTS_ENV
from salcli.errors import OutputError, WeightsError
from salcli.files import TEMP_SUFFIX, write_atomic
from salcli.models.checkpoints import (
    ARCHS,
    PUBLISHED_SOURCES,
    SALIENCY_ARCHS,
    check_keys,
    detect_arch,
    model_name,
    read_checkpoint,
    sha256_file,
    unwrap_state_dict,
)
from salcli.models.s3d import S3DBackbone
from salcli.models.vinet import build_model
from salcli.weights.download import (
    DEFAULT_TIMEOUT,
    LOCK_SUFFIX,
    PART_SUFFIX,
    Progress,
    checksum_matches,
    download,
)
from salcli.weights.download import normalize_checksum as _normalize_checksum

REGISTRY_FILE = Path(__file__).with_name("registry.json")
REGISTRY_ENV = "SALCLI_REGISTRY"  # path of an extra registry JSON merged over the built-in one
REGISTRY_FORMAT = 1
S3D_ARCHS = ("s3d", "s3d-torchvision")
KNOWN_ARCHS = (*ARCHS, *S3D_ARCHS)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
CLOSE_MATCH = 0.8  # difflib ratio above which an unknown name gets a "did you mean"
# The S3D author's flat ``base.N`` Sequential -> ViNet's (stage, first index, end index):
# indices 4, 7 and 13 are pooling layers (no parameters).
S3D_FLAT_STAGES = ((1, 0, 4), (2, 5, 7), (3, 8, 13), (4, 14, 16))
_SKIP_SUFFIXES = (PART_SUFFIX, LOCK_SUFFIX, TEMP_SUFFIX)


@dataclass(frozen=True)
class Entry:
    """One known checkpoint.

    ``sha256``: full hex digest or None; ``sha256_prefix``: leading hex digits where only
    those are known. ``manual``: no direct URL; get it from ``page``.
    """

    name: str
    arch: str
    file: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    sha256_prefix: str | None = None
    manual: bool = False
    page: str | None = None
    description: str = ""

    @property
    def checksum(self) -> str | None:
        """What a file must match: the full digest, else the prefix, else None."""
        return self.sha256 or self.sha256_prefix

    @property
    def downloadable(self) -> bool:
        return bool(self.urls)

    def cache_path(self) -> Path:
        """Where this entry lives in the cache (whether it is there or not)."""
        return cache_dir() / self.file

    def where_to_get(self) -> str:
        """One phrase: how a user obtains this file."""
        if self.urls:
            return (
                f"run `salcli weights download {self.name}`, or `salcli weights import FILE "
                f"--name {self.name}` with a copy you have"
            )
        page = self.page or "its publisher"
        return (
            f"get {self.file} from {page}, then run `salcli weights import FILE --name {self.name}`"
        )


@dataclass(frozen=True)
class ImportResult:
    path: Path  # where the file now is, in the cache
    arch: str
    entry: Entry | None  # the registry entry it was filed under, if any
    sha256: str


@dataclass(frozen=True)
class CachedFile:
    path: Path
    entry: Entry | None  # the registry entry whose file this is; None: not in the registry
    arch: str | None  # the entry's, else the default file's, else read from it (None: unknown)
    default: bool  # it is the default file of ``arch`` (used when --weights is not given)


@dataclass(frozen=True)
class VerifyResult:
    name: str  # registry name, or the file name for files the registry does not know
    path: Path
    status: str  # "ok" | "mismatch" | "unknown" (no checksum known) | "missing"
    sha256: str | None = None  # as computed (None when missing)
    expected: str | None = None
    partial: bool = False  # only a prefix of the digest was compared


# ---------------------------------------------------------------------------
# Loading the registry
# ---------------------------------------------------------------------------


def load_registry(path: str | Path | None = None) -> dict[str, Entry]:
    """name -> Entry, in file order: ``path``, or the built-in registry merged with
    ``$SALCLI_REGISTRY``."""
    if path is not None:
        return _read_registry(Path(path))
    entries = _read_registry(REGISTRY_FILE)
    extra = os.environ.get(REGISTRY_ENV)
    if extra:
        entries.update(_read_registry(Path(extra).expanduser()))
        _check_unique_files(entries.values(), Path(extra))
    return entries


def get(name: str, registry: Mapping[str, Entry] | None = None) -> Entry:
    """The registry entry called ``name``; a one-line WeightsError if there is none."""
    reg = load_registry() if registry is None else registry
    try:
        return reg[name]
    except KeyError:
        raise WeightsError(
            f"unknown weights name {name!r} (`salcli weights list` shows the known ones)"
        ) from None


def _read_registry(path: Path) -> dict[str, Entry]:
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
    entries: dict[str, Entry] = {}
    for i, raw in enumerate(doc["entries"]):
        entry = _parse_entry(raw, f"{path}: entry {i + 1}")
        if entry.name in entries:
            raise WeightsError(f"{path}: the name {entry.name!r} appears twice")
        entries[entry.name] = entry
    _check_unique_files(entries.values(), path)
    return entries


def _parse_entry(raw: object, where: str) -> Entry:
    if not isinstance(raw, dict):
        raise WeightsError(f"{where}: not an object")
    for key in ("name", "arch", "file"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise WeightsError(f"{where}: {key!r} is missing")
    name, arch, file = raw["name"], raw["arch"], raw["file"]
    if arch not in KNOWN_ARCHS:
        raise WeightsError(f"{where} ({name}): unknown architecture {arch!r}")
    if Path(file).name != file or file.startswith("."):
        raise WeightsError(f"{where} ({name}): 'file' must be a plain file name, not {file!r}")
    urls = raw.get("urls") or []
    if isinstance(urls, str):
        urls = [urls]
    if not all(isinstance(u, str) and u for u in urls):
        raise WeightsError(f"{where} ({name}): 'urls' must be a list of strings")
    try:
        sha256 = _normalize_checksum(raw.get("sha256"))
        prefix = _normalize_checksum(raw.get("sha256_prefix"))
    except WeightsError as exc:
        raise WeightsError(f"{where} ({name}): {exc}") from None
    if sha256 is not None and len(sha256) != 64:
        raise WeightsError(f"{where} ({name}): 'sha256' must have 64 hex digits")
    return Entry(
        name=name,
        arch=arch,
        file=file,
        urls=tuple(urls),
        sha256=sha256,
        sha256_prefix=prefix,
        manual=bool(raw.get("manual", not urls)),
        page=raw.get("page") or None,
        description=str(raw.get("description") or ""),
    )


def _check_unique_files(entries: Iterable[Entry], path: Path) -> None:
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


def resolve_weights(spec: str | Path | None, arch: str) -> Path:
    """The existing checkpoint file meant by a ``--weights`` value; the one look-up.

    - a ``Path``, or a string with a folder in it (``my/w.pt``, ``~/w.pt``): that file;
    - a bare word: a file of that name in the current folder, else a registry name (its
      ``file``), else a file name; the file is looked for in ``search_dirs()``
      (``salcli predict --weights ViNet_DHF1K.pt`` finds what ``weights import`` filed);
    - None: the default file of ``arch`` (``DEFAULT_WEIGHTS``), in the same folders.

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
        file = DEFAULT_WEIGHTS[arch]  # the registry is read only if it is not found
    elif Path(spec).is_file():  # a file in the current folder wins over a registry name
        return Path(spec)
    else:
        entry = load_registry().get(str(spec))
        file = entry.file if entry is not None else str(spec)
    dirs = search_dirs()
    for d in dirs:
        if (d / file).is_file():
            return d / file
    raise WeightsError(_not_found(spec, file, entry, arch, dirs, load_registry()))


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
    entry: Entry | None,
    arch: str,
    dirs: list[Path],
    reg: Mapping[str, Entry],
) -> str:
    """The one line saying what was not found where, and how to get it."""
    places = ", ".join(map(str, dirs))
    if spec is None:  # the default file of arch
        named = _entry_with_file(reg, file)
        source = PUBLISHED_SOURCES.get(arch)
        head = f"no {model_name(arch)} weights: {file} not found in {places}"
        if named is not None and named.downloadable:
            how = named.where_to_get()
        else:
            command = f"`salcli weights import FILE --name {named.name if named else file}`"
            if source is None:
                how = f"none are published: import your own with {command}"
            else:
                one = "one" if arch in SALIENCY_ARCHS[1:] else "it"
                how = f"get {one} from {source}, then run {command}"
        others = [e for e in reg.values() if e.arch == arch and e is not named]
        there = [e.name for e in others if any((d / e.file).is_file() for d in dirs)]
        also = f"; these are there: --weights {' | '.join(there)}" if there else ""
        return f"{head}; {how} (or pass --weights PATH|NAME){also}"
    if entry is not None:  # a registry name
        return f"weights {entry.name} ({file}) not found in {places}: {entry.where_to_get()}"
    named = _entry_with_file(reg, file)
    if named is not None:  # the file name of a registry entry
        return (
            f"weights file {file} not found in {places} (it is registry entry {named.name}): "
            f"{named.where_to_get()}"
        )
    close = _close_match(file, [*(e.file for e in reg.values()), *reg])
    hint = f"did you mean {close}? " if close else ""
    if file.lower().endswith(CHECKPOINT_SUFFIXES):
        return (
            f"weights file {file} not found in {places} ({hint}give its path, or run "
            f"`salcli weights import FILE --name {file}` to keep a copy in the cache)"
        )
    return (
        f"--weights {file}: no such file (looked in {places}) and no such registry name "
        f"({hint}`salcli weights list` shows the names)"
    )


# ---------------------------------------------------------------------------
# Fetching, importing, verifying
# ---------------------------------------------------------------------------


def fetch(
    name: str,
    *,
    force: bool = False,
    on_progress: Progress | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download a registry entry into the cache (mirrors in order); return its path.

    A cached file is kept unless ``force``; a downloaded file must match the registry's
    checksum (where known) and be a checkpoint of the entry's architecture.
    """
    entry = get(name)
    dest = entry.cache_path()
    if not entry.downloadable:
        raise WeightsError(f"{entry.name} has no direct download: {entry.where_to_get()}")
    if dest.is_file() and not force:
        return dest
    return download(
        entry.urls,
        dest,
        sha256=entry.checksum,
        on_progress=on_progress,
        timeout=timeout,
        check=lambda part: _check_arch(part, entry),
    )


def _check_arch(path: Path, entry: Entry) -> None:
    arch, _ = inspect_checkpoint(path)
    if arch != entry.arch:
        raise WeightsError(f"it holds {arch} weights, not {entry.arch}")


def inspect_checkpoint(path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """(architecture, state_dict) of a checkpoint, after checking every key and shape.

    The architecture is one of ``KNOWN_ARCHS``. Raises a one-line WeightsError for a
    file that is unsafe, unreadable, or not exactly one of those architectures.
    """
    sd = read_checkpoint(path)
    try:
        arch = detect_arch(sd)
    except WeightsError:
        kind = s3d_layout(sd, path)
        if kind is None:
            raise WeightsError(
                f"{path}: not a checkpoint of a known architecture "
                f"({', '.join(KNOWN_ARCHS)}): unknown keys (e.g. {next(iter(sd))})"
            ) from None
        return kind, sd
    with torch.device("meta"):  # shapes only: no memory, no random initialisation
        model = build_model(arch)
    check_keys(model, sd, path)
    return arch, sd


def s3d_layout(sd: Mapping[str, torch.Tensor], path: str | Path) -> str | None:
    """ "s3d-torchvision", "s3d", or None when ``sd`` holds no S3D backbone at all.

    Raises a WeightsError when the backbone is there but incomplete or misshapen. Extra
    entries (a classifier head) are allowed; missing BatchNorm counters are tolerated.
    """
    with torch.device("meta"):
        ref = {k: tuple(v.shape) for k, v in S3DBackbone().state_dict().items()}
    features = [(k, tuple(v.shape)) for k, v in sd.items() if k.startswith("features.")]
    if features:
        shapes = [s for _, s in features]
        if shapes != list(ref.values()):
            raise WeightsError(
                f"{path}: torchvision-style S3D features ({len(features)} entries) do not "
                f"match the ViNet backbone ({len(ref)} entries) in order and shape"
            )
        return "s3d-torchvision"
    mapped = {}
    for key, value in sd.items():
        name = _s3d_name(key)
        if name in ref:
            mapped[name] = tuple(value.shape)
    if not mapped:
        return None
    missing = [k for k in ref if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(
            f"{path}: an incomplete S3D backbone: {len(missing)} entries missing "
            f"(e.g. {missing[0]})"
        )
    for k, shape in mapped.items():
        if shape != ref[k]:
            raise WeightsError(f"{path}: {k} has shape {shape}, expected {ref[k]}")
    return "s3d"


def _s3d_name(key: str) -> str:
    """A backbone key in ViNet's names: drops ``backbone.``, maps ``base.N.`` to
    ``baseK.M.``."""
    key = key.removeprefix("module.").removeprefix("backbone.")
    parts = key.split(".")
    if len(parts) > 2 and parts[0] == "base" and parts[1].isdigit():
        n = int(parts[1])
        for stage, first, end in S3D_FLAT_STAGES:
            if first <= n < end:
                return ".".join([f"base{stage}", str(n - first), *parts[2:]])
    return key


def import_weights(
    path: str | Path,
    name: str | None = None,
    *,
    registry: Mapping[str, Entry] | None = None,
) -> ImportResult:
    """Check that ``path`` is a checkpoint of a known architecture; copy it into the cache.

    Filed under: ``name``'s file when ``name`` is a registry entry (the architecture and,
    where known, the checksum must agree), ``name`` itself when it is a plain file name;
    without ``name``, the registry entry whose checksum it matches, else the entry of
    that architecture with the same file name, else the default file name of the
    architecture (``DEFAULT_WEIGHTS``; so ``resolve_weights(None, arch)`` finds it).
    The copy is atomic (a temporary file in the cache, then ``os.replace``).
    """
    src = Path(path).expanduser()
    reg = load_registry() if registry is None else registry
    arch, _ = inspect_checkpoint(src)
    digest = sha256_file(src)
    entry, file_name = _import_target(src, arch, digest, name, reg)
    dest_dir = cache_dir()
    dest = dest_dir / file_name
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {dest_dir}: {exc.strerror or exc}") from None
    if not (dest.exists() and dest.samefile(src)):
        _copy_atomic(src, dest)
    return ImportResult(path=dest, arch=arch, entry=entry, sha256=digest)


def _import_target(
    src: Path, arch: str, digest: str, name: str | None, reg: Mapping[str, Entry]
) -> tuple[Entry | None, str]:
    if name is not None and name in reg:
        entry = reg[name]
        if entry.arch != arch:
            raise WeightsError(f"{src}: a {arch} checkpoint, but {name} is {entry.arch}")
        if entry.checksum and not checksum_matches(digest, entry.checksum):
            raise WeightsError(
                f"{src}: its SHA-256 ({digest[:16]}...) is not the registry's for {name} "
                f"({entry.checksum[:16]}...); import it under another name (--name FILE.pt)"
            )
        return entry, entry.file
    if name is not None:
        if Path(name).name != name or name.startswith(".") or name in (".", ".."):
            raise WeightsError(f"--name {name}: not a registry name nor a plain file name")
        if not name.lower().endswith(CHECKPOINT_SUFFIXES):
            raise WeightsError(
                f"--name {name}: not a registry name (`salcli weights list`); "
                "a file name must end in .pt or .pth"
            )
        return _entry_with_file(reg, name), name
    for entry in reg.values():
        if entry.arch == arch and entry.checksum and checksum_matches(digest, entry.checksum):
            return entry, entry.file
    for entry in reg.values():
        if entry.arch == arch and entry.file == src.name:
            return entry, entry.file
    default = DEFAULT_WEIGHTS.get(arch)
    if default is None:
        same = [e for e in reg.values() if e.arch == arch]
        if len(same) != 1:
            raise WeightsError(f"{src}: a {arch} checkpoint; say which with --name NAME")
        return same[0], same[0].file
    return _entry_with_file(reg, default), default


def _entry_with_file(reg: Mapping[str, Entry], file_name: str) -> Entry | None:
    return next((e for e in reg.values() if e.file == file_name), None)


def _copy_atomic(src: Path, dest: Path) -> None:
    """Copy ``src`` onto ``dest`` atomically (``salcli.files.write_atomic``: the copy gets
    the user's umask, and a folder's default ACL, like any file they create)."""
    write_atomic(dest, lambda tmp: shutil.copyfile(src, tmp))


def verify(
    names: Iterable[str] | None = None,
    *,
    registry: Mapping[str, Entry] | None = None,
) -> list[VerifyResult]:
    """Recompute the SHA-256 of cached files and compare with the registry.

    ``names``: registry names to check ("missing" when not cached); None: every file in
    the cache (files the registry does not know, or knows no checksum of, are "unknown").
    """
    reg = load_registry() if registry is None else registry
    cache = cache_dir()
    if names is not None:
        targets = [(get(n, reg), cache / get(n, reg).file) for n in names]
    else:
        by_file = {e.file: e for e in reg.values()}
        targets = [(by_file.get(p.name), p) for p in _cache_files()]
    results = []
    for entry, p in targets:
        label = entry.name if entry is not None else p.name
        if not p.is_file():
            results.append(VerifyResult(label, p, "missing"))
            continue
        digest = sha256_file(p)
        expected = entry.checksum if entry is not None else None
        if expected is None:
            status = "unknown"
        else:
            status = "ok" if checksum_matches(digest, expected) else "mismatch"
        partial = entry is not None and entry.sha256 is None and expected is not None
        results.append(VerifyResult(label, p, status, digest, expected, partial))
    return results


def cached(registry: Mapping[str, Entry] | None = None) -> list[CachedFile]:
    """Every checkpoint file in the cache, by name, whether the registry knows it or not.

    The architecture of a file the registry does not know is that of the default file
    of the same name (``DEFAULT_WEIGHTS``), else read from its keys (memory-mapped, so
    without reading the tensors); None when the file cannot be read as a checkpoint.
    """
    reg = load_registry() if registry is None else registry
    by_file = {e.file: e for e in reg.values()}
    defaults = {file: arch for arch, file in DEFAULT_WEIGHTS.items()}
    out = []
    for p in _cache_files():
        entry = by_file.get(p.name)
        arch = entry.arch if entry is not None else defaults.get(p.name) or _peek_arch(p)
        default = arch is not None and DEFAULT_WEIGHTS.get(arch) == p.name
        out.append(CachedFile(path=p, entry=entry, arch=arch, default=default))
    return out


def _peek_arch(path: Path) -> str | None:
    """The architecture of a checkpoint from its keys alone; None if it is not one."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        sd = unwrap_state_dict(obj)
    except Exception:  # noqa: BLE001 - unreadable (or not memory-mappable): unknown
        return None
    try:
        return detect_arch(sd)
    except WeightsError:
        try:
            return s3d_layout(sd, path)
        except WeightsError:
            return None


def _cache_files() -> list[Path]:
    cache = cache_dir()
    return sorted(p for p in cache.iterdir() if _is_weights_file(p)) if cache.is_dir() else []


def _is_weights_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and not p.name.endswith(_SKIP_SUFFIXES)
