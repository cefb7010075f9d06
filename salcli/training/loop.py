"""Training ViNet / AViNet with the published recipe: resumable, on one device or many.

``train(TrainOptions(dataset="dhf1k", out="run"))`` runs the recipe of the AViNet paper
(which also introduced ViNet): each epoch one random T-frame window per training video
(``salcli.training.data``), target = the density map of its last frame at the input
size, Adam (lr 1e-4), batch 8, loss KL divergence (``salcli.training.loss``), optionally
minus a multiple of CC; 40 epochs; validation after every epoch (loss and CC, SIM, KLD,
NSS of the maps post-processed as predict writes them); early stopping on the validation
loss with ``patience``. The output folder is described in ``salcli.training.state``.

Resuming (``resume=True``) continues exactly where the run stopped: the windows of an
epoch are a pure function of (seed, epoch, video), DataLoaders draw from generators of
their own, and the state holds the model, optimizer, GradScaler, the next step and the
global RNG state (dropout), so on the CPU in fp32 a run stopped and resumed ends with the
same weights, bit for bit, as one that was not. A stop request (``stop.set()``, or Ctrl-C /
SIGTERM in the CLI) finishes the current step, saves and returns; a state is also saved
after every epoch, so a killed run loses at most the epoch in progress.

Several processes (``torchrun --nproc-per-node N -m salcli train ...``): each rank takes
every N-th window of each global batch (``batch_size`` is the global batch: the recipe's 8
whatever N; ``salcli.training.loaders``), gradients are averaged by
DistributedDataParallel (the loss is scaled so the result is the mean over the global
batch), BatchNorm is synchronized across GPUs (SyncBatchNorm on CUDA), validation
windows are shared out, and rank 0 alone writes.

The trainer touches the model at three places only: ``_build``
(``salcli.training.init.initial_model``: build by architecture name and load the
starting weights), ``_forward`` (``model(clip)`` / ``model(clip, audio)`` -> (B, H, W) in
(0, 1)) and ``_find_unused`` (DDP: AViNet carries modules its forward does not use);
checkpoints are its ``state_dict()`` (``salcli.training.state.cpu_state``). The data side
assumes ViNet's clip (T frames ending on the scored frame, predict's frame transform and
audio excerpt): ``salcli.training.data``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from salcli import __version__
from salcli.errors import DatasetError, OptionError
from salcli.files import write_text_atomic
from salcli.inference.hardware import PRECISION_NAMES, emulated_precision, resolve_precision
from salcli.models.registry import family_of
from salcli.models.vinet_procedure import CLIP_LEN
from salcli.training.data import TrainingSets, training_sets, validation_windows
from salcli.training.init import initial_model
from salcli.training.loaders import Loaders, make_loaders, shut_down
from salcli.training.log import EpochRecord, write_log
from salcli.training.loss import VAL_METRICS, loss_per_sample, summed, window_scores
from salcli.training.options import TrainOptions, parse_loss
from salcli.training.processes import all_sum, barrier, end_processes, start_processes
from salcli.training.recipe import make_optimizer, recipe_of, set_lr
from salcli.training.state import (
    BEST,
    LAST,
    LOG,
    OPTIONS,
    PLOT,
    STATE,
    Progress,
    check_out,
    fingerprint,
    load_state,
    recorded_init,
    save_state,
    save_weights,
)


@dataclass
class TrainResult:
    status: str  # "done" | "early-stopped" | "stopped" (stop request: resume to go on)
    out: Path
    epochs: int  # epochs completed
    best_epoch: int | None
    best_val_loss: float | None
    history: list[EpochRecord] = field(default_factory=list)


# --- the model (the places the trainer knows about) ----------------------------------


def _build(options: TrainOptions, *, resume: bool):
    """The model and what it starts from; a resumed run's weights come from its state,
    so its starting files need not exist any more."""
    if resume:
        return initial_model(options.arch, "none", "none")
    return initial_model(options.arch, options.init, options.soundnet)


def _forward(net: nn.Module, batch: dict[str, torch.Tensor], audio: bool) -> torch.Tensor:
    """(B, H, W) maps in (0, 1) for the batch's clips (B, 3, T, H, W) [and audio]."""
    return net(batch["clip"], batch["audio"]) if audio else net(batch["clip"])


def _find_unused(options: TrainOptions) -> bool:
    """AViNet holds modules that its forward does not use (SoundNet's conv8 heads, the
    other fusion's layers, kept so the published files load strictly)."""
    return options.audio


# --- the run ---------------------------------------------------------------------------


class _Run:
    """One training run's set-up and loop (``train`` is its public face)."""

    def __init__(self, options: TrainOptions, on_event, stop):
        self.o = options
        self.emit = on_event or (lambda kind, data: None)
        self.stop = stop
        self.out = Path(options.out).expanduser()
        self.terms = parse_loss(options.loss)
        self.recipe = recipe_of(options.model)  # optimizer, schedule, frames (AViNet: ViNet's)
        self.postprocess = family_of(options.arch)[0].postprocess  # maps as predict writes

    # -- set-up ----------------------------------------------------------------

    def setup(self) -> None:
        o = self.o
        o.check()
        self.procs, self.device = start_processes(o.device)
        self.dtype = resolve_precision(o.precision, self.device)
        self.precision = PRECISION_NAMES[self.dtype]
        if emulated_precision(self.dtype, self.device):
            self.warn(
                f"{self.precision} is emulated on this CPU (no native {self.precision} "
                "arithmetic): correct, but far slower than fp32"
            )
        check_out(self.out, o.resume)
        self.sets: TrainingSets = training_sets(o.dataset, o.root, o.split, audio=o.audio)
        self.val_windows = validation_windows(self.sets.val, o.val_stride)
        if not self.val_windows:
            raise DatasetError(
                "no validation window: no validation frame (every "
                f"{o.val_stride}th from frame {CLIP_LEN}) has a non-empty ground truth"
            )
        if self.procs.enabled and o.batch_size < self.procs.world:
            raise OptionError(
                "batch_size",
                f"{o.batch_size} is the global batch: at least one window per process "
                f"({self.procs.world})",
            )
        torch.manual_seed(o.seed)
        model, report = _build(o, resume=o.resume)
        self.init_lines = report.lines
        if o.resume:
            recorded = recorded_init(self.out)
            if recorded is not None:
                self.init_lines = recorded
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest
        model.to(self.device)
        if self.procs.enabled and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self._train_mode()
        self.net: nn.Module = model
        if self.procs.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=_find_unused(o)
            )
        self.optimizer = make_optimizer(model, self.recipe, o.lr, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.loaders: Loaders = make_loaders(
            self.sets,
            self.val_windows,
            batch_size=o.batch_size,
            seed=o.seed,
            size=tuple(o.input_size),
            audio=o.audio,
            workers=o.loader_workers,
            procs=self.procs,
            device=self.device,
            transform=self.recipe.transform,
            flip=self.recipe.flip,
        )
        self.steps = len(self.loaders.batches.global_batches(0))
        self.progress = Progress()
        if o.resume:
            self.progress = load_state(
                self.out / STATE, fingerprint=self._fingerprint(), **self._state_parts()
            )
        elif self.procs.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out / OPTIONS, json.dumps(self._run_info(), indent=2) + "\n")
        barrier(self.procs)

    def _run_info(self) -> dict[str, Any]:
        return {
            "salcli_version": __version__,
            "options": self.o.as_dict(),
            "arch": self.o.arch,
            "init": list(self.init_lines),
            "data": self.sets.description,
            "train_videos": len(self.sets.train),
            "val_windows": len(self.val_windows),
            "steps_per_epoch": self.steps,
            "processes": self.procs.world,
            "device": str(self.device),
            "precision": self.precision,
            "workers_per_process": self.loaders.workers,
            "loss": [[n, w] for n, w in self.terms],
        }

    def _fingerprint(self) -> dict[str, Any]:
        return fingerprint(self.o, self.sets.train)

    def _state_parts(self) -> dict[str, Any]:
        """What ``save_state`` / ``load_state`` take besides the progress."""
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scaler": self.scaler,
            "procs": self.procs,
            "device": self.device,
        }

    def warn(self, message: str) -> None:
        if self.procs.main:
            self.emit("warning", {"message": message})

    # -- the loop --------------------------------------------------------------

    def _train_mode(self) -> None:
        """Training mode; with ``bn="frozen"`` the BatchNorms stay in eval mode (they
        normalize with their running statistics and do not update them)."""
        self.model.train()
        if self.o.bn == "frozen":
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _stop_requested(self) -> bool:
        flag = 1.0 if self.stop is not None and self.stop.is_set() else 0.0
        return all_sum([flag], self.procs, self.device)[0] > 0

    def _train_step(self, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
        """One optimizer step over this rank's share, ``micro_batch`` windows per forward
        pass, their gradients summed; (loss sum, windows) of this rank's share."""
        valid = batch["valid"]
        n_valid = int(valid.sum())
        if 0 < n_valid < valid.numel():  # a video without any usable target: leave it out
            batch = {k: v[valid] for k, v in batch.items()}
        batch = self._to_device(batch)
        total = all_sum([n_valid], self.procs, self.device)[0]
        # the mean over the global batch, whatever each rank holds (DDP averages ranks);
        # kld-batch: the sum of the mini-batches' KL divergences (TASED-Net's recipe)
        scale = self.procs.world * (1.0 if summed(self.terms) else 1.0 / max(total, 1.0))
        step = self.progress.epoch * self.steps + self.progress.step  # of the whole run
        set_lr(self.optimizer, self.recipe, step, self.steps * self.o.epochs)
        self.optimizer.zero_grad(set_to_none=True)
        size = batch["target"].shape[0]
        micro = self.o.micro_batch or size
        loss_sum = 0.0
        for start in range(0, size, micro):
            part = {k: v[start : start + micro] for k, v in batch.items()}
            last = start + micro >= size
            alone = last or not self.procs.enabled  # DDP syncs the last backward pass only
            with contextlib.nullcontext() if alone else self.net.no_sync():
                with self._autocast():
                    pred = _forward(self.net, part, self.o.audio)
                per = loss_per_sample(pred, part["target"], self.terms)  # (b,)
                if n_valid == 0:
                    per = per * 0.0
                if total > 0:
                    self.scaler.scale(per.sum() * scale).backward()
            loss_sum += float(per.detach().sum())
        if total > 0:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss_sum if n_valid else 0.0, n_valid

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and VAL_METRICS over the validation windows (means, NaNs skipped)."""
        model = self.model
        model.eval()
        # sums and counts: loss, then each metric
        sums = np.zeros(1 + len(VAL_METRICS))
        counts = np.zeros(1 + len(VAL_METRICS))
        for batch in self.loaders.val:
            index = batch["index"].tolist()
            batch = self._to_device(batch)
            with self._autocast():
                pred = _forward(model, batch, self.o.audio)
            # each window on its own (kld-batch: its own KL divergence)
            per = loss_per_sample(pred, batch["target"], self.terms, group=1).cpu().numpy()
            maps = pred.float().cpu().numpy()  # (B, h, w)
            for i, m, loss in zip(index, maps, per, strict=True):
                dens, fix = self.loaders.val_ds.ground_truth(i)
                for k, s in enumerate(window_scores(loss, m, dens, fix, self.postprocess)):
                    if math.isfinite(s):
                        sums[k] += s
                        counts[k] += 1
        self._train_mode()
        total = all_sum([*sums, *counts], self.procs, self.device)
        n = len(sums)
        means = [s / c if c else math.nan for s, c in zip(total[:n], total[n:], strict=True)]
        return {"loss": means[0], **dict(zip(VAL_METRICS, means[1:], strict=True)), "n": total[n]}

    def _finish_epoch(self, trained: bool = True) -> EpochRecord:
        """Validate, record, save (best.pt when better, the state); ``trained=False``:
        the starting weights' "epoch 0" (``validate_first``)."""
        p = self.progress
        number = p.epoch + 1 if trained else 0
        t0 = time.perf_counter()
        if self.procs.main:
            self.emit("validate", {"epoch": number, "windows": len(self.val_windows)})
        val = self.validate()
        val_seconds = time.perf_counter() - t0
        loss_sum, windows, seconds = all_sum(p.acc[:2], self.procs, self.device) + [p.acc[2]]
        improved = math.isfinite(val["loss"]) and (p.best_loss is None or val["loss"] < p.best_loss)
        record = EpochRecord(
            epoch=number,
            train_loss=loss_sum / windows if windows else math.nan,
            val_loss=val["loss"],
            cc=val["cc"],
            sim=val["sim"],
            kld=val["kld"],
            nss=val["nss"],
            windows=int(windows),
            val_windows=len(self.val_windows),
            seconds=seconds,
            val_seconds=val_seconds,
            samples_per_s=windows / seconds if seconds > 0 else math.nan,
            best=improved,
        )
        if improved:
            p.best_loss, p.best_epoch, p.since_best = val["loss"], number, 0
        else:
            p.since_best += 1
        p.history.append(record)
        if trained:
            p.epoch, p.step, p.acc = p.epoch + 1, 0, [0.0, 0.0, 0.0]
        if self.procs.main:
            if improved:
                save_weights(self.model, self.out / BEST)
            self._write_log()
        self._save_state()
        barrier(self.procs)
        return record

    def _save_state(self) -> None:
        save_state(
            self.out / STATE,
            fingerprint=self._fingerprint(),
            progress=self.progress,
            **self._state_parts(),
        )

    def _write_last(self) -> None:
        if self.procs.main:
            save_weights(self.model, self.out / LAST)

    def _write_log(self) -> None:
        write_log(self.progress.history, self.out / LOG, self.out / PLOT)

    def _result(self, status: str) -> TrainResult:
        p = self.progress
        return TrainResult(
            status=status,
            out=self.out,
            epochs=p.epoch,
            best_epoch=p.best_epoch,
            best_val_loss=p.best_loss,
            history=list(p.history),
        )

    def run(self) -> TrainResult:
        o, p = self.o, self.progress
        if self.procs.main:
            self.emit(
                "start",
                {
                    **self._run_info(),
                    "start_epoch": p.epoch + 1,
                    "start_step": p.step,
                    "epochs": o.epochs,
                },
            )
        if p.history and self._early_stop():
            self._write_last()
            return self._result("early-stopped")
        consistent = True  # the model and optimizer are between two steps
        try:
            if o.validate_first and not p.history and p.epoch == 0 and p.step == 0:
                record = self._finish_epoch(trained=False)
                if self.procs.main:
                    self.emit("epoch", {"record": record, "epochs": o.epochs})
            while p.epoch < o.epochs:
                self.loaders.batches.set_epoch(p.epoch, p.step)
                if self.procs.main:
                    self.emit("epoch_start", {"epoch": p.epoch + 1, "epochs": o.epochs,
                                              "steps": self.steps, "step": p.step})  # fmt: skip
                if p.step < self.steps:
                    if self._stop_requested():
                        return self._stopped()
                    started = time.perf_counter()
                    for batch in self.loaders.train:
                        consistent = False
                        loss_sum, n = self._train_step(batch)
                        p.step += 1
                        now = time.perf_counter()
                        p.acc = [p.acc[0] + loss_sum, p.acc[1] + n, p.acc[2] + now - started]
                        started = now
                        consistent = True
                        if self.procs.main:
                            self.emit(
                                "step",
                                {
                                    "epoch": p.epoch + 1,
                                    "step": p.step,
                                    "steps": self.steps,
                                    "loss": loss_sum / n if n else math.nan,
                                    "windows": n * self.procs.world,
                                    "seconds": p.acc[2],
                                    "epoch_windows": p.acc[1] * self.procs.world,
                                },
                            )
                        if self._stop_requested():
                            return self._stopped()
                record = self._finish_epoch()
                if self.procs.main:
                    self.emit("epoch", {"record": record, "epochs": o.epochs})
                if self._early_stop():
                    self._write_last()
                    return self._result("early-stopped")
        except KeyboardInterrupt:
            if consistent and not self.procs.enabled:
                self._save_state()
                self._write_last()
            raise
        self._write_last()
        return self._result("done")

    def _early_stop(self) -> bool:
        return self.o.patience is not None and self.progress.since_best >= self.o.patience

    def _stopped(self) -> TrainResult:
        self._save_state()
        self._write_last()
        if self.procs.main and self.progress.history:
            self._write_log()
        barrier(self.procs)
        return self._result("stopped")

    def close(self) -> None:
        loaders = getattr(self, "loaders", None)
        if loaders is not None:
            shut_down(loaders.train)
            shut_down(loaders.val)
        procs = getattr(self, "procs", None)
        if procs is not None:
            end_processes(procs)


def train(
    options: TrainOptions,
    *,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    stop: Any = None,
) -> TrainResult:
    """Run (or, with ``options.resume``, continue) a training run; see the module docstring.

    ``on_event(kind, data)`` is called on rank 0 with kind "start" (the run's description),
    "epoch_start", "step" (after each optimizer step: loss, windows, seconds), "validate",
    "epoch" (``data["record"]``: an ``EpochRecord``) and "warning". An exception raised by
    it after a step (KeyboardInterrupt included) leaves a resumable state. ``stop``: an
    object with ``is_set()`` (a ``threading.Event``) checked after every step: when set,
    the state is saved and the result's status is "stopped".

    Raises ``UsageError``, ``DatasetError``, ``WeightsError``, ``OutputError`` (one line
    each) before training starts when the options, data or weights are not usable.
    """
    run = _Run(options, on_event, stop)
    try:
        run.setup()
        return run.run()
    finally:
        run.close()
