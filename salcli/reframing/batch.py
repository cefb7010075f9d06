"""Many videos reframed: the inputs, outputs, skip, resume and shards of ``predict``
(``salcli.corpus``), with reframe's own output names.

- Outputs of a video are named ``<stem>_<aspect>`` (``talk_9x16.mp4``, ``.json``,
  ``_debug.mp4``), with the completion record ``talk_9x16.salcli.json``: outputs of
  several aspects share a folder, and never ``predict``'s.
- Where they go: ``-o OUT`` as for ``predict`` (input trees mirrored); without it, a file
  named on the command line gets its outputs beside it, and the videos found in a folder
  go to ``<folder>/reframed/`` (mirrored).
- ``maps_from`` a folder: each video's stack is looked for where ``predict -o
  maps_from`` put it (the same mirrored tree), ``<stem>.h5``.
- A finished video (record, same source and settings, every output there) is skipped;
  one video's failure is a result, the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from salcli.corpus.inputs import Job, expand_inputs, read_stdin_paths, select_shard
from salcli.corpus.jobs import check_finished, failed_result
from salcli.errors import SalcliError
from salcli.inference.predictor import VideoResult
from salcli.media.decode import Warn
from salcli.media.records import StaleTemps
from salcli.options import BatchOptions
from salcli.reframing.maps import MAPS_SUFFIX
from salcli.reframing.run import REFRAME_NAMING, Reframer, job_stem, split_reframe_options
from salcli.reframing.track import CropTrack

REFRAME_SUBDIR = "reframed"  # outputs of the videos found in a folder: <folder>/reframed/

Progress = Callable[[str], tuple[Callable[[int, int | None], None], Callable[[], None]] | None]


@dataclass(frozen=True)
class ReframeJob(Job):
    """A video, where its outputs go, their name and where its maps are read from."""

    name: str = ""  # <stem>_<aspect>
    maps: Path | None = None

    @property
    def stem(self) -> str:  # the record's and the outputs' name
        return self.name


@dataclass
class ReframeResult:
    """A video's result and, when done, its track."""

    result: VideoResult
    track: CropTrack | None = None

    def as_dict(self) -> dict:
        out = self.result.as_dict()
        if self.track is not None:
            out["saliency_kept"] = round(self.track.mean_kept(), 6)
            out["saliency_kept_worst_shot"] = round(self.track.worst_shot().kept, 6)
            out["shots"] = [s.decision for s in self.track.shots]
        return out


def _split_batch(options: dict[str, Any]) -> tuple[BatchOptions, dict[str, Any]]:
    from dataclasses import fields

    names = {f.name for f in fields(BatchOptions)}
    batch = BatchOptions(**{k: v for k, v in options.items() if k in names})
    return batch, {k: v for k, v in options.items() if k not in names}


class ReframeRun:
    """The jobs of a batch (``jobs``: after the shard; ``all_jobs``: before) and, iterated,
    their ``ReframeResult``s. Options: ``BatchOptions``, ``ReframeOptions`` and
    ``PredictOptions`` (the model's) by name."""

    def __init__(
        self,
        inputs: Iterable[str | Path],
        output_dir: str | Path | None = None,
        *,
        on_warning: Warn | None = None,
        progress: Progress | None = None,
        stdin: TextIO | None = None,
        predictor=None,
        **options: Any,
    ):
        self.batch, rest = _split_batch(options)
        self.options, predict = split_reframe_options(rest)
        self.reframer = Reframer(self.options, predict, on_warning=on_warning,
                                 predictor=predictor)  # fmt: skip
        raw: list[str] = []
        for item in inputs:
            raw.extend(read_stdin_paths(stdin) if str(item) == "-" else [str(item)])
        out = None if output_dir is None else Path(output_dir)
        self.all_jobs = self._jobs(raw, out)
        self.jobs = select_shard(self.all_jobs, self.batch.shard)
        self._progress = progress

    def _expand(self, raw: list[str], out: Path | None) -> list[Job]:
        b = self.batch
        return expand_inputs(raw, out, recursive=b.recursive, pattern=b.glob,
                             default_subdir=REFRAME_SUBDIR)  # fmt: skip

    def _jobs(self, raw: list[str], out: Path | None) -> list[ReframeJob]:
        jobs = self._expand(raw, out)
        named = {Path(r).expanduser().absolute() for r in raw if Path(r).is_file()}
        maps_from = self.options.maps_from
        stacks: dict[Path, Path] = {}
        if maps_from is not None and maps_from.is_dir():  # predict -o maps_from's tree
            stacks = {j.source: j.out_dir / f"{j.stem}{MAPS_SUFFIX}"
                      for j in self._expand(raw, maps_from)}  # fmt: skip
        result = []
        for job in jobs:
            out_dir = job.out_dir
            if out is None and job.source.absolute() in named:
                out_dir = job.source.parent  # a file named by the user: beside it
            name = job_stem(job.source, self.options.aspect)
            maps = stacks.get(job.source) if stacks else None
            result.append(ReframeJob(job.source, out_dir, name=name, maps=maps))
        return result

    def __iter__(self) -> Iterator[ReframeResult]:
        sweeper = StaleTemps(naming=REFRAME_NAMING)
        if self.jobs and self.options.maps_from is None:
            self.reframer.predictor  # noqa: B018 - missing weights stop the batch here
        for job in self.jobs:
            yield self.run_one(job, sweeper)

    def run_one(self, job: ReframeJob, sweeper: StaleTemps) -> ReframeResult:
        """Skip, or reframe and record, one job; a failure is returned, never raised."""
        source = str(job.source)
        try:
            sweeper.clean(job.out_dir, job.stem)
            settings = self.reframer.settings(job.source, job.maps)
            early = check_finished(
                job, settings, self.options.formats, overwrite=self.batch.overwrite,
                naming=REFRAME_NAMING,
            )  # fmt: skip
        except (SalcliError, OSError) as err:
            return ReframeResult(failed_result(source, err))
        if early is not None:
            return ReframeResult(early)
        hooks = self._progress(job.stem) if self._progress else None
        try:
            result, track = self.reframer.write(
                job.source, job.out_dir, stem=job.stem, maps_path=job.maps,
                progress=hooks[0] if hooks else None,
            )  # fmt: skip
            return ReframeResult(result, track)
        except (SalcliError, OSError, MemoryError) as err:
            return ReframeResult(failed_result(source, err))
        except Exception as err:  # noqa: BLE001 - one video's bug must not stop the batch
            return ReframeResult(failed_result(source, err, unexpected=True))
        finally:
            if hooks:
                hooks[1]()


def reframe_many(
    inputs: Iterable[str | Path], output_dir: str | Path | None = None, **options: Any
) -> Iterator[ReframeResult]:
    """Reframe every video of ``inputs`` (files, folders, ``-``); one ``ReframeResult``
    per video, in order (see the module docstring and ``ReframeRun``)."""
    return iter(ReframeRun(inputs, output_dir, **options))
