"""Frame assembly for frame subscribers (the recorder), in batches: the packet path only
keeps each packet, and one timer per event loop assembles every publisher's packets at
most ASSEMBLY_BATCH_S later.

Why: run once per packet, as the packets arrive one wake-up at a time, the assembler, the
fan-out and the recorder's frame path ran with the interpreter's caches cold (each wake-up
runs the whole forwarding path in between). Measured in one server process with 10
recorded rooms, switched every 5 s (bench/inprocess_ab.py; docs/media-performance.md,
"The recorder in batches"): the recorder's share fell from ~0.0018 to ~0.0008 cores per
room. Nothing waits on a recorded frame (segments are cut at keyframes, not at times), so
the delay costs nothing; `RtpPublisher.assemble_backlog` runs early whenever a frame
subscriber stops or a publisher closes or is replaced, so no frame is left behind.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

ASSEMBLY_BATCH_S = 0.1  # at 30 fps about 3 frames of each recorded camera per batch


class Backlogged(Protocol):
    def assemble_backlog(self) -> None: ...


class _Batch:
    """The publishers with packets waiting, in the order they got their first one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: list[Backlogged] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, publisher: Backlogged) -> None:
        self._due.append(publisher)
        if self._timer is None:
            self._timer = self._loop.call_later(ASSEMBLY_BATCH_S, self._run)

    def _run(self) -> None:
        self._timer = None
        due, self._due = self._due, []
        for publisher in due:
            publisher.assemble_backlog()  # logs and contains its own failures


# One batch per event loop: a test suite runs many loops in one process, and a publisher
# belongs to the loop it was made on.
_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batch] = weakref.WeakKeyDictionary()


def schedule(publisher: Backlogged) -> None:
    """`publisher.assemble_backlog()` in the next batch (call once per backlog: when its
    first packet is kept)."""
    loop = asyncio.get_running_loop()
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = _Batch(loop)
    batch.add(publisher)
