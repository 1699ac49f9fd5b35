"""A batch of an arriving file hashed in another thread while this one writes it.

Writing to the page cache and SHA-256 both release the GIL on large buffers, so on two cores a
large upload costs the longer of the two instead of their sum (SHA-256 runs at ~1.8 GB/s here,
about as fast as the disk takes the bytes). The call returns once both are done: the caller keeps
its pieces, and the hash has seen them in order, exactly as if it had hashed them itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

Buffer = bytes | bytearray | memoryview

# Smaller batches are hashed in the caller's thread: the hand-off costs more than it saves.
PARALLEL_FROM = 256 * 1024

_pools: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    """This process's hashing threads (a forked child gets its own: its parent's threads are not
    there)."""
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        pool = _pools[pid] = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="sha256")
    return pool


def _update_all(sha: Any, pieces: Sequence[Buffer]) -> None:
    for piece in pieces:
        sha.update(piece)


def update_beside(sha: Any, pieces: Sequence[Buffer], work: Callable[[], None]) -> None:
    """Feed `pieces` to `sha` (a hashlib object) in another thread while `work()` runs here."""
    if sum(len(piece) for piece in pieces) < PARALLEL_FROM:
        work()
        _update_all(sha, pieces)
        return
    hashing = _pool().submit(_update_all, sha, pieces)
    try:
        work()
    finally:
        wait([hashing])  # even when `work` failed: the pieces and the hash are the caller's again
    hashing.result()
