"""``salcli predict``: maps for every frame of each input, here or on a Ray cluster."""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
import time
from pathlib import Path
from typing import NoReturn

import typer

from salcli.cli import _console
from salcli.cli._console import exits, say
from salcli.cli._options import with_options
from salcli.cli._progress import Bars
from salcli.cli._signals import terminable
from salcli.corpus.claims import describe_holder
from salcli.corpus.cluster import ClusterBatch
from salcli.corpus.local import BatchRun
from salcli.defaults import DEFAULT_OUTPUT_SUBDIR
from salcli.errors import EXIT_FAILED, EXIT_OK
from salcli.options import BatchOptions, ClusterOptions, PredictOptions, split_cluster

VIDEO_FIELDS = ("{task.fields[rate]} frames/s",)  # a video's bar, after done/total
CORPUS_FIELDS = ("{task.fields[states]}", "{task.fields[rate]} maps/s")  # a cluster run's


def predict_command(
    *, inputs: list[str], output_dir: Path | None, jsonl: bool, quiet: bool, **options
) -> None:
    """Predict a saliency map for every frame of each input."""
    with terminable(), exits(interrupted="interrupted; partial outputs removed"):
        _predict_batch(inputs, output_dir, jsonl=jsonl, quiet=quiet, options=options)


_PREDICT_OWN = [  # the parameters of `salcli predict` that are not options of the tables
    inspect.Parameter(
        "inputs",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=list[str],
        default=typer.Argument(
            ...,
            help="Videos, folders of videos, folders of frames, or - to read paths from stdin.",
            show_default=False,
        ),
    ),
    inspect.Parameter(
        "output_dir",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Path | None,
        default=typer.Option(
            None,
            "-o",
            "--output-dir",
            help=f"Where outputs go [default: <input's folder>/{DEFAULT_OUTPUT_SUBDIR}/]; "
            "input folders' trees are mirrored below it.",
        ),
    ),
    inspect.Parameter(
        "jsonl",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=bool,
        default=typer.Option(False, "--jsonl", help="One JSON object per video on stdout."),
    ),
    inspect.Parameter(
        "quiet",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=bool,
        default=typer.Option(False, "--quiet", "-q", help="No progress bars or summaries."),
    ),
]


def register(app: typer.Typer) -> None:
    """Add the ``predict`` command: its options are those of the tables."""
    command = with_options(
        predict_command, _PREDICT_OWN, BatchOptions, PredictOptions, ClusterOptions
    )
    app.command("predict")(command)


def _describe(predictor) -> str:
    """One line: what runs, where, in which precision ("auto"'s choice shown); for an
    ensemble, each model's, and the size its maps are averaged at."""
    if predictor.members:
        h, w = predictor.input_size
        each = "; ".join(_describe(m).removeprefix("salcli: ") for m in predictor.members)
        return f"salcli: ensemble of {each}; maps averaged at {h}x{w}"
    opts = predictor.options
    precision = predictor.precision + (" (auto)" if opts.precision == "auto" else "")
    return (
        f"salcli: {predictor.label} on {predictor.device.type}, {precision}, "
        f"batch {predictor.batch_size}, reuse {'on' if predictor.reuse else 'off'}"
    )


def _predict_batch(
    inputs: list[str], output_dir: Path | None, *, jsonl: bool, quiet: bool, options: dict
) -> None:
    warn = warner(quiet)
    cluster, options = split_cluster(options)
    fields = VIDEO_FIELDS if cluster is None else CORPUS_FIELDS
    with Bars(not quiet and not jsonl and sys.stderr.isatty(), fields) as bars:
        progress = None if cluster is not None else _video_bar(bars)
        run = BatchRun(inputs, output_dir, on_warning=warn, progress=progress, **options)
        if not run.jobs:  # an empty shard: N may exceed the number of inputs
            empty_shard(run)
        if cluster is None:
            results, line = run, _describe(run.predictor)
        else:  # on a Ray cluster (salcli.corpus.cluster): results as the workers finish
            status = _corpus_bar(bars)
            results = ClusterBatch(run, cluster, on_warning=warn, on_status=status)
            line = results.describe()
        if not quiet and not jsonl:
            say(line)
        counts = {"done": 0, "skipped": 0, "claimed": 0, "failed": 0}
        with contextlib.closing(results) if cluster else contextlib.nullcontext():
            for result in results:
                counts[result.status] += 1
                if result.status == "failed":
                    say(f"salcli: error: {_console.result_error(result)}")
                _report(result, jsonl=jsonl, quiet=quiet)
    finish(counts, len(run.jobs), jsonl=jsonl, quiet=quiet)


def warner(quiet: bool):
    """A batch's warnings: on stderr above the bars, none with ``--quiet``."""

    def warn(msg: str) -> None:
        if not quiet:
            _console.warn(msg)

    return warn


def empty_shard(run) -> NoReturn:
    """Say that this shard of ``run`` (a batch with ``batch.shard``, ``all_jobs``) holds
    none of the inputs, and exit 0."""
    k, n = run.batch.shard
    say(f"salcli: shard {k}/{n} holds none of the {len(run.all_jobs)} inputs")
    raise typer.Exit(EXIT_OK)


def finish(counts: dict[str, int], jobs: int, *, jsonl: bool, quiet: bool) -> NoReturn:
    """A batch's closing lines from its ``counts`` of done, skipped and failed, and its
    exit: 1 when any failed, else 0."""
    failed = counts["failed"]
    if not quiet and not jsonl and jobs > 1:
        claimed = f"{counts['claimed']} claimed by other runs, " if counts.get("claimed") else ""
        say(f"salcli: {counts['done']} done, {counts['skipped']} skipped, {claimed}{failed} failed")
    if failed:
        if not quiet and not jsonl:
            say(f"salcli: {failed} of {jobs} inputs failed")
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_OK)


def _video_bar(bars: Bars):
    """``BatchRun``'s progress: a bar per video (frames done, frames/s, time left)."""

    def task(name: str):
        bar = bars.add(name, rate="-")
        started = time.perf_counter()

        def update(done: int, total: int | None) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(completed=done, total=total, rate=f"{rate:.1f}")

        return update, bar.remove

    return task


def _corpus_bar(bars: Bars):
    """A cluster run's ``on_status``: one bar over the corpus (videos finished of all;
    done, failed and running; maps/s; time left)."""
    bar = bars.add("videos", states="", rate="-")

    def update(status) -> None:
        seconds = max(time.perf_counter() - status.started, 1e-9)
        states = (
            f"{status.done} done, {status.skipped} skipped, {status.failed} failed, "
            + (f"{status.claimed} claimed, " if status.claimed else "")
            + f"{status.running} running on {status.workers} workers"
        )
        bar.update(completed=status.finished, total=status.total or None, states=states,
                   rate=f"{status.maps / seconds:.2f}")  # fmt: skip

    return update


def reported(result, record: dict, *tables: type, jsonl: bool, quiet: bool) -> bool:
    """Print a video's ``--jsonl`` line (``record``, with the error spelled with the flags
    of ``tables``) or its "skipped" line; True when nothing more is to be said of it."""
    if jsonl:
        if result.error:
            record["error"] = _console.result_error(result, *tables)
        typer.echo(json.dumps(record))
        return True
    if quiet or result.status == "failed":
        return True
    if result.status == "skipped":
        say(f"skipped {result.source}: already done (use --overwrite to redo)")
        return True
    return False


def _report(result, *, jsonl: bool, quiet: bool) -> None:
    if reported(result, result.as_dict(), jsonl=jsonl, quiet=quiet):
        return
    if result.status == "claimed":
        say(f"claimed {result.source}: {describe_holder(result.holder or {})}")
        return
    rate = result.frames / result.seconds if result.seconds else 0.0
    say(
        f"done {result.source}: {result.frames} frames in {result.seconds:.1f} s "
        f"({rate:.2f} frames/s) -> {', '.join(result.outputs)}"
    )
