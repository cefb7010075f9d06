"""Many videos on a Ray cluster: ``salcli predict … --ray ADDRESS``.

- the workers (``salcli.corpus.workers``): one ``Predictor`` each, one video at a time,
  with a local batch's code; one worker per GPU (``num_gpus``), or per
  ``cpus_per_worker`` CPUs where the cluster has none;
- the driver (``Cluster``) keeps one video in flight per worker and collects the results
  with ``ray.wait``: a worker that dies mid-video is restarted by Ray (``max_restarts``)
  and the video retried on the new process (``max_task_retries``, ``VIDEO_RETRIES``
  times), then reported failed; the other workers go on;
- ``ClusterBatch``: a batch (``salcli.corpus.local.BatchRun``'s inputs, shard and record
  checks on the driver) run on the workers. ``salcli evaluate --ray`` runs its model on
  them too (``salcli.evaluation.cluster``).

Workers claim each video (``salcli.corpus.claims``), as local runs do: two Ray runs, or a
Ray run beside local ones, compute each video once. A video another run holds comes back
to the driver "claimed"; after the list the driver sends it again once its claim is gone
(finished: skipped; its holder failed or died: done here), or, with ``wait`` off, reports
it "claimed". The claim and temporaries of a worker that was killed are taken over by the
next attempt at that video: its process is gone (same host), or its heartbeat is older
than the lease (another host).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salcli.corpus.claims import Claims, live_claim
from salcli.corpus.connection import connect, disconnect, import_ray
from salcli.corpus.inputs import Job
from salcli.corpus.jobs import check_finished, failed_result
from salcli.corpus.workers import VIDEO_RETRIES, Work, _actor_class, _error_from
from salcli.defaults import DEFAULT_LEASE_S
from salcli.errors import (
    ClusterError,
    SalcliError,
    one_line,
)
from salcli.inference.predictor import VideoResult
from salcli.options import ClusterOptions, PredictOptions
from salcli.testing import FAULT_ENV

POLL_S = 0.5  # seconds between looks at the cluster (signals, progress) while waiting
CLAIM_POLL_S = 2.0  # seconds between looks at videos other runs hold, while waiting
STOP_GRACE_S = 10.0  # seconds stopped workers get to remove their partial outputs


# --- the driver ---------------------------------------------------------------------------


@dataclass
class ClusterStatus:
    """Where a cluster run stands (``on_status``): videos by state, maps written."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    claimed: int = 0  # left to other runs (without wait)
    running: int = 0
    workers: int = 0
    maps: int = 0  # maps (frames) of the videos done
    started: float = 0.0  # time.perf_counter() when the workers were asked for

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.failed + self.claimed


class Cluster:
    """Workers on the cluster at ``cluster.ray`` (connected here unless the process is
    already), each a ``VideoWorker`` with ``options``. ``results(works)`` runs videos on
    them; ``close()`` stops what runs, ends the workers and the connection it made.

    Raises, before any video: the install hint without Ray (UsageError), a ClusterError
    when the cluster cannot be reached or no worker fits, the workers' start-up error (a
    bad option, missing weights: the error and exit code of a local run). ``run`` and
    ``lease``: the claims the workers make (the run's id, ``salcli.corpus.claims``)."""

    def __init__(
        self,
        cluster: ClusterOptions,
        options: PredictOptions,
        *,
        overwrite: bool = False,
        run: str | None = None,
        lease: float = DEFAULT_LEASE_S,
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
        self.claiming = {"run": run, "lease": lease}
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
        if options.weights:  # a file here (each of an ensemble's): the same path there
            options = options.replace(weights=_absolute_weights(options.weights))
        if not g and options.device == "auto":
            options = options.replace(device="cpu")  # a worker without a GPU uses none
        self.each, self.size = each, n
        actor = _actor_class().options(num_cpus=c, num_gpus=g)
        fault = os.environ.get(FAULT_ENV) or None
        for _ in range(n):
            a = actor.remote(options, overwrite=overwrite, threads=c, fault=fault,
                             **self.claiming)  # fmt: skip
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
                if result.status != "claimed":  # counted once the run gives up on it
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
        elif result.status == "claimed":
            s.claimed += 1
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
            run=run.run_id,
            lease=run.batch.lease,
            on_warning=on_warning,
            on_status=on_status,
        )
        self.cluster.status.total = len(run.jobs)
        self.claims = Claims(run.run_id, run.batch.lease)  # the driver's: stale ones cleared

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
                if early.status == "skipped":  # a run that died before its release
                    self.claims.clear_stale(job.out_dir, job.stem)
                cluster.count(early)
                yield early
            later: list[tuple[Work, VideoResult]] = []  # left to other runs, for now
            for work, result in cluster.results(todo):
                if result.status == "claimed":
                    later.append((work, result))
                else:
                    yield _as_given(result, work.job, given[work.job])
            for work, result in self._come_back(later):
                yield _as_given(result, work.job, given[work.job])
        finally:
            self.close()

    def _come_back(
        self, later: list[tuple[Work, VideoResult]]
    ) -> Iterator[tuple[Work, VideoResult]]:
        """The videos of ``later`` (left to other runs) sent again once their claim is
        gone; with ``wait`` until none is left, without it once (those still claimed are
        reported so)."""
        lease = self.run.batch.lease
        while later:
            held = [live_claim(w.job.out_dir, w.job.stem, lease) is not None for w, _ in later]
            free = [item for item, busy in zip(later, held, strict=True) if not busy]
            later = [item for item, busy in zip(later, held, strict=True) if busy]
            if not free and not self.run.batch.wait:
                for work, result in later:
                    self.cluster.count(result)
                    yield work, result
                return
            if not free:
                wait_for_claims()
                continue
            again = deque(Work(w.job, w.fps, w.audio_path, met=(r.holder or {}).get("run"))
                          for w, r in free)  # fmt: skip
            for work, result in self.cluster.results(again):
                if result.status == "claimed":
                    later.append((work, result))
                else:
                    yield work, result

    def close(self) -> None:
        self.cluster.close()
        self.claims.close()


def wait_for_claims() -> None:
    """The pause between looks at videos other runs hold (the tests' seam)."""
    time.sleep(CLAIM_POLL_S)


def _absolute(path: Path) -> Path:
    """What a worker gets: its working folder is not the driver's (another machine)."""
    return Path(os.path.abspath(path))


def _absolute_weights(weights: str | tuple[str, ...]) -> str | tuple[str, ...]:
    """``weights`` (one, or an ensemble's) with each file found here made absolute;
    names (registry, weights folders) as they are."""
    if isinstance(weights, tuple):
        return tuple(str(_absolute_weights(w)) for w in weights)
    path = Path(weights).expanduser()
    return str(_absolute(path)) if path.is_file() else weights


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
