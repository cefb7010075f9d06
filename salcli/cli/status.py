"""``salcli status OUT``: where a corpus stands in an output folder (``salcli.corpus.status``):
finished, claimed by live runs (who, since when, last heartbeat), failed, missing, and the
stale claims of dead runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from salcli.cli._console import exits, say
from salcli.corpus.claims import describe_holder
from salcli.corpus.status import corpus_status
from salcli.defaults import DEFAULT_LEASE_S
from salcli.errors import EXIT_OK
from salcli.options import check_lease

MAX_LISTED = 20  # videos listed per state (claimed, stale, failed) before "... and N more"


def status_command(
    output_dir: Path = typer.Argument(
        ..., help="The output folder of the runs (their -o).", metavar="OUT"
    ),
    corpus: list[str] = typer.Option(
        [],
        "--corpus",
        help="The runs' inputs (as given to predict): videos not started "
        "count as missing. Repeatable.",
        metavar="PATH",
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="As the runs' --recursive."),
    glob: str | None = typer.Option(None, "--glob", help="As the runs' --glob.", metavar="PATTERN"),
    runs: list[Path] = typer.Option(
        [],
        "--runs",
        help="The runs' --jsonl output: their failures. Repeatable; the last "
        "line per video counts.",
        metavar="FILE",
    ),
    lease: float = typer.Option(
        DEFAULT_LEASE_S, "--lease", help="As the runs' --lease.", metavar="SECONDS"
    ),
    jsonl: bool = typer.Option(
        False, "--jsonl", help="One JSON object per video, then one with the counts."
    ),
) -> None:
    """Count the finished, claimed, failed and missing videos of a corpus, and stale claims."""
    with exits():
        check_lease(lease)
        status = corpus_status(output_dir, corpus, recursive=recursive, glob=glob, runs=runs,
                               lease=lease)  # fmt: skip
    counts = status.counts()
    if jsonl:
        for video in status.videos:
            typer.echo(json.dumps(video.as_dict()))
        typer.echo(json.dumps({"counts": counts}))
        raise typer.Exit(EXIT_OK)
    stale = counts["stale_claims"]
    say(
        f"salcli: {output_dir}: {len(status.videos)} videos: {counts['finished']} finished, "
        f"{counts['claimed']} claimed, {counts['failed']} failed, {counts['missing']} missing; "
        f"{stale} stale claim{'' if stale == 1 else 's'}"
    )
    listed = [
        ("claimed", [(v.path, describe_holder(v.holder)) for v in status.videos if v.holder]),
        ("stale", [(v.path, describe_holder(v.stale) + " (its holder is gone: the next run "
                    "takes it over)") for v in status.videos if v.stale]),
        ("failed", [(v.path, v.error or "") for v in status.videos if v.state == "failed"]),
    ]  # fmt: skip
    for word, items in listed:
        for path, what in items[:MAX_LISTED]:
            say(f"{word} {path}: {what}")
        if len(items) > MAX_LISTED:
            say(f"{word}: ... and {len(items) - MAX_LISTED} more (--jsonl lists all)")
    raise typer.Exit(EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add the ``status`` command."""
    app.command("status")(status_command)
