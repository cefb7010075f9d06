"""Scoring saliency maps against a dataset's eye-tracking ground truth: ``evaluate``.

``evaluate(dataset, ...)`` scores, for every test video of a split, the maps of one
source (``salcli.evaluation.sources``): predictions on disk, the model itself, or a
centre baseline, with the metrics of :mod:`salcli.metrics`, following the dataset's
published protocol (``salcli.evaluation.protocols``: ``dhf1k``, ``av`` or ``ntire26``), and returns
an ``EvalResult`` (``salcli.evaluation.report``, which documents the JSON and CSV
documents written from it). The steps: the options are checked (``EvalOptions``), each
split gets its source, the splits are scored (``salcli.evaluation.scoring``), and the
report is built with the conventions the scores were computed under. A set whose
ground truth is videos (``ntire26``) is scored by ``salcli.evaluation.streamed``: bench.py's
metrics, ``jobs`` processes over its videos.

``skip_empty`` overrides the protocol's handling of frames without fixations. Frames
whose ground-truth files are missing are skipped and counted; a video with none at all
is reported (``on_warning``, ``EvalResult.unscored``). No frame is subsampled.

A ``{split}`` in ``weights`` (or ``predictions``) scores each split with its own
checkpoint (or predictions), the paper's protocol for the 3-split sets; a single-split
set (DIEM) then scores its one test list once per split 1-3. Several ``weights`` (a
tuple) score an ensemble (salcli.inference.ensemble), a ``{split}`` filled in each.

The model run takes ``warmup`` (and ``precision``) as ``salcli predict`` does. Under
``warmup="reference"`` a family whose published procedure gives its first frames no map
(``ModelFamily.published_unmapped``: STAViS, frames 1-8) has those frames left unscored,
as the published evaluation never reads them: ``evaluate("diem", audio=True,
weights="audiovisual_split{split}_save_60.pth", split="all", warmup="reference")`` is
the STAViS paper's protocol. Under ``mirror`` (the default) every frame is scored.

Errors name the options as this module spells them (``OptionError``, or a message with
``{name}`` fields): ``salcli evaluate`` prints them as its flags.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salcli import metrics as M
from salcli.defaults import PRECISIONS, WARMUP_POLICIES
from salcli.errors import DatasetError, OptionError, UsageError, WeightsError, escape
from salcli.evaluation import streamed
from salcli.evaluation.datasets import Dataset, VideoItem
from salcli.evaluation.protocols import (
    BENCH_DEFINITIONS,
    BENCH_EMPTY,
    BENCH_PAIRING,
    EMPTY_TEXT,
    KLD_NOTE,
    PROTOCOLS,
    RANDOM_STREAMS,
    Protocol,
    aggregation,
    unmapped_rule,
)
from salcli.evaluation.report import EvalResult, VideoScores
from salcli.evaluation.scoring import (
    Counts,
    EvalProgress,
    Scoring,
    Tracker,
    score_split,
    split_scores,
)
from salcli.evaluation.sources import (
    CenterSource,
    DiskSource,
    ModelRun,
    ModelSource,
    Source,
    as_model_run,
    make_predictor,
    weights_text,
)
from salcli.options import parse_weights

if TYPE_CHECKING:
    from salcli.inference.predictor import Predictor

DEFAULT_SEED = 0  # seed of every sampled metric and of the DHF1K "other" frames
SPLIT_PLACEHOLDER = "{split}"  # in weights / predictions: one per split
METRIC_ALIASES = {
    "auc_judd": "auc_j",
    "aucj": "auc_j",
    "auc-j": "auc_j",
    "s-auc": "sauc",
    "auc_shuffled": "sauc",
    "s_auc": "sauc",
    "auc_borji": "auc_b",
    "auc-b": "auc_b",
    "kl": "kld",
}


def parse_metrics(
    text: str | Sequence[str] | None, protocol: Protocol | None = None
) -> tuple[str, ...]:
    """``"cc,nss"`` -> ("cc", "nss"); None -> the default set (``protocol``'s). UsageError
    on unknowns, and on metrics ``protocol`` does not define."""
    if text is None:
        return protocol.metrics if protocol is not None else M.METRICS
    parts = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in parts:
        name = raw.strip().lower()
        if not name:
            continue
        name = METRIC_ALIASES.get(name, name)
        if name not in M.ALL_METRICS:
            raise UsageError(f"unknown metric {raw.strip()!r}; one of: {', '.join(M.ALL_METRICS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise OptionError("metrics", "names no metric")
    foreign = [m for m in out if protocol is not None and m not in protocol.offered]
    if foreign:
        raise OptionError(
            "metrics",
            f"{', '.join(foreign)}: not defined by the {protocol.name} protocol "
            f"(it offers {', '.join(protocol.offered)})",
        )
    return tuple(out)


Weights = str | Path | tuple[str, ...] | None  # one checkpoint, or an ensemble's


def _each(value: str | Path | tuple[str, ...]) -> tuple[str | Path, ...]:
    """The checkpoints of ``weights``: an ensemble's, or the one."""
    return value if isinstance(value, tuple) else (value,)


def per_split(value: Weights) -> bool:
    """Whether ``value`` (weights, one of an ensemble's, or predictions) holds the
    ``{split}`` placeholder."""
    return value is not None and any(SPLIT_PLACEHOLDER in str(v) for v in _each(value))


def fill_split(value: str | Path | tuple[str, ...], split: str) -> str | tuple[str, ...]:
    """``value`` with ``{split}`` replaced by the split's name (other braces untouched);
    an ensemble's weights, each of them."""
    if isinstance(value, tuple):
        return tuple(str(fill_split(v, split)) for v in value)
    return str(value).replace(SPLIT_PLACEHOLDER, split)


# --- options -----------------------------------------------------------------------


@dataclass(frozen=True)
class EvalOptions:
    """The options of one evaluation, checked when built (``OptionError`` / a
    ``UsageError`` naming the options). Exactly one source of maps: ``predictions``
    (folder / .h5), ``baseline="center"``, or the model: ``predictor`` (a salcli
    ``Predictor`` or a ``ModelRun``) if given, else ``predictor_factory(weights, audio,
    **model_options)`` (default ``make_predictor``), or ``model_source(weights, audio,
    fps, split, **model_options)``, a ``Source`` of the model's maps built elsewhere
    (``split`` None: one model for every split; ``salcli.evaluation.cluster.model_source``
    runs the model on a Ray cluster)."""

    root: str | Path | None = None  # the data root (default: datasets.default_root())
    split: str | None = None  # "1" | "2" | "3" | "all" | a split folder; None: the default
    predictions: str | Path | None = None
    weights: Weights = None  # a list or tuple of several: an ensemble
    audio: bool = False  # the model hears the dataset's wav
    baseline: str | None = None  # "center"
    metrics: str | Sequence[str] | None = None  # names or "cc,nss"; a tuple once built
    # (None: the protocol's default set, chosen when the dataset is known)
    seed: int = DEFAULT_SEED
    fps: float | None = None  # frame rate of the videos whose list gives none
    skip_empty: bool | None = None  # None: the protocol's convention
    warmup: str | None = None  # the model run's (None: the predictor's default)
    precision: str | None = None
    jobs: int | None = None  # processes scoring videos at once (ntire26); None: the CPUs, <= 4
    domain: str | None = None  # the model run's domain (UNISAL; None: its video default)
    predictor: Predictor | ModelRun | None = field(default=None, compare=False, repr=False)
    predictor_factory: Callable[..., Predictor | ModelRun] | None = field(
        default=None, compare=False, repr=False
    )
    model_source: Callable[..., Source] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.metrics is not None:
            object.__setattr__(self, "metrics", parse_metrics(self.metrics))
        jobs = self.jobs
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
            raise OptionError("jobs", f"must be a positive integer, not {jobs!r}")
        if isinstance(self.weights, list | tuple):  # several: an ensemble (one: that one)
            object.__setattr__(self, "weights", parse_weights(self.weights))
        if self.split is not None:
            object.__setattr__(self, "split", str(self.split))
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise OptionError("seed", f"must be a non-negative integer, not {seed!r}")
        self._check_sources()
        self._check_model_options()

    def _check_sources(self) -> None:
        """One source of maps, and only the options that apply to it."""
        baseline, predictions = self.baseline, self.predictions
        if baseline is not None and baseline != "center":
            raise OptionError("baseline", f"must be 'center', not {baseline!r}")
        if baseline and predictions is not None:
            raise UsageError(
                "{baseline} and {predictions} exclude each other",
                options=("baseline", "predictions"),
            )
        if (predictions is not None or baseline) and (self.weights is not None or self.audio):
            raise UsageError(
                "{weights} / {audio} run the model; they do not apply to {predictions}",
                options=("weights", "audio", "predictions"),
            )
        if self.model_source is not None and (
            self.predictor is not None or predictions is not None or baseline
        ):
            raise UsageError(
                "{model_source} runs the model; it does not apply to {predictions} / {baseline}",
                options=("model_source", "predictions", "baseline"),
            )
        if self.predictor is not None and per_split(self.weights):
            raise UsageError(
                "a {{split}} placeholder in the {weights} needs a model built per split",
                options=("weights",),
            )

    def _check_model_options(self) -> None:
        """Model options of known values, and only where the model runs here."""
        if self.warmup is not None and self.warmup not in WARMUP_POLICIES:
            raise OptionError(
                "warmup", f"{self.warmup!r}: choose from {', '.join(WARMUP_POLICIES)}"
            )
        if self.precision is not None and self.precision not in PRECISIONS:
            raise OptionError(
                "precision", f"{self.precision!r}: choose from {', '.join(PRECISIONS)}"
            )
        if self.model_options and (self.predictions is not None or self.baseline):
            raise UsageError(
                "{warmup} / {precision} / {domain} run the model; they do not apply to "
                "{predictions}",
                options=("warmup", "precision", "domain", "predictions"),
            )
        if self.model_options and self.predictor is not None:
            raise UsageError(
                "{warmup} / {precision} / {domain} are the given predictor's own",
                options=("warmup", "precision", "domain"),
            )

    @property
    def model_options(self) -> dict[str, Any]:
        """The options of the model run given (``warmup``, ``precision``, ``domain``)."""
        given = {"warmup": self.warmup, "precision": self.precision, "domain": self.domain}
        return {k: v for k, v in given.items() if v is not None}

    @property
    def templated(self) -> bool:
        """Whether each split has its own checkpoint or predictions (``{split}``)."""
        return per_split(self.weights) or per_split(self.predictions)


# --- sources per split -------------------------------------------------------------


@dataclass
class _SplitSources:
    """The source of each split: one shared by every split, or one per split."""

    make: Callable[[str], Source]  # split -> its source (a model: built when called)
    description: str | None  # how the conventions name them (None: a model per split,
    # named once the first is built)
    shared: Source | None = None  # the one source of every split


def _split_weights(
    template: str | tuple[str, ...], splits: Sequence[str]
) -> dict[str, str | tuple[str, ...]]:
    """Each split's checkpoint (an ensemble's: each member's); when a member's first is a
    file, every one of that member must be (checked before anything runs; registry names
    are left to the model's loader)."""
    names = {s: fill_split(template, s) for s in splits}
    for k, member in enumerate(_each(template)):
        files = [_each(names[s])[k] for s in splits]
        if Path(files[0]).expanduser().is_file():
            missing = [str(n) for n in files if not Path(n).expanduser().is_file()]
            if missing:
                raise WeightsError(
                    f"no checkpoint {escape(', '.join(missing))} for {{weights}} "
                    f"{escape(str(member))} (splits {', '.join(splits)})",
                    options=("weights",),
                )
    return names


def _run_options(opts: EvalOptions, protocol: Protocol) -> dict[str, Any]:
    """The options of the model run: evaluate's own, and, for a set of video files heard
    with their own soundtracks, silence for the videos that have none (their observers
    watched them in silence)."""
    run = dict(opts.model_options)
    if protocol.video_files and opts.audio:
        run["allow_silence"] = True
    return run


def _model(
    opts: EvalOptions, weights: str | Path | None, split: str | None, protocol: Protocol
) -> Source:
    """The model's source (``split``: that split's model; None: every split's)."""
    run_options = _run_options(opts, protocol)
    if opts.model_source is not None:
        return opts.model_source(weights, opts.audio, opts.fps, split, **run_options)
    factory = opts.predictor_factory or make_predictor
    run = as_model_run(factory(weights, opts.audio, **run_options))
    return ModelSource(run, audio=opts.audio, fps=opts.fps)


def _disk(path: str | Path, protocol: Protocol) -> DiskSource:
    """Predictions on disk, read as ``protocol`` reads them (bench.py: every channel)."""
    return DiskSource(path, channels="all" if protocol.video_files else "first")


def _sources(opts: EvalOptions, splits: Sequence[str], protocol: Protocol) -> _SplitSources:
    """Each split's source. Per-split predictions are all checked first; a per-split
    model is built when its split starts (one model in memory at a time)."""
    if opts.predictions is not None and per_split(opts.predictions):
        disk = {s: _disk(fill_split(opts.predictions, s), protocol) for s in splits}
        return _SplitSources(disk.__getitem__, f"predictions {opts.predictions}")
    if opts.weights is not None and per_split(opts.weights):
        template = opts.weights if isinstance(opts.weights, tuple) else str(opts.weights)
        names = _split_weights(template, splits)
        return _SplitSources(lambda split: _model(opts, names[split], split, protocol), None)
    shared: Source
    if opts.predictions is not None:
        shared = _disk(opts.predictions, protocol)
    elif opts.baseline:
        shared = CenterSource()
    elif opts.predictor is not None:
        shared = ModelSource(as_model_run(opts.predictor), audio=opts.audio, fps=opts.fps)
    else:
        shared = _model(opts, opts.weights, None, protocol)
    return _SplitSources(lambda split: shared, shared.description, shared)


# --- scoring the splits ------------------------------------------------------------


@dataclass
class _Scored:
    """What the splits gave."""

    videos: list[VideoScores] = field(default_factory=list)
    splits: dict[str, dict[str, float]] = field(default_factory=dict)  # each split's scores
    counts: Counts = field(default_factory=Counts)
    kinds: set[str] = field(default_factory=set)  # what the sources gave
    used: dict[str, str] = field(default_factory=dict)  # each split's source
    first: Source | None = None  # the first split's source


def _score_splits(
    items: dict[str, list[VideoItem]],
    sources: _SplitSources,
    scoring: Scoring,
    tracker: Tracker,
    jobs: int | None = None,
) -> _Scored:
    """Every split with its source; a split's own source is closed when it is done, the
    shared one at the end."""
    out = _Scored()
    try:
        for split, videos in items.items():
            source = sources.make(split)
            if out.first is None:
                out.first = source
            try:
                if scoring.protocol.video_files:
                    res = streamed.score_split(videos, source, scoring, tracker, out.counts, jobs)
                else:
                    res = score_split(videos, source, scoring, tracker, out.counts)
            finally:
                out.kinds |= source.kinds
                out.used[split] = source.description
                if sources.shared is None:
                    source.close()
            out.videos.extend(res)
            out.splits[split] = split_scores(scoring.protocol, res, scoring.metrics)
    finally:
        if sources.shared is not None:
            sources.shared.close()
    return out


# --- the report --------------------------------------------------------------------


def _conventions(
    ds: Dataset,
    splits: Sequence[str],
    opts: EvalOptions,
    scoring: Scoring,
    scored: _Scored,
    source: str | None,
) -> dict[str, Any]:
    """The conventions of the JSON document (see salcli.evaluation.report), in order."""
    if scoring.protocol.video_files:
        return _bench_conventions(scoring, scored, source)
    one_list = ds.name if len(ds.spec.splits) == 1 else None
    return {
        "aggregation": aggregation(scoring.protocol, len(splits), one_list),
        "sauc_negatives": scoring.protocol.sauc_negatives,
        "reading": scoring.protocol.reading,
        "resizing": scoring.protocol.resizing,
        **_source_facts(scored, source),
        "seed": opts.seed,
        "random_streams": RANDOM_STREAMS,
        "metrics": list(scoring.metrics),
        "auc_splits": M.AUC_SPLITS,
        "auc_step": M.AUC_STEP,
        "auc_judd_jitter": True,
        **_frame_facts(scoring, scored.counts, EMPTY_TEXT),
    }


def _source_facts(scored: _Scored, source: str | None) -> dict[str, Any]:
    """What the conventions say of the maps' source."""
    c, first = scored.counts, scored.first
    return {
        "frames_resized": c.resized,
        "predictions": " and ".join(sorted(scored.kinds)) if scored.kinds else "none",
        "source": source,
        "warmup": first.warmup if first is not None else None,
        "frames_unmapped": c.unmapped,
        "unmapped_rule": unmapped_rule(
            first.unmapped if first is not None else 0,
            first.unmapped_by if first is not None else "",
        ),
    }


def _frame_facts(scoring: Scoring, c: Counts, empty_rules: dict[bool, str]) -> dict[str, Any]:
    """The conventions' last part: frames without fixations (``empty_rules``: the
    protocol's texts by ``skip_empty``) and what was scored, skipped and left out."""
    return {
        "empty_frames": "skipped" if scoring.skip_empty else "scored",
        "empty_frames_rule": empty_rules[scoring.skip_empty],
        "frames_scored": c.scored,
        "frames_skipped": c.skipped,
        "frames_empty": c.empty,
        "frames_missing": c.missing,
        "videos_without_ground_truth": list(c.unscored),
    }


def _bench_conventions(scoring: Scoring, scored: _Scored, source: str | None) -> dict[str, Any]:
    """The conventions of a set scored as the NTIRE 2026 challenge's bench.py scores it
    (see salcli.evaluation.report): no random draw, its own metric definitions."""
    protocol = scoring.protocol
    return {
        "aggregation": protocol.aggregation,
        "definitions": BENCH_DEFINITIONS,
        "kld": KLD_NOTE,
        "pairing": BENCH_PAIRING,
        "reading": protocol.reading,
        "resizing": protocol.resizing,
        **_source_facts(scored, source),
        "metrics": list(scoring.metrics),
        **_frame_facts(scoring, scored.counts, BENCH_EMPTY),
    }


def _report(
    ds: Dataset,
    splits: Sequence[str],
    opts: EvalOptions,
    scoring: Scoring,
    scored: _Scored,
    sources: _SplitSources,
    warned: list[str],
) -> EvalResult:
    source = sources.description
    if source is None and scored.first is not None:  # a model per split: as the first one
        source = f"{scored.first.label}, weights {weights_text(opts.weights)}"
    conventions = _conventions(ds, splits, opts, scoring, scored, source)
    if opts.templated:
        conventions["per_split"] = scored.used
    per = scored.splits
    overall = (
        next(iter(per.values()))
        if len(per) == 1
        else M.aggregate_videos(list(per.values()), scoring.metrics)
    )
    return EvalResult(
        dataset=ds.name,
        split="all" if len(splits) > 1 else splits[0],
        protocol=ds.protocol,
        metrics=scoring.metrics,
        conventions=conventions,
        overall=overall,
        videos=scored.videos,
        splits=per,
        unscored=scored.counts.unscored,
        warnings=warned,
    )


# --- the entry ---------------------------------------------------------------------


def evaluate(
    dataset: str,
    options: EvalOptions | None = None,
    *,
    on_warning: Callable[[str], None] | None = None,
    on_progress: Callable[[EvalProgress], None] | None = None,
    **fields: Any,
) -> EvalResult:
    """Score one dataset split (or ``all`` splits) and return an :class:`EvalResult`.

    ``options``: an ``EvalOptions``; its fields can be given as keywords instead (or on
    top of it): ``evaluate("diem", root=..., weights=..., audio=True, split="all")``.

    ``skip_empty``: skip the frames without fixations (None: the protocol's published
    convention, no for ``dhf1k``, yes for ``av``). Under ``warmup="reference"`` the first
    frames a family's published procedure never maps (STAViS: frames 1-8) are not scored
    (see the module docstring); they count in ``frames_unmapped`` and in each video's
    ``skipped``.

    ``on_warning`` receives one line per video without ground truth (default:
    ``warnings.warn``); those videos are listed in ``EvalResult.unscored``.
    ``on_progress`` receives an ``EvalProgress`` at each step, video and frame.
    """
    opts = EvalOptions(**fields) if options is None else dataclasses.replace(options, **fields)
    ds = Dataset(dataset, opts.root)
    splits = ds.splits(opts.split, models_per_split=opts.templated)
    protocol = PROTOCOLS[ds.protocol]
    metrics = parse_metrics(opts.metrics, protocol)
    items = {s: ds.videos(s) for s in splits}
    sources = _sources(opts, splits, protocol)
    warned: list[str] = []

    def warn(msg: str) -> None:
        warned.append(msg)
        if on_warning is not None:
            on_warning(msg)
        else:
            warnings.warn(msg, stacklevel=2)

    skip_empty = protocol.skip_empty if opts.skip_empty is None else bool(opts.skip_empty)
    scoring = Scoring(protocol, metrics, opts.seed, skip_empty, warn)
    tracker = Tracker(sum(len(v) for v in items.values()), on_progress)
    scored = _score_splits(items, sources, scoring, tracker, opts.jobs)
    if not scored.counts.scored and scored.counts.unscored:
        bad = next(item for s in splits for item in items[s] if item.problem)
        raise DatasetError(
            f"{ds.name}: no video of split {', '.join(splits)} has ground truth to score "
            f"({bad.name}: {bad.problem})"
        )
    return _report(ds, splits, opts, scoring, scored, sources, warned)
