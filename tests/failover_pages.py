"""aiortc stand-ins for the caller's and agent's pages in a cluster, for the failover tests
and bench/cluster_failover.py: each holds one signalling socket through haproxy and, like
web/ws.js and the pages, reconnects by itself (backoff 0.5 s doubling to 5 s, at once after
`moved`) and makes a new peer connection after every `welcome`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from tests.media_helpers import RED
from tests.media_helpers import Client as MediaClient
from tests.signalling_client import SUBPROTOCOL


class Page:
    def __init__(self, http: aiohttp.ClientSession, base: str, path: str, role: str) -> None:
        self.http = http
        self.base = base  # haproxy's address: the pages know no other
        self.path = path
        self.role = role
        self.media: MediaClient | None = None
        self.pc_id = 0
        self.welcomes = 0
        self.reconnects = 0
        self.messages: list[dict[str, Any]] = []
        self.closes: list[int | None] = []
        self.ended = False
        self._task: asyncio.Task[None] | None = None
        self.welcomed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        backoff = 0.5
        while not self.ended:
            try:
                ws = await self.http.ws_connect(
                    self.base.replace("http", "ws", 1) + self.path,
                    protocols=(SUBPROTOCOL,), origin=self.base, heartbeat=None,
                )  # fmt: skip
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            moved = await self._serve(ws)
            if self.ended:
                return
            self.reconnects += 1
            backoff = 0.1 if moved else 0.5
            await asyncio.sleep(backoff)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        moved = False
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                self.messages.append(data)
                kind = data.get("type")
                if kind == "welcome":
                    self.welcomes += 1
                    await self._welcome(ws, data)
                elif kind == "answer" and self.media and data.get("pc") == self.pc_id:
                    desc = RTCSessionDescription(data["sdp"], "answer")
                    await self.media.pc.setRemoteDescription(desc)
                elif kind == "moved":
                    moved = True
                elif kind == "ended":
                    self.ended = True
        finally:
            self.closes.append(ws.close_code)
            if ws.close_code == 4000:
                self.ended = True
            await ws.close()
        return moved

    async def _welcome(self, ws: aiohttp.ClientWebSocketResponse, data: dict[str, Any]) -> None:
        if self.role == "caller" and not data["notice"]["accepted"]:
            await ws.send_str(json.dumps({"type": "accept",
                                          "notice": data["notice"]["version"]}))  # fmt: skip
        old = self.media
        if self.role == "caller":
            self.media = MediaClient("caller", RED, recv=False)
        else:
            self.media = MediaClient("agent", None, send=False)
        if old is not None:
            asyncio.ensure_future(old.close())
        self.pc_id += 1
        pc = self.media.pc
        await pc.setLocalDescription(await pc.createOffer())
        await ws.send_str(json.dumps({"type": "offer", "pc": self.pc_id,
                                      "sdp": pc.localDescription.sdp}))  # fmt: skip
        self.welcomed.set()

    async def frames_after(self, since: float, count: int, limit_s: float) -> float:
        """Seconds from `since` (monotonic) until `count` frames arrived on a peer
        connection made after it."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            m = self.media
            fresh = m is not None and m.first_frame_at is not None and m.first_frame_at > since
            if fresh and m is not None and m.frames >= count:
                return time.monotonic() - since
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.role}: no frames {limit_s} s after {since}")

    async def close(self) -> None:
        self.ended = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.media is not None:
            await self.media.close()
