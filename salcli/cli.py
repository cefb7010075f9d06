"""The `salcli` command: a thin layer over the Python API.

Errors raised deep down (salcli.errors) become one line on stderr and an exit code
here, and only here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

import typer

from . import __version__
from .defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_H5_DTYPE,
    DEFAULT_OUTPUT_SUBDIR,
    DEFAULT_PRECISION,
    DEFAULT_REUSE_BATCH_SIZE,
    DEFAULT_WARMUP,
    FORMATS,
)
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    OutputError,
    SalcliError,
    UsageError,
    one_line,
    os_reason,
)

app = typer.Typer(
    name="salcli",
    help="Video saliency with ViNet / AViNet: predict maps, score them against eye tracking.",
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


def _parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format {text!r}: choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--input-size {text!r}: expected HxW, e.g. 224x384") from None
    return h, w


_LIVE: list = []  # the progress display in use, if any: stderr lines go through it


def _say(message: str) -> None:
    """One line on stderr, printed above a live progress bar when there is one."""
    if _LIVE:
        _LIVE[-1].console.print(message, markup=False, highlight=False, soft_wrap=True)
    else:
        typer.echo(message, err=True)


class _Progress:
    """A per-video progress bar (frames, frames/s, ETA) on a terminal."""

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
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} frames/s"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            _LIVE.append(self._progress)
        return self

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


@app.command()
def predict(
    inputs: list[str] = typer.Argument(
        ...,
        help="Videos, folders of videos, folders of frames, or - to read paths from stdin.",
        show_default=False,
    ),
    output_dir: Path | None = typer.Option(
        None,
        "-o",
        "--output-dir",
        help=f"Where outputs go [default: <input's folder>/{DEFAULT_OUTPUT_SUBDIR}/]; "
        "input folders' trees are mirrored below it.",
    ),
    fmt: str = typer.Option("png", "--format", "-f", help="Comma-separated outputs: png, h5, mp4."),
    weights: str | None = typer.Option(
        None,
        "--weights",
        "-w",
        help="Checkpoint file or registry name [default: the model's default file].",
    ),
    audio: bool = typer.Option(False, "--audio", help="Use the soundtrack (AViNet)."),
    fusion: str | None = typer.Option(
        None, "--fusion", help="With --audio: bilinear, transformer or concat."
    ),
    allow_silence: bool = typer.Option(
        False, "--allow-silence", help="With --audio: go on with silence when a video has none."
    ),
    device: str = typer.Option(DEFAULT_DEVICE, "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option(
        DEFAULT_PRECISION, "--precision", help="auto, fp32, bf16 or fp16."
    ),
    stride: int = typer.Option(
        1,
        "--stride",
        min=1,
        help="Run the model on every K-th frame (and the last) and interpolate the maps "
        "linearly in time between them: about K times faster, approximate. Off (1) by "
        "default.",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        "-b",
        min=1,
        help=f"Clips per forward pass [default on CPU: {DEFAULT_REUSE_BATCH_SIZE} with "
        f"--reuse, {DEFAULT_BATCH_SIZE} without; on CUDA: as many as fit in memory].",
    ),
    reuse: bool | None = typer.Option(
        None,
        "--reuse/--no-reuse",
        help="Compute the backbone work that consecutive clips share once per batch: "
        "the same maps, fewer operations [default: on for the CPU].",
        show_default=False,
    ),
    warmup: str = typer.Option(
        DEFAULT_WARMUP,
        "--warmup",
        help="First T-1 frames: mirror (reversed frames prepended) or reference (the "
        "authors' reversed clips). Videos shorter than T frames still get one map per "
        "frame: mirror reflects the frames, reference repeats the first frame.",
    ),
    fps: float | None = typer.Option(
        None, "--fps", help="Frame rate of folders of frames [default: 30]."
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into folders."),
    glob: str | None = typer.Option(None, "--glob", help="Only files whose name matches."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo finished videos (otherwise they are skipped)."
    ),
    shard: str | None = typer.Option(
        None, "--shard", help="Process the K-th of N deterministic shares of the inputs: K/N."
    ),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per video on stdout."),
    h5_dtype: str = typer.Option(DEFAULT_H5_DTYPE, "--h5-dtype", help="float16 or float32."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summaries."),
    input_size: str | None = typer.Option(None, "--input-size", hidden=True),
) -> None:
    """Predict a saliency map for every frame of each input."""
    with _interruptible():
        try:
            _predict_batch(
                inputs,
                output_dir,
                fmt=fmt,
                weights=weights,
                audio=audio,
                fusion=fusion,
                allow_silence=allow_silence,
                device=device,
                precision=precision,
                batch_size=batch_size,
                reuse=reuse,
                stride=stride,
                warmup=warmup,
                fps=fps,
                recursive=recursive,
                glob=glob,
                overwrite=overwrite,
                shard=shard,
                jsonl=jsonl,
                h5_dtype=h5_dtype,
                quiet=quiet,
                input_size=input_size,
            )
        except (KeyboardInterrupt, _Terminated) as exc:
            typer.echo("salcli: interrupted; partial outputs removed", err=True)
            code = EXIT_TERMINATED if isinstance(exc, _Terminated) else EXIT_INTERRUPTED
            raise typer.Exit(code) from None


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


def _predict_batch(
    inputs: list[str],
    output_dir: Path | None,
    *,
    fmt: str,
    weights: str | None,
    audio: bool,
    fusion: str | None,
    allow_silence: bool,
    device: str,
    precision: str,
    batch_size: int | None,
    reuse: bool | None,
    stride: int,
    warmup: str,
    fps: float | None,
    recursive: bool,
    glob: str | None,
    overwrite: bool,
    shard: str | None,
    jsonl: bool,
    h5_dtype: str,
    quiet: bool,
    input_size: str | None,
) -> None:
    from .decode import DecodeWarning
    from .inputs import expand_inputs, parse_shard, select_shard
    from .predict import Predictor
    from .records import StaleTemps

    try:
        formats = _parse_formats(fmt)
        if h5_dtype not in ("float16", "float32"):
            raise UsageError("--h5-dtype must be float16 or float32")
        shard_kn = parse_shard(shard)
        size = _parse_size(input_size)
        jobs = select_shard(
            expand_inputs(
                inputs,
                output_dir,
                recursive=recursive,
                pattern=glob,
                default_subdir=DEFAULT_OUTPUT_SUBDIR,
            ),
            shard_kn,
        )  # an empty shard is not an error: N may exceed the number of inputs

        def warn(msg: str) -> None:
            if not quiet:
                _say(f"salcli: warning: {msg}")

        predictor = None
        if jobs:
            predictor = Predictor(
                weights,
                audio=audio,
                fusion=fusion,
                device=device,
                precision=precision,
                batch_size=batch_size,
                reuse=reuse,
                stride=stride,
                warmup=warmup,
                allow_silence=allow_silence,
                on_warning=warn,
                **({"input_size": size} if size else {}),
            )
    except SalcliError as err:
        raise fail(str(err), err.exit_code) from None

    failed = 0
    show_bars = not quiet and not jsonl and sys.stderr.isatty()
    with warnings.catch_warnings(), _Progress(show_bars) as bars:
        warnings.simplefilter("always", DecodeWarning)
        shown = warnings.showwarning

        def show(message, category, *args, **kwargs):
            if issubclass(category, DecodeWarning):
                warn(str(message))
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        sweeper = StaleTemps()
        for job in jobs:
            result = _one_video(
                predictor,
                job,
                formats,
                sweeper=sweeper,
                overwrite=overwrite,
                fps=fps,
                bars=bars,
                writer_options={"h5_dtype": h5_dtype},
            )
            if result.status == "failed":
                failed += 1
                _say(f"salcli: error: {result.error}")
            _report(result, jsonl=jsonl, quiet=quiet)
    if failed:
        if not quiet and not jsonl:
            typer.echo(f"salcli: {failed} of {len(jobs)} inputs failed", err=True)
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_OK)


def _one_video(
    predictor, job, formats: list[str], *, sweeper, overwrite: bool, fps, bars, writer_options
):
    """Skip, or predict and record, one job; a failure is returned, never raised
    (Ctrl-C and SIGTERM are: they stop the batch)."""
    from .predict import VideoResult
    from .records import (
        is_complete,
        other_source,
        read_record,
        remove_record,
        same_source,
        settings_changed,
        write_record,
    )

    source = str(job.source)
    settings = {
        "model": predictor.arch,
        "weights_sha256": predictor.weights_sha256,
        "warmup": predictor.warmup,
        "input_size": "x".join(str(v) for v in predictor.input_size),
    }
    try:
        sweeper.clean(job.out_dir, job.stem)  # temporaries left by a killed run
        if not overwrite:
            rec = read_record(job.out_dir, job.stem)
            changed = settings_changed(rec, settings) if rec is not None else []
            if changed and same_source(rec, job.source):
                raise OutputError(
                    f"{job.out_dir / job.stem}*: made with another {', '.join(changed)}; "
                    "--overwrite redoes them (or choose another -o)"
                )
            if is_complete(job.out_dir, job.stem, formats, job.source):
                rec = read_record(job.out_dir, job.stem) or {}
                return VideoResult(
                    source=source,
                    status="skipped",
                    frames=int(rec.get("frames") or 0),
                    fps=float(rec.get("fps") or 0.0),
                    outputs=[str(p) for p in rec.get("outputs", [])],
                )
            owner = other_source(job.out_dir, job.stem, job.source)
            if owner is not None:
                raise OutputError(
                    f"{job.out_dir / job.stem}*: these outputs belong to {owner}; "
                    "choose another -o (or --overwrite to replace them)"
                )
        rec = read_record(job.out_dir, job.stem)
        if rec is not None and (overwrite or same_source(rec, job.source)):
            remove_record(job.out_dir, job.stem)  # a failed redo must not look finished
    except (SalcliError, OSError) as err:
        msg = _os_error(err) if isinstance(err, OSError) else str(err)
        return VideoResult(source=source, status="failed", error=_with_source(msg, source))

    hooks = bars.task(job.stem)
    try:
        result = predictor.write(
            job.source,
            job.out_dir,
            formats,
            fps=fps,
            progress=hooks[0] if hooks else None,
            writer_options=writer_options,
        )
        write_record(
            job.out_dir,
            job.stem,
            {
                "source": source,
                "formats": formats,
                "outputs": result.outputs,
                "frames": result.frames,
                "fps": result.fps,
                **settings,
                "precision": predictor.precision,
                "salcli_version": __version__,
            },
        )
        return result
    except SalcliError as err:
        msg = str(err)
    except OSError as err:
        msg = _os_error(err)
    except MemoryError:
        msg = "out of memory"
    except Exception as err:  # noqa: BLE001 - one video's bug must not stop the batch
        msg = f"unexpected {type(err).__name__}: {one_line(err)}"
    finally:
        if hooks:
            hooks[1]()
    return VideoResult(source=source, status="failed", error=_with_source(msg, source))


def _with_source(message: str, source: str) -> str:
    """``message`` naming the input it is about (prefixed when it does not)."""
    return message if source in message else f"{source}: {message}"


def _os_error(err: OSError) -> str:
    reason = os_reason(err)
    where = f"{err.filename}: " if getattr(err, "filename", None) else ""
    return f"{where}{reason}"


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
    for name in ("cli_evaluate", "cli_weights", "cli_train"):
        try:
            module = __import__(f"salcli.{name}", fromlist=["register"])
        except ImportError:
            continue
        module.register(app)


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="salcli")
    except KeyboardInterrupt:
        typer.echo("salcli: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except SalcliError as err:  # raised outside a command's own handling
        typer.echo(f"salcli: error: {err}", err=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

__all__ = ["app", "main", "EXIT_USAGE"]
