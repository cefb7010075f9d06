"""The DataLoaders of a training run: which windows each rank takes, and the workers
that decode them.

Each epoch visits the training videos in ``epoch_order``, cut into global batches of
``batch_size`` windows; rank r of N takes elements r, r + N, ... of each
(``EpochBatches``). The validation windows are shared out the same way. The loaders draw
from generators of their own, so that the windows of a step do not depend on the
number of workers or on what ran before.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from salcli.models.vinet_procedure import frame_to_tensor
from salcli.training.data import (
    TrainingSets,
    ValDataset,
    ValWindow,
    WindowDataset,
    epoch_order,
)
from salcli.training.processes import Processes

MAX_DEFAULT_LOADER_WORKERS = 8  # DataLoader workers per rank when not told (CUDA)


class EpochBatches(torch.utils.data.Sampler):
    """The keys ``(epoch, video)`` of this rank's share of each global batch.

    The epoch's videos in ``epoch_order``, cut into global batches of ``batch_size``;
    rank r takes elements r, r + N, ... of each. A last batch with fewer windows than
    ranks is left out (only with several ranks). ``set_epoch(e, start)`` skips the first
    ``start`` batches (a resumed epoch)."""

    def __init__(self, n_videos: int, batch_size: int, seed: int, procs: Processes):
        self.n = n_videos
        self.batch_size = batch_size
        self.seed = seed
        self.procs = procs
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def global_batches(self, epoch: int) -> list[list[int]]:
        order = epoch_order(self.n, self.seed, epoch)
        batches = [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        if self.procs.enabled and batches and len(batches[-1]) < self.procs.world:
            batches.pop()
        return batches

    def __len__(self) -> int:
        return len(self.global_batches(self.epoch)) - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        r, n = self.procs.rank, self.procs.world
        for b in self.global_batches(self.epoch)[self.start :]:
            yield [(self.epoch, v) for v in b[r::n]]


def ignore_signals_in_worker(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the main process, which stops
    after the current step and saves where it was (a worker killed by the signal would
    make the main process fail instead)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def default_loader_workers(device: torch.device, world: int = 1) -> int:
    """DataLoader workers per rank: on CUDA the CPUs shared out (at most 8); on the CPU
    one worker, so decoding overlaps the model without taking its cores."""
    if device.type != "cuda":
        return 1
    return max(1, min(MAX_DEFAULT_LOADER_WORKERS, (os.cpu_count() or 1) // max(1, world)))


@dataclass
class Loaders:
    """A run's loaders: ``batches`` is the training loader's sampler (``set_epoch``
    chooses the epoch and the step it starts at)."""

    batches: EpochBatches
    train: torch.utils.data.DataLoader
    val: torch.utils.data.DataLoader
    val_ds: ValDataset  # the validation windows' ground truth (``ground_truth``)
    workers: int  # DataLoader workers per loader


def make_loaders(
    sets: TrainingSets,
    val_windows: Sequence[ValWindow],
    *,
    batch_size: int,
    seed: int,
    size: tuple[int, int],
    audio: bool,
    workers: int | None,
    procs: Processes,
    device: torch.device,
    transform: Callable[..., torch.Tensor] = frame_to_tensor,
    flip: bool = False,
) -> Loaders:
    """The training and validation loaders of this rank; ``workers`` None: the default
    for ``device``; ``transform`` and ``flip``: the model's recipe's frames
    (``salcli.training.recipe``)."""
    batches = EpochBatches(len(sets.train), batch_size, seed, procs)
    if workers is None:
        workers = default_loader_workers(device, procs.world)
    train_ds = WindowDataset(sets.train, seed=seed, size=size, audio=audio, transform=transform,
                             flip=flip)  # fmt: skip
    val_ds = ValDataset(sets.val, val_windows, size=size, audio=audio, transform=transform)
    loader_kw = dict(
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=ignore_signals_in_worker if workers else None,
        persistent_workers=workers > 0,
    )
    train = torch.utils.data.DataLoader(
        train_ds, batch_sampler=batches, generator=torch.Generator(), **loader_kw
    )
    mine = list(range(procs.rank, len(val_ds), procs.world))
    val = torch.utils.data.DataLoader(
        torch.utils.data.Subset(val_ds, mine),
        batch_size=max(1, batch_size // procs.world),
        shuffle=False,
        generator=torch.Generator(),
        **loader_kw,
    )
    return Loaders(batches, train, val, val_ds, workers)


def shut_down(loader: torch.utils.data.DataLoader | None) -> None:
    """End a loader's persistent workers now (rather than when it is collected)."""
    it = getattr(loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        it._shutdown_workers()
