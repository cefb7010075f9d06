"""The `salcli` command: a thin layer over the Python API.

Errors raised deep down (salcli.errors) become one line on stderr and an exit code
here, and only here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from . import __version__
from .defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_H5_DTYPE,
    DEFAULT_OUTPUT_SUBDIR,
    DEFAULT_PRECISION,
    DEFAULT_WARMUP,
    FORMATS,
)
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    SalcliError,
    UsageError,
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
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
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
        help=f"Where outputs go [default: <input's folder>/{DEFAULT_OUTPUT_SUBDIR}/].",
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
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE, "--batch-size", "-b", help="Clips per forward pass."
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
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo finished videos."),
    shard: str | None = typer.Option(None, "--shard", help="Process the K-th of N shares: K/N."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per video on stdout."),
    h5_dtype: str = typer.Option(DEFAULT_H5_DTYPE, "--h5-dtype", help="float16 or float32."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summaries."),
    input_size: str | None = typer.Option(None, "--input-size", hidden=True),
) -> None:
    """Predict a saliency map for every frame of each input."""
    from .inputs import collect_jobs, parse_shard
    from .predict import Predictor, VideoResult
    from .records import is_complete, write_record

    try:
        formats = _parse_formats(fmt)
        if h5_dtype not in ("float16", "float32"):
            raise UsageError("--h5-dtype must be float16 or float32")
        jobs = collect_jobs(
            inputs,
            output_dir,
            recursive=recursive,
            pattern=glob,
            shard=parse_shard(shard),
            default_subdir=DEFAULT_OUTPUT_SUBDIR,
        )
        if not jobs and not shard:
            raise UsageError("no inputs to process")
        size = _parse_size(input_size)
        warnings_seen: list[str] = []

        def warn(msg: str) -> None:
            warnings_seen.append(msg)
            if not quiet:
                typer.echo(f"salcli: warning: {msg}", err=True)

        predictor = Predictor(
            weights,
            audio=audio,
            fusion=fusion,
            device=device,
            precision=precision,
            batch_size=batch_size,
            warmup=warmup,
            allow_silence=allow_silence,
            on_warning=warn,
            **({"input_size": size} if size else {}),
        )
    except SalcliError as err:
        raise fail(str(err), err.exit_code) from None

    failed = 0
    show_bars = not quiet and not jsonl and sys.stderr.isatty()
    with _Progress(show_bars) as bars:
        for job in jobs:
            if not overwrite and is_complete(job.out_dir, job.stem, formats):
                result = VideoResult(source=str(job.source), status="skipped")
            else:
                hooks = bars.task(job.stem)
                try:
                    result = predictor.write(
                        job.source,
                        job.out_dir,
                        formats,
                        fps=fps,
                        progress=hooks[0] if hooks else None,
                        writer_options={"h5_dtype": h5_dtype},
                    )
                    write_record(
                        job.out_dir,
                        job.stem,
                        {
                            "source": str(job.source),
                            "formats": formats,
                            "outputs": result.outputs,
                            "frames": result.frames,
                            "fps": result.fps,
                            "model": predictor.arch,
                            "weights_sha256": predictor.weights_sha256,
                            "warmup": predictor.warmup,
                            "precision": predictor.precision,
                            "salcli_version": __version__,
                        },
                    )
                except KeyboardInterrupt:
                    typer.echo("salcli: interrupted; partial outputs removed", err=True)
                    raise typer.Exit(EXIT_INTERRUPTED) from None
                except (SalcliError, OSError) as err:
                    msg = str(err) if isinstance(err, SalcliError) else _os_error(err)
                    result = VideoResult(source=str(job.source), status="failed", error=msg)
                finally:
                    if hooks:
                        hooks[1]()
            if result.status == "failed":
                failed += 1
                typer.echo(f"salcli: error: {result.error}", err=True)
            _report(result, jsonl=jsonl, quiet=quiet)
    if failed:
        if not quiet and not jsonl:
            typer.echo(f"salcli: {failed} of {len(jobs)} inputs failed", err=True)
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_OK)


def _os_error(err: OSError) -> str:
    where = f"{err.filename}: " if getattr(err, "filename", None) else ""
    return f"{where}{err.strerror or err}"


def _report(result, *, jsonl: bool, quiet: bool) -> None:
    if jsonl:
        typer.echo(json.dumps(result.as_dict()))
        return
    if quiet or result.status == "failed":
        return
    if result.status == "skipped":
        typer.echo(f"skipped {result.source}: already done (use --overwrite to redo)", err=True)
        return
    rate = result.frames / result.seconds if result.seconds else 0.0
    typer.echo(
        f"done {result.source}: {result.frames} frames in {result.seconds:.1f} s "
        f"({rate:.2f} frames/s) -> {', '.join(result.outputs)}",
        err=True,
    )


def _register_subcommands() -> None:
    """Commands that live in their own modules."""
    for name in ("cli_evaluate", "cli_weights"):
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
