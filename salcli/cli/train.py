"""``salcli train``: train or fine-tune ViNet / AViNet on a published dataset layout.

``register(app)`` adds the command to the main Typer app. The work is
``salcli.training.loop.train``; this module parses, shows progress and maps the result
to an exit code. Under ``torchrun`` every rank runs it; rank 0 alone prints progress.
"""

from __future__ import annotations

import inspect
import math
import os
import signal
import sys
import threading

import typer

from salcli.cli import _console
from salcli.cli._console import exits
from salcli.cli._options import with_options
from salcli.cli._progress import Bars
from salcli.cli._signals import handling
from salcli.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED
from salcli.training.loop import train
from salcli.training.options import TrainOptions


class _Stopper:
    """Ctrl-C / SIGTERM: finish the step, save, stop (a second Ctrl-C aborts at once)."""

    def __init__(self, say):
        self.event = threading.Event()
        self.signal: int | None = None
        self.say = say

    def __call__(self, signum: int) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        self.event.set()
        self.say("salcli: stopping after this step and saving (Ctrl-C again to abort)")


class _Display:
    """What the user sees: a progress bar per epoch on a terminal, a line per epoch (rank
    0 of a run of several processes alone)."""

    FIELDS = ("loss {task.fields[loss]}", "{task.fields[rate]} samples/s")

    def __init__(self, quiet: bool):
        self.quiet = quiet or os.environ.get("RANK", "0") != "0"
        self.bars = Bars(not self.quiet and sys.stderr.isatty(), self.FIELDS)
        self.bar = None

    def say(self, message: str) -> None:
        if not self.quiet:
            _console.say(message)

    def event(self, kind: str, data: dict) -> None:
        if self.quiet:
            return
        if kind == "start":
            self._start(data)
        elif kind == "epoch_start":
            self.bars.__enter__()
            self.bar = self.bars.add(f"epoch {data['epoch']}/{data['epochs']}",
                                     total=data["steps"], loss="-", rate="-")  # fmt: skip
            self.bar.update(completed=data["step"])
        elif kind == "step" and self.bar is not None:
            rate = data["epoch_windows"] / data["seconds"] if data["seconds"] > 0 else 0.0
            self.bar.update(completed=data["step"], loss=f"{data['loss']:.4f}",
                            rate=f"{rate:.2f}")  # fmt: skip
        elif kind == "validate" and self.bar is not None:
            self.bar.update(description=f"validating ({data['windows']} clips)")
        elif kind == "epoch":
            self.close()
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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.remove()
            self.bar = None
        self.bars.__exit__(None, None, None)


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


def train_command(*, quiet: bool, **values) -> None:
    """Train or fine-tune ViNet, AViNet, ViNet-S or TASED-Net (the published recipe by default)."""
    display = _Display(quiet)
    stopper = _Stopper(display.say)
    try:
        with exits(TrainOptions):
            options = TrainOptions(**values)
            with handling(stopper, (signal.SIGINT, signal.SIGTERM)):
                result = train(options, on_event=display.event, stop=stopper.event)
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


_QUIET = inspect.Parameter(
    "quiet",
    inspect.Parameter.KEYWORD_ONLY,
    annotation=bool,
    default=typer.Option(False, "--quiet", "-q", help="No progress, no epoch lines."),
)


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``: its options are TrainOptions' fields."""
    app.command("train")(with_options(train_command, [_QUIET], TrainOptions))
