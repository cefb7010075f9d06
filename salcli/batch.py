"""Many videos: expand the inputs, skip what is finished, resume what is not, shard.

    >>> import salcli
    >>> for result in salcli.predict_many(["corpus/"], "out/", recursive=True, formats="h5"):
    ...     print(result.status, result.source)

``predict_many`` yields one ``VideoResult`` per video (done / skipped / failed, the
fields of ``salcli predict --jsonl``). The policy is that of the CLI, which is a thin
layer over this module:

- inputs and output folders: ``salcli.inputs`` (folders mirrored below the output
  folder, ``-`` for paths on stdin, ``shard=(K, N)`` or ``"K/N"``);
- a video whose completion record (``salcli.records``) matches its source and the
  settings that shape the maps, and whose outputs all exist, is skipped; one made from
  the same source with other settings fails with a line suggesting ``overwrite``;
  outputs that belong to another source are never overwritten silently;
- temporaries of killed runs are removed before a video is redone;
- one video's failure is a result, never an exception: the batch goes on (Ctrl-C and
  SIGTERM stop it, after the current video's partial outputs are removed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from .decode import Warn
from .errors import OutputError, SalcliError, one_line, os_reason
from .inputs import Job, expand_inputs, select_shard
from .options import split_options
from .predict import Predictor, VideoResult

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
        from .defaults import DEFAULT_OUTPUT_SUBDIR

        self.batch, self.options = split_options(options)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.all_jobs: list[Job] = expand_inputs(
            [str(i) for i in inputs],
            self.output_dir,
            recursive=self.batch.recursive,
            pattern=self.batch.glob,
            default_subdir=DEFAULT_OUTPUT_SUBDIR,
            stdin=stdin,
        )
        self.jobs = select_shard(self.all_jobs, self.batch.shard)
        self._predictor = predictor
        self._warn = on_warning
        self._progress = progress

    @property
    def predictor(self) -> Predictor:
        if self._predictor is None:
            self._predictor = Predictor(options=self.options, on_warning=self._warn)
        return self._predictor

    def __iter__(self) -> Iterator[VideoResult]:
        from .records import StaleTemps

        if not self.jobs:
            return
        predictor = self.predictor
        sweeper = StaleTemps()
        for job in self.jobs:
            yield self.run_one(predictor, job, sweeper)

    def run_one(self, predictor: Predictor, job: Job, sweeper) -> VideoResult:
        """Skip, or predict and record, one job; a failure is returned, never raised
        (Ctrl-C and SIGTERM are: they stop the batch)."""
        opts = self.options
        early = prepare_job(
            predictor, job, opts.formats, overwrite=self.batch.overwrite, sweep=sweeper.clean
        )
        if early is not None:
            return early
        hooks = self._progress(job.stem) if self._progress else None
        try:
            return predict_job(predictor, job, opts.formats, progress=hooks[0] if hooks else None)
        finally:
            if hooks:
                hooks[1]()


# --- one job: shared by the local batch and the workers of salcli.cluster -------------


def check_finished(
    job: Job, settings: dict[str, Any], formats: Sequence[str], *, overwrite: bool = False
) -> VideoResult | None:
    """A "skipped" result when ``job`` is finished with ``settings`` (those of the
    predictor that would redo it, ``Predictor.settings``) in every format of
    ``formats``; None when it is to be done. Raises an OutputError when its outputs
    must not be touched without ``overwrite``: made from the same source with other
    settings, or from another source."""
    from .records import is_complete, other_source, read_record, same_source, settings_changed

    if overwrite:
        return None
    rec = read_record(job.out_dir, job.stem)
    if rec is None:
        return None
    if same_source(rec, job.source):
        changed = settings_changed(rec, settings)
        if changed:
            raise OutputError(
                f"{job.out_dir / job.stem}*: made with another {', '.join(changed)}; "
                "overwrite (--overwrite) redoes them, or choose another output folder"
            )
        if is_complete(job.out_dir, job.stem, formats, job.source):
            return VideoResult(
                source=str(job.source),
                status="skipped",
                frames=int(rec.get("frames") or 0),
                fps=float(rec.get("fps") or 0.0),
                outputs=[str(p) for p in rec.get("outputs", [])],
            )
        return None
    owner = other_source(job.out_dir, job.stem, job.source)
    raise OutputError(
        f"{job.out_dir / job.stem}*: these outputs belong to {owner}; choose another "
        "output folder (or overwrite, --overwrite, to replace them)"
    )


def prepare_job(
    predictor: Predictor,
    job: Job,
    formats: Sequence[str],
    *,
    overwrite: bool = False,
    sweep: Callable[[Path, str], Any] | None = None,
) -> VideoResult | None:
    """Before a video is predicted: remove the temporaries killed runs left of it
    (``sweep(out_dir, stem)``, default ``records.clean_stale_temps``), then
    ``check_finished`` with the predictor's settings. A "skipped" or "failed" result,
    or None when the video is to be predicted."""
    from .records import clean_stale_temps

    try:
        (sweep or clean_stale_temps)(job.out_dir, job.stem)
        return check_finished(job, predictor.settings(job.source), formats, overwrite=overwrite)
    except (SalcliError, OSError) as err:
        return failed_result(str(job.source), err)


def predict_job(
    predictor: Predictor,
    job: Job,
    formats: Sequence[str],
    *,
    progress: Callable[[int, int | None], None] | None = None,
    fps: float | None = None,
    audio_path: str | Path | None = None,
) -> VideoResult:
    """``Predictor.write`` of one job (outputs, then its record); a failure is returned
    as a "failed" result, never raised (BaseExceptions are: Ctrl-C and SIGTERM stop a
    batch, after ``write`` removed the partial outputs)."""
    source = str(job.source)
    try:
        return predictor.write(
            job.source, job.out_dir, formats, fps=fps, audio_path=audio_path, progress=progress
        )
    except (SalcliError, OSError, MemoryError) as err:
        return failed_result(source, err)
    except Exception as err:  # noqa: BLE001 - one video's bug must not stop the batch
        return failed_result(source, err, unexpected=True)


def predict_many(
    inputs: Iterable[str | Path], output_dir: str | Path | None = None, **options: Any
) -> Iterator[VideoResult]:
    """Predict every video of ``inputs`` (files, folders, ``-`` for stdin) into
    ``output_dir``; one ``VideoResult`` per video, in order (see the module docstring).

    ``options``: those of ``salcli.options.BatchOptions`` (``recursive``, ``glob``,
    ``overwrite``, ``shard``) and ``PredictOptions`` (``weights``, ``formats``,
    ``audio``, ``precision``, ...), plus ``BatchRun``'s ``predictor``, ``on_warning``,
    ``progress`` and ``stdin``. With ``ray`` (and the other ``ClusterOptions``: ``workers``,
    ``gpus_per_worker``, ``cpus_per_worker``) the videos run on a Ray cluster
    (``salcli.cluster``); results then come as videos finish.
    """
    from .options import split_cluster

    cluster, options = split_cluster(options)
    if cluster is not None:  # ray=ADDRESS: on a Ray cluster (salcli.cluster, the extra)
        from .cluster import predict_on_cluster

        return predict_on_cluster(inputs, output_dir, cluster, **options)
    return iter(BatchRun(inputs, output_dir, **options))


def failed_result(
    source: str, err: BaseException | str, *, unexpected: bool = False
) -> VideoResult:
    """A "failed" result for ``source``: the error's one line (or ``err`` itself, a
    line), naming the source."""
    if isinstance(err, str):
        message = err
    elif isinstance(err, MemoryError):
        message = "out of memory"
    elif isinstance(err, OSError):
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        message = f"{where}{os_reason(err)}"
    elif unexpected:
        message = f"unexpected {type(err).__name__}: {one_line(err)}"
    else:
        message = str(err)
    if source not in message:
        message = f"{source}: {message}"
    return VideoResult(source=source, status="failed", error=message)
