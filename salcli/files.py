"""Writing a file so that readers see the old one or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path

from salcli.errors import OutputError, os_reason
from salcli.identity import me

TEMP_SUFFIX = ".tmp"
# tests: ``SALCLI_TEST_KILL=POINT:NAME`` kills this process (SIGKILL, as ``kill -9``) when
# it reaches the named point for the file or video NAME (``kill_point``)
KILL_ENV = "SALCLI_TEST_KILL"


def temp_name(path: Path, kind: str = "tmp") -> Path:
    """A hidden sibling of ``path`` for this process: ``.<name>.<pid>-<start>-<host>-
    <random>.<kind>`` (``salcli.identity.Holder.tag``), the form salcli.media.records
    recognises as a leftover, and of whom."""
    return path.with_name(f".{path.name}.{me().tag}-{secrets.token_hex(3)}.{kind}")


def make_folder(folder: Path) -> None:
    """Create the output folder ``folder`` and its parents; an ``OutputError`` saying why
    it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder")
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({os_reason(exc)})") from None


def kill_point(point: str, name: str) -> None:
    """The tests' seam for a ``kill -9`` at a named point of a run (``KILL_ENV``)."""
    wanted = os.environ.get(KILL_ENV)
    if wanted and wanted == f"{point}:{name}":
        os.kill(os.getpid(), signal.SIGKILL)


def write_atomic(path: str | Path, write: Callable[[Path], None], *, sync: bool = True) -> Path:
    """``write(tmp)`` to a temporary file beside ``path`` (created with the user's umask,
    like any new file), flushed to disk when ``sync``, then renamed over ``path``.

    A failure removes the temporary and raises a one-line ``OutputError`` (or re-raises
    what is not an OS error, Ctrl-C included). Returns ``path``.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        write(tmp)
        if sync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        kill_point("rename", path.name)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"{path}: cannot write ({os_reason(err)})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_text_atomic(path: str | Path, text: str, *, sync: bool = True) -> Path:
    """``text`` (UTF-8, newlines as given) written to ``path`` by ``write_atomic``."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""),
                        sync=sync)  # fmt: skip
