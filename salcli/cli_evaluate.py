"""``salcli evaluate``: score predictions (or the model, or a baseline) on a dataset.

``register(app)`` adds the command to the main Typer app (salcli/cli.py calls it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .errors import EXIT_INTERRUPTED, SalcliError

MAX_TABLE_WIDTH = 160  # columns: the widest the results table is printed
DATASET_NAMES = "dhf1k, hollywood2, ucf, diem, coutrot1, coutrot2, avad, etmd, summe"


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
        "has one); a split folder for dhf1k/hollywood2/ucf (default val / testing).",
    ),
    predictions: Path | None = typer.Option(
        None,
        "--predictions",
        "-p",
        help="Folder of <video>/ PNG folders or <video>.h5 stacks (as `salcli predict` "
        "writes them), or one .h5 file. Without it the model is run.",
    ),
    weights: str | None = typer.Option(
        None, "--weights", "-w", help="Model weights: a checkpoint file or a registry name."
    ),
    audio: bool = typer.Option(False, "--audio", help="Run AViNet with the dataset's wav."),
    fps: float | None = typer.Option(
        None, "--fps", help="Frame rate for datasets whose lists do not give one."
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Comma-separated: cc,nss,auc_j,sauc,sim,kld (default) and auc_b (AUC-Borji).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled metrics (sAUC, AUC-J...)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON."),
    csv_out: Path | None = typer.Option(None, "--csv", help="Write the results as CSV."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="'center': score a centred Gaussian instead of predictions."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, no table."),
) -> None:
    """Score saliency maps against a dataset's eye-tracking ground truth (MIT benchmark
    metrics, the dataset's published protocol)."""
    from .evaluate import evaluate, write_atomic

    try:
        result = evaluate(
            dataset,
            root=root,
            split=split,
            predictions=predictions,
            weights=weights,
            audio=audio,
            baseline=baseline,
            metrics=metrics,
            seed=seed,
            fps=fps,
            quiet=quiet,
        )
        if json_out is not None:
            write_atomic(json_out, result.to_json())
        if csv_out is not None:
            write_atomic(csv_out, result.to_csv())
    except SalcliError as err:
        print(f"salcli: error: {err}", file=sys.stderr)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        print("salcli: interrupted", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not quiet:
        from rich.console import Console

        # wider than the terminal (or a pipe's 80 columns) rather than fold the cells
        console = Console()
        need = result.table_width()
        if need > console.width:
            console = Console(width=min(need, MAX_TABLE_WIDTH))
        console.print(result.table())


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command("evaluate")(evaluate_command)
