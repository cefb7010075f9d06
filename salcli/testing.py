"""What the tests and benchmarks share: deterministic checkpoints from key/shape manifests,
the fp32 rounding model their numerical bounds come from, and the faults a test sets off
in a cluster's workers.

Each tensor is filled from its own key (the rule of the reference manifests), so any
implementation with the same ``state_dict`` keys rebuilds the very same weights:
``z = default_rng(crc32(key)).standard_normal(shape)``, then by key suffix: counters 0,
running means 0.1 z, running variances 1 + 0.1 |z|, 1-D weights 1 + 0.1 z, 1-D biases
0.1 z, positional tables the sinusoid, others z * sqrt(2 / fan_in).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _sinusoid(max_len: int, d: int) -> torch.Tensor:
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(max_len, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table[:, None, :]  # (L, 1, d)


def fill_tensor(key: str, shape: list[int] | tuple[int, ...]) -> torch.Tensor:
    """The deterministic value of one checkpoint entry."""
    shape = tuple(shape)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if key == "pe" or key.endswith(".pe"):
        return _sinusoid(shape[0], shape[2])
    z = np.random.default_rng(zlib.crc32(key.encode())).standard_normal(shape)
    z = z.astype(np.float32)
    if key.endswith("running_mean"):
        v = 0.1 * z
    elif key.endswith("running_var"):
        v = 1.0 + 0.1 * np.abs(z)
    elif len(shape) == 1:
        v = 1.0 + 0.1 * z if key.endswith("weight") else 0.1 * z
    else:
        v = z * math.sqrt(2.0 / int(np.prod(shape[1:])))
    return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))


def load_manifest(path: str | Path) -> dict[str, list[int]]:
    with open(path) as f:
        return json.load(f)["keys"]


def deterministic_state_dict(manifest: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """A full state_dict for ``manifest`` (key -> shape), filled by the rule above."""
    return {key: fill_tensor(key, shape) for key, shape in manifest.items()}


def tamed_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """``deterministic_state_dict`` of the manifest at ``path``, with the manifest's
    taming for real video where it has one (``model.tamed_for_real_video``: tensors
    times exact powers of two, so that real frames keep the logits moderate)."""
    with open(path) as f:
        manifest = json.load(f)
    sd = deterministic_state_dict(manifest["keys"])
    for key, factor in manifest.get("model", {}).get("tamed_for_real_video", {}).items():
        if math.log2(factor) != round(math.log2(factor)):
            raise ValueError(f"{key}: the taming factor {factor} is not a power of two")
        sd[key] = sd[key] * factor
    return sd


def reference_inputs(h: int = 224, w: int = 384, t: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The clip and waveform the reference outputs were computed from."""
    clip = np.random.default_rng(20201211).standard_normal((1, 3, t, h, w)).astype(np.float32)
    audio = 0.1 * np.random.default_rng(20201212).standard_normal((1, 1, 70560, 1))
    return clip, audio.astype(np.float32)


# The reference README's "tamed" STAViS weights: these tensors of the filled checkpoint
# times 2**e (exact), so that real-range input (pixels minus the mean, about +-150) keeps
# every logit moderate; the plain fill overflows the attention softmax there.
STAVIS_TAMING = {
    "conv1.weight": -6,
    "soundnet8.0.weight": -8,
    **{f"score_dsn.{i}.score_dsn.weight": -3 for i in range(4)},
    "fuse.weight": -3,
    "fuseav.weight": -4,
}
STAVIS_OPTIMIZERS = ("optimizer_global", "optimizer_sal", "optimizer_sound", "optimizer_fusion")


def stavis_snapshot(manifest: dict[str, list[int]], *, tamed: bool = False) -> dict:
    """A STAViS checkpoint as published (train.py's snapshot at epoch 60): the fill rule,
    each tensor seeded from its key as the manifest writes it (``module.`` included),
    optionally tamed, wrapped with ``epoch``, ``arch`` and four empty optimizer states."""
    state = {}
    for key, shape in manifest.items():
        value = fill_tensor(key, shape)
        exponent = STAVIS_TAMING.get(key.removeprefix("module.")) if tamed else None
        state[key] = value * 2.0**exponent if exponent is not None else value
    empty = {"state": {}, "param_groups": []}
    return {"epoch": 61, "arch": "resnet-50", "state_dict": state} | {
        name: dict(empty) for name in STAVIS_OPTIMIZERS
    }


# The UNISAL section's "tamed" weights for real video: each domain's adaptation weights
# times 2**-2 (exact); the plain fill gives very peaked maps on real frames.
UNISAL_TAMING = {
    f"adaptation_{d}.0.weight": -2 for d in ("dhf1k", "hollywood", "ucfsports", "salicon")
}


def unisal_state_dict(manifest: dict[str, list[int]], *, tamed: bool = False) -> dict:
    """A UNISAL checkpoint as published (a plain state_dict): the fill rule, optionally
    tamed for real video (``UNISAL_TAMING``)."""
    sd = deterministic_state_dict(manifest)
    if tamed:
        for key, exponent in UNISAL_TAMING.items():
            sd[key] = sd[key] * 2.0**exponent
    return sd


def randomize_norms(model: nn.Module, seed: int = 1) -> nn.Module:
    """``model`` in eval mode with every BatchNorm's statistics and affine terms drawn away
    from the identity (seeded), so that folding them into the convolutions matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                n = mod.num_features
                mod.running_mean.copy_((torch.rand(n, generator=g) - 0.5) * 0.2)
                mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_((torch.rand(n, generator=g) - 0.5) * 0.2)
    return model.eval()


# --- the fp32 rounding model -------------------------------------------------------------
#
# An fp32 result differs from the exact one (fp64: the same on every machine to ~1e-13)
# by rounding, and what differs between CPUs is the order of the sums (oneDNN's AVX2,
# AVX-512 and AMX kernels block reductions differently, a second thread splits them
# again), so no one machine's measurement bounds another's. The model: every convolution,
# linear and bilinear output is a sum of K products (exact in fused multiply-adds) into an
# fp32 accumulator. Added one by one in a random order, random-signed products leave an
# error of standard deviation u * sqrt((K + 1) / 6) * ||products||_2 (u = 2**-24: each
# addition rounds by up to u, uniformly, and the partial sums grow as sqrt(j)); blocked
# kernels add shorter partial sums and do better, so this envelopes them all. Storing the
# output rounds it by up to u more. ``fp32_rounding`` adds exactly that noise to fp64
# runs: each seed is one possible fp32 machine. ``rounding_envelope`` is the largest
# error of a few such runs, times ``ENVELOPE_MARGIN`` (samples of a maximum vary): a
# bound on how far any CPU's fp32 result lies from the exact one.

U32 = 2.0**-24  # fp32 unit roundoff
ENVELOPE_MARGIN = 1.5  # envelope over the largest sampled error
ENVELOPE_SAMPLES = 3  # noise-model runs per envelope
_LINEAR, _BILINEAR = F.linear, F.bilinear  # unpatched, for the squares


def _noisy(op: Callable, squares: Callable, generator: torch.Generator) -> Callable:
    """``op`` in fp64 plus the rounding noise of an fp32 machine (see the module text).
    ``squares(*args)`` gives (the sum of squared products of each output, K)."""

    def run(*args, **kw):
        out = op(*args, **kw)
        if out.dtype != torch.float64:
            return out
        sq, k = squares(*args, **kw)
        noise = torch.randn(out.shape, generator=generator, dtype=out.dtype)
        spread = U32 * math.sqrt((k + 1) / 6) * sq.clamp_min(0).sqrt() + U32 * out.abs()
        return out + noise * spread

    return run


def _conv_squares(op: Callable) -> Callable:
    def squares(x, w, bias=None, *args, **kw):
        return op(x * x, w * w, None, *args, **kw), w[0].numel()  # K: in / groups x kernel

    return squares


def _transpose_squares(op: Callable) -> Callable:
    def squares(x, w, bias=None, *args, **kw):
        return op(x * x, w * w, None, *args, **kw), w.shape[0] * w[0, 0].numel()

    return squares


def _linear_squares(x, w, bias=None):
    return _LINEAR(x * x, w * w), w.shape[1]


def _bilinear_squares(x1, x2, w, bias=None):
    return _BILINEAR(x1 * x1, x2 * x2, w * w), w.shape[1] * w.shape[2]


@contextlib.contextmanager
def fp32_rounding(seed: int) -> Iterator[None]:
    """Within the block, fp64 convolutions, linear and bilinear layers carry the rounding
    noise of one fp32 machine (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    names = ("conv2d", "conv3d", "conv_transpose2d", "linear", "bilinear")
    originals = {n: getattr(F, n) for n in names}
    squares = {
        "conv2d": _conv_squares(originals["conv2d"]),
        "conv3d": _conv_squares(originals["conv3d"]),
        "conv_transpose2d": _transpose_squares(originals["conv_transpose2d"]),
        "linear": _linear_squares,
        "bilinear": _bilinear_squares,
    }
    try:
        for n in names:
            setattr(F, n, _noisy(originals[n], squares[n], gen))
        yield
    finally:
        for n, fn in originals.items():
            setattr(F, n, fn)


def absolute_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b|."""
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(1, |b|): the reference README's measure for STAViS's logits."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float((np.abs(a - b) / np.maximum(1.0, np.abs(b))).max())


def rounding_envelope(
    run: Callable[[], torch.Tensor],
    measure: Callable[[np.ndarray, np.ndarray], float] = absolute_error,
    samples: int = ENVELOPE_SAMPLES,
) -> tuple[np.ndarray, float, list[float]]:
    """(exact output, envelope E, the sampled errors) of ``run()``, a computation in fp64
    (a model ``.double()`` on fp64 inputs): E bounds, in ``measure``, how far the same
    computation in fp32 lands from the exact output on any CPU (see above)."""
    with torch.inference_mode():
        exact = run().numpy()
        sampled = []
        for seed in range(samples):
            with fp32_rounding(seed):
                sampled.append(measure(run().numpy(), exact))
    return exact, ENVELOPE_MARGIN * max(sampled), sampled


# --- faults in a cluster's workers ------------------------------------------------------
#
# ``SALCLI_TEST_FAULT=MODE:STEM[:MARKER][,...]``, read on the driver and acted on by the
# workers (salcli.corpus.workers) at video STEM's map ``FAULT_FRAME``. MODE: ``fail``
# raises an error in the video; ``kill`` kills the worker's process (every attempt);
# ``kill-once`` kills it while the file MARKER does not exist, writing into MARKER first
# the hidden temporaries then in the output folder; ``stall`` waits until the run is
# stopped.

FAULT_ENV = "SALCLI_TEST_FAULT"
FAULT_FRAME = 2  # the map at which a fault strikes
FAULT_POLL_S = 0.5  # s between looks at the stop request of a stalled video


def strike(faults: str, stem: str, out_dir: Path, stopping: threading.Event, stopped: type) -> None:
    """Set off the faults ``faults`` names for video ``stem`` (``stopped``: the exception
    a stalled video raises once the run is stopped)."""
    for fault in faults.split(","):
        mode, _, rest = fault.partition(":")
        name, _, marker = rest.partition(":")
        if name != stem:
            continue
        if mode == "fail":
            raise RuntimeError(f"test fault ({FAULT_ENV})")
        if mode == "stall":
            while not stopping.wait(FAULT_POLL_S):
                pass
            raise stopped()
        if mode == "kill-once":
            if Path(marker).exists():
                continue
            hidden = sorted(e.name for e in os.scandir(out_dir) if e.name.startswith("."))
            Path(marker).write_text("\n".join(hidden) + "\n")
        if mode in ("kill", "kill-once"):
            os.kill(os.getpid(), signal.SIGKILL)
