"""``salcli evaluate --ray``: the model of an evaluation run on a Ray cluster's workers
(``salcli.corpus.cluster``), its maps passing through HDF5 stacks in a folder every worker
can write."""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from salcli.corpus import cluster as corpus_cluster
from salcli.corpus.cluster import Cluster
from salcli.corpus.inputs import Job
from salcli.corpus.workers import Work
from salcli.errors import (
    ClusterError,
    InputError,
    UsageError,
)
from salcli.evaluation.sources import (
    H5_DATASET,
    ModelRun,
    ModelSource,
    h5_maps,
    members_facts,
)
from salcli.inference.predictor import VideoResult
from salcli.media.records import remove_record
from salcli.media.writers import output_paths
from salcli.models.registry import family_of
from salcli.options import ClusterOptions, PredictOptions

AHEAD_PER_WORKER = 2  # evaluate: videos predicted ahead of the scoring, per worker


class ClusterModel(ModelRun):
    """A model on the cluster as ``salcli evaluate`` runs it (a ``ModelRun``):
    ``iter_maps(frames, fps=, audio_path=)`` yields (index, map), here read back from
    the HDF5 stack (float32: the maps as computed) a worker wrote into ``maps_dir``.
    ``prepare`` hands the workers a split's videos ahead of the scoring
    (``AHEAD_PER_WORKER`` videos per worker at most waiting to be read).

    ``maps_dir`` None: a temporary folder (one machine only), each stack removed once
    read; given, the stacks and records stay, so a re-run skips the videos done, and
    runs sharing it compute each video once (the workers' claims: a video another run
    holds is waited for and read when its holder has written it)."""

    def __init__(
        self,
        cluster: ClusterOptions,
        weights: str | Path | tuple[str, ...] | None,
        audio: bool,
        maps_dir: str | Path | None,
        *,
        options: PredictOptions | None = None,
        on_warning: Callable[[str], None] | None = None,
    ):
        options = (options or PredictOptions()).replace(
            weights=weights,  # PredictOptions takes one or an ensemble's
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
        self.label = info["label"]
        self.warmup = info.get("warmup")
        # a published warm-up leaves the first frames its procedure never maps unscored
        members = [(family_of(m["variant"])[0], m["warmup"]) for m in info["members"]]
        self.family_label, self.unmapped = members_facts(members)
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
            if result.status == "claimed":  # another run computes these maps: wait for them
                corpus_cluster.wait_for_claims()
                self._queue.append(work)
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
