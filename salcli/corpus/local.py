"""Many videos: expand the inputs, skip what is finished, resume what is not, shard.

    >>> import salcli
    >>> for result in salcli.predict_many(["corpus/"], "out/", recursive=True, formats="h5"):
    ...     print(result.status, result.source)

``predict_many`` yields one ``VideoResult`` per video (done / skipped / failed, the
fields of ``salcli predict --jsonl``). The policy is that of the CLI, which is a thin
layer over this module:

- inputs and output folders: ``salcli.corpus.inputs`` (folders mirrored below the output
  folder, ``-`` for paths on stdin, ``shard=(K, N)`` or ``"K/N"``);
- a video whose completion record (``salcli.media.records``) matches its source and the
  settings that shape the maps, and whose outputs all exist, is skipped; one made from
  the same source with other settings fails with a line suggesting ``overwrite``;
  outputs that belong to another source are never overwritten silently;
- each video is claimed before any work on it (``salcli.corpus.claims``), so runs that
  overlap (several processes, shards, Ray runs) compute it once; a video claimed by a
  live run is left to it and come back to after the list: with ``wait`` (the default)
  the run waits until its holder finishes it (skipped), fails it or dies (then it is
  done here), without ``wait`` it is reported "claimed";
- temporaries of dead runs are removed before a video is redone;
- one video's failure is a result, never an exception: the batch goes on (Ctrl-C and
  SIGTERM stop it, after the current video's partial outputs are removed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from salcli.corpus.claims import Claims, new_run_id
from salcli.corpus.cluster import ClusterBatch
from salcli.corpus.inputs import Job, expand_inputs, select_shard
from salcli.corpus.jobs import run_claimed
from salcli.defaults import DEFAULT_OUTPUT_SUBDIR
from salcli.errors import UsageError
from salcli.inference.predictor import Predictor, VideoResult
from salcli.media.decode import Warn
from salcli.media.records import StaleTemps
from salcli.options import split_cluster, split_options

MAX_WAIT_POLL_S = 2.0  # s between looks at the videos left to other runs, at most

# progress(stem) -> (update(done, total), finish()) or None: a per-video progress display
Progress = Callable[[str], tuple[Callable[[int, int | None], None], Callable[[], None]] | None]


class BatchRun:
    """The jobs of a batch (``jobs``: after ``shard``; ``all_jobs``: before) and, when
    iterated, their results. The model is loaded on the first job, so an empty batch
    (an empty shard) loads nothing; a bad option or missing weights raise then, with
    the one-line error and exit code of ``salcli.errors``.

    ``predictor``: a ready ``Predictor`` to use instead of building one from
    ``options``. ``on_warning``: every warning, one line each. ``progress``: see
    ``Progress``. ``stdin``: where ``-`` reads paths from.
    """

    def __init__(
        self,
        inputs: Iterable[str | Path],
        output_dir: str | Path | None = None,
        *,
        predictor: Predictor | None = None,
        on_warning: Warn | None = None,
        progress: Progress | None = None,
        stdin: TextIO | None = None,
        **options: Any,
    ):
        self.batch, self.options = split_options(options)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.all_jobs: list[Job] = expand_inputs(
            [str(i) for i in inputs],
            self.output_dir,
            recursive=self.batch.recursive,
            images=self.batch.images,
            pattern=self.batch.glob,
            default_subdir=DEFAULT_OUTPUT_SUBDIR,
            stdin=stdin,
        )
        self.jobs = select_shard(self.all_jobs, self.batch.shard)
        self._predictor = predictor
        self._warn = on_warning
        self._progress = progress
        self.run_id = new_run_id()

    @property
    def predictor(self) -> Predictor:
        if self._predictor is None:
            self._predictor = Predictor(options=self.options, on_warning=self._warn)
        return self._predictor

    def __iter__(self) -> Iterator[VideoResult]:
        if not self.jobs:
            return
        predictor = self.predictor
        claims = Claims(self.run_id, self.batch.lease)
        sweeper = StaleTemps(claims.lease_s)
        later: list[tuple[Job, VideoResult]] = []  # left to other runs, for now
        try:
            for job in self.jobs:
                result = self.run_one(predictor, job, sweeper, claims)
                if result.status == "claimed":
                    later.append((job, result))
                else:
                    yield result
            yield from come_back(
                later,
                lambda job, met: self.run_one(predictor, job, sweeper, claims, met=met),
                wait=self.batch.wait,
                poll_s=min(MAX_WAIT_POLL_S, claims.heartbeat_s),
            )
        finally:
            claims.close()

    def run_one(
        self,
        predictor: Predictor,
        job: Job,
        sweeper: StaleTemps,
        claims: Claims,
        met: str | None = None,
    ) -> VideoResult:
        """Skip, leave to its holder, or claim, predict and record one job; a failure is
        returned, never raised (Ctrl-C and SIGTERM are: they stop the batch)."""
        hooks = self._progress(job.stem) if self._progress else None
        try:
            return run_claimed(
                predictor, job, self.options.formats, claims, overwrite=self.batch.overwrite,
                sweeper=sweeper, progress=hooks[0] if hooks else None, met=met,
            )  # fmt: skip
        finally:
            if hooks:
                hooks[1]()


def wait_for_claims(seconds: float) -> None:
    """The pause between looks at videos other runs hold (the tests' seam)."""
    time.sleep(seconds)


def come_back(
    later: list[tuple[Any, VideoResult]],
    again: Callable[[Any, str | None], VideoResult],
    *,
    wait: bool,
    poll_s: float,
) -> Iterator[VideoResult]:
    """The videos of ``later`` (each with its "claimed" result) tried ``again`` after
    the list, each until it is no longer claimed by a live run; with ``wait`` every
    ``poll_s`` seconds until none is, without one more time, those still claimed then
    reported as they are. ``again(item, run)``: ``run`` is the id of the run that held
    it (what that run made is not redone, even with ``overwrite``)."""
    while later:
        still = []
        for item, met in later:
            result = again(item, (met.holder or {}).get("run"))
            if result.status == "claimed":
                still.append((item, result))
            else:
                yield result
        later = still
        if not wait:
            yield from (result for _, result in later)
            return
        if later:
            wait_for_claims(poll_s)


def predict_many(
    inputs: Iterable[str | Path], output_dir: str | Path | None = None, **options: Any
) -> Iterator[VideoResult]:
    """Predict every video of ``inputs`` (files, folders, ``-`` for stdin) into
    ``output_dir``; one ``VideoResult`` per video, in order (see the module docstring).

    ``options``: those of ``salcli.options.BatchOptions`` (``recursive``, ``glob``,
    ``overwrite``, ``shard``) and ``PredictOptions`` (``weights``, ``formats``,
    ``audio``, ``precision``, ...), plus ``BatchRun``'s ``predictor``, ``on_warning``,
    ``progress`` and ``stdin``. With ``ray`` (and the other ``ClusterOptions``: ``workers``,
    ``gpus_per_worker``, ``cpus_per_worker``; ``on_status`` for the cluster's progress) the
    videos run on a Ray cluster (``salcli.corpus.cluster``); results then come as videos
    finish.
    """
    cluster, options = split_cluster(options)
    if cluster is None:
        return iter(BatchRun(inputs, output_dir, **options))
    if options.get("predictor") is not None:
        raise UsageError("a ready predictor cannot run on a Ray cluster: pass its options")
    on_status = options.pop("on_status", None)
    run = BatchRun(inputs, output_dir, **options)
    if not run.jobs:
        return iter(())
    return iter(
        ClusterBatch(run, cluster, on_warning=options.get("on_warning"), on_status=on_status)
    )
