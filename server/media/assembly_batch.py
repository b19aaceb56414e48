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
    """The publishers with packets waiting, in the order they got their first one.

    It holds neither its loop nor the timer's handle (which holds the loop): as the value
    of a WeakKeyDictionary keyed by that loop, either would keep a closed loop, and every
    publisher still due on it, alive for ever."""

    def __init__(self) -> None:
        self._due: list[Backlogged] = []
        self._armed = False

    def add(self, loop: asyncio.AbstractEventLoop, publisher: Backlogged) -> None:
        self._due.append(publisher)
        if not self._armed:
            self._armed = True
            loop.call_later(ASSEMBLY_BATCH_S, self._run)

    def _run(self) -> None:
        self._armed = False
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
        batch = _batches[loop] = _Batch()
    batch.add(loop, publisher)
