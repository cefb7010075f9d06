"""A training run's output folder, and the state that resumes it.

    OUT/best.pt       weights of the epoch with the lowest validation loss
    OUT/last.pt       weights when the run ended (or stopped)
    OUT/state.pt      everything resuming needs (model, optimizer, scaler, epoch and step,
                      RNG states, history): torch.load(weights_only=True) reads it
    OUT/log.jsonl     one JSON object per epoch (``salcli.training.log.EpochRecord``)
    OUT/curves.png    loss and validation curves
    OUT/options.json  the options, the data and the initial weights of the run

``best.pt`` / ``last.pt`` are plain state_dicts with the published key names (no
BatchNorm folding), so predict takes them unchanged. Every file is written under a
temporary name and renamed.

A resumed run must be the same run: its options that shape the result
(``RUN_DEFINING``) and its training videos (``fingerprint``) must be those the state
was saved with. The state holds every rank's RNG states; a run resumed with as many
ranks gets its own back, otherwise every rank gets rank 0's.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from salcli import __version__
from salcli.errors import OptionError, OutputError, UsageError, WeightsError, escape, one_line
from salcli.files import write_atomic
from salcli.training.data import TrainVideo
from salcli.training.log import EpochRecord
from salcli.training.options import RUN_DEFINING, TrainOptions
from salcli.training.processes import Processes, all_gather

STATE_FORMAT = 1  # version of state.pt's layout
BEST, LAST, STATE, LOG, PLOT, OPTIONS = (
    "best.pt",
    "last.pt",
    "state.pt",
    "log.jsonl",
    "curves.png",
    "options.json",
)


@dataclass
class Progress:
    """Where a run stands: what ``state.pt`` holds besides the model, optimizer, scaler
    and RNG states."""

    epoch: int = 0  # 0-based index of the epoch in progress
    step: int = 0  # next step of that epoch
    # this epoch so far: this rank's loss sum and windows, and the seconds it took
    acc: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    best_loss: float | None = None
    best_epoch: int | None = None
    since_best: int = 0  # epochs since the best one
    history: list[EpochRecord] = field(default_factory=list)


def check_out(out: Path, resume: bool) -> None:
    """A fresh run needs a folder without a run in it; a resumed one, its state."""
    state, where = out / STATE, escape(str(out))
    if resume:
        if not state.is_file():
            raise UsageError(
                f"{{resume}}: no {STATE} in {where} (nothing to resume)", options=("resume",)
            )
        return
    if out.exists() and not out.is_dir():
        raise OutputError(f"{{out}} {where}: not a folder", options=("out",))
    taken = [n for n in (STATE, BEST, LAST) if (out / n).exists()]
    if taken:
        raise OptionError(
            "out",
            f"{where} already holds a run ({taken[0]}): {{resume}} continues it, "
            "or choose another {out}",
            options=("resume",),
        )


def recorded_init(out: Path) -> tuple[str, ...] | None:
    """The starting weights ``options.json`` names (None: not readable)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        return tuple(json.loads((out / OPTIONS).read_text())["init"])
    return None


def fingerprint(options: TrainOptions, train: Sequence[TrainVideo]) -> dict[str, Any]:
    """What a resumed run must share with the saved one: the options that shape the
    result and the training videos (their number and a checksum of their names)."""
    d = options.as_dict()
    fp = {k: d[k] for k in RUN_DEFINING}
    names = "\n".join(v.key for v in train)
    fp["train_videos"] = f"{len(train)}:{zlib.crc32(names.encode()):08x}"
    return fp


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights as the published files hold them: a plain state_dict on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_weights(model: nn.Module, path: Path) -> None:
    """The weights as a published file (``cpu_state``), written atomically."""
    state = cpu_state(model)
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def rng_states(procs: Processes, device: torch.device) -> dict[str, list[torch.Tensor]]:
    """Every rank's RNG states, in rank order (every rank must take part)."""
    own = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        own["cuda"] = torch.cuda.get_rng_state(device)
    gathered = all_gather(own, procs)
    return {k: [g[k] for g in gathered] for k in own}


def save_state(
    path: Path,
    *,
    fingerprint: dict[str, Any],
    progress: Progress,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    procs: Processes,
    device: torch.device,
) -> None:
    """Write the state (rank 0; every rank must call it: the RNG states are gathered)."""
    rng = rng_states(procs, device)
    if not procs.main:
        return
    state = {
        "format": STATE_FORMAT,
        "salcli_version": __version__,
        "fingerprint": fingerprint,
        "epoch": progress.epoch,
        "step": progress.step,
        "acc": list(progress.acc),
        "model": cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng,
        "best_loss": progress.best_loss,
        "best_epoch": progress.best_epoch,
        "since_best": progress.since_best,
        "history": [r.as_dict(digits=None) for r in progress.history],
    }
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_state(
    path: Path,
    *,
    fingerprint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    procs: Processes,
    device: torch.device,
) -> Progress:
    """Read the state at ``path`` into the model, optimizer, scaler and RNGs, after
    checking that it was saved by the same run (``fingerprint``); its progress."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        raise WeightsError(f"{path}: not a readable training state ({one_line(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise WeightsError(f"{path}: not a salcli training state (format {STATE_FORMAT})")
    # runs saved before --model existed trained ViNet (or AViNet, on it)
    theirs, ours = {"model": "vinet", **state["fingerprint"]}, fingerprint
    changed = [k for k in ours if theirs.get(k) != ours[k]]
    if changed:
        k = changed[0]
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        what = f"the run in {path.parent} was made with {k} = {theirs.get(k)!r}, not {ours[k]!r}"
        raise UsageError("{resume}: " + escape(what + more), options=("resume",))
    model.load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    r = procs.rank if len(rng["cpu"]) == procs.world else 0
    torch.set_rng_state(rng["cpu"][r])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"][min(r, len(rng["cuda"]) - 1)], device)
    return Progress(
        epoch=int(state["epoch"]),
        step=int(state["step"]),
        acc=[float(v) for v in state["acc"]],
        best_loss=state["best_loss"],
        best_epoch=state["best_epoch"],
        since_best=int(state["since_best"]),
        history=[EpochRecord.from_dict(h) for h in state["history"]],
    )
