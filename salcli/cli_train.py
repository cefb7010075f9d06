"""``salcli train``: train or fine-tune ViNet / AViNet on a published dataset layout.

``register(app)`` adds the command to the main Typer app (salcli/cli.py calls it). The
work is ``salcli.train.train``; this module parses, shows progress and maps the result to
an exit code. Under ``torchrun`` every rank runs it; rank 0 alone prints progress.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
from pathlib import Path

import typer

from .defaults import DEFAULT_DEVICE, DEFAULT_FUSION, DEFAULT_PRECISION, INPUT_H, INPUT_W
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, SalcliError, UsageError
from .train_options import (
    DEFAULT_BATCH,
    DEFAULT_BN,
    DEFAULT_EPOCHS,
    DEFAULT_LOSS,
    DEFAULT_LR,
    DEFAULT_OUT,
    DEFAULT_SEED,
    VAL_STRIDE,
    TrainOptions,
)

DATASET_HELP = (
    "dhf1k, hollywood2, ucf, diem, coutrot1, coutrot2, avad, etmd, summe; several joined "
    "by commas; av = the six audio-visual sets together."
)


def _parse_size(text: str | None) -> tuple[int, int]:
    if not text:
        return (INPUT_H, INPUT_W)
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--input-size {text!r}: expected HxW, e.g. 224x384") from None
    return h, w


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _err(message: str) -> None:
    prefix = f"salcli[rank {_rank()}]" if _world() > 1 else "salcli"
    print(f"{prefix}: error: {message}", file=sys.stderr)


class _Stopper:
    """Ctrl-C / SIGTERM: finish the step, save, stop (a second Ctrl-C aborts at once)."""

    def __init__(self, say):
        self.event = threading.Event()
        self.signal: int | None = None
        self.say = say
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):  # noqa: ARG002 - the signal API's signature
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        self.event.set()
        self.say("salcli: stopping after this step and saving (Ctrl-C again to abort)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError, OSError):
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Display:
    """What the user sees: a progress bar per epoch on a terminal, a line per epoch."""

    def __init__(self, quiet: bool):
        from rich.console import Console

        self.quiet = quiet or _rank() != 0
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.bars = not self.quiet and sys.stderr.isatty()
        self.progress = None
        self.task = None

    def say(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def _bar(self):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} samples/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )

    def event(self, kind: str, data: dict) -> None:
        if self.quiet:
            return
        if kind == "start":
            self._start(data)
        elif kind == "epoch_start" and self.bars:
            self.progress = self._bar()
            self.progress.start()
            self.task = self.progress.add_task(
                f"epoch {data['epoch']}/{data['epochs']}",
                total=data["steps"],
                completed=data["step"],
                loss="-",
                rate="-",
            )
        elif kind == "step" and self.task is not None:
            rate = data["epoch_windows"] / data["seconds"] if data["seconds"] > 0 else 0.0
            self.progress.update(
                self.task, completed=data["step"], loss=f"{data['loss']:.4f}", rate=f"{rate:.2f}"
            )
        elif kind == "validate" and self.task is not None:
            self.progress.update(self.task, description=f"validating ({data['windows']} clips)")
        elif kind == "epoch":
            self._close_bar()
            self.say(_epoch_line(data["record"], data["epochs"]))
        elif kind == "warning":
            self.say(f"salcli: warning: {data['message']}")

    def _start(self, d: dict) -> None:
        o = d["options"]
        where = "resuming at " if d["start_epoch"] > 1 or d["start_step"] else "from "
        self.say(
            f"training {d['arch']} on {d['data']}: {d['train_videos']} videos "
            f"({d['steps_per_epoch']} steps of {o['batch_size']} per epoch), "
            f"{d['val_windows']} validation clips; {d['processes']} process(es) on "
            f"{d['device']}, {d['precision']}; {where}epoch {d['start_epoch']}"
            + (f" step {d['start_step']}" if d["start_step"] else "")
        )
        for line in d["init"]:
            self.say(f"  weights: {line}")

    def _close_bar(self) -> None:
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.progress.stop()
            self.progress = self.task = None

    def close(self) -> None:
        self._close_bar()


def _fmt(x: float, digits: int = 4) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _epoch_line(r, epochs: int) -> str:
    best = "  * best" if r.best else ""
    scores = (
        f"val loss {_fmt(r.val_loss)}  CC {_fmt(r.cc)}  SIM {_fmt(r.sim)}  KLD {_fmt(r.kld)}  "
        f"NSS {_fmt(r.nss, 3)}"
    )
    if r.epoch == 0:
        return f"starting weights: {scores}  ({r.val_seconds:.0f} s){best}"
    return (
        f"epoch {r.epoch}/{epochs}: train loss {_fmt(r.train_loss)}  {scores}  "
        f"({_fmt(r.samples_per_s, 2)} samples/s, {r.seconds + r.val_seconds:.0f} s){best}"
    )


def train_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help=DATASET_HELP),
    root: Path | None = typer.Option(
        None, "--root", help="Data root (default: $SALCLI_DATA, then ~/.local/share/salcli)."
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="Audio-visual sets: the fold 1, 2 or 3 (default 1; DIEM has one). "
        "Frame-folder sets: the training folder (default train or training).",
    ),
    audio: bool = typer.Option(False, "--audio", help="Train AViNet (the datasets' wav)."),
    fusion: str = typer.Option(
        DEFAULT_FUSION, "--fusion", help="With --audio: bilinear, transformer or concat."
    ),
    init: str | None = typer.Option(
        None,
        "--init",
        help="Starting weights: a checkpoint file or registry name (ViNet: S3D Kinetics-400 "
        "or a ViNet checkpoint; AViNet: a ViNet or same-fusion AViNet checkpoint), or none "
        "[default: ViNet from s3d-kinetics400 (or its torchvision copy), AViNet from "
        "vinet-dhf1k].",
    ),
    soundnet: str | None = typer.Option(
        None, "--soundnet", help="With --audio: SoundNet-8 weights [default: soundnet8]."
    ),
    epochs: int = typer.Option(
        DEFAULT_EPOCHS, "--epochs", help="Epochs (one window per video each)."
    ),
    batch_size: int = typer.Option(
        DEFAULT_BATCH, "--batch-size", "-b", help="Windows per step, all processes together."
    ),
    lr: float = typer.Option(DEFAULT_LR, "--lr", help="Adam's learning rate."),
    loss: str = typer.Option(
        DEFAULT_LOSS, "--loss", help="kld, or kld,cc (KLD - CC); weights as kld,cc=0.5."
    ),
    out: Path = typer.Option(Path(DEFAULT_OUT), "--out", "-o", help="Output folder of the run."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    device: str = typer.Option(DEFAULT_DEVICE, "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option(
        DEFAULT_PRECISION, "--precision", help="auto, fp32, bf16 or fp16 (with a GradScaler)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="DataLoader workers per process [default: 1 on CPU, up to 8 on CUDA].",
    ),
    seed: int = typer.Option(
        DEFAULT_SEED, "--seed", help="Seed of the initialisation and the windows."
    ),
    patience: int | None = typer.Option(
        None, "--patience", help="Stop after P epochs without a lower validation loss."
    ),
    val_stride: int = typer.Option(
        VAL_STRIDE, "--val-stride", help="Frames between two validation clips of a video."
    ),
    bn: str = typer.Option(
        DEFAULT_BN,
        "--bn",
        help="BatchNorm while training: train (the published recipe: batch statistics, "
        "running averages updated slowly) or frozen (running statistics, kept as loaded).",
    ),
    validate_first: bool = typer.Option(
        False,
        "--validate-first",
        help="Score the starting weights before training (epoch 0 of the log; they are "
        "best.pt if no epoch beats them).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, no epoch lines."),
    input_size: str | None = typer.Option(None, "--input-size", hidden=True),
) -> None:
    """Train or fine-tune ViNet / AViNet (the published recipe by default)."""
    from .train import train

    display = _Display(quiet)
    try:
        options = TrainOptions(
            dataset=dataset,
            root=None if root is None else str(root),
            split=split,
            audio=audio,
            fusion=fusion,
            init=init,
            soundnet=soundnet,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            loss=loss,
            out=str(out),
            resume=resume,
            device=device,
            precision=precision,
            workers=workers,
            seed=seed,
            patience=patience,
            input_size=_parse_size(input_size),
            val_stride=val_stride,
            bn=bn,
            validate_first=validate_first,
        )
        with _Stopper(display.say) as stopper:
            result = train(options, on_event=display.event, stop=stopper.event)
    except SalcliError as err:
        display.close()
        _err(str(err))
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        display.close()
        _err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        display.close()
    if result.status == "stopped":
        display.say(
            f"salcli: stopped after {result.epochs} epoch(s); continue with the same command "
            "and --resume"
        )
        raise typer.Exit(EXIT_TERMINATED if stopper.signal == signal.SIGTERM else EXIT_INTERRUPTED)
    best = (
        f"best epoch {result.best_epoch} (val loss {_fmt(result.best_val_loss)})"
        if result.best_epoch
        else "no finite validation loss"
    )
    how = "early-stopped" if result.status == "early-stopped" else "done"
    display.say(f"{how}: {result.epochs} epoch(s), {best}; weights in {result.out}/best.pt")
    raise typer.Exit(EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""
    app.command("train")(train_command)
