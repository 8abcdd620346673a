"""Process-level setup: device choice and the CPU memory allocator.

On glibc, large tensors are mmap-ed and unmapped on every step, so a DP step that allocates big
per-sample buffers spends much of its time page-faulting (measured: 20-80% of CPU time). Keeping
freed memory in the heap (no mmap for large blocks, no trimming) removes that cost at the price of
a higher resident peak. dpbench does this at start-up; set DPBENCH_STOCK_MALLOC=1 to opt out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_allocator() -> bool:
    """Switch glibc malloc to keep freed memory; True if it was applied."""
    if os.environ.get("DPBENCH_STOCK_MALLOC") == "1":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def pick_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA when available, CPU otherwise; anything else is passed to ``torch.device``."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{requested}' was requested but CUDA is not available; use device=auto or device=cpu")
    return device
