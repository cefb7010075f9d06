"""``salcli reframe``: videos cut to another aspect ratio by their saliency
(``salcli.reframing``), or, with ``--dataset``, the share of human fixations the cut keeps.

Its options are those of three tables: ``BatchOptions`` (inputs, skip, shards),
``ReframeOptions`` (the target, the path, the outputs) and ``PredictOptions`` for the
model that makes the maps (predict's own output options left out).
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import fields
from pathlib import Path

import typer

from salcli.cli import _console
from salcli.cli._console import exits, say
from salcli.cli._options import with_options
from salcli.cli._progress import Bars
from salcli.cli._signals import terminable
from salcli.cli.predict import (
    VIDEO_FIELDS,
    _video_bar,
    empty_shard,
    finish,
    reported,
    warner,
)
from salcli.errors import EXIT_FAILED, EXIT_OK, UsageError
from salcli.options import BatchOptions, PredictOptions
from salcli.reframing.options import ReframeOptions

TABLES = (BatchOptions, ReframeOptions, PredictOptions)
# predict's output option (its --format is reframe's own); photos; claims (reframe's
# batches do not claim videos: --shard splits them)
NOT_FOR_REFRAME = ("h5_dtype", "images", "wait", "lease")


def _param(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


_OWN = [
    _param("inputs", list[str] | None, typer.Argument(
        None, help="Videos, folders of videos, folders of frames, or - to read paths from "
        "stdin.", show_default=False)),
    _param("output_dir", Path | None, typer.Option(
        None, "-o", "--output-dir", help="Where outputs go [default: beside a video named "
        "on the command line; <folder>/reframed/ for the videos of a folder]; input "
        "folders' trees are mirrored below it.")),
    _param("jsonl", bool, typer.Option(False, "--jsonl", help="One JSON object per video "
                                       "on stdout.")),
    _param("quiet", bool, typer.Option(False, "--quiet", "-q", help="No progress bars or "
                                       "summaries.")),
    _param("dataset", str | None, typer.Option(
        None, "--dataset", "-d", help="Instead of reframing videos: the share of human "
        "fixations the window keeps on this dataset (as evaluate reads it), for salcli's "
        "path, the centre crop and the per-frame best window.")),
    _param("root", Path | None, typer.Option(None, "--root", help="With --dataset: the "
                                             "data root, as for evaluate.")),
    _param("split", str | None, typer.Option(None, "--split", help="With --dataset: the "
                                             "split, as for evaluate.")),
    _param("json_out", str | None, typer.Option(None, "--json", help="With --dataset: the "
                                                "results as JSON to a file ('-': stdout).")),
    _param("csv_out", str | None, typer.Option(None, "--csv", help="With --dataset: the "
                                               "results as CSV to a file ('-': stdout).")),
]  # fmt: skip


def reframe_command(
    *,
    inputs: list[str] | None,
    output_dir: Path | None,
    jsonl: bool,
    quiet: bool,
    dataset: str | None,
    root: Path | None,
    split: str | None,
    json_out: str | None,
    csv_out: str | None,
    **options,
) -> None:
    """Cut videos to another aspect ratio, the camera following their saliency."""
    with terminable(), exits(*TABLES, interrupted="interrupted; partial outputs removed"):
        if dataset is not None:
            if inputs:
                raise UsageError("--dataset takes no input videos")
            _evaluate(dataset, root, split, json_out, csv_out, quiet=quiet, options=options)
            raise typer.Exit(EXIT_OK)
        if not inputs:
            raise UsageError("no inputs to process (or --dataset to evaluate)")
        _reframe_batch(inputs, output_dir, jsonl=jsonl, quiet=quiet, options=options)


def register(app: typer.Typer) -> None:
    """Add the ``reframe`` command."""
    command = with_options(reframe_command, _OWN, *TABLES, exclude=NOT_FOR_REFRAME)
    app.command("reframe")(command)


def _reframe_batch(
    inputs: list[str], output_dir: Path | None, *, jsonl: bool, quiet: bool, options: dict
) -> None:
    from salcli.reframing.batch import ReframeRun

    warn = warner(quiet)
    with Bars(not quiet and not jsonl and sys.stderr.isatty(), VIDEO_FIELDS) as bars:
        run = ReframeRun(inputs, output_dir, on_warning=warn, progress=_video_bar(bars),
                         **options)  # fmt: skip
        if not run.jobs:
            empty_shard(run)
        counts = {"done": 0, "skipped": 0, "failed": 0}
        for item in run:
            result = item.result
            counts[result.status] += 1
            if result.status == "failed":
                say(f"salcli: error: {_console.result_error(result, *TABLES)}")
            _report(item, jsonl=jsonl, quiet=quiet)
    finish(counts, len(run.jobs), jsonl=jsonl, quiet=quiet)


def _report(item, *, jsonl: bool, quiet: bool) -> None:
    result = item.result
    if reported(result, item.as_dict(), *TABLES, jsonl=jsonl, quiet=quiet):
        return
    rate = 2 * result.frames / result.seconds if result.seconds else 0.0
    say(f"done {result.source}: {result.frames} frames in {result.seconds:.1f} s "
        f"({rate:.1f} frames/s over both passes) -> {', '.join(result.outputs)}")  # fmt: skip
    say(f"  {item.track.summary()}")


def _evaluate(dataset, root, split, json_out, csv_out, *, quiet: bool, options: dict) -> None:
    from salcli.evaluation.report import is_stdout, write_output
    from salcli.reframing.evaluation import evaluate_reframe
    from salcli.reframing.run import Reframer, split_reframe_options

    outputs = [(o, f) for o, f in ((json_out, "json"), (csv_out, "csv")) if o is not None]
    to_stdout = [o for o, _ in outputs if is_stdout(o)]
    if len(to_stdout) > 1:
        raise UsageError("--json and --csv cannot both go to standard output")
    batch_names = {f.name for f in fields(BatchOptions)}
    reframe_opts, predict_opts = split_reframe_options(
        {k: v for k, v in options.items() if k not in batch_names}
    )
    warn = None if quiet else _console.warn
    reframer = Reframer(reframe_opts, predict_opts, on_warning=warn)
    on_video = None if quiet else (lambda name: say(f"salcli: reframing {name}"))

    def on_failure(name: str, err) -> None:
        say(f"salcli: error: {name}: {_console.message(err, *TABLES)}")

    report = evaluate_reframe(
        reframer, dataset, root=root, split=split, on_video=on_video, on_failure=on_failure
    )
    for out, fmt in outputs:
        write_output(out, report.to_json() if fmt == "json" else report.to_csv())
    if not quiet:
        text = report.table()
        (say if to_stdout else typer.echo)(
            "share of human fixations inside the window (%), mean over frames with fixations"
        )
        for line in text.splitlines():
            (say if to_stdout else typer.echo)(line)
    if report.failed:
        if not quiet:
            say(f"salcli: {len(report.failed)} of {len(report.failed) + len(report.videos)} "
                "videos failed")  # fmt: skip
        raise typer.Exit(EXIT_FAILED)
