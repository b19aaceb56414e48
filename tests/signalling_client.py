"""A minimal signalling client for tests, written from docs/protocol.md alone."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

SUBPROTOCOL = "callassist.v1"


async def open_link(http: aiohttp.ClientSession, link: str) -> int:
    """Open a one-time link as the caller's browser does: GET shows the link page (uses
    nothing up), the tap POSTs to the same URL from that page's origin. Returns the POST's
    status (303 to /c with the device cookie; 410 when the link is no longer valid)."""
    async with http.get(link, allow_redirects=False) as r:
        if r.status != 200:
            return r.status
    origin = "/".join(link.split("/", 3)[:3])
    async with http.post(link, allow_redirects=False, headers={"Origin": origin}) as r:
        return r.status


class Signalling:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession):
        self.ws = ws
        self.http = http
        self.welcome: dict[str, Any] = {}
        self.rooms: list[dict[str, Any]] = []

    @classmethod
    async def caller(cls, server_url: str, link: str) -> Signalling:
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        status = await open_link(http, link)
        assert status == 303, status
        return await cls._connect(http, server_url, "/ws/caller")

    @classmethod
    async def agent(cls, server_url: str, http: aiohttp.ClientSession, room: str) -> Signalling:
        return await cls._connect(http, server_url, f"/ws/agent/{room}", own=False)

    @classmethod
    async def _connect(
        cls, http: aiohttp.ClientSession, server_url: str, path: str, own: bool = True
    ) -> Signalling:
        ws = await http.ws_connect(
            server_url.replace("http", "ws", 1) + path,
            protocols=(SUBPROTOCOL,),
            origin=server_url,
        )
        client = cls(ws, http if own else None)  # type: ignore[arg-type]
        client.welcome = await client.expect("welcome")
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            # The code the server's close frame carried (ws.close_code may say 1006 when
            # the server drops the connection right after its close frame).
            code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else self.ws.close_code
            return {"type": "_closed", "code": code, "ws_type": msg.type}
        data = json.loads(msg.data)
        if data.get("type") == "room":
            self.rooms.append(data["room"])
        return data

    async def expect(self, mtype: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        """Read until a message of `mtype` (with the given fields) arrives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = await self.recv(max(deadline - loop.time(), 0.01))
            if data["type"] == "_closed" and mtype != "_closed":
                raise AssertionError(f"socket closed while waiting for {mtype}: {data}")
            if data["type"] == mtype and all(data.get(k) == v for k, v in match.items()):
                return data

    async def wait_room(self, timeout: float = 10, **caller: Any) -> dict[str, Any]:
        """Wait for a room message whose caller fields match (or the latest one does)."""
        for room in reversed(self.rooms[-1:]):
            if all(room["caller"].get(k) == v for k, v in caller.items()):
                return room
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = await self.recv(max(deadline - loop.time(), 0.01))
            if data["type"] == "room" and all(
                data["room"]["caller"].get(k) == v for k, v in caller.items()
            ):
                return data["room"]

    async def close(self) -> None:
        await self.ws.close()
        if self.http is not None:
            await self.http.close()
