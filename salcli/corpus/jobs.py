"""One video of a corpus, shared by local runs (``salcli.corpus.local``) and the workers of
``salcli.corpus.cluster``: is it finished (its completion record, ``salcli.media.records``),
its claim (``salcli.corpus.claims``: no two runs compute it at once), the temporaries
dead runs left of it, and its prediction, with a failure returned as a result rather
than raised (``run_claimed`` puts these together).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from salcli.corpus.claims import Claim, ClaimInfo, ClaimLost, Claims, live_claim
from salcli.corpus.inputs import Job
from salcli.errors import OutputError, SalcliError, escape, one_line, os_reason, spell
from salcli.files import kill_point
from salcli.identity import me
from salcli.inference.predictor import Predictor, VideoResult
from salcli.media.records import (
    PREDICT_NAMING,
    Naming,
    StaleTemps,
    clean_stale_temps,
    is_complete,
    other_source,
    read_record,
    same_source,
    settings_changed,
)

Progress = Callable[[int, int | None], None]  # (maps done, maps in all or None)


def check_finished(
    job: Job,
    settings: dict[str, Any],
    formats: Sequence[str],
    *,
    overwrite: bool = False,
    naming: Naming = PREDICT_NAMING,
) -> VideoResult | None:
    """A "skipped" result when ``job`` is finished with ``settings`` (those of the
    predictor that would redo it, ``Predictor.settings``) in every format of
    ``formats``; None when it is to be done. Raises an OutputError when its outputs
    must not be touched without ``overwrite``: made from the same source with other
    settings, or from another source."""

    if overwrite:
        return None
    rec = read_record(job.out_dir, job.stem)
    if rec is None:
        return None
    if same_source(rec, job.source):
        changed = settings_changed(rec, settings)
        if changed:
            raise OutputError(
                f"{escape(str(job.out_dir / job.stem))}*: made with another "
                f"{', '.join(changed)}; {{overwrite}} redoes them, or choose another output "
                "folder",
                options=("overwrite",),
            )
        if is_complete(job.out_dir, job.stem, formats, job.source, naming):
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
        f"{escape(str(job.out_dir / job.stem))}*: these outputs belong to {escape(str(owner))}; "
        "choose another output folder (or {overwrite} to replace them)",
        options=("overwrite",),
    )


def claimed_result(job: Job, info: ClaimInfo) -> VideoResult:
    """A "claimed" result: ``job`` is being computed by ``info``'s holder."""
    return VideoResult(source=str(job.source), status="claimed", holder=info.as_dict())


def run_claimed(
    predictor: Predictor,
    job: Job,
    formats: Sequence[str],
    claims: Claims,
    *,
    overwrite: bool = False,
    sweeper: StaleTemps | None = None,
    fps: float | None = None,
    audio_path: str | Path | None = None,
    progress: Progress | None = None,
    met: str | None = None,
) -> VideoResult:
    """One video end to end under its claim: finished already (skipped without a
    claim), claimed by a live run ("claimed"), or claimed here, its dead runs'
    temporaries swept, checked again and predicted; the claim is released with the
    record or the failure. ``met``: the id of the run whose claim this run met on it
    before (a video it comes back to): what that run made is not redone, even with
    ``overwrite``."""
    try:
        settings = predictor.settings(job.source, fps=fps)
        early = None if overwrite else check_finished(job, settings, formats)
    except (SalcliError, OSError) as err:
        return failed_result(str(job.source), err)
    if early is not None:
        claims.clear_stale(job.out_dir, job.stem)  # a run that died before its release
        return early
    try:
        got = claims.acquire(job.out_dir, job.stem, str(job.source))
    except (SalcliError, OSError) as err:
        return failed_result(str(job.source), err)
    if isinstance(got, ClaimInfo):
        return claimed_result(job, got)
    result: VideoResult | None = None
    try:
        kill_point("claimed", job.stem)
        if overwrite and met is not None:
            rec = read_record(job.out_dir, job.stem)
            overwrite = not (rec is not None and rec.get("run") == met)
        sweeper = sweeper or StaleTemps(claims.lease_s)
        early = prepare_job(
            predictor,
            job,
            formats,
            overwrite=overwrite,
            sweep=lambda d, s: sweeper.clean(d, s, fresh=got.taken_over is not None),
            fps=fps,
        )
        result = early or _predict_claimed(
            predictor, job, formats, claims, got, fps=fps, audio_path=audio_path,
            progress=progress,
        )  # fmt: skip
        return result
    except ClaimLost:
        result = None
        holder = live_claim(job.out_dir, job.stem, claims.lease_s)
        if holder is None:
            return failed_result(str(job.source), "its claim was taken over by another run")
        return claimed_result(job, holder)
    finally:
        claims.release(got, keep_folders=result is not None and result.status != "failed")


def _predict_claimed(
    predictor: Predictor,
    job: Job,
    formats: Sequence[str],
    claims: Claims,
    claim: Claim,
    *,
    fps: float | None,
    audio_path: str | Path | None,
    progress: Progress | None,
) -> VideoResult:
    """``predict_job`` under ``claim``: checked at each map (the heartbeat's finding)
    and read again before the outputs and the record replace anything."""

    def each_map(done: int, total: int | None) -> None:
        claims.check(claim)
        kill_point(f"map{done}", job.stem)
        if progress is not None:
            progress(done, total)

    def commit(stage: str) -> None:
        claims.verify(claim)
        kill_point(stage, job.stem)

    result = predict_job(
        predictor, job, formats, progress=each_map, fps=fps, audio_path=audio_path,
        record_fields={"run": claims.run, "host": me().host}, commit=commit,
    )  # fmt: skip
    kill_point("release", job.stem)
    return result


def prepare_job(
    predictor: Predictor,
    job: Job,
    formats: Sequence[str],
    *,
    overwrite: bool = False,
    sweep: Callable[[Path, str], Any] | None = None,
    fps: float | None = None,
) -> VideoResult | None:
    """Before a video is predicted: remove the temporaries killed runs left of it
    (``sweep(out_dir, stem)``, default ``records.clean_stale_temps``), then
    ``check_finished`` with the predictor's settings. A "skipped" or "failed" result,
    or None when the video is to be predicted."""
    try:
        (sweep or clean_stale_temps)(job.out_dir, job.stem)
        settings = predictor.settings(job.source, fps=fps)
        return check_finished(job, settings, formats, overwrite=overwrite)
    except (SalcliError, OSError) as err:
        return failed_result(str(job.source), err)


def predict_job(
    predictor: Predictor,
    job: Job,
    formats: Sequence[str],
    *,
    progress: Progress | None = None,
    fps: float | None = None,
    audio_path: str | Path | None = None,
    **write: Any,
) -> VideoResult:
    """``Predictor.write`` of one job (outputs, then its record; ``write``: its other
    keywords); a failure is returned as a "failed" result, never raised (BaseExceptions
    are: Ctrl-C and SIGTERM stop a batch, after ``write`` removed the partial outputs)."""
    source = str(job.source)
    try:
        return predictor.write(
            job.source, job.out_dir, formats, fps=fps, audio_path=audio_path, progress=progress,
            **write,
        )  # fmt: skip
    except (SalcliError, OSError, MemoryError) as err:
        return failed_result(source, err)
    except Exception as err:  # noqa: BLE001 - one video's bug must not stop the batch
        return failed_result(source, err, unexpected=True)


def failed_result(
    source: str, err: BaseException | str, *, unexpected: bool = False
) -> VideoResult:
    """A "failed" result for ``source``: the error's one line (or ``err`` itself, a
    line), naming the source."""
    options: tuple[str, ...] = ()
    if isinstance(err, str):
        template = escape(err)
    elif isinstance(err, MemoryError):
        template = "out of memory"
    elif isinstance(err, OSError):
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        template = escape(f"{where}{os_reason(err)}")
    elif unexpected:
        template = escape(f"unexpected {type(err).__name__}: {one_line(err)}")
    elif isinstance(err, SalcliError):
        template, options = err.template, err.options
    else:
        template = escape(str(err))
    if source not in spell(template, options):
        template = f"{escape(source)}: {template}"
    return VideoResult(
        source=source,
        status="failed",
        error=spell(template, options),
        error_template=template,
        error_options=options,
    )
