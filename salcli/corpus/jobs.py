"""One video of a corpus, shared by local runs (``salcli.corpus.local``) and the workers of
``salcli.corpus.cluster``: is it finished (its completion record, ``salcli.media.records``),
the temporaries killed runs left of it, and its prediction, with a failure returned as a
result rather than raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from salcli.corpus.inputs import Job
from salcli.errors import OutputError, SalcliError, escape, one_line, os_reason, spell
from salcli.inference.predictor import Predictor, VideoResult
from salcli.media.records import (
    PREDICT_NAMING,
    Naming,
    clean_stale_temps,
    is_complete,
    other_source,
    read_record,
    same_source,
    settings_changed,
)


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
