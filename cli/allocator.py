"""glibc's malloc, kept from handing memory back to the kernel between one buffer and the next.

An upload arrives in buffers of a few hundred KiB (uvicorn's 256 KiB reads, SSH packets of up to
256 KiB): each is allocated, filled, written and freed, thousands of times a second. glibc's
defaults give the top of the heap back to the kernel once more than twice the largest recent
buffer is free there, so the next buffer takes fresh pages: a page fault and a page of zeros for
every 4 KiB that arrives. A bare uvicorn app that only discards a request body spent ~60 % of its
CPU there, and took 0.8-0.9 GB/s from curl; with the thresholds below, 1.8-2.2 GB/s.

Keeping up to TRIM_THRESHOLD free at the top of the heap (per malloc arena) ends that; buffers of
MMAP_THRESHOLD or more still get their own mapping, given back when freed. Only with glibc (musl,
macOS: nothing to do); it changes no behaviour, only how often memory goes back and forth.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 32 * 1024 * 1024
MMAP_THRESHOLD = 4 * 1024 * 1024

_tuned = False


def tune_allocator() -> bool:
    """Set glibc's trim and mmap thresholds for this process (once); whether they were set."""
    global _tuned
    if _tuned:
        return True
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # mallopt answers 1 on success. The mmap threshold first: setting either one fixes both (glibc
    # stops adjusting them itself), and buffers up to 4 MiB then stay on the heap.
    mmap_set = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    _tuned = mmap_set and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned
