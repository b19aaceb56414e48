"""The one bounded worker pool every image decode of this process runs in.

Decoding a photo needs memory in proportion to its pixels (photos.decode_cost), not to its
size on the wire: an all-zero 7000x7000 PNG is 190 KB and decodes to 196 MB. So image
work never runs on an unbounded number of threads (asyncio.to_thread would run up to
min(32, cpus + 4) of them): `workers` decodes at a time across all sessions, each within
`budget / workers` bytes (photos.clean_photo refuses what would need more), and the others
wait their turn. After each decode the C heap is trimmed, so a burst of large photos does
not leave the process hundreds of MB larger for the rest of its life.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def _load_malloc_trim() -> Callable[[int], int] | None:
    # glibc only (Debian); elsewhere freed memory goes back however that libc does it.
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc.malloc_trim if libc is not None else None  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def give_back_memory() -> None:
    """Return the freed C heap (every arena) to the OS."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class ImagePool:
    def __init__(self, workers: int, budget_bytes: int) -> None:
        self.workers = workers
        self.budget_bytes = budget_bytes
        # What one decode may use: the pool never runs more than `workers` at once.
        self.per_decode_bytes = budget_bytes // workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image")

    async def run(self, fn: Callable[[], T]) -> T:
        def job() -> T:
            try:
                return fn()
            finally:
                give_back_memory()

        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
