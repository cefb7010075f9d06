"""Host memory for CPU inference: freed blocks kept for reuse instead of given back.

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
import sys

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
