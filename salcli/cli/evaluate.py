"""``salcli evaluate``: score predictions (or the model, or a baseline) on a dataset.

The command draws what the library reports: the progress of ``evaluate`` (its
``on_progress``) as a "videos" bar and a bar over the current video's frames, then the
results table with the conventions as its caption. ``register(app)`` adds the command
to the main Typer app (``salcli.cli`` calls it).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from salcli.cli import _console
from salcli.cli._console import exits
from salcli.cli._progress import Bar, Bars
from salcli.errors import EXIT_FAILED, UsageError
from salcli.options import ClusterOptions

if TYPE_CHECKING:
    from rich.table import Table

    from salcli.evaluation.report import EvalResult
    from salcli.evaluation.scoring import EvalProgress

MAX_TABLE_WIDTH = 160  # columns: the widest the results table is printed
DATASET_NAMES = "dhf1k, hollywood2, ucf, diem, coutrot1, coutrot2, avad, etmd, summe, ntire26"
METRIC_NAMES = {
    "cc": "CC",
    "nss": "NSS",
    "auc_j": "AUC-J",
    "sauc": "sAUC",
    "sim": "SIM",
    "kld": "KLD",
    "auc_b": "AUC-B",
}


@dataclasses.dataclass(frozen=True)
class _Flags:
    """The options of ``evaluate`` whose flag is not their name (``_console.flag_of``
    reads a table's ``flags``): the model's maps from a Ray cluster come with --ray."""

    model_source: Any = dataclasses.field(default=None, metadata={"flags": ("--ray",)})


def evaluate_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help=f"Dataset: {DATASET_NAMES}."),
    root: Path | None = typer.Option(
        None,
        "--root",
        help="Data root holding the dataset (default: $SALCLI_DATA, then "
        "$XDG_DATA_HOME/salcli, i.e. ~/.local/share/salcli).",
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="1, 2, 3 or all (audio-visual sets; default all = mean of the 3 splits, DIEM "
        "has one); a split folder for dhf1k/hollywood2/ucf (default val / testing); "
        "public_test (default), private_test or train for ntire26.",
    ),
    predictions: str | None = typer.Option(
        None,
        "--predictions",
        "-p",
        help="Folder of <video>/ PNG folders, <video>.h5 stacks (as `salcli predict` "
        "writes them) or <video>.mp4 saliency videos (a challenge submission), or one .h5 "
        "file; a {split} in it: one per split. Without it the model is run.",
    ),
    weights: list[str] | None = typer.Option(
        None,
        "--weights",
        "-w",
        help="Model weights: a checkpoint file or a registry name. A {split} in it scores "
        "each split with its own checkpoint (e.g. 'audiovisual_split{split}_save_60.pth'). "
        "Repeated: an ensemble, the models' maps averaged as salcli predict does.",
    ),
    audio: bool = typer.Option(
        False,
        "--audio",
        help="Run the model with the dataset's wav (ntire26: each video's own soundtrack, "
        "silence where it has none): AViNet, or STAViS's audio-visual head (a STAViS file "
        "runs visual-only without it).",
    ),
    warmup: str | None = typer.Option(
        None,
        "--warmup",
        help="The model run's warm-up, as for predict [default: mirror]. reference "
        "reproduces the published procedure; for STAViS it also leaves frames 1-8 unscored, "
        "as its published evaluation never maps them.",
    ),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="The model run's precision: auto, fp32, bf16, fp16 [default: auto].",
    ),
    domain: str | None = typer.Option(
        None,
        "--domain",
        help="The model run's domain, as for predict (UNISAL: DHF1K, Hollywood, UCFSports, "
        "SALICON) [default: DHF1K].",
    ),
    fps: float | None = typer.Option(
        None, "--fps", help="Frame rate for datasets whose lists do not give one."
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Comma-separated: cc,nss,auc_j,sauc,sim,kld (default) and auc_b (AUC-Borji); "
        "ntire26: cc,sim,nss,auc_j (default, bench.py's) and kld (not scored by the "
        "challenge).",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the sampled metrics (sAUC, AUC-J jitter, AUC-B); >= 0."
    ),
    skip_empty: bool | None = typer.Option(
        None,
        "--skip-empty/--score-empty",
        help="Frames without fixations: skip them, or score them as the DHF1K benchmark's "
        "loop does (SIM and KLD kept, CC/NSS/AUCs NaN). Default: the protocol's own "
        "convention (scored for dhf1k/hollywood2/ucf, skipped for the audio-visual sets).",
    ),
    json_out: str | None = typer.Option(
        None, "--json", help="Write the results as JSON to a file ('-': standard output)."
    ),
    csv_out: str | None = typer.Option(
        None, "--csv", help="Write the results as CSV to a file ('-': standard output)."
    ),
    baseline: str | None = typer.Option(
        None, "--baseline", help="'center': score a centred Gaussian instead of predictions."
    ),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        "-j",
        help="ntire26: processes scoring videos at once (predictions on disk, --baseline) "
        "[default: the CPUs, at most 4].",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, no table."),
    maps_dir: Path | None = typer.Option(
        None,
        "--maps-dir",
        help="With --ray: where the workers write the model's maps (HDF5, float32) for "
        "the scoring to read, kept: a re-run skips the videos done [default: a temporary "
        "folder, removed; on a one-machine cluster only].",
    ),
    **cluster,
) -> None:
    """Score saliency maps against a dataset's eye-tracking ground truth (MIT benchmark
    metrics, the dataset's published protocol).

    Exit codes: 0 every listed video scored; 1 a video had no ground truth (warned, the
    others scored and written) or the dataset / predictions are unusable; 2 bad usage;
    3 weights missing or unusable; 130 interrupted."""
    from salcli.evaluation.evaluate import evaluate
    from salcli.evaluation.report import is_stdout, write_output

    outputs = [(o, f) for o, f in ((json_out, "json"), (csv_out, "csv")) if o is not None]
    to_stdout = [o for o, _ in outputs if is_stdout(o)]
    with exits(ClusterOptions, _Flags):
        if len(to_stdout) > 1:
            raise UsageError("--json and --csv cannot both go to standard output")
        model_source, connected = _on_cluster(cluster, maps_dir, _console.warn)
        with connected, Bars(not quiet and sys.stderr.isatty()) as bars:
            result = evaluate(
                dataset,
                root=root,
                split=split,
                predictions=predictions,
                weights=tuple(weights) if weights else None,
                audio=audio,
                baseline=baseline,
                metrics=metrics,
                seed=seed,
                fps=fps,
                skip_empty=skip_empty,
                warmup=warmup,
                precision=precision,
                jobs=jobs,
                domain=domain,
                model_source=model_source,
                on_warning=_console.warn,
                on_progress=_progress(bars) if bars.enabled else None,
            )
        for out, fmt in outputs:
            write_output(out, result.to_json() if fmt == "json" else result.to_csv())
    if not quiet:  # to stderr when the results themselves go to stdout
        _print_table(result, stderr=bool(to_stdout))
    if result.unscored:
        _console.say(
            f"salcli: {len(result.unscored)} video(s) without ground truth not scored: "
            + ", ".join(result.unscored)
        )
        raise typer.Exit(EXIT_FAILED)


def _progress(bars: Bars) -> Callable[[EvalProgress], None]:
    """``evaluate``'s ``on_progress``: a "videos" bar over every split's videos, and a
    bar over the frames of the video being scored (first in each split: over the videos
    whose fixations are read), both added when the scoring starts."""
    shown: list[Bar] = []

    def update(p: EvalProgress) -> None:
        if not shown:
            shown.append(bars.add("videos", total=p.videos_total))
            shown.append(bars.add("frames", total=0))
        videos, frames = shown
        videos.update(completed=p.videos_done)
        if p.frames_done == 0:  # a new step
            name = p.video if p.video is not None else "reading fixations"
            frames.reset(total=p.frames_total, description=name)
        else:
            frames.update(completed=p.frames_done)

    return update


# --- the results table -------------------------------------------------------------


def _print_table(result: EvalResult, *, stderr: bool) -> None:
    """The table, wider than the terminal (or a pipe's 80 columns) rather than fold the
    cells."""
    from rich.console import Console

    console = Console(stderr=stderr)
    need = table_width(result)
    if need > console.width:
        console = Console(stderr=stderr, width=min(need, MAX_TABLE_WIDTH))
    console.print(table(result))


def _bench_caption(result: EvalResult) -> str:
    """The caption of a set scored as the NTIRE 2026 challenge's bench.py scores it."""
    c = result.conventions
    skipped = ""
    if c["frames_empty"]:
        what = "skipped" if c["empty_frames"] == "skipped" else "scored (NSS, AUC-J NaN)"
        skipped += f"; {c['frames_empty']} without fixations {what}"
    if c["frames_missing"]:
        skipped += f"; {c['frames_missing']} beyond the fixations file's frames not scored"
    kld = " KLD is not scored by the challenge." if "kld" in result.metrics else ""
    return (
        f"protocol {result.protocol} (bench.py's metric definitions): {c['aggregation']}. "
        f"Predictions: {c['predictions']} ({c['source']}), grey = mean of the channels, "
        "min-max normalised (float32 eps), resized with OpenCV's bilinear resize to the "
        f"ground truth's size ({c['frames_resized']} frames of another size). "
        f"{c['frames_scored']} frames scored{skipped}.{kld}"
    )


def caption(result: EvalResult) -> str:
    """The conventions in a few lines: the table's caption."""
    from salcli.evaluation.protocols import PROTOCOLS

    if PROTOCOLS[result.protocol].video_files:
        return _bench_caption(result)
    c = result.conventions
    empty, scored = c["frames_empty"], c["empty_frames"] == "scored"
    if not empty:
        empties = ""
    elif scored:
        empties = (
            f", {empty} of them without fixations (SIM and KLD kept, CC, NSS and AUCs "
            "NaN, as the benchmark's loop; --skip-empty skips them)"
        )
    else:
        empties = f"; {empty} without fixations skipped (--score-empty scores them)"
    missing = c["frames_missing"]
    missing_text = f"; {missing} skipped (missing ground truth)" if missing else ""
    unmapped = c.get("frames_unmapped", 0)
    if unmapped:
        missing_text += (
            f"; {unmapped} not scored (the first frames of each video, which the "
            "published procedure never maps: --warmup reference)"
        )
    return (
        f"protocol {result.protocol}: {c['aggregation']}. sAUC negatives: "
        f"{PROTOCOLS[result.protocol].sauc_short}. Predictions: {c['predictions']} "
        f"({c['source']}; colour: first channel), resized as floats with MATLAB "
        f"imresize where sizes differ ({c['frames_resized']} frames). Seed {c['seed']}, "
        f"one random stream per video, frame and metric. {c['frames_scored']} frames scored"
        f"{empties}{missing_text}."
    )


def table_width(result: EvalResult) -> int:
    """Columns the table needs with no cell folded (cells + padding + borders)."""
    names = [result.video_key(v) for v in result.videos] + ["overall", "split 1"]
    widths = [max(len("video"), *map(len, names)), len("frames") + 2]
    widths += [max(len(METRIC_NAMES[m]), 7) for m in result.metrics]  # "-0.1234"
    return sum(w + 3 for w in widths) + 1


def table(result: EvalResult, *, videos: bool = True) -> Table:
    """A rich Table: one row per video, then the overall row; conventions as caption."""
    from rich.table import Table

    t = Table(
        title=f"{result.dataset} - split {result.split}",
        caption=caption(result),
        caption_justify="left",
    )
    t.add_column("video", overflow="fold")
    t.add_column("frames", justify="right", no_wrap=True)
    for m in result.metrics:  # numbers are never cut: the video column folds instead
        t.add_column(METRIC_NAMES[m], justify="right", no_wrap=True)
    if videos:
        for v in result.videos:
            t.add_row(
                result.video_key(v), str(v.frames), *(_fmt(v.scores[m]) for m in result.metrics)
            )
    if len(result.splits) > 1:
        for s, sc in result.splits.items():
            n = result.split_counts(s)[0]
            t.add_row(f"split {s}", str(n), *(_fmt(sc[m]) for m in result.metrics), style="italic")
    t.add_row(
        "overall",
        str(result.conventions["frames_scored"]),
        *(_fmt(result.overall[m]) for m in result.metrics),
        style="bold",
        end_section=True,
    )
    return t


def _fmt(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _on_cluster(cluster: dict, maps_dir: Path | None, warn):
    """(evaluate's model_source, the cluster connection's context) from --ray,
    --workers, ... (``ClusterOptions``) and --maps-dir; (None, no context) without --ray."""
    import contextlib

    from salcli.options import split_cluster

    options, _ = split_cluster(cluster)
    if options is None:
        if maps_dir is not None:
            raise UsageError("--maps-dir needs --ray (the model's maps on a Ray cluster)")
        return None, contextlib.nullcontext()
    from salcli.corpus.connection import session
    from salcli.evaluation.cluster import model_source

    return model_source(options, maps_dir, on_warning=warn), session(options.ray)


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``; --ray and the other cluster options come
    from the options table (``salcli.options.ClusterOptions``)."""
    import inspect
    import typing

    from salcli.cli._options import with_options
    from salcli.options import ClusterOptions

    hints = typing.get_type_hints(evaluate_command)  # the annotations are strings here
    own = [
        p.replace(annotation=hints[p.name])
        for p in inspect.signature(evaluate_command).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    app.command("evaluate")(with_options(evaluate_command, own, ClusterOptions))
