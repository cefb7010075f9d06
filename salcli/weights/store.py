"""What salcli does with checkpoint files: fetches a known one into the cache
(``fetch``), tells what a file holds and checks every key and shape
(``inspect_checkpoint``), files a user's copy in the cache under its known name
(``import_weights``), checks cached files against their checksums (``verify``) and lists
the cache (``cached``). Every file is read with ``torch.load(weights_only=True)``: a
pickle that would run code is refused. Where files are looked for is
``salcli.weights.cache``.

What a file holds (its arch): one of ``salcli.models.registry.ARCHS``; S3D backbones come
in two layouts: ``s3d`` (the S3D author's ``S3D_kinetics400.pt``: ViNet's backbone
names, or the author's flat ``base.N`` names, plus a classifier head) and
``s3d-torchvision`` (torchvision's ``features.*`` names, the same 462 entries and shapes
in the same order).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from salcli.errors import OutputError, WeightsError, escape
from salcli.files import TEMP_SUFFIX, write_atomic
from salcli.models.checkpoints import check_keys, read_checkpoint, sha256_file, unwrap_state_dict
from salcli.models.registry import (
    ARCHS,
    DEFAULT_FILES,
    Checkpoint,
    arch_of,
    build_model,
)
from salcli.models.s3d import S3DBackbone
from salcli.weights.cache import (
    CHECKPOINT_SUFFIXES,
    cache_dir,
    cache_path,
    entry_with_file,
    get,
    load_registry,
)
from salcli.weights.download import (
    DEFAULT_TIMEOUT,
    LOCK_SUFFIX,
    PART_SUFFIX,
    Progress,
    checksum_matches,
    download,
)

# The S3D author's flat ``base.N`` Sequential -> ViNet's (stage, first index, end index):
# indices 4, 7 and 13 are pooling layers (no parameters).
S3D_FLAT_STAGES = ((1, 0, 4), (2, 5, 7), (3, 8, 13), (4, 14, 16))
_SKIP_SUFFIXES = (PART_SUFFIX, LOCK_SUFFIX, TEMP_SUFFIX)


@dataclass(frozen=True)
class ImportResult:
    path: Path  # where the file now is, in the cache
    arch: str
    entry: Checkpoint | None  # the registry entry it was filed under, if any
    sha256: str


@dataclass(frozen=True)
class CachedFile:
    path: Path
    entry: Checkpoint | None  # the registry entry whose file this is; None: not in the registry
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
    dest = cache_path(entry)
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


def _check_arch(path: Path, entry: Checkpoint) -> None:
    arch, _ = inspect_checkpoint(path)
    if arch != entry.arch:
        raise WeightsError(f"it holds {arch} weights, not {entry.arch}")


def inspect_checkpoint(path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """(architecture, state_dict) of a checkpoint, after checking every key and shape.

    The architecture is one of ``ARCHS``. Raises a one-line WeightsError for a file
    that is unsafe, unreadable, or not exactly one of those architectures.
    """
    sd = read_checkpoint(path)
    arch = arch_of(sd)
    if arch is None:
        kind = s3d_layout(sd, path)
        if kind is None:
            raise WeightsError(
                f"{path}: not a checkpoint of a known architecture "
                f"({', '.join(ARCHS)}): unknown keys (e.g. {next(iter(sd))})"
            )
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
    registry: Mapping[str, Checkpoint] | None = None,
) -> ImportResult:
    """Check that ``path`` is a checkpoint of a known architecture; copy it into the cache.

    Filed under: ``name``'s file when ``name`` is a registry entry (the architecture and,
    where known, the checksum must agree), ``name`` itself when it is a plain file name;
    without ``name``, the registry entry whose checksum it matches, else the entry of
    that architecture with the same file name, else the default file name of the
    architecture (``DEFAULT_FILES``; so ``resolve_weights(None, arch)`` finds it).
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
    src: Path, arch: str, digest: str, name: str | None, reg: Mapping[str, Checkpoint]
) -> tuple[Checkpoint | None, str]:
    if name is not None and name in reg:
        entry = reg[name]
        if entry.arch != arch:
            raise WeightsError(f"{src}: a {arch} checkpoint, but {name} is {entry.arch}")
        if entry.checksum and not checksum_matches(digest, entry.checksum):
            raise WeightsError(
                f"{escape(str(src))}: its SHA-256 ({digest[:16]}...) is not the registry's "
                f"for {name} ({entry.checksum[:16]}...); import it under another name "
                "({name} FILE.pt)",
                options=("name",),
            )
        return entry, entry.file
    if name is not None:
        if Path(name).name != name or name.startswith(".") or name in (".", ".."):
            raise WeightsError(
                "{name} " + escape(f"{name}: not a registry name nor a plain file name"),
                options=("name",),
            )
        if not name.lower().endswith(CHECKPOINT_SUFFIXES):
            raise WeightsError(
                "{name} " + escape(f"{name}: not a registry name (`salcli weights list`); "
                                   "a file name must end in .pt or .pth"),
                options=("name",),
            )  # fmt: skip
        return entry_with_file(reg, name), name
    for entry in reg.values():
        if entry.arch == arch and entry.checksum and checksum_matches(digest, entry.checksum):
            return entry, entry.file
    for entry in reg.values():
        if entry.arch == arch and entry.file == src.name:
            return entry, entry.file
    default = DEFAULT_FILES.get(arch)
    if default is None:
        same = [e for e in reg.values() if e.arch == arch]
        if len(same) != 1:
            raise WeightsError(
                f"{escape(str(src))}: a {arch} checkpoint; say which with {{name}} NAME",
                options=("name",),
            )
        return same[0], same[0].file
    return entry_with_file(reg, default), default


def _copy_atomic(src: Path, dest: Path) -> None:
    """Copy ``src`` onto ``dest`` atomically (``salcli.files.write_atomic``: the copy gets
    the user's umask, and a folder's default ACL, like any file they create)."""
    write_atomic(dest, lambda tmp: shutil.copyfile(src, tmp))


def verify(
    names: Iterable[str] | None = None,
    *,
    registry: Mapping[str, Checkpoint] | None = None,
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


def cached(registry: Mapping[str, Checkpoint] | None = None) -> list[CachedFile]:
    """Every checkpoint file in the cache, by name, whether the registry knows it or not.

    The architecture of a file the registry does not know is that of the default file
    of the same name (``DEFAULT_FILES``), else read from its keys (memory-mapped, so
    without reading the tensors); None when the file cannot be read as a checkpoint.
    """
    reg = load_registry() if registry is None else registry
    by_file = {e.file: e for e in reg.values()}
    defaults = {file: arch for arch, file in DEFAULT_FILES.items()}
    out = []
    for p in _cache_files():
        entry = by_file.get(p.name)
        arch = entry.arch if entry is not None else defaults.get(p.name) or _peek_arch(p)
        default = arch is not None and DEFAULT_FILES.get(arch) == p.name
        out.append(CachedFile(path=p, entry=entry, arch=arch, default=default))
    return out


def _peek_arch(path: Path) -> str | None:
    """The architecture of a checkpoint from its keys alone; None if it is not one."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        sd = unwrap_state_dict(obj)
    except Exception:  # noqa: BLE001 - unreadable (or not memory-mappable): unknown
        return None
    arch = arch_of(sd)
    if arch is not None:
        return arch
    try:
        return s3d_layout(sd, path)
    except WeightsError:
        return None


def _cache_files() -> list[Path]:
    cache = cache_dir()
    return sorted(p for p in cache.iterdir() if _is_weights_file(p)) if cache.is_dir() else []


def _is_weights_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and not p.name.endswith(_SKIP_SUFFIXES)
