"""The processes of a training run: one, or several under ``torchrun`` (WORLD_SIZE > 1).

``start_processes`` joins (or starts) the process group and picks this rank's device;
the collectives the trainer needs go through here (``all_sum``, ``all_gather``,
``barrier``), and do nothing but the local work in a run of one process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from salcli.inference.hardware import resolve_device


@dataclass(frozen=True)
class Processes:
    """This process's place in the run."""

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


def start_processes(device: str) -> tuple[Processes, torch.device]:
    """The process group (under torchrun: WORLD_SIZE > 1) and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes(), resolve_device(device)
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    own = not dist.is_initialized()
    if own:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", init_method="env://")
    return Processes(rank, world, local, own), dev


def end_processes(procs: Processes) -> None:
    """End the process group if ``start_processes`` started it."""
    if procs.own_group:
        dist.destroy_process_group()


def all_sum(values: Sequence[float], procs: Processes, device: torch.device) -> list[float]:
    """Element-wise sum over the ranks (float64)."""
    if not procs.enabled:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather(obj: Any, procs: Processes) -> list[Any]:
    """Every rank's ``obj``, in rank order (picklable objects)."""
    if not procs.enabled:
        return [obj]
    gathered: list[Any] = [None] * procs.world
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(procs: Processes) -> None:
    """Wait for every rank."""
    if procs.enabled:
        dist.barrier()
