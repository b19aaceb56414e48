"""The one bounded pool every read of this process runs in (server/inspect/read.py).

A read holds one core for about a second and tesseract's memory (~60 MB), so at most
`workers` run at once, in threads (tesseract is a child process and OpenCV/zxing release
the GIL: the event loop keeps running), and at most `max_waiting` more wait for a turn;
past that a read is refused at once (`PoolBusy`) instead of queueing without bound. A
read that takes longer than `timeout_s` is answered with `PoolTimeout`; its thread ends
when tesseract's own timeout (3/4 of it, server/inspect/read.py) kills the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class PoolBusy(Exception):
    """Every worker is busy and the waiting line is full."""


class PoolTimeout(Exception):
    """The job did not finish in time."""


class InspectPool:
    def __init__(self, workers: int, max_waiting: int, timeout_s: float) -> None:
        self.workers, self.max_waiting, self.timeout_s = workers, max_waiting, timeout_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inspect")
        self._slots = asyncio.Semaphore(workers)
        self.admitted = 0  # running or waiting now
        self.running = 0
        self.peak_running = 0  # the most that ever ran at once (tests, metrics)
        self.refused = 0

    async def run(self, fn: Callable[[], T]) -> T:
        if self.admitted >= self.workers + self.max_waiting:
            self.refused += 1
            raise PoolBusy
        self.admitted += 1
        try:
            async with self._slots:
                self.running += 1
                self.peak_running = max(self.peak_running, self.running)
                try:
                    fut = asyncio.get_running_loop().run_in_executor(self._executor, fn)
                    # shield: a timeout answers the client, the thread finishes on its own
                    # (still holding its slot, so the bound stays true).
                    try:
                        return await asyncio.wait_for(asyncio.shield(fut), self.timeout_s)
                    except TimeoutError:
                        await asyncio.wait([fut])
                        raise PoolTimeout from None
                finally:
                    self.running -= 1
        finally:
            self.admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
