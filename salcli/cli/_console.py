"""What the command line prints, and the one place an error becomes an exit code.

Every message is one line on stderr, printed above a live progress display when one is
up (``salcli.cli._progress``). Errors read ``salcli: error: LINE``, with the options they
name spelled as the command line spells them (``--batch-size``, not ``batch_size``:
the library raises ``OptionError`` naming the option, this module gives its flag); under
``torchrun`` the prefix names the rank. ``exits`` turns what a command raises into its
line and exit code (``salcli.errors``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

import typer

from salcli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, SalcliError, spell
from salcli.inference.predictor import VideoResult
from salcli.options import OPTION_TABLES, ClusterOptions

LIVE: list = []  # the live progress displays: messages go through the newest


def prefix() -> str:
    """``salcli``, or ``salcli[rank N]`` in a run of several processes (torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f"salcli[rank {os.environ.get('RANK', '0')}]" if world > 1 else "salcli"


def say(message: str) -> None:
    """One line on stderr, above a live progress display when there is one."""
    if LIVE:
        LIVE[-1].console.print(message, markup=False, highlight=False, soft_wrap=True)
    else:
        typer.echo(message, err=True)


def warn(message: str) -> None:
    say(f"{prefix()}: warning: {message}")


def flag_of(name: str, *tables: type) -> str:
    """The command-line flag of option ``name`` (``batch_size`` -> ``--batch-size``) in
    ``tables`` (default: predict's and the cluster's)."""
    for cls in tables or (*OPTION_TABLES, ClusterOptions):
        for f in dataclasses.fields(cls):
            if f.name == name and f.metadata.get("flags"):
                return next(x for x in f.metadata["flags"] if x.startswith("--")).split("/")[0]
    return f"--{name.replace('_', '-')}"


def message(err: BaseException, *tables: type) -> str:
    """An error's line as the command line says it: options by their flags."""
    if isinstance(err, SalcliError):
        return err.spelled(lambda name: flag_of(name, *tables))
    return str(err)


def result_error(result: VideoResult, *tables: type) -> str:
    """A failed video's error line as the command line says it (options of ``tables``,
    default predict's)."""
    spelling = (lambda name: flag_of(name, *tables)) if tables else flag_of
    return spell(result.error_template or "", result.error_options, spelling) or result.error


def fail(text: str, code: int) -> typer.Exit:
    """Print ``salcli: error: text``; return the Exit to raise."""
    say(f"{prefix()}: error: {text}")
    return typer.Exit(code)


class Terminated(BaseException):
    """SIGTERM (a scheduler's time limit, ``kill``), raised where Ctrl-C would be."""


@contextlib.contextmanager
def exits(*tables: type, interrupted: str = "interrupted") -> Iterator[None]:
    """Within the block, a salcli error becomes its line and exit code, Ctrl-C and
    SIGTERM (``Terminated``) the ``interrupted`` line and 130 / 143."""
    try:
        yield
    except SalcliError as err:
        raise fail(message(err, *tables), err.exit_code) from None
    except (KeyboardInterrupt, Terminated) as exc:
        say(f"{prefix()}: {interrupted}")
        code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        raise typer.Exit(code) from None
