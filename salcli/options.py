"""The one table of options: every option of ``salcli predict`` is declared here, once.

Each option is a field of a frozen dataclass with its default, its CLI flags, its help
and its check. Everything else reads this table:

- the API: ``Predictor(weights, **options)`` and ``predict_many(inputs, out, **options)``
  build ``PredictOptions`` / ``BatchOptions``, which validate every value once;
- the CLI: ``salcli predict``'s options are generated from the fields (``cli_params``);
- records and HDF5 attributes: the fields marked ``shapes_maps`` are the settings a
  re-run must match to take earlier outputs for its own (``Predictor.settings``).

Errors name the option as the caller spelled it: ``OptionError.option`` is the field
name; the CLI prints the flag instead (``--batch-size must be at least 1``). The tables
become command-line parameters in ``salcli.cli._options``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from salcli.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_FORMATS,
    DEFAULT_H5_DTYPE,
    DEFAULT_LEASE_S,
    DEFAULT_PRECISION,
    DEFAULT_REUSE_BATCH_SIZE,
    DEVICES,
    FORMATS,
    FUSIONS,
    H5_DTYPES,
    HEARTBEATS_PER_LEASE,
    MAX_FPS,
    PRECISIONS,
    WARMUP_POLICIES,
)
from salcli.errors import OptionError, UsageError, escape


def option(
    default: Any,
    *flags: str,
    help: str,
    shapes_maps: bool = False,
    cli_type: type | None = None,
    cli_default: str | None = None,
    **typer_kw: Any,
) -> Any:
    """A field of an options table. ``default`` ``...``: required. ``flags`` empty: an
    API-only option (no CLI flag). ``shapes_maps``: a different value gives different
    maps (records compare it)."""
    meta = {"flags": flags, "help": help, "shapes_maps": shapes_maps, "typer": typer_kw}
    if cli_type is not None:
        meta["cli_type"] = cli_type
    if cli_default is not None:
        meta["cli_default"] = cli_default  # the default as the command line writes it
    if default is ...:
        return field(metadata=meta)
    if isinstance(default, list | tuple | dict):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def _one_of(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise OptionError(name, f"{value!r}: choose from {', '.join(choices)}")


def _at_least(name: str, value: int | None, low: int) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
        raise OptionError(name, f"must be an integer of at least {low}, got {value!r}")


def parse_formats(value: str | Iterable[str]) -> tuple[str, ...]:
    """ "png,h5" or ("png", "h5") -> ("png", "h5"): known formats, duplicates dropped."""
    items = value.split(",") if isinstance(value, str) else list(value)
    formats = [str(f).strip().lower() for f in items if str(f).strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        given = ",".join(map(str, items))
        raise OptionError("formats", f"{given!r}: choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(formats))


def parse_weights(value: str | os.PathLike | Sequence | None) -> str | tuple[str, ...] | None:
    """One checkpoint (a path or name: a str), several (a tuple: an ensemble, in order), or
    None (the family's default file). A sequence of one is that one checkpoint."""
    if value is None or isinstance(value, str | os.PathLike):
        return None if value is None else str(value)
    items = tuple(str(v) for v in value)
    if not items:
        return None
    return items[0] if len(items) == 1 else items


def parse_pair(
    value: str | Sequence[int] | None, name: str, spelled: str, minimum: int = 1
) -> tuple[int, int] | None:
    """ "AxB" or (A, B) -> (A, B), each at least ``minimum``; None or "" stays None. Errors
    name the option ``name`` and the form ``spelled`` ("HxW, e.g. 224x384")."""
    if value is None or value == "":
        return None
    try:
        a, b = (int(v) for v in (value.lower().split("x") if isinstance(value, str) else value))
    except (ValueError, TypeError):
        raise OptionError(name, f"{value!r}: expected {spelled}") from None
    if a < minimum or b < minimum:
        least = "positive sizes" if minimum == 1 else f"sizes of at least {minimum}"
        raise OptionError(name, f"{value!r}: expected {least}")
    return a, b


def parse_size(value: str | Sequence[int] | None) -> tuple[int, int] | None:
    """ "224x384" or (224, 384) -> (224, 384); None stays None (the model family's size)."""
    return parse_pair(value, "input_size", "HxW, e.g. 224x384")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """ "K/N" -> (K, N) with 1 <= K <= N; None or "" -> None."""
    if not text:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise OptionError("shard", f"{text!r}: expected K/N, e.g. 3/8") from None
    if not 1 <= k <= n:
        raise OptionError("shard", f"{text!r}: K must be between 1 and N")
    return k, n


def _check_fps(value: float | None) -> None:
    if value is not None and not (0 < value <= MAX_FPS):
        raise OptionError("fps", f"must be in (0, {MAX_FPS:g}] frames/s, got {value!r}")


@dataclass(frozen=True)
class PredictOptions:
    """How videos are predicted: the model, how it runs, the procedure, the outputs."""

    # --- the model ---------------------------------------------------------------------
    weights: str | tuple[str, ...] | None = option(
        None,
        "--weights",
        "-w",
        help="Checkpoint file, file name in the weights folders, or registry name "
        "[default: ViNet_DHF1K.pt; with --audio AViNet_bilinear.pt]. The model family "
        "(ViNet, AViNet, STAViS) is recognised from the checkpoint. Repeated: an ensemble, "
        "every model run over one decode and their maps averaged (docs/predict.md).",
        cli_type=list[str],
    )
    audio: bool = option(
        False,
        "--audio",
        help="Use the soundtrack: AViNet checkpoints need it; with a STAViS checkpoint it "
        "chooses the audio-visual model (both published STAViS files have the same keys, "
        "so the file cannot say: visual_split* without --audio, audiovisual_split* with).",
    )
    fusion: str | None = option(
        None, "--fusion", help="With --audio: the fusion the checkpoint must have "
        f"({', '.join(FUSIONS)}) [default: the checkpoint's]."
    )  # fmt: skip
    device: str = option(DEFAULT_DEVICE, "--device", help=f"{', '.join(DEVICES)}.")
    precision: str = option(
        DEFAULT_PRECISION,
        "--precision",
        help=f"{', '.join(PRECISIONS)}. auto: bf16 on a GPU and on a CPU with bf16 "
        "instructions (AVX512-BF16, AMX), else fp32 (the choice is printed and recorded "
        "in the outputs).",
        shapes_maps=True,
    )
    batch_size: int | None = option(
        None,
        "--batch-size",
        "-b",
        help=f"Clips per forward pass [default: on CPU {DEFAULT_REUSE_BATCH_SIZE} with --reuse "
        f"({2 * DEFAULT_REUSE_BATCH_SIZE} in bf16/fp16), {DEFAULT_BATCH_SIZE} without; on CUDA "
        "as many as fit in memory].",
    )
    reuse: bool | None = option(
        None,
        "--reuse/--no-reuse",
        help="Compute the backbone work that consecutive clips share once per batch: the "
        "same maps, fewer operations [default: on for the CPU].",
        show_default=False,
    )
    compile: bool = option(False, "--compile", help="torch.compile the model (CUDA, long runs).")
    input_size: tuple[int, int] | None = option(
        None,
        "--input-size",
        help="Model input HxW [default: the family's: 224x384 for ViNet/AViNet, multiples "
        "of 32; STAViS and AViNet (bilinear) take only their own]. Smaller is faster and "
        "not what the models were trained on.",
        shapes_maps=True,
        cli_type=str,
    )
    channels_last: bool | None = option(
        None, help="Run the model channels-last 3-D [default: on CPU and CUDA]."
    )
    gpu_resize: bool | None = option(
        None, help="On CUDA, resize frames on the GPU [default: on for CUDA]."
    )
    # --- the procedure -----------------------------------------------------------------
    warmup: str | None = option(
        None,
        "--warmup",
        help="Frames without a full clip (ViNet, ViNet-S, AViNet: the first 31; ViNet-A: "
        "the first and last 31; STAViS: the first 8) [default: mirror]: mirror reflects the "
        "video's frames into the missing ones; reference does as the authors (ViNet: "
        "reversed clips; ViNet-S, ViNet-A: the nearest frame repeated; STAViS: frame 8's "
        "map). "
        "Every frame gets one map, also in videos shorter than a clip.",
        shapes_maps=True,
    )
    domain: str | None = option(
        None,
        "--domain",
        help="UNISAL's domain, the per-dataset layers its maps come from: DHF1K, Hollywood, "
        "UCFSports (videos: 5, 4, 4 interleaved sequences) or SALICON (still images; with "
        "weights_ft_mit1003.pth, MIT1003's) [default: DHF1K for videos, SALICON for images].",
        shapes_maps=True,
    )
    stride: int = option(
        1,
        "--stride",
        help="Run the model on every K-th frame (and the last) and interpolate the maps "
        "linearly in time between them: fewer clips through the model, approximate maps.",
        shapes_maps=True,
    )
    fps: float | None = option(
        None,
        "--fps",
        help="Frame rate of folders of frames [default: 30]; a video file has its own.",
        shapes_maps=True,
    )
    allow_silence: bool = option(
        False, "--allow-silence", help="With --audio: go on with silence when a video has none."
    )
    # --- the outputs -------------------------------------------------------------------
    formats: tuple[str, ...] = option(
        DEFAULT_FORMATS,
        "--format",
        "-f",
        help="Comma-separated outputs: png, h5, mp4 (heat map over the video), video (the "
        "maps as a lossless grey video, the NTIRE 2026 submission format).",
        cli_type=str,
    )
    h5_dtype: str = option(
        DEFAULT_H5_DTYPE, "--h5-dtype", help=f"Values of the HDF5 stack: {', '.join(H5_DTYPES)}."
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "weights", parse_weights(self.weights))
        if self.fusion is not None:
            _one_of("fusion", self.fusion, FUSIONS)
        _one_of("device", self.device, DEVICES)
        _one_of("precision", self.precision, PRECISIONS)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("stride", self.stride, 1)
        set_(self, "input_size", parse_size(self.input_size))  # the family checks the size
        if self.warmup is not None:
            _one_of("warmup", self.warmup, WARMUP_POLICIES)
        _check_fps(self.fps)
        set_(self, "formats", parse_formats(self.formats))
        _one_of("h5_dtype", self.h5_dtype, H5_DTYPES)

    def replace(self, **changes: Any) -> PredictOptions:
        return dataclasses.replace(self, **changes)

    def writer_options(self) -> dict[str, Any]:
        return {"h5_dtype": self.h5_dtype}


@dataclass(frozen=True)
class BatchOptions:
    """Which inputs a batch run takes and what it does with finished ones."""

    recursive: bool = option(False, "--recursive", "-r", help="Descend into folders.")
    glob: str | None = option(None, "--glob", help="Only files whose name matches.")
    images: bool = option(
        False,
        "--images",
        help="Folders of images are photos, each predicted alone (UNISAL: as an image), "
        "not the frames of one video.",
    )
    overwrite: bool = option(
        False, "--overwrite", help="Redo finished videos (otherwise they are skipped)."
    )
    shard: tuple[int, int] | None = option(
        None,
        "--shard",
        help="Process the K-th of N deterministic shares of the inputs: K/N.",
        cli_type=str,
    )
    wait: bool = option(
        True,
        "--wait/--no-wait",
        help="Videos another live run has claimed are left to it and looked at again after "
        "the list: wait until each is finished (skipped), failed or taken over from a dead "
        "run (then done here); --no-wait reports those still claimed as 'claimed'.",
    )
    lease: float = option(
        DEFAULT_LEASE_S,
        "--lease",
        help="Seconds without a heartbeat after which a claim made on another host is "
        f"taken over (claims are refreshed every lease/{HEARTBEATS_PER_LEASE}; on this "
        "host a dead run's claim is taken over at once).",
        metavar="SECONDS",
    )

    def __post_init__(self) -> None:
        if isinstance(self.shard, str):
            object.__setattr__(self, "shard", parse_shard(self.shard))
        check_lease(self.lease)


def check_lease(lease: float) -> None:
    """A lease is a positive number of seconds."""
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not lease > 0:
        raise OptionError("lease", f"must be a number of seconds above 0, got {lease!r}")


RAY_LOCAL = "local"  # --ray local: start a Ray instance on this machine


def _check_ray_address(address: str) -> None:
    """local, auto, ray://HOST:PORT or HOST:PORT (a head node's GCS address)."""
    if address in (RAY_LOCAL, "auto") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not (sep and host and port.isdigit() and "/" not in host):
        raise OptionError(
            "ray",
            f"{escape(repr(address))}: expected local, auto, HOST:PORT or ray://HOST:PORT "
            "(the option takes a value: {ray} local starts Ray on this machine)",
            options=("ray",),
        )


@dataclass(frozen=True)
class ClusterOptions:
    """Where a batch runs: on this process (``ray`` None) or on a Ray cluster
    (``salcli.corpus.cluster``, the ``ray`` extra)."""

    ray: str | None = option(
        None,
        "--ray",
        help="Run the videos on a Ray cluster (pip install 'salcli[ray]'): local starts "
        "Ray on this machine; auto joins the cluster this machine is part of; HOST:PORT "
        "is a head node's address, ray://HOST:PORT one through Ray Client. Outputs must "
        "go to a folder every worker can write.",
        metavar="ADDRESS",
    )
    workers: int | None = option(
        None,
        "--workers",
        help="With --ray: workers, each loading the model once and predicting one video "
        "at a time [default: one per GPU of the cluster, or per --cpus-per-worker CPUs "
        "where it has none].",
    )
    gpus_per_worker: float | None = option(
        None,
        "--gpus-per-worker",
        help="With --ray: GPUs per worker; a fraction shares a GPU [default: 1 where the "
        "cluster has GPUs and --device is not cpu, else 0].",
    )
    cpus_per_worker: int = option(
        1, "--cpus-per-worker", help="With --ray: CPU cores per worker (its torch threads)."
    )

    def __post_init__(self) -> None:
        if self.ray is not None:
            _check_ray_address(str(self.ray))
        _at_least("workers", self.workers, 1)
        _at_least("cpus_per_worker", self.cpus_per_worker, 1)
        g = self.gpus_per_worker
        if g is not None and (isinstance(g, bool) or not isinstance(g, int | float) or g < 0):
            raise OptionError("gpus_per_worker", f"must be a number of at least 0, got {g!r}")
        if self.ray is None:
            given = [f.name for f in fields(self) if getattr(self, f.name) != f.default]
            if given:
                raise OptionError(
                    given[0], "needs {ray} (a Ray cluster to run on)", options=("ray",)
                )


def split_cluster(options: Mapping[str, Any]) -> tuple[ClusterOptions | None, dict[str, Any]]:
    """Keyword options -> (ClusterOptions, or None when ``ray`` is None; the others)."""
    names = {f.name for f in fields(ClusterOptions)}
    cluster = ClusterOptions(**{k: v for k, v in options.items() if k in names})
    rest = {k: v for k, v in options.items() if k not in names}
    return (cluster if cluster.ray is not None else None), rest


OPTION_TABLES = (BatchOptions, PredictOptions)  # the options of a batch (split_options)


def split_options(options: Mapping[str, Any]) -> tuple[BatchOptions, PredictOptions]:
    """Keyword options -> (BatchOptions, PredictOptions); unknown names are refused."""
    names = {cls: {f.name for f in fields(cls)} for cls in OPTION_TABLES}
    unknown = set(options) - set().union(*names.values())
    if unknown:
        raise UsageError(f"unknown option {sorted(unknown)[0]!r}")
    batch = BatchOptions(**{k: v for k, v in options.items() if k in names[BatchOptions]})
    opts = PredictOptions(**{k: v for k, v in options.items() if k in names[PredictOptions]})
    return batch, opts


def make_options(options: PredictOptions | Mapping[str, Any] | None = None, **kw: Any):
    """A ``PredictOptions`` from one, from keywords, or both (keywords win)."""
    if isinstance(options, PredictOptions):
        return options.replace(**kw) if kw else options
    return PredictOptions(**{**dict(options or {}), **kw})


def map_settings_names() -> tuple[str, ...]:
    """The options whose value shapes the maps, in table order."""
    return tuple(f.name for f in fields(PredictOptions) if f.metadata.get("shapes_maps"))


__all__ = [
    "BatchOptions",
    "ClusterOptions",
    "OptionError",
    "PredictOptions",
    "make_options",
    "map_settings_names",
    "parse_formats",
    "parse_size",
    "parse_weights",
    "split_cluster",
    "split_options",
]
