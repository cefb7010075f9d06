"""What this machine can do, and the choices that follow from it: the device, the
precision ("auto": bf16 where it is native, from the CPU's flags and oneDNN's cap), and
host memory kept for reuse.

Host memory for CPU inference: freed blocks are kept for reuse instead of given back.
PyTorch's CPU tensors come from ``malloc``. glibc serves each block over 128 KiB (a
batch's activations are tens to hundreds of MiB) with a fresh ``mmap`` and returns it
to the system when it is freed, so every layer's output is new memory that the kernel
must map and zero page by page as it is first written: a page fault per 4 KiB. On a
2-core virtual machine that made a plain copy of a 66 MB activation take 25 ms instead
of 3 ms, and a bf16 map about 30 % of its time (one thread, ``benchmarks/profile_model.py``).

``keep_freed_memory`` tells glibc to serve large blocks from its heap and to keep freed
memory there, so that the next batch's tensors reuse the pages of the last one. It
changes no value, only where memory comes from; the process's resident memory stays at
its high-water mark (which a batch bounds) instead of shrinking between batches.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
from pathlib import Path

import torch

from salcli.defaults import DEVICES, PRECISIONS
from salcli.errors import OptionError
from salcli.models.layers import onednn_computes

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_NAMES = {v: k for k, v in DTYPES.items()}


def resolve_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise OptionError("device", f"{device!r}: choose from {', '.join(DEVICES)}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise OptionError("device", "cuda: no CUDA device is available")
    return torch.device(device)


# oneDNN's CPU instruction-set levels, as ONEDNN_MAX_CPU_ISA names them, and their bit
# masks (dnnl_cpu_isa_t): a level includes another when it holds all the other's bits.
ONEDNN_ISA_MASKS = {
    "SSE41": 0x1,
    "AVX": 0x3,
    "AVX2": 0x7,
    "AVX2_VNNI": 0xF,
    "AVX2_VNNI_2": 0x1F,  # converts bf16 / fp16, multiplies in fp32
    "AVX512_CORE": 0x27,  # Skylake-SP ... Ice Lake: oneDNN emulates bf16 with fp32 FMAs
    "AVX512_CORE_VNNI": 0x67,
    "AVX512_CORE_BF16": 0xE7,  # bf16 dot products (Cooper Lake, Zen 4 / 5)
    "AVX10_1_512": 0x1EF,
    "AVX512_CORE_FP16": 0x1EF,  # fp16 arithmetic (Sapphire Rapids)
    "AVX10_1_512_AMX": 0xFEF,
    "AVX512_CORE_AMX": 0xFEF,  # AMX tiles, bf16 (Sapphire Rapids)
    "AVX10_1_512_AMX_FP16": 0x1FEF,
    "AVX512_CORE_AMX_FP16": 0x1FEF,  # AMX tiles, fp16 too (Granite Rapids)
}
# per 16-bit dtype: the CPU flags (as Linux names them) of instructions that multiply it
# natively, and the oneDNN level that uses them
NATIVE_DOT = {
    torch.bfloat16: (("avx512_bf16", "amx_bf16"), ONEDNN_ISA_MASKS["AVX512_CORE_BF16"]),
    torch.float16: (("avx512_fp16", "amx_fp16"), ONEDNN_ISA_MASKS["AVX512_CORE_FP16"]),
}
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


@functools.cache
def x86_cpu_flags() -> frozenset[str] | None:
    """This x86 CPU's feature flags as Linux lists them (``/proc/cpuinfo``); None on
    other CPUs or where that file cannot be read."""
    if platform.machine().lower() not in X86_MACHINES:
        return None
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def onednn_isa_cap() -> int | None:
    """The bit mask of the level ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) caps
    oneDNN at; None when it is unset, ALL, DEFAULT or not a level named here."""
    name = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    return ONEDNN_ISA_MASKS.get(name.strip().upper())


def cpu_multiplies_natively(dtype: torch.dtype) -> bool | None:
    """Whether this CPU's convolutions in ``dtype`` (bf16 / fp16) run on instructions
    made for it, so that they can beat fp32: oneDNN computes the dtype
    (``onednn_computes``), the CPU has those instructions (AVX512-BF16 or AMX for bf16,
    AVX512-FP16 or AMX-FP16 for fp16) and ``ONEDNN_MAX_CPU_ISA`` does not cap them off.
    None where the CPU's flags cannot be read (not x86, or no ``/proc/cpuinfo``).

    oneDNN alone says yes on any AVX-512 CPU: it emulates bf16 there with fp32
    arithmetic, at about a third of the fp32 rate (salcli measured 184 against 532
    GFLOP/s with oneDNN capped at AVX512_CORE).
    """
    if dtype not in NATIVE_DOT or not onednn_computes(dtype):
        return False
    flags = x86_cpu_flags()
    if flags is None:
        return None
    names, level = NATIVE_DOT[dtype]
    cap = onednn_isa_cap()
    return any(f in flags for f in names) and (cap is None or cap & level == level)


def cpu_has_native_bf16() -> bool:
    """True when this CPU is known to multiply bf16 natively (AVX512-BF16 / AMX): ``auto``
    picks bf16 there, and only there (``cpu_multiplies_natively``)."""
    return cpu_multiplies_natively(torch.bfloat16) is True


def cpu_has_native_fp16() -> bool:
    """True when this CPU is known to multiply fp16 natively (AVX512-FP16 / AMX-FP16)."""
    return cpu_multiplies_natively(torch.float16) is True


def emulated_precision(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``dtype`` arithmetic is known to be emulated on ``device`` (correct, but
    several times slower than fp32): bf16 or fp16 on a CPU without the instructions for
    it; False where that cannot be told."""
    if device.type != "cpu" or dtype == torch.float32:
        return False
    if dtype == torch.bfloat16:
        native = cpu_has_native_bf16()
    else:
        native = cpu_has_native_fp16()
    return not native and cpu_multiplies_natively(dtype) is not None


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """ "auto": bf16 on CUDA (fp16 where it lacks bf16) and on CPUs with native bf16,
    else fp32; the others name their dtype."""
    if precision not in PRECISIONS:
        raise OptionError("precision", f"{precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return DTYPES[precision]


# --- host memory --------------------------------------------------------------------


# mallopt(3) parameters
M_TRIM_THRESHOLD = -1  # free memory at the heap's top kept before returning it
M_TOP_PAD = -2  # extra bytes taken each time the heap grows
M_MMAP_MAX = -4  # blocks served by mmap at most (0: none, the heap serves all)

KEEP_FREED_BYTES = 2**31 - 1  # the largest trim threshold (an int): never trim
HEAP_GROWTH_PAD = 64 * 2**20  # bytes: grow the heap in large steps

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory of every size for reuse (process-wide, once).

    Returns whether it applies: False where the C library is not glibc (macOS,
    Windows, musl), and nothing is changed there.
    """
    if "applied" not in _state:
        _state["applied"] = _apply()
    return _state["applied"]


def _apply() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, KEEP_FREED_BYTES), (M_TOP_PAD, HEAP_GROWTH_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)
