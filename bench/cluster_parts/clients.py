"""The capacity bench's client processes (bench/capacity_parts/clients.py: one aiortc
peer per room, the same clips and counters) speaking the product's own protocol through
the service's public address, as the pages do: the agents' process logs in, creates each
room's session (POST /api/sessions) and offers on /ws/agent/<id>; the callers' process
opens each link, accepts the notice and offers on /ws/caller (docs/protocol.md). Which
node serves a request or a socket is the load balancer's business."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp

from bench.capacity_parts.clients import serve_clients
from bench.lib.procs import PASSWORD
from server.signalling.messages import SUBPROTOCOL

# The answers a client waits for; everything else (`room` updates...) is read and dropped.
KEEP = frozenset({"welcome", "answer", "pong"})


class Socket:
    """One signalling socket; a reader task keeps the answers of KEEP for `expect` and
    drops everything else (the server's messages must be read, or its buffer fills)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data.get("type") in KEEP:
                await self.inbox.put(data)
        await self.inbox.put({"type": "_closed", "code": self.ws.close_code})

    async def expect(self, mtype: str, timeout: float = 30) -> dict[str, Any]:
        while True:
            data = await asyncio.wait_for(self.inbox.get(), timeout)
            if data["type"] == "_closed":
                raise RuntimeError(f"socket closed while waiting for {mtype}: {data}")
            if data["type"] == mtype:
                return data

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def connect(
    http: aiohttp.ClientSession, base: str, path: str, origin: str | None = None
) -> tuple[Socket, dict[str, Any]]:
    """A socket to `base` (the pages' origin is the public address: `origin`, else base)."""
    url = base.replace("http", "ws", 1) + path
    ws = await http.ws_connect(url, protocols=(SUBPROTOCOL,), origin=origin or base,
                               max_msg_size=0)  # fmt: skip
    sock = Socket(ws)
    return sock, await sock.expect("welcome")


async def offer_on(sock: Socket, sdp: str) -> str:
    await sock.send({"type": "offer", "pc": 1, "sdp": sdp})
    return str((await sock.expect("answer"))["sdp"])


async def run_cluster_clients(role: str, base: str) -> None:
    origin = {"Origin": base}
    sockets: dict[str, Socket] = {}
    sessions: list[aiohttp.ClientSession] = []
    links: dict[str, str] = {}
    ids: dict[str, str] = {}
    agent_http: dict[str, Any] = {}

    def new_http() -> aiohttp.ClientSession:
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(http)
        return http

    async def agent() -> tuple[aiohttp.ClientSession, str]:
        if not agent_http:
            http = new_http()
            body = {"username": "anna", "password": PASSWORD}
            async with http.post(base + "/api/login", json=body, headers=origin) as r:
                if r.status != 200:
                    raise RuntimeError(f"login: {r.status} {await r.text()}")
                agent_http.update(http=http, csrf=(await r.json())["csrf"])
        return agent_http["http"], agent_http["csrf"]

    async def prepare(msg: dict[str, Any]) -> dict[str, Any]:
        if role == "callers":
            links.update(msg["links"])
            return {}
        http, csrf = await agent()
        for name in msg["rooms"]:
            async with http.post(base + "/api/sessions", json={"phone": "20000012"},
                                 headers={**origin, "X-CSRF-Token": csrf}) as r:  # fmt: skip
                body = await r.json(content_type=None)
                if r.status != 201:
                    raise RuntimeError(f"create session: {r.status} {body}")
            ids[name], links[name] = body["session"]["id"], body["link"]
        return {"links": {n: links[n] for n in msg["rooms"]},
                "ids": {n: ids[n] for n in msg["rooms"]}}  # fmt: skip

    async def offer(name: str, sdp: str) -> str:
        if role == "agents":
            http, _ = await agent()
            sock, _ = await connect(http, base, f"/ws/agent/{ids[name]}")
        else:
            http = new_http()  # one phone per room: its own cookies
            path = "/j/" + links[name].split("/j/")[1]
            async with http.get(base + path) as r:
                if r.status != 200:
                    raise RuntimeError(f"open link: {r.status}")
            async with http.post(base + path, headers=origin, allow_redirects=False) as r:
                if r.status != 303:
                    raise RuntimeError(f"tap link: {r.status}")
            sock, welcome = await connect(http, base, "/ws/caller")
            await sock.send({"type": "accept", "notice": welcome["notice"]["version"]})
        sockets[name] = sock
        return await offer_on(sock, sdp)

    async def close() -> None:
        for sock in sockets.values():
            with contextlib.suppress(Exception):
                await sock.close()
        for http in sessions:
            await http.close()

    await serve_clients(role, offer, prepare, close)
