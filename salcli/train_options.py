"""The options of a training run, validated once (``TrainOptions.check``), read by the
trainer, the CLI and the run's records (``options.json``, the resume fingerprint).

Free of torch, so that the command line can show its defaults without loading it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .defaults import (
    CLIP_LEN,
    DEFAULT_DEVICE,
    DEFAULT_FUSION,
    DEFAULT_PRECISION,
    FUSIONS,
    INPUT_H,
    INPUT_W,
)
from .errors import UsageError

DEFAULT_EPOCHS = 40
DEFAULT_BATCH = 8  # windows per optimizer step (all ranks together)
DEFAULT_LR = 1e-4
DEFAULT_LOSS = "kld"
LOSS_TERMS = ("kld", "cc")
BN_MODES = ("train", "frozen")  # BatchNorm while training: batch statistics, or running ones
VAL_STRIDE = 4 * CLIP_LEN  # frames between two validation windows of a video
DEFAULT_BN = "train"
DEFAULT_OUT = "run"
DEFAULT_SEED = 0
# options that shape the result: a resumed run must have the same ones
RUN_DEFINING = ("dataset", "split", "audio", "fusion", "batch_size", "lr", "loss", "seed",
                "input_size", "val_stride", "init", "soundnet", "bn")  # fmt: skip


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run is given (the CLI's options, validated by ``check``)."""

    dataset: str  # "dhf1k", "diem,coutrot2", "av" (the six audio-visual sets) ...
    root: str | None = None  # data root (default: $SALCLI_DATA, then the user data folder)
    split: str | None = None  # audio-visual fold 1-3 (default 1); frame-folder: train folder
    audio: bool = False  # AViNet
    fusion: str = DEFAULT_FUSION  # with audio: bilinear, transformer or concat
    init: str | None = None  # checkpoint / registry name / "none"; None: the recipe's
    soundnet: str | None = None  # AViNet's SoundNet-8 weights; None: soundnet8_final.pth
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH
    lr: float = DEFAULT_LR
    loss: str = DEFAULT_LOSS  # "kld", "kld,cc" or with weights "kld,cc=0.5"
    out: str = DEFAULT_OUT
    resume: bool = False
    device: str = DEFAULT_DEVICE
    precision: str = DEFAULT_PRECISION
    workers: int | None = None  # DataLoader workers per rank; None: chosen per device
    seed: int = DEFAULT_SEED
    patience: int | None = None  # epochs without a better validation loss before stopping
    input_size: tuple[int, int] = (INPUT_H, INPUT_W)  # (h, w), multiples of 32
    val_stride: int = VAL_STRIDE  # frames between validation windows
    validate_first: bool = False  # score the starting weights first ("epoch 0")
    bn: str = DEFAULT_BN  # "train" (published) or "frozen" (running statistics, not updated)

    @property
    def arch(self) -> str:
        return self.fusion if self.audio else "vinet"

    def check(self) -> None:
        """UsageError for values out of range or contradicting each other."""
        if self.epochs < 1:
            raise UsageError("--epochs must be at least 1")
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError("--lr must be a positive number")
        if self.workers is not None and self.workers < 0:
            raise UsageError("--workers must be 0 or more")
        if self.patience is not None and self.patience < 1:
            raise UsageError("--patience must be at least 1 epoch")
        if self.fusion not in FUSIONS:
            raise UsageError(f"unknown fusion {self.fusion!r} (choose from {', '.join(FUSIONS)})")
        h, w = self.input_size
        if h % 32 or w % 32 or min(h, w) < 32:
            raise UsageError("the input size must be multiples of 32 pixels")
        if self.arch == "bilinear" and (h, w) != (INPUT_H, INPUT_W):
            raise UsageError(f"AViNet (bilinear) works only at the {INPUT_H}x{INPUT_W} input size")
        if self.bn not in BN_MODES:
            raise UsageError(f"--bn must be one of {', '.join(BN_MODES)}, not {self.bn!r}")
        if self.val_stride < 1:
            raise UsageError("the validation stride must be at least 1 frame")
        parse_loss(self.loss)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


def parse_loss(text: str) -> tuple[tuple[str, float], ...]:
    """``"kld"`` -> (("kld", 1.0),); ``"kld,cc"`` -> KLD and CC with weight 1 each;
    ``"kld,cc=0.5"``: CC's weight 0.5. The loss is sum(w * KLD) - sum(w * CC)."""
    terms: list[tuple[str, float]] = []
    for part in (p.strip().lower() for p in str(text).split(",")):
        if not part:
            continue
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in LOSS_TERMS:
            raise UsageError(
                f"--loss {text!r}: terms are {', '.join(LOSS_TERMS)} (e.g. kld,cc=0.5)"
            )
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise UsageError(f"--loss {text!r}: {weight!r} is not a weight") from None
        if not (w > 0 and math.isfinite(w)):
            raise UsageError(f"--loss {text!r}: weights must be positive")
        terms.append((name, w))
    if not terms or len({n for n, _ in terms}) != len(terms):
        raise UsageError(f"--loss {text!r}: name each of {', '.join(LOSS_TERMS)} at most once")
    return tuple(terms)
