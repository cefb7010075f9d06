"""Training ViNet / AViNet with the published recipe: resumable, on one device or many.

``train(TrainOptions(dataset="dhf1k", out="run"))`` runs the recipe of the paper
(docs/conventions.md, "Training"): each epoch one random T-frame window per training
video (``salcli.training.data``), target = the density map of its last frame at the input
size, Adam (lr 1e-4), batch 8, loss KL divergence (both maps normalized to sum 1,
eps = 1e-7), optionally minus a multiple of CC; 40 epochs; validation after every epoch
(loss and CC, SIM, KLD, NSS of the maps post-processed as predict writes them, with
``salcli.metrics``); early stopping on the validation loss with ``patience``.

The output folder::

    OUT/best.pt       weights of the epoch with the lowest validation loss
    OUT/last.pt       weights when the run ended (or stopped)
    OUT/state.pt      everything --resume needs (model, optimizer, scaler, epoch and step,
                      RNG states, history): torch.load(weights_only=True) reads it
    OUT/log.jsonl     one JSON object per epoch (``EpochRecord``)
    OUT/curves.png    loss and validation curves
    OUT/options.json  the options, the data and the initial weights of the run

``best.pt`` / ``last.pt`` are plain state_dicts with the published key names (no
BatchNorm folding), so ``salcli predict --weights OUT/best.pt`` takes them unchanged.
Every file is written under a temporary name and renamed.

Resuming (``resume=True``) continues exactly where the run stopped: the windows of an
epoch are a pure function of (seed, epoch, video), DataLoaders draw from generators of
their own, and the state holds the model, optimizer, GradScaler, the next step and the
global RNG state (dropout), so on the CPU in fp32 a run stopped and resumed ends with the
same weights, bit for bit, as one that was not. A stop request (``stop.set()``, or Ctrl-C /
SIGTERM in the CLI) finishes the current step, saves and returns; a state is also saved
after every epoch, so a killed run loses at most the epoch in progress.

Several processes (``torchrun --nproc-per-node N -m salcli train ...``): each rank takes
every N-th window of each global batch (``batch_size`` is the global batch: the recipe's 8
whatever N), gradients are averaged by DistributedDataParallel (the loss is scaled so the
result is the mean over the global batch), BatchNorm is synchronized across GPUs
(SyncBatchNorm on CUDA), validation windows are shared out, and rank 0 alone writes.

The trainer touches the model at four places only (to be switched to model-family
declarations): ``_build`` (``train_init.initial_model``: build by architecture name and
load the starting weights), ``_forward`` (``model(clip)`` / ``model(clip, audio)`` ->
(B, H, W) in (0, 1)), ``_cpu_state`` (``state_dict()``: checkpoints with the published
keys) and ``_find_unused`` (DDP: AViNet carries modules its forward does not use). The
data side assumes ViNet's clip (T frames ending on the scored frame, predict's frame
transform and audio excerpt): ``train_data.TrainVideo.window`` / ``candidate_ends``,
``clip_tensor``, ``audio_tensor``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from salcli import __version__
from salcli.errors import DatasetError, OutputError, UsageError, WeightsError
from salcli.files import write_atomic, write_text_atomic
from salcli.models.vinet_procedure import CLIP_LEN
from salcli.training.data import (
    TrainingSets,
    ValDataset,
    WindowDataset,
    epoch_order,
    ignore_signals_in_worker,
    training_sets,
    validation_windows,
)
from salcli.training.options import RUN_DEFINING, TrainOptions, parse_loss

KLD_EPS = 1e-7  # the training loss' epsilon (conventions, "Training")
VAL_METRICS = ("cc", "sim", "kld", "nss")  # scored on every validation window
MAX_DEFAULT_WORKERS = 8  # DataLoader workers per rank when not told (CUDA)
STATE_FORMAT = 1  # version of state.pt's layout
BEST, LAST, STATE, LOG, PLOT, OPTIONS = (
    "best.pt",
    "last.pt",
    "state.pt",
    "log.jsonl",
    "curves.png",
    "options.json",
)


# --- the loss ------------------------------------------------------------------------


def kld_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = KLD_EPS) -> torch.Tensor:
    """KL(P, Q) = sum Q log(eps + Q / (P + eps)), P and Q normalized to sum 1: (B,).

    ``pred`` P and ``target`` Q are (B, H, W); computed in fp32."""
    p = pred.float().flatten(1)
    q = target.float().flatten(1)
    p = p / p.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    q = q / q.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return (q * torch.log(eps + q / (p + eps))).sum(dim=1)


def cc_score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each predicted map with its target: (B,)."""
    p = pred.float().flatten(1)
    q = target.float().flatten(1)
    p = p - p.mean(dim=1, keepdim=True)
    q = q - q.mean(dim=1, keepdim=True)
    den = torch.sqrt((p * p).sum(dim=1) * (q * q).sum(dim=1)).clamp_min(1e-12)
    return (p * q).sum(dim=1) / den


def loss_per_sample(
    pred: torch.Tensor, target: torch.Tensor, terms: Sequence[tuple[str, float]]
) -> torch.Tensor:
    """The training loss of each sample, (B,): sum of w * KLD and -w * CC."""
    out = torch.zeros(pred.shape[0], device=pred.device)
    for name, w in terms:
        out = out + (w * kld_loss(pred, target) if name == "kld" else -w * cc_score(pred, target))
    return out


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochRecord:
    """One line of ``log.jsonl``."""

    epoch: int  # 1-based; 0: the starting weights (``validate_first``)
    train_loss: float  # mean over the epoch's windows
    val_loss: float  # mean over the validation windows
    cc: float  # validation metrics: mean over windows (NaNs skipped)
    sim: float
    kld: float
    nss: float
    windows: int  # training windows used
    val_windows: int
    seconds: float  # training part of the epoch (validation not included)
    val_seconds: float
    samples_per_s: float  # training windows per second, all ranks together
    best: bool  # the lowest validation loss so far (best.pt written)

    def as_dict(self, digits: int | None = 6) -> dict[str, Any]:
        """The record for JSON: NaN as None, floats rounded to ``digits`` (None: exact)."""
        return {f.name: _json_num(getattr(self, f.name), digits) for f in fields(self)}


def _json_num(x: Any, digits: int | None) -> Any:
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return x if digits is None else round(x, digits)
    return x


@dataclass
class TrainResult:
    status: str  # "done" | "early-stopped" | "stopped" (stop request: resume to go on)
    out: Path
    epochs: int  # epochs completed
    best_epoch: int | None
    best_val_loss: float | None
    history: list[EpochRecord] = field(default_factory=list)


# --- writing -------------------------------------------------------------------------


def _save_weights(model: nn.Module, path: Path) -> None:
    """The weights as a published file (``_cpu_state``), written atomically."""
    state = _cpu_state(model)
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights as the published files hold them: a plain state_dict on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# --- processes and devices -----------------------------------------------------------


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    own_group: bool = False  # the process group was started here (and ends here)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _start_processes(device: str) -> tuple[_Dist, torch.device]:
    """The process group (under torchrun: WORLD_SIZE > 1) and this rank's device."""
    from salcli.inference.hardware import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), resolve_device(device)
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    own = not dist.is_initialized()
    if own:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", init_method="env://")
    return _Dist(rank, world, local, own), dev


def _all_sum(values: Sequence[float], dist_info: _Dist, device: torch.device) -> list[float]:
    """Element-wise sum over the ranks (float64)."""
    if not dist_info.enabled:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def default_workers(device: torch.device, world: int = 1) -> int:
    """DataLoader workers per rank: on CUDA the CPUs shared out (at most 8); on the CPU
    one worker, so decoding overlaps the model without taking its cores."""
    if device.type != "cuda":
        return 1
    return max(1, min(MAX_DEFAULT_WORKERS, (os.cpu_count() or 1) // max(1, world)))


# --- the model (the four places the trainer knows about) -----------------------------


def _build(options: TrainOptions, *, resume: bool):
    """The model and what it starts from; a resumed run's weights come from its state,
    so its starting files need not exist any more."""
    from salcli.training.init import initial_model

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


# --- batches ---------------------------------------------------------------------------


class EpochBatches(torch.utils.data.Sampler):
    """The keys ``(epoch, video)`` of this rank's share of each global batch.

    The epoch's videos in ``epoch_order``, cut into global batches of ``batch_size``;
    rank r takes elements r, r + N, ... of each. A last batch with fewer windows than
    ranks is left out (only with several ranks). ``set_epoch(e, start)`` skips the first
    ``start`` batches (a resumed epoch)."""

    def __init__(self, n_videos: int, batch_size: int, seed: int, dist_info: _Dist):
        self.n = n_videos
        self.batch_size = batch_size
        self.seed = seed
        self.dist = dist_info
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def global_batches(self, epoch: int) -> list[list[int]]:
        order = epoch_order(self.n, self.seed, epoch)
        batches = [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        if self.dist.enabled and batches and len(batches[-1]) < self.dist.world:
            batches.pop()
        return batches

    def __len__(self) -> int:
        return len(self.global_batches(self.epoch)) - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        r, n = self.dist.rank, self.dist.world
        for b in self.global_batches(self.epoch)[self.start :]:
            yield [(self.epoch, v) for v in b[r::n]]


# --- the run ---------------------------------------------------------------------------


class _Run:
    """One training run's state and loop (``train`` is its public face)."""

    def __init__(self, options: TrainOptions, on_event, stop):
        self.o = options
        self.emit = on_event or (lambda kind, data: None)
        self.stop = stop
        self.out = Path(options.out).expanduser()
        self.terms = parse_loss(options.loss)

    # -- set-up ----------------------------------------------------------------

    def setup(self) -> None:
        from salcli.inference.hardware import PRECISION_NAMES, emulated_precision, resolve_precision

        o = self.o
        o.check()
        self.dist, self.device = _start_processes(o.device)
        self.dtype = resolve_precision(o.precision, self.device)
        self.precision = PRECISION_NAMES[self.dtype]
        if emulated_precision(self.dtype, self.device):
            self.warn(
                f"{self.precision} is emulated on this CPU (no native {self.precision} "
                "arithmetic): correct, but far slower than fp32"
            )
        self._check_out()
        self.sets: TrainingSets = training_sets(o.dataset, o.root, o.split, audio=o.audio)
        self.val_windows = validation_windows(self.sets.val, o.val_stride)
        if not self.val_windows:
            raise DatasetError(
                "no validation window: no validation frame (every "
                f"{o.val_stride}th from frame {CLIP_LEN}) has a non-empty ground truth"
            )
        if self.dist.enabled and o.batch_size < self.dist.world:
            raise UsageError(
                f"--batch-size {o.batch_size} is the global batch: at least one window per "
                f"process ({self.dist.world})"
            )
        torch.manual_seed(o.seed)
        model, report = _build(o, resume=o.resume)
        self.init_lines = report.lines
        if o.resume:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.init_lines = tuple(json.loads((self.out / OPTIONS).read_text())["init"])
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest
        model.to(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self._train_mode()
        self.net: nn.Module = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(model, device_ids=ids, find_unused_parameters=_find_unused(o))
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(model.parameters(), lr=o.lr, fused=fused)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.batches = EpochBatches(len(self.sets.train), o.batch_size, o.seed, self.dist)
        self.steps = len(self.batches.global_batches(0))
        workers = (
            o.workers if o.workers is not None else default_workers(self.device, self.dist.world)
        )
        self.workers = workers
        size = tuple(o.input_size)
        train_ds = WindowDataset(self.sets.train, seed=o.seed, size=size, audio=o.audio)
        val_ds = ValDataset(self.sets.val, self.val_windows, size=size, audio=o.audio)
        self.val_ds = val_ds
        loader_kw = dict(
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=ignore_signals_in_worker if workers else None,
            persistent_workers=workers > 0,
        )
        self.train_loader = torch.utils.data.DataLoader(
            train_ds, batch_sampler=self.batches, generator=torch.Generator(), **loader_kw
        )
        mine = list(range(self.dist.rank, len(val_ds), self.dist.world))
        val_batch = max(1, o.batch_size // self.dist.world)
        self.val_loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(val_ds, mine),
            batch_size=val_batch,
            shuffle=False,
            generator=torch.Generator(),
            **loader_kw,
        )
        # the run's progress
        self.epoch = 0  # 0-based index of the epoch in progress
        self.step = 0  # next step of that epoch
        self.acc = [0.0, 0.0, 0.0]  # this epoch: loss sum, windows, seconds (all ranks)
        self.best_loss: float | None = None
        self.best_epoch: int | None = None
        self.since_best = 0
        self.history: list[EpochRecord] = []
        if o.resume:
            self._load_state()
        elif self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out / OPTIONS, json.dumps(self._run_info(), indent=2) + "\n")
        self._barrier()

    def _check_out(self) -> None:
        state = self.out / STATE
        if self.o.resume:
            if not state.is_file():
                raise UsageError(f"--resume: no {STATE} in {self.out} (nothing to resume)")
            return
        if self.out.exists() and not self.out.is_dir():
            raise OutputError(f"--out {self.out}: not a folder")
        taken = [n for n in (STATE, BEST, LAST) if (self.out / n).exists()]
        if taken:
            raise UsageError(
                f"--out {self.out} already holds a run ({taken[0]}): --resume continues it, "
                "or choose another --out"
            )

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
            "processes": self.dist.world,
            "device": str(self.device),
            "precision": self.precision,
            "workers_per_process": self.workers,
            "loss": [[n, w] for n, w in self.terms],
        }

    def _fingerprint(self) -> dict[str, Any]:
        d = self.o.as_dict()
        fp = {k: d[k] for k in RUN_DEFINING}
        names = "\n".join(v.key for v in self.sets.train)
        fp["train_videos"] = f"{len(self.sets.train)}:{zlib.crc32(names.encode()):08x}"
        return fp

    # -- state -----------------------------------------------------------------

    def _rng_states(self) -> dict[str, list[torch.Tensor]]:
        own = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            own["cuda"] = torch.cuda.get_rng_state(self.device)
        if not self.dist.enabled:
            return {k: [v] for k, v in own.items()}
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.dist.world
        dist.all_gather_object(gathered, own)
        return {k: [g[k] for g in gathered] for k in own}

    def _save_state(self) -> None:
        rng = self._rng_states()  # every rank takes part
        if not self.dist.main:
            return
        state = {
            "format": STATE_FORMAT,
            "salcli_version": __version__,
            "fingerprint": self._fingerprint(),
            "epoch": self.epoch,
            "step": self.step,
            "acc": list(self.acc),
            "model": _cpu_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "since_best": self.since_best,
            "history": [r.as_dict(digits=None) for r in self.history],
        }
        write_atomic(self.out / STATE, lambda tmp: torch.save(state, tmp))

    def _load_state(self) -> None:
        path = self.out / STATE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line
            from salcli.errors import one_line

            raise WeightsError(f"{path}: not a readable training state ({one_line(exc)})") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise WeightsError(f"{path}: not a salcli training state (format {STATE_FORMAT})")
        theirs, ours = state["fingerprint"], self._fingerprint()
        changed = [k for k in ours if theirs.get(k) != ours[k]]
        if changed:
            k = changed[0]
            raise UsageError(
                f"--resume: the run in {self.out} was made with {k} = {theirs.get(k)!r}, not "
                f"{ours[k]!r}" + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
            )
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        r = self.dist.rank if len(rng["cpu"]) == self.dist.world else 0
        torch.set_rng_state(rng["cpu"][r])
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"][min(r, len(rng["cuda"]) - 1)], self.device)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.acc = [float(v) for v in state["acc"]]
        self.best_loss = state["best_loss"]
        self.best_epoch = state["best_epoch"]
        self.since_best = int(state["since_best"])
        self.history = [
            EpochRecord(**{k: (math.nan if v is None else v) for k, v in h.items()})
            for h in state["history"]
        ]

    def _barrier(self) -> None:
        if self.dist.enabled:
            import torch.distributed as dist

            dist.barrier()

    def warn(self, message: str) -> None:
        if self.dist.main:
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
        return _all_sum([flag], self.dist, self.device)[0] > 0

    def _train_step(self, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
        """One optimizer step; (loss sum, windows) of this rank's share."""
        valid = batch["valid"]
        n_valid = int(valid.sum())
        if 0 < n_valid < valid.numel():  # a video without any usable target: leave it out
            batch = {k: v[valid] for k, v in batch.items()}
        batch = self._to_device(batch)
        total = _all_sum([n_valid], self.dist, self.device)[0]
        with self._autocast():
            pred = _forward(self.net, batch, self.o.audio)
        per = loss_per_sample(pred, batch["target"], self.terms)  # (B,)
        if n_valid == 0:
            per = per * 0.0
        # the mean over the global batch, whatever each rank holds (DDP averages ranks)
        loss = per.sum() * (self.dist.world / max(total, 1.0))
        self.optimizer.zero_grad(set_to_none=True)
        if total > 0:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return float(per.detach().sum()) if n_valid else 0.0, n_valid

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and VAL_METRICS over the validation windows (means, NaNs skipped)."""
        from salcli import metrics as M
        from salcli.models.vinet_procedure import postprocess

        model = self.model
        model.eval()
        # sums and counts: loss, then each metric
        sums = np.zeros(1 + len(VAL_METRICS))
        counts = np.zeros(1 + len(VAL_METRICS))
        for batch in self.val_loader:
            index = batch["index"].tolist()
            batch = self._to_device(batch)
            with self._autocast():
                pred = _forward(model, batch, self.o.audio)
            per = loss_per_sample(pred, batch["target"], self.terms).cpu().numpy()
            maps = pred.float().cpu().numpy()  # (B, h, w)
            for i, m, loss in zip(index, maps, per, strict=True):
                dens, fix = self.val_ds.ground_truth(i)
                p = postprocess(m, *dens.shape)  # as predict writes it, at the GT's size
                scores = [
                    float(loss),
                    M.cc(p, dens),
                    M.sim(p, dens),
                    M.kld(p, dens),
                    M.nss(p, fix),
                ]
                for k, s in enumerate(scores):
                    if math.isfinite(s):
                        sums[k] += s
                        counts[k] += 1
        self._train_mode()
        total = _all_sum([*sums, *counts], self.dist, self.device)
        n = len(sums)
        means = [s / c if c else math.nan for s, c in zip(total[:n], total[n:], strict=True)]
        return {"loss": means[0], **dict(zip(VAL_METRICS, means[1:], strict=True)), "n": total[n]}

    def _finish_epoch(self, trained: bool = True) -> EpochRecord:
        """Validate, record, save (best.pt when better, the state); ``trained=False``:
        the starting weights' "epoch 0" (``validate_first``)."""
        number = self.epoch + 1 if trained else 0
        t0 = time.perf_counter()
        if self.dist.main:
            self.emit("validate", {"epoch": number, "windows": len(self.val_windows)})
        val = self.validate()
        val_seconds = time.perf_counter() - t0
        loss_sum, windows, seconds = _all_sum(self.acc[:2], self.dist, self.device) + [self.acc[2]]
        improved = math.isfinite(val["loss"]) and (
            self.best_loss is None or val["loss"] < self.best_loss
        )
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
            self.best_loss, self.best_epoch, self.since_best = val["loss"], number, 0
        else:
            self.since_best += 1
        self.history.append(record)
        if trained:
            self.epoch, self.step, self.acc = self.epoch + 1, 0, [0.0, 0.0, 0.0]
        if self.dist.main:
            if improved:
                _save_weights(self.model, self.out / BEST)
            self._write_log()
        self._save_state()
        self._barrier()
        return record

    def _write_last(self) -> None:
        if self.dist.main:
            _save_weights(self.model, self.out / LAST)

    def _write_log(self) -> None:
        from salcli.training.log import plot_curves

        lines = "".join(json.dumps(r.as_dict()) + "\n" for r in self.history)
        write_text_atomic(self.out / LOG, lines)
        plot_curves([r.as_dict() for r in self.history], self.out / PLOT)

    def _result(self, status: str) -> TrainResult:
        return TrainResult(
            status=status,
            out=self.out,
            epochs=self.epoch,
            best_epoch=self.best_epoch,
            best_val_loss=self.best_loss,
            history=list(self.history),
        )

    def run(self) -> TrainResult:
        o = self.o
        if self.dist.main:
            self.emit(
                "start",
                {
                    **self._run_info(),
                    "start_epoch": self.epoch + 1,
                    "start_step": self.step,
                    "epochs": o.epochs,
                },
            )
        if self.history and self._early_stop():
            self._write_last()
            return self._result("early-stopped")
        consistent = True  # the model and optimizer are between two steps
        try:
            if o.validate_first and not self.history and self.epoch == 0 and self.step == 0:
                record = self._finish_epoch(trained=False)
                if self.dist.main:
                    self.emit("epoch", {"record": record, "epochs": o.epochs})
            while self.epoch < o.epochs:
                self.batches.set_epoch(self.epoch, self.step)
                if self.dist.main:
                    self.emit("epoch_start", {"epoch": self.epoch + 1, "epochs": o.epochs,
                                              "steps": self.steps, "step": self.step})  # fmt: skip
                if self.step < self.steps:
                    if self._stop_requested():
                        return self._stopped()
                    started = time.perf_counter()
                    for batch in self.train_loader:
                        consistent = False
                        loss_sum, n = self._train_step(batch)
                        self.step += 1
                        now = time.perf_counter()
                        self.acc = [self.acc[0] + loss_sum, self.acc[1] + n,
                                    self.acc[2] + now - started]  # fmt: skip
                        started = now
                        consistent = True
                        if self.dist.main:
                            self.emit(
                                "step",
                                {
                                    "epoch": self.epoch + 1,
                                    "step": self.step,
                                    "steps": self.steps,
                                    "loss": loss_sum / n if n else math.nan,
                                    "windows": n * self.dist.world,
                                    "seconds": self.acc[2],
                                    "epoch_windows": self.acc[1] * self.dist.world,
                                },
                            )
                        if self._stop_requested():
                            return self._stopped()
                record = self._finish_epoch()
                if self.dist.main:
                    self.emit("epoch", {"record": record, "epochs": o.epochs})
                if self._early_stop():
                    self._write_last()
                    return self._result("early-stopped")
        except KeyboardInterrupt:
            if consistent and not self.dist.enabled:
                self._save_state()
                self._write_last()
            raise
        self._write_last()
        return self._result("done")

    def _early_stop(self) -> bool:
        return self.o.patience is not None and self.since_best >= self.o.patience

    def _stopped(self) -> TrainResult:
        self._save_state()
        self._write_last()
        if self.dist.main and self.history:
            self._write_log()
        self._barrier()
        return self._result("stopped")

    def close(self) -> None:
        for loader in ("train_loader", "val_loader"):
            it = getattr(getattr(self, loader, None), "_iterator", None)
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
        dist_info = getattr(self, "dist", None)
        if dist_info is not None and dist_info.own_group:
            import torch.distributed as dist

            dist.destroy_process_group()


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
