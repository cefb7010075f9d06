"""The `salcli` command: a thin layer over the Python API.

Errors raised deep down (salcli.errors) become one line on stderr and an exit code
here, and only here.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import sys
import threading
from pathlib import Path

import typer

from . import __version__
from .defaults import DEFAULT_OUTPUT_SUBDIR
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    SalcliError,
)
from .options import (
    BatchOptions,
    ClusterOptions,
    OptionError,
    PredictOptions,
    flag_of,
    split_cluster,
    with_options,
)

app = typer.Typer(
    name="salcli",
    help="Video saliency with ViNet, AViNet and STAViS: predict maps, score them against eye "
    "tracking, train.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def fail(message: str, code: int) -> typer.Exit:
    """Print one line on stderr; return the Exit to raise."""
    typer.echo(f"salcli: error: {message}", err=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"salcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """salcli: predict where people look in videos, and score it."""


_LIVE: list = []  # the progress display in use, if any: stderr lines go through it


def _say(message: str) -> None:
    """One line on stderr, printed above a live progress bar when there is one."""
    if _LIVE:
        _LIVE[-1].console.print(message, markup=False, highlight=False, soft_wrap=True)
    else:
        typer.echo(message, err=True)


class _Progress:
    """A per-video progress bar (frames, frames/s, ETA) on a terminal."""

    label = "{task.description}"  # the bar's columns: label, bar, n/total, fields, ETA
    fields: tuple[str, ...] = ("{task.fields[rate]} frames/s",)

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn(self.label),
                BarColumn(),
                MofNCompleteColumn(),
                *(TextColumn(text) for text in self.fields),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            _LIVE.append(self._progress)
            self.started(self._progress)
        return self

    def started(self, progress) -> None:
        """Called once the bar is live (a corpus bar adds its one task)."""

    def __exit__(self, *exc):
        if self._progress is not None:
            _LIVE.remove(self._progress)
            self._progress.__exit__(*exc)

    def task(self, name: str):
        if self._progress is None:
            return None
        import time

        progress = self._progress
        task = progress.add_task(name, total=None, rate="-")
        started = time.perf_counter()

        def update(done: int, total: int | None) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=done, total=total, rate=f"{rate:.1f}")

        def finish() -> None:
            progress.remove_task(task)

        return update, finish


class _CorpusProgress(_Progress):
    """A run on a Ray cluster: one bar over the corpus (videos finished of all; done,
    failed and running; maps/s; ETA), fed by ``ClusterStatus`` updates."""

    label = "videos"
    fields = ("{task.fields[states]}", "{task.fields[rate]} maps/s")

    def started(self, progress) -> None:
        self._task = progress.add_task("videos", total=None, states="", rate="-")

    def update(self, status) -> None:
        if self._progress is None:
            return
        import time

        seconds = max(time.perf_counter() - status.started, 1e-9)
        states = (
            f"{status.done} done, {status.skipped} skipped, {status.failed} failed, "
            f"{status.running} running on {status.workers} workers"
        )
        self._progress.update(
            self._task,
            completed=status.finished,
            total=status.total or None,
            states=states,
            rate=f"{status.maps / seconds:.2f}",
        )


def cli_message(err: SalcliError) -> str:
    """An error's line as the command line says it: options by their flags."""
    if isinstance(err, OptionError):
        return f"{flag_of(err.option)} {err.reason}"
    return str(err)


class _Terminated(BaseException):
    """SIGTERM (a scheduler's time limit, ``kill``): handled like Ctrl-C."""


@contextlib.contextmanager
def _interruptible():
    """SIGTERM raises ``_Terminated`` in the main thread while the batch runs, so that a
    killed job cleans up as Ctrl-C does (writers abort, temporaries go)."""
    previous = None
    if threading.current_thread() is threading.main_thread():

        def on_term(signum, frame):  # noqa: ARG001 - the signal API's signature
            raise _Terminated()

        try:
            previous = signal.signal(signal.SIGTERM, on_term)
        except (ValueError, OSError):  # pragma: no cover - not allowed here
            previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def predict_command(
    *, inputs: list[str], output_dir: Path | None, jsonl: bool, quiet: bool, **options
) -> None:
    """Predict a saliency map for every frame of each input."""
    with _interruptible():
        try:
            _predict_batch(inputs, output_dir, jsonl=jsonl, quiet=quiet, options=options)
        except (KeyboardInterrupt, _Terminated) as exc:
            typer.echo("salcli: interrupted; partial outputs removed", err=True)
            code = EXIT_TERMINATED if isinstance(exc, _Terminated) else EXIT_INTERRUPTED
            raise typer.Exit(code) from None


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

app.command("predict")(
    with_options(predict_command, _PREDICT_OWN, BatchOptions, PredictOptions, ClusterOptions)
)


def _describe(predictor) -> str:
    """One line: what runs, where, in which precision ("auto"'s choice shown)."""
    opts = predictor.options
    precision = predictor.precision + (" (auto)" if opts.precision == "auto" else "")
    return (
        f"salcli: {predictor.variant.label} on {predictor.device.type}, {precision}, "
        f"batch {predictor.batch_size}, reuse {'on' if predictor.reuse else 'off'}"
    )


def _predict_batch(
    inputs: list[str], output_dir: Path | None, *, jsonl: bool, quiet: bool, options: dict
) -> None:
    from .batch import BatchRun

    def warn(msg: str) -> None:
        if not quiet:
            _say(f"salcli: warning: {msg}")

    show_bars = not quiet and not jsonl and sys.stderr.isatty()
    try:
        cluster, options = split_cluster(options)
    except SalcliError as err:
        raise fail(cli_message(err), err.exit_code) from None
    bars_kind = _Progress if cluster is None else _CorpusProgress
    with bars_kind(show_bars) as bars:
        try:
            run = BatchRun(
                inputs,
                output_dir,
                on_warning=warn,
                progress=bars.task if cluster is None else None,
                **options,
            )
            if not run.jobs:  # an empty shard: N may exceed the number of inputs
                k, n = run.batch.shard
                _say(f"salcli: shard {k}/{n} holds none of the {len(run.all_jobs)} inputs")
                raise typer.Exit(EXIT_OK)
            if cluster is None:
                results, line = run, _describe(run.predictor)
            else:  # on a Ray cluster (salcli.cluster): results as the workers finish
                from .cluster import ClusterBatch

                results = ClusterBatch(run, cluster, on_warning=warn, on_status=bars.update)
                line = results.describe()
        except SalcliError as err:
            raise fail(cli_message(err), err.exit_code) from None
        if not quiet and not jsonl:
            _say(line)
        counts = {"done": 0, "skipped": 0, "failed": 0}
        try:
            with contextlib.closing(results) if cluster else contextlib.nullcontext():
                for result in results:
                    counts[result.status] += 1
                    if result.status == "failed":
                        _say(f"salcli: error: {result.error}")
                    _report(result, jsonl=jsonl, quiet=quiet)
        except SalcliError as err:  # the cluster lost every worker
            raise fail(cli_message(err), err.exit_code) from None
    failed = counts["failed"]
    if not quiet and not jsonl and len(run.jobs) > 1:
        _say(f"salcli: {counts['done']} done, {counts['skipped']} skipped, {failed} failed")
    if failed:
        if not quiet and not jsonl:
            typer.echo(f"salcli: {failed} of {len(run.jobs)} inputs failed", err=True)
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_OK)


def _report(result, *, jsonl: bool, quiet: bool) -> None:
    if jsonl:
        typer.echo(json.dumps(result.as_dict()))
        return
    if quiet or result.status == "failed":
        return
    if result.status == "skipped":
        _say(f"skipped {result.source}: already done (use --overwrite to redo)")
        return
    rate = result.frames / result.seconds if result.seconds else 0.0
    _say(
        f"done {result.source}: {result.frames} frames in {result.seconds:.1f} s "
        f"({rate:.2f} frames/s) -> {', '.join(result.outputs)}"
    )


def _register_subcommands() -> None:
    """Commands that live in their own modules."""
    import importlib

    for name in ("cli_evaluate", "cli_weights", "cli_train"):
        importlib.import_module(f"salcli.{name}").register(app)


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="salcli")
    except KeyboardInterrupt:
        typer.echo("salcli: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except SalcliError as err:  # raised outside a command's own handling
        typer.echo(f"salcli: error: {cli_message(err)}", err=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

__all__ = ["app", "main", "EXIT_USAGE"]
