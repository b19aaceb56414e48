"""aiortc stand-ins for the caller's and agent's pages in a cluster, for the failover tests
and bench/cluster_failover.py: each holds one signalling socket through haproxy and, like
web/ws.js and the pages, reconnects by itself (the same backoff: web/ws.js's steps) and
makes a new peer connection after every `welcome`. `Call` is one session with both pages;
`kill` and `restart` act on a node of bench/lib/procs.py. Nothing here imports pytest
(bench/cluster_failover.py runs without it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from bench.lib.procs import Cluster, Node
from tests.cluster_client import Client
from tests.media_helpers import RED
from tests.media_helpers import Client as MediaClient
from tests.signalling_client import SUBPROTOCOL

# web/ws.js's reconnect backoff (0.25 s doubling to 5 s, ±20 % jitter; `moved`: a fifth).
BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 5.0


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
        self.attempts: list[float] = []  # monotonic times of the sockets that opened
        self.messages: list[dict[str, Any]] = []
        self.closes: list[int | None] = []
        self.ended = False
        self._task: asyncio.Task[None] | None = None
        self.welcomed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self.ended:
            try:
                ws = await self.http.ws_connect(
                    self.base.replace("http", "ws", 1) + self.path,
                    protocols=(SUBPROTOCOL,), origin=self.base, heartbeat=None,
                )  # fmt: skip
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            self.attempts.append(time.monotonic())
            moved = await self._serve(ws)
            if self.ended:
                return
            self.reconnects += 1
            backoff = BACKOFF_MIN_S / 5 if moved else BACKOFF_MIN_S
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

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


class Call:
    """One session through haproxy: the agent's and the caller's pages, media flowing."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.agent = Client(cluster)
        self.caller = Client(cluster)
        self.room = ""
        self.pages: list[Page] = []

    async def start(self) -> None:
        await self.agent.login()
        status, made = await self.agent.post("/api/sessions", {"phone": "20000012"})
        assert status == 201, made
        self.room = made["session"]["id"]
        assert await self.caller.open_link(made["link"]) == 303
        self.caller_page = Page(self.caller.http, self.cluster.url, "/ws/caller", "caller")
        self.agent_page = Page(self.agent.http, self.cluster.url, f"/ws/agent/{self.room}",
                               "agent")  # fmt: skip
        self.pages = [self.caller_page, self.agent_page]
        for page in self.pages:
            page.start()
        await self.agent_page.frames_after(0, 5, 60)

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The console's request through haproxy. haproxy retries what reached no node
        (docs/cluster.md's sample), but not a POST that a node took and then died with:
        its own 503 page then; the console asks again."""
        headers = {**self.agent.origin, "X-CSRF-Token": self.agent.csrf}
        for _ in range(20):
            async with self.agent.http.request(method, self.cluster.url + path, json=body,
                                               headers=headers) as r:  # fmt: skip
                if r.content_type == "application/json":
                    return r.status, await r.json()
            await asyncio.sleep(0.3)
        raise AssertionError(f"no node answered {method} {path}")

    async def state(self) -> str:
        status, body = await self.api("GET", f"/api/sessions/{self.room}")
        assert status == 200, body
        return str(body["session"]["state"])

    async def close(self) -> None:
        for page in self.pages:
            await page.close()
        await self.api("POST", f"/api/sessions/{self.room}/end")
        await self.caller.close()
        await self.agent.close()


async def kill(node: Node) -> None:
    assert node.proc is not None
    node.proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(node.proc.wait)
    node._fh.close()


async def restart(cluster: Cluster, node: Node) -> None:
    node.start()
    await cluster.ready()
