"""``salcli train``: train or fine-tune ViNet / AViNet on a published dataset layout.

``register(app)`` adds the command to the main Typer app (salcli/cli.py calls it). The
work is ``salcli.train.train``; this module parses, shows progress and maps the result to
an exit code. Under ``torchrun`` every rank runs it; rank 0 alone prints progress.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import signal
import sys
import threading

import typer

from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, SalcliError
from .options import with_options
from .train_options import TrainOptions


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


def train_command(*, quiet: bool, **values) -> None:
    """Train or fine-tune ViNet / AViNet (the published recipe by default)."""
    from .train import train

    display = _Display(quiet)
    try:
        options = TrainOptions(**values)
        with _Stopper(display.say) as stopper:
            result = train(options, on_event=display.event, stop=stopper.event)
    except SalcliError as err:
        display.close()
        _err(_cli_message(err))
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


def _cli_message(err: SalcliError) -> str:
    from .options import OptionError, flag_of

    if isinstance(err, OptionError):
        return f"{flag_of(err.option, TrainOptions)} {err.reason}"
    return str(err)


_QUIET = inspect.Parameter(
    "quiet",
    inspect.Parameter.KEYWORD_ONLY,
    annotation=bool,
    default=typer.Option(False, "--quiet", "-q", help="No progress, no epoch lines."),
)


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``: its options are TrainOptions' fields."""
    app.command("train")(with_options(train_command, [_QUIET], TrainOptions))
