"""The one signal handler of the command line: a handler installed for the block, on
the main thread, and the previous one put back."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator

from salcli.cli._console import Terminated


@contextlib.contextmanager
def handling(handler: Callable[[int], None], signals: Iterable[int]) -> Iterator[None]:
    """``handler(signum)`` on each of ``signals`` while the block runs (main thread only:
    elsewhere signals cannot be caught and nothing is installed)."""
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            with contextlib.suppress(ValueError, OSError):
                previous[sig] = signal.signal(sig, lambda signum, frame: handler(signum))
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def raise_terminated(signum: int) -> None:
    """SIGTERM handled as Ctrl-C is: ``Terminated`` raised where the program is, so that
    writers abort and temporaries go."""
    raise Terminated()


def terminable() -> contextlib.AbstractContextManager:
    """SIGTERM raises ``Terminated`` in the block."""
    return handling(raise_terminated, (signal.SIGTERM,))
