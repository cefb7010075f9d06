"""The options of a training run, validated once (``TrainOptions.check``), read by the
trainer, the CLI and the run's records (``options.json``, the resume fingerprint).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from salcli.defaults import DEFAULT_DEVICE, DEFAULT_FUSION, DEFAULT_PRECISION, FUSIONS
from salcli.errors import OptionError, UsageError
from salcli.models.vinet_procedure import CLIP_LEN, INPUT_H, INPUT_W
from salcli.options import option, parse_size
from salcli.training.recipe import recipe_of

LOSS_TERMS = ("kld", "cc", "kld-batch")
BATCH_LOSS = "kld-batch"  # TASED-Net's KL over a mini-batch: alone, summed over a step
BN_MODES = ("train", "frozen")  # BatchNorm while training: batch statistics, or running ones
VAL_STRIDE = 4 * CLIP_LEN  # frames between two validation windows of a video
DEFAULT_BN = "train"
DEFAULT_OUT = "run"
DEFAULT_SEED = 0
# options that shape the result: a resumed run must have the same ones
RUN_DEFINING = ("dataset", "split", "model", "audio", "fusion", "batch_size", "lr", "loss",
                "seed", "input_size", "val_stride", "init", "soundnet", "bn",
                "micro_batch")  # fmt: skip
VISUAL_MODELS = ("vinet", "vinet-s", "tased")  # --model (with --audio: AViNet, on ViNet)
# the fields whose default is the model's published recipe (salcli.training.recipe)
RECIPE_FIELDS = ("loss", "lr", "batch_size", "epochs", "micro_batch")


DATASET_HELP = (
    "dhf1k, hollywood2, ucf, diem, coutrot1, coutrot2, avad, etmd, summe, ntire26; several "
    "joined by commas; av = the six audio-visual sets together."
)


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run is given: one table, read by the trainer, the CLI (its
    options are generated from these fields) and the run's records; ``check`` validates."""

    dataset: str = option(..., "--dataset", "-d", help=DATASET_HELP)
    root: str | None = option(
        None, "--root", help="Data root (default: $SALCLI_DATA, then ~/.local/share/salcli)."
    )
    split: str | None = option(
        None,
        "--split",
        help="Audio-visual sets: the fold 1, 2 or 3 (default 1; DIEM has one). "
        "Frame-folder sets: the training folder (default train or training). ntire26: "
        "none (its train list, every 10th video held out for validation).",
    )
    model: str = option(
        "vinet",
        "--model",
        help="The visual model: vinet, vinet-s (ViNet-S: ViNet's backbone, a grouped "
        "decoder; its weights' licence is CC BY-NC-SA 4.0) or tased (TASED-Net, with its "
        "own recipe: SGD, KL over each mini-batch). With --audio: AViNet, on ViNet.",
    )
    audio: bool = option(False, "--audio", help="Train AViNet (the datasets' wav).")
    fusion: str = option(
        DEFAULT_FUSION, "--fusion", help="With --audio: bilinear, transformer or concat."
    )
    init: str | None = option(
        None,
        "--init",
        help="Starting weights: a checkpoint file or registry name (ViNet, ViNet-S, "
        "TASED-Net: S3D Kinetics-400 or a checkpoint of the model or of ViNet; AViNet: a "
        "ViNet or same-fusion AViNet checkpoint), or none "
        "[default: the visual models from s3d-kinetics400 (or its torchvision copy), "
        "AViNet from vinet-dhf1k].",
    )
    soundnet: str | None = option(
        None, "--soundnet", help="With --audio: SoundNet-8 weights [default: soundnet8]."
    )
    epochs: int | None = option(
        None,
        "--epochs",
        help="Epochs (one window per video each) [default: the model's recipe: 40; TASED-Net 67].",
    )
    batch_size: int | None = option(
        None,
        "--batch-size",
        "-b",
        help="Windows per step, all processes together [default: the model's recipe: 8; "
        "TASED-Net 40].",
    )
    micro_batch: int | None = option(
        None,
        "--micro-batch",
        help="Windows per forward pass (per process); a step's gradients are summed over "
        "them [default: the whole step; TASED-Net's recipe: 8].",
    )
    lr: float | None = option(
        None,
        "--lr",
        help="The learning rate: Adam's [default 1e-4]; TASED-Net: SGD's for the decoder, "
        "the encoder's is 1/100 of it [default 0.1].",
    )
    loss: str = option(
        None,
        "--loss",
        help="kld, or kld,cc (KLD - CC); weights as kld,cc=0.5; or kld-batch (TASED-Net's "
        "KL over each mini-batch, summed) [default: the model's published recipe: kld for "
        "ViNet and AViNet, kld,cc for ViNet-S, kld-batch for TASED-Net].",
    )
    out: str = option(DEFAULT_OUT, "--out", "-o", help="Output folder of the run.")
    resume: bool = option(False, "--resume", help="Continue the run in --out.")
    device: str = option(DEFAULT_DEVICE, "--device", help="auto, cpu or cuda.")
    precision: str = option(
        DEFAULT_PRECISION, "--precision", help="auto, fp32, bf16 or fp16 (with a GradScaler)."
    )
    loader_workers: int | None = option(
        None,
        "--loader-workers",
        "--workers",
        help="DataLoader workers per process [default: 1 on CPU, up to 8 on CUDA].",
    )
    seed: int = option(DEFAULT_SEED, "--seed", help="Seed of the initialisation and the windows.")
    patience: int | None = option(
        None, "--patience", help="Stop after P epochs without a lower validation loss."
    )
    input_size: tuple[int, int] = option(
        (INPUT_H, INPUT_W),
        "--input-size",
        help="Model input HxW, multiples of 32 (smaller trains faster, and is not the "
        "published recipe).",
        cli_type=str,
        cli_default=f"{INPUT_H}x{INPUT_W}",
    )
    val_stride: int = option(
        VAL_STRIDE, "--val-stride", help="Frames between two validation clips of a video."
    )
    validate_first: bool = option(
        False,
        "--validate-first",
        help="Score the starting weights before training (epoch 0 of the log; they are "
        "best.pt if no epoch beats them).",
    )
    bn: str = option(
        DEFAULT_BN,
        "--bn",
        help="BatchNorm while training: train (the published recipe: batch statistics, "
        "running averages updated slowly) or frozen (running statistics, kept as loaded).",
    )

    def __post_init__(self) -> None:
        size = parse_size(self.input_size) or (INPUT_H, INPUT_W)
        object.__setattr__(self, "input_size", size)
        for name in ("root", "out"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else str(value))
        recipe = recipe_of(self.model)
        for name in RECIPE_FIELDS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(recipe, name))

    @property
    def arch(self) -> str:
        return self.fusion if self.audio else self.model

    def check(self) -> None:
        """UsageError for values out of range or contradicting each other."""
        if self.epochs < 1:
            raise OptionError("epochs", "must be at least 1")
        if self.batch_size < 1:
            raise OptionError("batch_size", "must be at least 1")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise OptionError("micro_batch", "must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise OptionError("lr", "must be a positive number")
        if self.loader_workers is not None and self.loader_workers < 0:
            raise OptionError("loader_workers", "must be 0 or more")
        if self.patience is not None and self.patience < 1:
            raise OptionError("patience", "must be at least 1 epoch")
        if self.model not in VISUAL_MODELS:
            raise OptionError("model", f"{self.model!r}: choose from {', '.join(VISUAL_MODELS)}")
        if self.audio and self.model != "vinet":
            raise OptionError("model", f"{self.model}: AViNet (audio) is built on ViNet")
        if self.fusion not in FUSIONS:
            raise OptionError("fusion", f"{self.fusion!r}: choose from {', '.join(FUSIONS)}")
        h, w = self.input_size
        if h % 32 or w % 32 or min(h, w) < 32:
            raise OptionError("input_size", f"{h}x{w}: must be multiples of 32 pixels")
        if self.arch == "bilinear" and (h, w) != (INPUT_H, INPUT_W):
            raise OptionError(
                "input_size", f"{h}x{w}: AViNet (bilinear) works only at {INPUT_H}x{INPUT_W}"
            )
        if self.bn not in BN_MODES:
            raise OptionError("bn", f"{self.bn!r}: choose from {', '.join(BN_MODES)}")
        if self.val_stride < 1:
            raise OptionError("val_stride", "must be at least 1 frame")
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
            raise UsageError(f"loss {text!r}: terms are {', '.join(LOSS_TERMS)} (e.g. kld,cc=0.5)")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise UsageError(f"loss {text!r}: {weight!r} is not a weight") from None
        if not (w > 0 and math.isfinite(w)):
            raise UsageError(f"loss {text!r}: weights must be positive")
        terms.append((name, w))
    if not terms or len({n for n, _ in terms}) != len(terms):
        raise UsageError(f"loss {text!r}: name each of {', '.join(LOSS_TERMS)} at most once")
    if len(terms) > 1 and BATCH_LOSS in dict(terms):
        raise UsageError(f"loss {text!r}: {BATCH_LOSS} is a loss alone (summed, not averaged)")
    return tuple(terms)
