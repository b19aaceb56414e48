"""Connection limits in front of aiohttp: a slowloris guard (docs/security.md, "Transport").

aiohttp has no header-read timeout: a client that sends half a request line and then a
byte now and then holds a file descriptor for as long as it likes (500 of them held 500
fds for 70 s+). `ConnectionGuard` wraps the server's protocol factory and
- refuses a connection beyond `http.max_connections_per_address` from one address (the
  transport is closed at once, before any byte is read);
- closes a connection whose first request's headers are not complete within
  `http.header_timeout_s`. Later requests on a kept-alive connection are bounded by
  aiohttp's `keepalive_timeout`, which `serve` sets to the same value: its timer closes a
  connection with no complete request, partial headers or not.

`serve()` replaces `web.run_app` only to put the guard around the factory; the rest (signal
handling, shutdown) is what run_app does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from ssl import SSLContext
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from server.core.eventloop import new_event_loop

log = logging.getLogger(__name__)


class ConnectionGuard:
    """A protocol factory: aiohttp's, with a per-address cap and a header deadline."""

    def __init__(self, factory: Any, *, per_address: int, header_timeout_s: float) -> None:
        self._factory = factory
        self.per_address = per_address
        self.header_timeout_s = header_timeout_s
        self.open: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:  # the runner's shutdown, connections, ...
        return getattr(self._factory, name)

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self._factory(), self)

    def _deadline(self, proto: RequestHandler, transport: asyncio.BaseTransport) -> None:
        # aiohttp counts a request once its headers are parsed (RequestHandler's own
        # counter; a missing attribute means "do not guess": leave the connection).
        if getattr(proto, "_request_count", 1) == 0 and not transport.is_closing():
            log.info("closed a connection that sent no complete request headers in time")
            transport.close()


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol (slotted, so not patchable) behind a counting front."""

    def __init__(self, inner: RequestHandler, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.address: str | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        guard = self.guard
        guard.open[self.address] += 1
        if guard.per_address and guard.open[self.address] > guard.per_address:
            log.info("refused a connection from an address over its cap")
            transport.close()
            return
        self.timer = asyncio.get_running_loop().call_later(
            guard.header_timeout_s, guard._deadline, self.inner, transport
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.address is not None:
            self.guard.open[self.address] -= 1
            if self.guard.open[self.address] <= 0:
                del self.guard.open[self.address]
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GuardedRunner(web.AppRunner):
    def __init__(self, app: web.Application, guard: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._guard = guard

    async def _make_server(self) -> Any:
        return ConnectionGuard(await super()._make_server(), **self._guard)


def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: SSLContext | None,
    access_log_class: Any,
    access_log_format: str,
    per_address: int,
    header_timeout_s: float,
    reuse_port: bool = False,
    extra_port: int | None = None,
    event_loop: str = "uvloop",
) -> None:
    loop = new_event_loop(event_loop)  # media.event_loop
    asyncio.set_event_loop(loop)
    runner = GuardedRunner(
        app,
        {"per_address": per_address, "header_timeout_s": header_timeout_s},
        handle_signals=True,
        shutdown_timeout=5,
        access_log_class=access_log_class,
        access_log_format=access_log_format,
        keepalive_timeout=header_timeout_s,
    )

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port)
        await site.start()
        if extra_port is not None:  # the same app on a port of its own (a worker's)
            await web.TCPSite(runner, host, extra_port, ssl_context=ssl_context).start()

    try:
        loop.run_until_complete(start())
        loop.run_forever()
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(runner.cleanup())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
