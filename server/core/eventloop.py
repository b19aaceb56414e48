"""The event loop a server process runs (`media.event_loop`).

uvloop (libuv, in C) by default: the media path is one Python callback per datagram, and
what surrounds that callback (readiness, the read, the call) is the loop's. asyncio's
selector loop does it in Python for every datagram — `select()`, a handle per ready
socket, `_read_ready`, `recvfrom` — uvloop in C; docs/media-performance.md ("The event
loop") has the figures. "asyncio" stays selectable: the standard library's loop, for a
platform without uvloop or to compare.

Everything the server does on the loop is the public asyncio API, with one exception
that cares which loop it is: server/media/rtp_hooks.SenderPort, which hands `sendto` a
reused buffer (see `copies_on_wait`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from server.core.config import EVENT_LOOPS


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """A fresh loop of the kind `media.event_loop` names ("uvloop" or "asyncio")."""
    if name not in EVENT_LOOPS:
        raise ValueError(f"media.event_loop: unknown event loop {name!r}")
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Any, name: str) -> Any:
    """asyncio.run(main) on a loop of kind `name` (Python 3.11 has no loop_factory)."""
    loop = new_event_loop(name)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def running_loop_kind() -> str:
    """"uvloop" or "asyncio": the loop this process runs (the admin status shows it)."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def copies_on_wait(transport: asyncio.BaseTransport) -> bool:
    """Whether `transport.sendto(buffer)` copies `buffer` when it must queue it (socket
    full). asyncio's datagram transport does (`bytes(data)` into its queue); uvloop's
    keeps a reference to the caller's buffer until libuv sends it, so a buffer reused for
    the next packet must not be handed to it as it is."""
    return type(transport).__module__.startswith("asyncio.")
