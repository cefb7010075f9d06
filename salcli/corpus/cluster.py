"""Many videos on a Ray cluster: ``salcli predict … --ray ADDRESS`` and ``evaluate --ray``.

The optional ``ray`` extra (``pip install "salcli[ray]"``); ``ray`` is imported here only,
when a cluster is asked for. The pieces are Ray's own:

- a worker is a Ray actor (``VideoWorker``) that builds one ``Predictor`` from the run's
  ``PredictOptions`` once and then takes one video at a time end to end with the code of
  a local batch (``batch.prepare_job``: the stale-temporary sweep and the record checks,
  whoever ran the video before; ``batch.predict_job``: ``Predictor.write``), so its
  outputs are those of a local run. One worker per GPU (``num_gpus``), or per
  ``cpus_per_worker`` CPUs where the cluster has none;
- the driver (``Cluster``) keeps one video in flight per worker and collects the results
  with ``ray.wait``: a worker that dies mid-video is restarted by Ray (``max_restarts``)
  and the video retried on the new process (``max_task_retries``, ``VIDEO_RETRIES``
  times), then reported failed; the other workers go on;
- ``ClusterBatch``: a batch (``batch.BatchRun``'s inputs, shard and record checks on the
  driver) run on the workers; ``ClusterModel``: the model of ``salcli evaluate`` run on
  them, its maps passing through HDF5 stacks in a folder every worker can write.

The temporaries of a worker that was killed are removed by the next attempt at that video
(``records.clean_stale_temps``: their process no longer exists). That check is by
process id on the machine doing the sweep: on a file system shared by several machines a
temporary of a worker killed on another machine is removed only where its process id is
not in use (see the README, "Running on a cluster").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salcli import errors
from salcli.corpus.inputs import Job
from salcli.corpus.jobs import check_finished, failed_result, predict_job, prepare_job
from salcli.errors import (
    ClusterError,
    InputError,
    OptionError,
    SalcliError,
    UsageError,
    escape,
    one_line,
    os_reason,
)
from salcli.evaluation.sources import (
    H5_DATASET,
    ModelRun,
    ModelSource,
    h5_maps,
    published_unmapped,
)
from salcli.inference.predictor import Predictor, VideoResult
from salcli.media.records import clean_stale_temps, remove_record
from salcli.media.writers import output_paths
from salcli.models.registry import family_of
from salcli.options import RAY_LOCAL, ClusterOptions, PredictOptions
from salcli.testing import FAULT_ENV, FAULT_FRAME, strike

RAY_INSTALL = 'pip install "salcli[ray]"'
VIDEO_RETRIES = 2  # further attempts at a video whose worker died mid-video
POLL_S = 0.5  # seconds between looks at the cluster (signals, progress) while waiting
STOP_GRACE_S = 10.0  # seconds stopped workers get to remove their partial outputs
CONNECT_TIMEOUT_S = 5.0  # seconds to reach a head node's port before giving up
OBJECT_STORE_BYTES = 128 * 2**20  # a local Ray's object store: results are small
AHEAD_PER_WORKER = 2  # evaluate: videos predicted ahead of the scoring, per worker
CONTROL_GROUP = "control"  # the actor thread that takes stop() while a video runs


def import_ray():
    """The ``ray`` module, or a UsageError (exit 2) saying how to install it."""
    try:
        import ray
    except ImportError:
        raise OptionError("ray", f"needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


# --- connecting ----------------------------------------------------------------------


def connect(address: str) -> bool:
    """Connect this process to the Ray cluster at ``address`` (``local``: start one on
    this machine; ``auto``: the one this machine belongs to, or ``RAY_ADDRESS``;
    ``HOST:PORT``; ``ray://HOST:PORT``). True when this call connected (``disconnect``
    ends it); False when the process was connected already (that connection is used).
    A cluster that cannot be reached raises a ClusterError."""
    ray = import_ray()
    if ray.is_initialized():
        _ray_messages_to_stderr()
        return False
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401 - Ray Client's transport
        except ImportError:
            raise ClusterError(
                f"{{ray}} {escape(address)}: ray:// addresses go through Ray Client, which "
                'needs pip install "ray[client]==2.60.0"; or run salcli on a node of the '
                "cluster with {ray} auto",
                options=("ray",),
            ) from None
    elif address not in (RAY_LOCAL, "auto"):
        _probe(address)
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,  # workers' warnings come back with their results
        "logging_level": logging.ERROR,
    }
    if address == RAY_LOCAL:
        kwargs["object_store_memory"] = OBJECT_STORE_BYTES
    main = threading.current_thread() is threading.main_thread()
    term = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as err:
        if address == "auto":
            raise ClusterError(
                "{ray} auto: no Ray cluster runs on this machine (and RAY_ADDRESS is not "
                "set); start one with `ray start --head`, or use {ray} local",
                options=("ray",),
            ) from None
        raise _ray_error(address, one_line(err)) from None
    except Exception as err:  # noqa: BLE001 - a version mismatch, a refused client...
        raise _ray_error(address, f"{type(err).__name__}: {one_line(err)}") from None
    finally:
        if term is not None:  # ray.init sets its own SIGTERM handler (sys.exit)
            signal.signal(signal.SIGTERM, term)
    _ray_messages_to_stderr()
    return True


def disconnect() -> None:
    import ray

    ray.shutdown()


@contextlib.contextmanager
def session(address: str) -> Iterator[None]:
    """Connected to ``address`` for the block (an existing connection is kept open)."""
    owned = connect(address)
    try:
        yield
    finally:
        if owned:
            disconnect()


def _probe(address: str) -> None:
    """A ClusterError now, rather than Ray's minute of retries, when nothing listens."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise _ray_error(address, f"cannot reach the head node ({os_reason(err)})") from None


def _ray_error(address: str, reason: str) -> ClusterError:
    """A ClusterError about the cluster at ``address`` (``ray``)."""
    return ClusterError(f"{{ray}} {escape(address)}: {escape(reason)}", options=("ray",))


def _ray_messages_to_stderr() -> None:
    """Ray prints its raylets' messages (a worker died, a task is retried) on the
    driver's standard output, where ``--jsonl`` lines go: send them to stderr."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:  # pragma: no cover - another Ray layout: leave it as it is
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "salcli_stderr", False):
        return

    def to_stderr(data: dict, *args: Any, **kwargs: Any) -> None:
        original({**data, "is_err": True}, *args, **kwargs)

    to_stderr.salcli_stderr = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr


# --- the worker -------------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """One video for a worker: the job, and what ``Predictor.write`` takes besides."""

    job: Job
    fps: float | None = None
    audio_path: Path | None = None


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
    torch threads), then ``run`` takes one video at a time: the stale-temporary sweep
    and record checks of ``batch.prepare_job``, then ``batch.predict_job``. A start-up
    error is kept and reported by ``ready`` (a bad option, missing weights)."""

    def __init__(
        self,
        options: PredictOptions,
        *,
        overwrite: bool = False,
        threads: int = 1,
        fault: str | None = None,
    ):
        import torch

        torch.set_num_threads(threads)
        self._warnings: list[str] = []
        self._stopping = threading.Event()
        self._fault = fault
        self.overwrite = overwrite
        self.formats = options.formats
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
        the video its previous process died on: its temporaries are removed first."""
        if after is not None:
            clean_stale_temps(after.out_dir, after.stem)
        if self.predictor is None:
            return {"error": self._error}
        p = self.predictor
        return {
            # the settings a video's record must match: a frame folder's hold its fps
            # (``Predictor.settings``), so the driver gets both kinds (the root is a folder)
            "settings": {"file": p.settings(folder=False), "folder": p.settings(folder=True)},
            "label": p.variant.label,
            "variant": p.variant.name,
            "warmup": p.warmup,
            "weights": str(p.weights_path or ""),
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
        # a frame folder's rate (evaluate's fold lists) goes with the video: the record's
        # settings hold the rate the maps were made at
        early = prepare_job(p, job, self.formats, overwrite=self.overwrite, fps=work.fps)
        if early is not None:
            return early, self._take_warnings()

        def progress(done: int, total: int | None) -> None:  # after each map
            if self._stopping.is_set():
                raise _Stopped()
            if self._fault and done == FAULT_FRAME:
                strike(self._fault, job.stem, job.out_dir, self._stopping, _Stopped)

        try:
            result = predict_job(
                p, job, self.formats, progress=progress, fps=work.fps, audio_path=work.audio_path
            )
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


# --- the driver ---------------------------------------------------------------------------


@dataclass
class ClusterStatus:
    """Where a cluster run stands (``on_status``): videos by state, maps written."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    running: int = 0
    workers: int = 0
    maps: int = 0  # maps (frames) of the videos done
    started: float = 0.0  # time.perf_counter() when the workers were asked for

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.failed


class Cluster:
    """Workers on the cluster at ``cluster.ray`` (connected here unless the process is
    already), each a ``VideoWorker`` with ``options``. ``results(works)`` runs videos on
    them; ``close()`` stops what runs, ends the workers and the connection it made.

    Raises, before any video: the install hint without Ray (UsageError), a ClusterError
    when the cluster cannot be reached or no worker fits, the workers' start-up error (a
    bad option, missing weights: the error and exit code of a local run)."""

    def __init__(
        self,
        cluster: ClusterOptions,
        options: PredictOptions,
        *,
        overwrite: bool = False,
        on_warning: Callable[[str], None] | None = None,
        on_status: Callable[[ClusterStatus], None] | None = None,
    ):
        self.ray = import_ray()
        self._warn = on_warning or (lambda message: None)
        self._on_status = on_status
        self._said: set[str] = set()
        self._actors: list[Any] = []
        self._idle: list[Any] = []
        self._starting: dict[Any, Any] = {}  # ready() ref -> actor
        self._running: dict[Any, tuple[Any, Work]] = {}  # run() ref -> (actor, work)
        self._recovering: set[Any] = set()  # ready() refs of workers restarted after a death
        self._closed = False
        self.info: dict[str, Any] = {}
        self.status = ClusterStatus(started=time.perf_counter())
        self._owned = connect(str(cluster.ray))
        try:
            self._start(cluster, options, overwrite)
        except BaseException:
            self.close()
            raise

    # -- starting ----------------------------------------------------------------------

    def _start(self, cluster: ClusterOptions, options: PredictOptions, overwrite: bool) -> None:
        ray = self.ray
        have = ray.cluster_resources()
        cpus, gpus = float(have.get("CPU", 0)), float(have.get("GPU", 0))
        g = cluster.gpus_per_worker
        if g is None:
            g = 1.0 if gpus >= 1 and options.device != "cpu" else 0.0
        c = cluster.cpus_per_worker
        fits = int(min(cpus // c, gpus // g)) if g else int(cpus // c)
        n = cluster.workers or fits
        each = f"{c} CPU{'s' if c > 1 else ''}" + (f" and {g:g} GPU" if g else "")
        if n < 1:
            raise ClusterError(
                f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs: no worker of {each} fits"
            )
        if n > fits:
            self._say(f"the Ray cluster has room for {fits} workers of {each}; the other "
                      f"{n - fits} start when it grows")  # fmt: skip
        weights = options.weights
        if weights and Path(weights).expanduser().is_file():  # a file here: the same path there
            options = options.replace(weights=str(_absolute(Path(weights).expanduser())))
        if not g and options.device == "auto":
            options = options.replace(device="cpu")  # a worker without a GPU uses none
        self.each, self.size = each, n
        actor = _actor_class().options(num_cpus=c, num_gpus=g)
        fault = os.environ.get(FAULT_ENV) or None
        for _ in range(n):
            a = actor.remote(options, overwrite=overwrite, threads=c, fault=fault)
            self._actors.append(a)
            self._starting[a.ready.remote()] = a
        while not self.info:  # the first worker that starts sets what every one must run
            if not self._starting:
                raise ClusterError("no Ray worker could start (see the warnings above)")
            for ref in _wait(ray, list(self._starting)):
                self._joined(ref, first=not self.info)
        self._report()

    def _joined(self, ref: Any, *, first: bool = False) -> None:
        """A worker's ready() came back: it joins, or is left out with a warning."""
        actor = self._starting.pop(ref)
        try:
            state = self.ray.get(ref)
        except self.ray.exceptions.RayError as err:
            self._drop(actor, f"a Ray worker could not start: {one_line(err)}")
            return
        if state.get("error"):
            if first:
                raise _error_from(state["error"])
            self._drop(actor, f"a Ray worker could not start: {state['error']['message']}")
            return
        for message in state.pop("warnings", []):
            self._say(message)
        if not self.info:
            self.info = state
        elif state["settings"] != self.info["settings"]:
            changed = sorted(
                k for k, v in state["settings"]["file"].items()
                if self.info["settings"]["file"].get(k) != v
            )  # fmt: skip
            self._drop(
                actor,
                f"the Ray worker on {state['host']} would make other maps (another "
                f"{', '.join(changed)}); it is left out: make the workers agree "
                "(e.g. the precision)",
            )
            return
        self._idle.append(actor)
        self._report()

    def _drop(self, actor: Any, why: str) -> None:
        self._say(why)
        with contextlib.suppress(Exception):
            self.ray.kill(actor, no_restart=True)
        if actor in self._actors:
            self._actors.remove(actor)
        self._report()

    def _say(self, message: str) -> None:
        if message not in self._said:  # every worker says the same things at start-up
            self._said.add(message)
            self._warn(message)

    def _report(self) -> None:
        self.status.running = len(self._running)
        self.status.workers = len(self._idle) + len(self._running)
        if self._on_status is not None:
            self._on_status(self.status)

    def settings(self, source: str | Path) -> dict[str, Any]:
        """The settings the workers record for ``source`` (``Predictor.settings``)."""
        return self.info["settings"]["folder" if Path(source).is_dir() else "file"]

    def describe(self) -> str:
        i = self.info
        return (
            f"salcli: {i['label']} on Ray: {self.size} worker{'s' if self.size > 1 else ''} "
            f"of {self.each} ({i['device']}, {i['precision']}, batch {i['batch_size']}, "
            f"reuse {'on' if i['reuse'] else 'off'})"
        )

    # -- running ---------------------------------------------------------------------

    def results(
        self, works: Iterable[Work], *, may_submit: Callable[[], bool] | None = None
    ) -> Iterator[tuple[Work, VideoResult]]:
        """Run ``works`` on the workers, one video in flight per worker; (work, result)
        as each finishes. ``works`` may be a deque that grows while this runs.
        ``may_submit()`` False holds further videos back while some run."""
        ray = self.ray
        queue = works if isinstance(works, deque) else deque(works)
        # a worker restarted after a video's last attempt is waited for: it removes that
        # attempt's temporaries before it rejoins
        while queue or self._running or self._recovering:
            while (
                self._idle and queue and (not self._running or may_submit is None or may_submit())
            ):
                actor = self._idle.pop()
                work = queue.popleft()
                self._running[actor.run.remote(work)] = (actor, work)
            self._report()
            waiting = [*self._running, *self._starting]
            if not waiting:
                raise ClusterError(f"no Ray worker left for the {len(queue)} videos to do")
            done = _wait(ray, waiting)
            for ref in done:
                if ref in self._starting:
                    self._recovering.discard(ref)
                    self._joined(ref)
                    continue
                actor, work = self._running.pop(ref)
                source = str(work.job.source)
                try:
                    result, warnings = ray.get(ref)
                except ray.exceptions.RayActorError as err:  # died VIDEO_RETRIES + 1 times
                    result, warnings = (
                        failed_result(
                            source,
                            f"{source}: its Ray worker died on it {VIDEO_RETRIES + 1} times "
                            f"({one_line(err)})",
                        ),
                        [],
                    )
                    # restarted (it removes what the last attempt left), or gone
                    probe = actor.ready.remote(work.job)
                    self._starting[probe] = actor
                    self._recovering.add(probe)
                except ray.exceptions.RayError as err:
                    cause = getattr(err, "cause", None) or err
                    result, warnings = failed_result(source, cause, unexpected=True), []
                    self._idle.append(actor)
                else:
                    self._idle.append(actor)
                for message in warnings:
                    self._warn(message)
                if result is None:  # stopped: only while closing
                    continue
                self._count(result)
                yield work, result
        self._report()

    def _count(self, result: VideoResult) -> None:
        s = self.status
        if result.status == "done":
            s.done += 1
            s.maps += result.frames
        elif result.status == "skipped":
            s.skipped += 1
        else:
            s.failed += 1

    def count(self, result: VideoResult) -> None:
        """Count a result found on the driver (a video finished before)."""
        self._count(result)
        self._report()

    def close(self) -> None:
        """Stop the videos in progress (their partial outputs removed, ``STOP_GRACE_S``
        at most), end the workers and the connection this object made."""
        if self._closed:
            return
        self._closed = True
        ray = self.ray
        try:
            if self._running:
                for actor, _ in self._running.values():
                    actor.stop.remote()
                ray.wait(list(self._running), num_returns=len(self._running),
                         timeout=STOP_GRACE_S)  # fmt: skip
        except BaseException:  # noqa: BLE001 - a second Ctrl-C: end the workers now
            pass
        finally:
            for actor in self._actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
            self._actors.clear()
            self._running.clear()
            if self._owned:
                disconnect()


def _wait(ray, refs: list) -> list:
    """The refs of ``refs`` that are ready, after ``POLL_S`` at most. A signal handler's
    exception (SIGTERM's in the CLI) raised inside Ray's compiled wait reaches Python
    as a SystemError caused by it: it is raised as itself."""
    try:
        return ray.wait(refs, num_returns=1, timeout=POLL_S)[0]
    except SystemError as err:
        cause = err.__cause__
        if isinstance(cause, BaseException) and not isinstance(cause, Exception):
            raise cause from None
        raise


# --- a batch on the cluster ------------------------------------------------------------


class ClusterBatch:
    """The jobs of ``run`` (a ``batch.BatchRun``: its inputs, output folders and shard)
    on the cluster of ``cluster``: iterating yields one ``VideoResult`` per job, as a
    local run does — first those the driver finds finished (skipped) or refuses (outputs
    of another source or other settings), then the others as workers finish them.
    ``close()`` stops the run (see ``Cluster.close``).

    The workers are started here: errors that stop a run before its first video are
    raised by the constructor."""

    def __init__(
        self,
        run: Any,
        cluster: ClusterOptions,
        *,
        on_warning: Callable[[str], None] | None = None,
        on_status: Callable[[ClusterStatus], None] | None = None,
    ):
        self.run = run
        self.cluster = Cluster(
            cluster,
            run.options,
            overwrite=run.batch.overwrite,
            on_warning=on_warning,
            on_status=on_status,
        )
        self.cluster.status.total = len(run.jobs)

    def describe(self) -> str:
        return self.cluster.describe()

    def __iter__(self) -> Iterator[VideoResult]:
        run, cluster = self.run, self.cluster
        todo: deque[Work] = deque()
        given: dict[Job, Job] = {}  # as sent to the workers -> as the user gave it
        try:
            for job in run.jobs:
                try:
                    early = check_finished(
                        job,
                        cluster.settings(job.source),
                        run.options.formats,
                        overwrite=run.batch.overwrite,
                    )
                except (SalcliError, OSError) as err:
                    early = failed_result(str(job.source), err)
                if early is None:
                    todo.append(Work(Job(_absolute(job.source), _absolute(job.out_dir))))
                    given[todo[-1].job] = job
                    continue
                cluster.count(early)
                yield early
            for work, result in cluster.results(todo):
                yield _as_given(result, work.job, given.pop(work.job))
        finally:
            self.close()

    def close(self) -> None:
        self.cluster.close()


def _absolute(path: Path) -> Path:
    """What a worker gets: its working folder is not the driver's (another machine)."""
    return Path(os.path.abspath(path))


def _as_given(result: VideoResult, sent: Job, job: Job) -> VideoResult:
    """``result`` of the job ``sent`` with the paths spelled as in ``job``, as a local
    run reports them."""

    def given(path: str) -> str:
        p = Path(path)
        if p == sent.out_dir or sent.out_dir in p.parents:
            return str(job.out_dir / p.relative_to(sent.out_dir))
        return path

    result.source = str(job.source)
    result.outputs = [given(p) for p in result.outputs]
    if result.error:
        result.error = result.error.replace(str(sent.source), str(job.source))
    return result


# --- evaluate's model on the cluster -----------------------------------------------------


class ClusterModel(ModelRun):
    """A model on the cluster as ``salcli evaluate`` runs it (a ``ModelRun``):
    ``iter_maps(frames, fps=, audio_path=)`` yields (index, map), here read back from
    the HDF5 stack (float32: the maps as computed) a worker wrote into ``maps_dir``.
    ``prepare`` hands the workers a split's videos ahead of the scoring
    (``AHEAD_PER_WORKER`` videos per worker at most waiting to be read).

    ``maps_dir`` None: a temporary folder (one machine only), each stack removed once
    read; given, the stacks and records stay, so a re-run skips the videos done."""

    def __init__(
        self,
        cluster: ClusterOptions,
        weights: str | Path | None,
        audio: bool,
        maps_dir: str | Path | None,
        *,
        options: PredictOptions | None = None,
        on_warning: Callable[[str], None] | None = None,
    ):
        options = (options or PredictOptions()).replace(
            weights=None if weights is None else str(weights),
            audio=audio,
            formats=("h5",),
            h5_dtype="float32",
        )
        self.cluster = Cluster(cluster, options, on_warning=on_warning)
        self._temporary = maps_dir is None
        try:
            if self._temporary:
                nodes = [n for n in self.cluster.ray.nodes() if n.get("Alive")]
                if len(nodes) > 1:
                    raise UsageError(
                        f"{{ray}}: the cluster has {len(nodes)} machines: {{maps_dir}} must "
                        "name a folder they all can write (the maps pass through it)",
                        options=("ray", "maps_dir"),
                    )
                maps_dir = tempfile.mkdtemp(prefix="salcli-maps-")
        except BaseException:
            self.cluster.close()
            raise
        self.maps_dir = Path(maps_dir)
        info = self.cluster.info
        self.weights_path = info["weights"] or None
        self.family, self.variant = family_of(info["variant"])
        self.label = self.variant.label
        self.family_label = self.family.label
        self.warmup = info.get("warmup")
        # a published warm-up leaves the first frames its procedure never maps unscored
        self.unmapped = published_unmapped(self.family, self.warmup)
        self._queue: deque[Work] = deque()
        self._works: dict[Path, Work] = {}
        self._results: dict[Path, VideoResult] = {}
        self._stream: Iterator[tuple[Work, VideoResult]] | None = None

    def prepare(self, videos: Iterable[tuple[Path, float | None, Path | None]]) -> None:
        """Queue (frames, fps, audio) for the workers, in the order they will be read."""
        for frames, fps, audio in videos:
            key = Path(frames)
            if key not in self._works:
                work = Work(Job(key, self.maps_dir), fps=fps, audio_path=audio)
                self._works[key] = work
                self._queue.append(work)

    def _may_submit(self) -> bool:
        return len(self._results) < AHEAD_PER_WORKER * self.cluster.size

    def _result(self, key: Path) -> VideoResult:
        while key not in self._results:
            if self._stream is None:
                self._stream = self.cluster.results(self._queue, may_submit=self._may_submit)
            try:
                work, result = next(self._stream)
            except StopIteration:
                self._stream = None
                if not self._queue:
                    raise ClusterError(f"{key}: lost on the cluster") from None
                continue
            self._results[Path(work.job.source)] = result
        return self._results.pop(key)

    def iter_maps(
        self, frames: str | Path, *, fps: float | None = None, audio_path: str | Path | None = None
    ) -> Iterator[tuple[int, Any]]:
        key = Path(frames)
        self.prepare([(key, fps, None if audio_path is None else Path(audio_path))])
        result = self._result(key)
        work = self._works.pop(key)
        if result.status == "failed":
            raise InputError(result.error or f"{key}: failed on the cluster")
        stack = output_paths("h5", work.job.out_dir, work.job.stem)[0]
        try:
            yield from h5_maps(stack, H5_DATASET, whole_file=True)  # a one-video stack
        finally:
            if self._temporary:
                stack.unlink(missing_ok=True)
                remove_record(work.job.out_dir, work.job.stem)

    def close(self) -> None:
        self.cluster.close()
        if self._temporary:
            import shutil

            shutil.rmtree(self.maps_dir, ignore_errors=True)


def model_source(
    cluster: ClusterOptions,
    maps_dir: str | Path | None = None,
    *,
    options: PredictOptions | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Callable[..., ModelSource]:
    """``salcli.evaluation.evaluate.evaluate``'s ``model_source``: each model (one, or one
    per split) a ``ClusterModel`` behind a ``ModelSource``; a split's maps go to
    ``maps_dir/split<name>`` when each split has its own model. ``options``: how the
    workers run the model [default: as evaluate runs it, ``PredictOptions()``]."""

    def make(
        weights: str | Path | None, audio: bool, fps: float | None, split: str | None, **run: Any
    ) -> ModelSource:
        where = None
        if maps_dir is not None:
            where = Path(maps_dir) / f"split{split}" if split is not None else Path(maps_dir)
        # ``run``: evaluate's own model options (--warmup, --precision)
        opts = (options or PredictOptions()).replace(**run) if run else options
        model = ClusterModel(cluster, weights, audio, where, options=opts, on_warning=on_warning)
        return ModelSource(model, audio=audio, fps=fps)

    return make


__all__ = [
    "Cluster",
    "ClusterBatch",
    "ClusterModel",
    "ClusterStatus",
    "VideoWorker",
    "Work",
    "connect",
    "import_ray",
    "model_source",
    "session",
]
