"""``salcli weights``: list, download, import and verify checkpoints (see salcli.weights.cache).

``register(app)`` adds the sub-app to the main command. Errors become one line
``salcli: error: <message>`` on stderr and the error's exit code; never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from salcli.cli._console import exits
from salcli.cli._progress import Bars
from salcli.errors import EXIT_OK, EXIT_WEIGHTS
from salcli.weights import cache as registry
from salcli.weights import store
from salcli.weights.download import DEFAULT_TIMEOUT

UNREGISTERED = "unregistered"  # SOURCE of a cached file the registry does not know

weights_app = typer.Typer(
    name="weights",
    help="Known checkpoints: list, download, import a file, verify the cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    """Add the ``weights`` sub-command group to ``app``."""
    app.add_typer(weights_app, name="weights")


def _one_line_errors():
    return exits(interrupted="interrupted (a partial download is kept to resume)")


@weights_app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per entry or file."),
) -> None:
    """Show the known checkpoints, where each comes from, and which are in the cache;
    then every other checkpoint file in the cache (SOURCE: unregistered)."""
    with _one_line_errors():
        reg = registry.load_registry()
        files = store.cached(reg)
        in_cache = {f.path.name for f in files}
        others = [f for f in files if f.entry is None]
        if as_json:
            for e in reg.values():
                record = {
                    "name": e.name,
                    "arch": e.arch,
                    "file": e.file,
                    "registered": True,
                    "cached": e.file in in_cache,
                    "path": str(registry.cache_path(e)),
                    "urls": list(e.urls),
                    "sha256": e.sha256,
                    "sha256_prefix": e.sha256_prefix,
                    "manual": e.manual,
                    "page": e.page,
                    "trained_on": e.trained_on,
                    "licence": e.licence,
                    "description": e.description,
                }
                typer.echo(json.dumps(record))
            for f in others:
                record = {
                    "name": None,
                    "arch": f.arch,
                    "file": f.path.name,
                    "registered": False,
                    "cached": True,
                    "path": str(f.path),
                    "default": f.default,
                }
                typer.echo(json.dumps(record))
            return
        typer.echo(f"cache: {registry.cache_dir()}")
        rows = [("NAME", "ARCH", "CACHED", "SOURCE", "FILE")]
        for e in reg.values():
            cached = "yes" if e.file in in_cache else "-"
            source = "download" if e.downloadable else f"manual: {e.page or '?'}"
            rows.append((e.name, e.arch, cached, source, e.file))
        for f in others:
            source = UNREGISTERED + (" (default)" if f.default else "")
            rows.append(("-", f.arch or "?", "yes", source, f.path.name))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)]
            typer.echo("  ".join([*cells, r[-1]]))


@weights_app.command("download")
def download_cmd(
    names: list[str] = typer.Argument(..., metavar="NAME...", help="Registry names."),
    force: bool = typer.Option(False, "--force", help="Download even if already cached."),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: when stderr is a TTY)."
    ),
    timeout: float = typer.Option(
        DEFAULT_TIMEOUT, "--timeout", min=0.1, help="Seconds per network operation."
    ),
) -> None:
    """Download checkpoints into the cache (resumes, verifies, lands atomically)."""
    show = sys.stderr.isatty() if progress is None else progress
    with _one_line_errors(), Bars(show, bytes=True) as bars:
        for name in names:
            entry = registry.get(name)
            already = registry.cache_path(entry).is_file() and not force
            bar = None

            def report(label: str, done: int, total: int | None) -> None:
                nonlocal bar
                bar = bar or bars.add(label, total=total)
                bar.update(completed=done, total=total)

            path = store.fetch(name, force=force, on_progress=report, timeout=timeout)
            if bar is not None:
                bar.remove()
            verb = "already in the cache" if already else "downloaded"
            typer.echo(f"{name}: {verb}: {path}")


@weights_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., metavar="FILE", help="A checkpoint file."),
    name: str | None = typer.Option(
        None, "--name", help="Registry name to file it under, or a file name (NAME.pt)."
    ),
) -> None:
    """Check that FILE is a state_dict of a known architecture and copy it into the cache."""
    with _one_line_errors():
        result = store.import_weights(file, name)
        label = result.entry.name if result.entry is not None else result.path.name
        typer.echo(f"imported {file} as {label} ({result.arch}): {result.path}")


@weights_app.command("verify")
def verify_cmd(
    names: list[str] | None = typer.Argument(
        None, metavar="[NAME...]", help="Registry names (default: every cached file)."
    ),
) -> None:
    """Recompute the SHA-256 of cached files and compare with the registry.

    Exit status 3 when a file does not match (or a named one is missing).
    """
    with _one_line_errors():
        results = store.verify(names or None)
        if not results:
            typer.echo(f"no weights in the cache ({registry.cache_dir()})")
        bad = False
        for r in results:
            if r.status == "missing":
                note = "not in the cache"
            elif r.status == "unknown":
                note = f"no checksum known; sha256 {r.sha256}"
            elif r.status == "ok":
                note = "sha256 prefix matches" if r.partial else "sha256 matches"
            else:
                note = f"sha256 {r.sha256}, expected {r.expected}"
            bad = bad or r.status in ("mismatch", "missing")
            typer.echo(f"{r.status:<8}  {r.name}  {r.path}  ({note})")
    raise typer.Exit(EXIT_WEIGHTS if bad else EXIT_OK)
