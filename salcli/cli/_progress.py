"""The one progress display of the command line: Rich bars on stderr, for predict (a bar
per video), corpus runs on a cluster, evaluate, train and downloads alike.

The library reports progress through callbacks (``predict_many``'s ``progress``, the
cluster's ``on_status``, ``evaluate``'s ``on_progress``, ``train``'s ``on_event``,
``fetch``'s ``on_progress``); only the command line draws. A display that is not enabled
(``--quiet``, ``--jsonl``, stderr not a terminal) draws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from salcli.cli import _console


class Bar:
    """One bar of a display; every call does nothing on a disabled display."""

    def __init__(self, progress: Any, task: Any):
        self._progress, self._task = progress, task

    def update(self, **changes: Any) -> None:
        """``completed``, ``total``, ``advance``, ``description`` or a field's value."""
        if self._progress is not None:
            self._progress.update(self._task, **changes)

    def reset(self, **changes: Any) -> None:
        if self._progress is not None:
            self._progress.reset(self._task, **changes)

    def remove(self) -> None:
        if self._progress is not None:
            self._progress.remove_task(self._task)


class Bars:
    """A display of bars with the columns description, bar, done/total, ``fields`` (text
    templates such as ``"{task.fields[rate]} frames/s"``) and the time left; ``bytes``
    counts bytes and shows the transfer rate instead. Messages printed with
    ``_console.say`` while it is up appear above it."""

    def __init__(self, enabled: bool, fields: Sequence[str] = (), *, bytes: bool = False):
        self.enabled = enabled
        self.fields = tuple(fields)
        self.bytes = bytes
        self._progress = None

    def __enter__(self) -> Bars:
        if self.enabled:
            from rich import progress as rp
            from rich.console import Console

            counts = (
                (rp.DownloadColumn(), rp.TransferSpeedColumn())
                if self.bytes
                else (rp.MofNCompleteColumn(),)
            )
            self._progress = rp.Progress(
                rp.TextColumn("{task.description}"),
                rp.BarColumn(),
                *counts,
                *(rp.TextColumn(text) for text in self.fields),
                rp.TimeRemainingColumn(),
                console=Console(stderr=True, highlight=False, soft_wrap=True),
                transient=True,
            )
            self._progress.__enter__()
            _console.LIVE.append(self._progress)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            _console.LIVE.remove(self._progress)
            self._progress.__exit__(*exc)
            self._progress = None

    def add(self, description: str, total: float | None = None, **fields: Any) -> Bar:
        """A new bar (``fields``: the starting values of the text fields)."""
        if self._progress is None:
            return Bar(None, None)
        return Bar(self._progress, self._progress.add_task(description, total=total, **fields))
