"""Process memory tuning for a long-running daemon that holds large arrays.

glibc serves allocations over its mmap threshold (128 KiB at start) with their own mapping:
freed straight back to the OS, and grown with mremap, without a copy. But glibc raises that
threshold on the fly, up to 32 MiB, each time such a block is freed, and the daemon frees
large blocks all the time (every checkpoint document is one). After that, the seen-ledger's
arrays and the checkpoint buffers come from the heap, where growing a block may copy it and
freed space is rarely returned. Measured at 1M live events (bench/RESULTS.md, memory): peak
RSS 250–261 MiB with the moving threshold, 195 MiB with it pinned.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept fixed
ENV_OVERRIDE = "MALLOC_MMAP_THRESHOLD_"  # glibc reads this at start; then it is the operator's


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold (setting it also stops the dynamic adjustment).

    False when there is nothing to do: not glibc (musl, macOS), or the operator set
    MALLOC_MMAP_THRESHOLD_ in the environment, which glibc has already applied.
    """
    if ENV_OVERRIDE in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
