"""Each trainable model's published recipe: the defaults of a run (loss, learning rate,
batch, epochs), its optimizer and learning-rate schedule, and its data (frame transform,
augmentation).

- ViNet and AViNet (the ViNet paper): Adam at 1e-4, batches of 8 windows, KL divergence,
  40 epochs; ViNet-S (its authors' train script): the same with KLD - CC.
- TASED-Net (the authors' ``run_train.py``, ``loss.py``, ``dataset.py``): SGD with
  momentum 0.9 and weight decay 2e-7; the decoder (``convtsp*``) at a learning rate of
  0.1, the S3D encoder at 1/100 of it (0.001); mini-batches of 8 windows whose gradients
  are summed over 5 per step (a step: 40 windows; salcli's ``micro_batch`` 8 of a
  ``batch_size`` 40); the loss their KL divergence, prediction and target each divided
  by their sum over the whole mini-batch (``kld-batch``, eps = 2.22e-16), summed over a
  step's mini-batches; the decoder's rate divided by 10 at steps 750 and 950 of 1000;
  frames as their inference reads them, frames and target flipped left-right together
  with probability 1/2.

  Their 1000 steps of 40 windows are 66.7 passes over DHF1K's 600 training videos;
  salcli counts epochs (one window per video each), so the default is 67 epochs and
  the decoder's milestones are at 75 % and 95 % of the run's steps. On two GPUs their
  DataParallel split each mini-batch of 8 into BatchNorm batches of 4; salcli's
  BatchNorm sees the whole micro-batch (per process).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from salcli.models import tased_procedure, vinet_procedure

DECAY = 0.1  # the factor of each milestone of a learning-rate schedule


@dataclass(frozen=True)
class Recipe:
    """What a model's published recipe fixes."""

    loss: str  # salcli.training.options.parse_loss's text
    lr: float  # the learning rate (with ``encoder_lr_factor``: the decoder's)
    batch_size: int  # windows per optimizer step
    epochs: int
    optimizer: str = "adam"  # "adam" | "sgd"
    micro_batch: int | None = None  # windows per forward pass (None: the whole step)
    encoder_lr_factor: float = 1.0  # the encoder's learning rate, as a share of ``lr``
    momentum: float = 0.0  # SGD's
    weight_decay: float = 0.0
    milestones: tuple[float, ...] = ()  # shares of the run's steps where ``lr`` decays
    flip: bool = False  # frames and target flipped left-right, with probability 1/2
    transform: Callable = vinet_procedure.frame_to_tensor  # (rgb, size) -> (3, h, w)


VINET_RECIPE = Recipe(loss="kld", lr=1e-4, batch_size=8, epochs=40)
TASED_RECIPE = Recipe(
    loss="kld-batch",
    lr=0.1,
    batch_size=40,  # 5 mini-batches of 8
    micro_batch=8,
    epochs=67,  # their 1000 steps of 40 windows over DHF1K's 600 training videos
    optimizer="sgd",
    encoder_lr_factor=0.01,  # 0.001 for the encoder
    momentum=0.9,
    weight_decay=2e-7,
    milestones=(0.75, 0.95),  # their steps 750 and 950 of 1000
    flip=True,
    transform=tased_procedure.frame_to_tensor,
)
RECIPES: dict[str, Recipe] = {
    "vinet": VINET_RECIPE,
    "vinet-s": Recipe(loss="kld,cc", lr=1e-4, batch_size=8, epochs=40),
    "tased": TASED_RECIPE,
}


def recipe_of(model: str) -> Recipe:
    """The recipe of ``--model`` (AViNet trains with ViNet's)."""
    return RECIPES.get(model, VINET_RECIPE)


def parameter_groups(model: nn.Module, recipe: Recipe, lr: float) -> list[dict]:
    """The optimizer's groups: the decoder at ``lr`` and the encoder at its share where
    the recipe gives it one (a model with ``decoder_parameters``), else one group."""
    if recipe.encoder_lr_factor == 1.0 or not hasattr(model, "decoder_parameters"):
        return [{"params": list(model.parameters()), "lr": lr, "base_lr": lr}]
    encoder_lr = lr * recipe.encoder_lr_factor
    return [
        {"params": model.encoder_parameters(), "lr": encoder_lr, "base_lr": encoder_lr,
         "fixed": True},
        {"params": model.decoder_parameters(), "lr": lr, "base_lr": lr},
    ]  # fmt: skip


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float, device: torch.device):
    groups = parameter_groups(model, recipe, lr)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay)  # fmt: skip
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(groups, lr=lr, weight_decay=recipe.weight_decay, fused=fused)


def scheduled_lr(base: float, recipe: Recipe, step: int, total: int) -> float:
    """The learning rate at global ``step`` (0-based) of ``total``: ``base`` times
    ``DECAY`` for each milestone reached (a milestone at share s is step round(s total))."""
    passed = sum(step >= round(share * total) for share in recipe.milestones)
    return base * DECAY**passed


def set_lr(optimizer: torch.optim.Optimizer, recipe: Recipe, step: int, total: int) -> None:
    """Every scheduled group's rate for global ``step`` (a pure function of it: a resumed
    run continues the schedule exactly); groups marked ``fixed`` keep theirs."""
    for group in optimizer.param_groups:
        if not group.get("fixed"):
            group["lr"] = scheduled_lr(group["base_lr"], recipe, step, total)


def flips(seed: int, epoch: int, key: int) -> bool:
    """Whether a window is flipped left-right: a pure function of (seed, epoch, video)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 2, epoch, key])
    return bool(rng.random() < 0.5)
