"""What runs on a Ray cluster's workers: a ``VideoWorker`` (a Ray actor) builds one
``Predictor`` from the run's ``PredictOptions`` once, then takes one video at a time end
to end with the code of a local batch (``salcli.corpus.jobs.run_claimed``: the claim,
the stale-temporary sweep and the record checks, whoever ran the video before, then
``Predictor.write``), so its outputs are those of a local run and a video another run
(local or Ray) holds is left to it ("claimed"). Ray restarts a worker whose process dies
and retries its video (``VIDEO_RETRIES`` times); the dead process's claim is taken over
at once (same host, process gone).
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salcli import errors
from salcli.corpus.claims import Claims
from salcli.corpus.connection import import_ray
from salcli.corpus.inputs import Job
from salcli.corpus.jobs import failed_result, run_claimed
from salcli.defaults import DEFAULT_LEASE_S
from salcli.errors import (
    ClusterError,
    OptionError,
    SalcliError,
    one_line,
)
from salcli.inference.predictor import Predictor, VideoResult
from salcli.media.records import clean_stale_temps
from salcli.options import PredictOptions
from salcli.testing import FAULT_FRAME, strike

VIDEO_RETRIES = 2  # further attempts at a video whose worker died mid-video
CONTROL_GROUP = "control"  # the actor thread that takes stop() while a video runs


@dataclass(frozen=True)
class Work:
    """One video for a worker: the job, and what ``Predictor.write`` takes besides."""

    job: Job
    fps: float | None = None
    audio_path: Path | None = None
    met: str | None = None  # the run whose claim was met on it before (run_claimed)


class _Stopped(BaseException):
    """Raised in a worker's video when the driver stops the run: the writers remove
    their partial outputs, as on Ctrl-C in a local run."""


def _error_state(err: BaseException) -> dict[str, Any]:
    """A worker's start-up error, as plain values (an OptionError does not pickle)."""
    return {
        "type": type(err).__name__,
        "message": str(err)
        if isinstance(err, SalcliError)
        else f"unexpected {type(err).__name__}: {one_line(err)}",
        "option": getattr(err, "option", None),
        "reason": getattr(err, "reason", None),
    }


def _error_from(state: dict[str, Any]) -> SalcliError:
    if state.get("option"):
        return OptionError(state["option"], state["reason"])
    cls = getattr(errors, state["type"], None)
    if not (isinstance(cls, type) and issubclass(cls, SalcliError)):
        cls = ClusterError
    return cls(state["message"])


class VideoWorker:
    """What each Ray actor holds: one ``Predictor`` built once (``options``; ``threads``
    torch threads), then ``run`` takes one video at a time with ``jobs.run_claimed``
    under the claims of run ``run`` (``lease``). A start-up error is kept and reported by
    ``ready`` (a bad option, missing weights)."""

    def __init__(
        self,
        options: PredictOptions,
        *,
        overwrite: bool = False,
        threads: int = 1,
        fault: str | None = None,
        run: str | None = None,
        lease: float = DEFAULT_LEASE_S,
    ):
        import torch

        torch.set_num_threads(threads)
        self._warnings: list[str] = []
        self._stopping = threading.Event()
        self._fault = fault
        self.overwrite = overwrite
        self.formats = options.formats
        self.claims = Claims(run, lease)
        self.predictor: Predictor | None = None
        self._error: dict[str, Any] | None = None
        try:
            self.predictor = Predictor(options=options, on_warning=self._warnings.append)
        except Exception as err:  # noqa: BLE001 - reported by ready(), not an actor crash
            self._error = _error_state(err)

    def _take_warnings(self) -> list[str]:
        taken, self._warnings[:] = list(self._warnings), []
        return taken

    def ready(self, after: Job | None = None) -> dict[str, Any]:
        """What this worker runs, or its start-up error (``{"error": ...}``). ``after``:
        the video its previous process died on: its claim and temporaries are removed
        first."""
        if after is not None:
            self.claims.clear_stale(after.out_dir, after.stem)
            clean_stale_temps(after.out_dir, after.stem, self.claims.lease_s)
        if self.predictor is None:
            return {"error": self._error}
        p = self.predictor
        return {
            # the settings a video's record must match: a frame folder's hold its fps
            # (``Predictor.settings``), so the driver gets both kinds (the root is a folder)
            "settings": {"file": p.settings(folder=False), "folder": p.settings(folder=True)},
            "label": p.label,
            "variant": p.arch,
            "warmup": p.warmup,
            "weights": " + ".join(str(m.weights_path or "") for m in p.members or (p,)),
            # each model's (one, or an ensemble's): what evaluate says of the run
            "members": [{"variant": m.arch, "warmup": m.warmup} for m in p.members or (p,)],
            "device": p.device.type,
            "precision": p.precision,
            "batch_size": p.batch_size,
            "reuse": bool(p.reuse),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "warnings": self._take_warnings(),
        }

    def run(self, work: Work) -> tuple[VideoResult | None, list[str]]:
        """(the video's result, the warnings it raised); (None, []) when stopped."""
        job = work.job
        if self.predictor is None:
            return failed_result(str(job.source), self._error["message"]), []
        self._take_warnings()
        p = self.predictor

        def progress(done: int, total: int | None) -> None:  # after each map
            if self._stopping.is_set():
                raise _Stopped()
            if self._fault and done == FAULT_FRAME:
                strike(self._fault, job.stem, job.out_dir, self._stopping, _Stopped)

        try:
            # a frame folder's rate (evaluate's fold lists) goes with the video: the
            # record's settings hold the rate the maps were made at
            result = run_claimed(
                p, job, self.formats, self.claims, overwrite=self.overwrite, fps=work.fps,
                audio_path=work.audio_path, progress=progress, met=work.met,
            )  # fmt: skip
        except _Stopped:
            return None, []
        return result, self._take_warnings()

    def stop(self) -> None:
        """Stop the video in progress at its next map (runs beside ``run``)."""
        self._stopping.set()


@functools.cache
def _actor_class():
    """``VideoWorker`` as a Ray actor class: restarted when its process dies, a video
    that was running then retried ``VIDEO_RETRIES`` times, ``stop`` on its own thread."""
    ray = import_ray()

    class _VideoActor(VideoWorker):
        @ray.method(concurrency_group=CONTROL_GROUP)
        def stop(self) -> None:
            VideoWorker.stop(self)

    return ray.remote(
        max_restarts=-1,  # bounded per video by max_task_retries
        max_task_retries=VIDEO_RETRIES,
        concurrency_groups={CONTROL_GROUP: 1},
    )(_VideoActor)
