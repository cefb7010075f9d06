"""Typed exceptions, raised deep down; only the CLI turns them into one-line messages
and exit codes (see ``EXIT_CODES`` and the README)."""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence

# Process exit codes of the `salcli` command.
EXIT_OK = 0  # every input done
EXIT_FAILED = 1  # at least one input failed (the others were still processed)
EXIT_USAGE = 2  # bad command line (unknown option, bad value, no inputs)
EXIT_WEIGHTS = 3  # no usable weights: nothing could run
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM (128 + 15), e.g. a scheduler's time limit

EXIT_CODES = {
    EXIT_OK: "every input was processed",
    EXIT_FAILED: "one or more inputs failed; the others were processed",
    EXIT_USAGE: "bad usage: unknown option, bad value, nothing to do",
    EXIT_WEIGHTS: "weights missing, unreadable or of the wrong architecture",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); no partial output is left behind",
    EXIT_TERMINATED: "terminated (SIGTERM); no partial output is left behind",
}


def one_line(exc: object) -> str:
    """The first line of an error's own text (an OS/FFmpeg error's reason, without errno
    or file name), or its type's name when it has none."""
    text = str(getattr(exc, "strerror", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def os_reason(exc: object) -> str:
    """``one_line``, but "disk full" for ENOSPC however the OS words it."""
    if getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc):
        return "disk full"
    return one_line(exc)


def escape(text: str) -> str:
    """``text`` as a part of a message template (its braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


def spell(template: str, options: Sequence[str], spelling: Callable[[str], str] = str) -> str:
    """A message template with each option it names (``{name}``) spelled by ``spelling``
    (and its doubled braces single again)."""
    return template.format_map({name: spelling(name) for name in options})


class SalcliError(Exception):
    """Base of every error salcli raises on purpose. ``str(err)`` is one line for users.

    A message may name options as ``{name}`` (with ``options=("name", ...)``, and its
    own braces doubled): ``str(err)`` spells them as the Python API does (``name``),
    ``err.spelled(flag)`` as the command line does (``--name``, ``salcli.cli``). The
    library so never speaks in flags."""

    exit_code = EXIT_FAILED

    def __init__(self, message: object = "", *, options: Sequence[str] = ()):
        self.template = str(message) if options else escape(str(message))
        self.options = tuple(options)
        super().__init__(self.spelled())

    def spelled(self, spelling: Callable[[str], str] = str) -> str:
        """The message with its options spelled by ``spelling`` (default: their names)."""
        return spell(self.template, self.options, spelling)

    def __reduce__(self):  # pickled whole (a Ray worker's error reaches the driver)
        return (_rebuilt, (type(self), self.__dict__))


def _rebuilt(cls: type, state: dict) -> SalcliError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, err.spelled())
    return err


class InputError(SalcliError):
    """An input file cannot be read or decoded (missing, not a video, corrupt, no frames)."""


class NoAudioError(InputError):
    """The sound (``audio``) was asked for, but the input has no audio track."""


class OutputError(SalcliError):
    """An output cannot be written (unwritable folder, disk full)."""


class WeightsError(SalcliError):
    """Weights not found, unreadable, unsafe, or not of the expected architecture."""

    exit_code = EXIT_WEIGHTS


class UsageError(SalcliError):
    """Options that contradict each other or are out of range."""

    exit_code = EXIT_USAGE


class OptionError(UsageError):
    """A bad value of one option: ``option`` is its name, ``reason`` the rest of the line;
    ``options``: other options the reason names (as ``{name}``, its own braces doubled)."""

    def __init__(self, option: str, reason: str, *, options: Sequence[str] = ()):
        self.option, self.reason = option, reason
        body = reason if options else escape(reason)
        super().__init__("{" + option + "} " + body, options=(option, *options))


class DatasetError(SalcliError):
    """A dataset folder is missing or not laid out as the published data are."""


class ClusterError(SalcliError):
    """A Ray cluster cannot be reached or has no worker left (``salcli.corpus.cluster``)."""
