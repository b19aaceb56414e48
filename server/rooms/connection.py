"""One participant's signalling socket, with a bounded outbox.

Galène's rule: a slow peer never stalls a room. Every socket has a bounded outbox drained
by its own writer task, so `send` never awaits; a client that does not read is dropped (it
reconnects and gets a fresh `welcome`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, web

from server.signalling import messages as M

log = logging.getLogger(__name__)

CLOSE_ROOM_ENDED = 4000
CLOSE_REPLACED = 4001
# A staff participant the caller asked to leave (after the `removed` message).
CLOSE_REMOVED = 4005


class Connection:
    """One participant's WebSocket, with a bounded outbox."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        role: str,
        participant: str,
        size: int,
        *,
        max_bytes: int = 262_144,
    ):
        self.ws = ws
        self.max_bytes = max_bytes
        self.role = role
        self.participant = participant
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=size)
        self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{participant}")
        self.closing = False

    def send(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        self.send_text(json.dumps(message, separators=(",", ":")), message)

    def send_text(self, text: str, message: dict[str, Any] | None = None) -> None:
        """Send a message already encoded (the signal bridge's, encoded on the room's
        node); `message` is its object when the caller has it."""
        if self.closing:
            return
        if len(text.encode()) > self.max_bytes:
            if message is None:
                with contextlib.suppress(ValueError):
                    message = json.loads(text)
            if not isinstance(message, dict):
                message = {}
            # Never above the documented server -> client limit (docs/protocol.md): the
            # client gets a small error naming what could not be sent instead.
            log.warning(
                "%s message to %s over %d bytes not sent",
                message.get("type"),
                self.role,
                self.max_bytes,
            )
            err = M.error(
                M.TOO_LARGE,
                f"a server message would exceed {self.max_bytes} bytes",
                str(message.get("type")),
            )
            text = json.dumps(err, separators=(",", ":"))
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            # The client does not read: drop it rather than buffer without bound. It will
            # reconnect and get a fresh `welcome` with the current state.
            log.warning("dropping slow %s connection", self.role)
            self.close_soon(WSCloseCode.TRY_AGAIN_LATER, "slow consumer")

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self._close_code = (code, reason)
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        if self._outbox.full():
            self._writer.cancel()
            asyncio.ensure_future(self.ws.close(code=code, message=reason.encode()))

    async def _write(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if item is None:
                    code, reason = self._close_code
                    await self.ws.close(code=code, message=reason.encode())
                    return
                await self.ws.send_str(item)
        except (ConnectionError, RuntimeError):
            pass  # the socket went away; the reader side notices and cleans up

    async def wait_closed(self) -> None:
        self.close_soon(WSCloseCode.GOING_AWAY, "closing")
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._writer, 2)
