"""The ``salcli`` command: a thin layer over the Python API, and the only place flags,
progress bars and exit codes exist.

``app`` holds the subcommands, one module each (``predict``, ``evaluate``, ``train``,
``weights``, ``status``, ``reframe``); ``salcli.cli._console`` prints and maps errors to
exit codes, ``_progress`` draws, ``_signals`` handles SIGTERM, ``_options`` makes each command's
parameters from the options tables.
"""

from __future__ import annotations

import sys

import typer

from salcli import __version__
from salcli.cli import _console
from salcli.errors import EXIT_INTERRUPTED, EXIT_USAGE, SalcliError

app = typer.Typer(
    name="salcli",
    help="Video saliency with the published models (ViNet, AViNet, ViNet-S, ViNet-A, STAViS, "
    "TASED-Net, UNISAL): predict maps, score them against eye tracking, train, reframe.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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


def _register_subcommands() -> None:
    """Commands that live in their own modules."""
    from salcli.cli import evaluate, predict, reframe, status, train, weights

    for module in (predict, evaluate, weights, train, status, reframe):
        module.register(app)


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="salcli")
    except KeyboardInterrupt:
        _console.say("salcli: interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except SalcliError as err:  # raised outside a command's own handling
        _console.say(f"salcli: error: {_console.message(err)}")
        sys.exit(err.exit_code)


__all__ = ["app", "main", "EXIT_USAGE"]
