"""What the cluster tests, tests/failover_pages.py and bench/cluster_failover.py use to
talk to a cluster through haproxy (or one node): a browser's worth of cookies (`Client`),
a signalling socket (`Socket`), the room's node from Redis (`owner_of`) and
`callassist node drain` (`drain`). Nothing here imports pytest or a test module, so the
bench runs without pytest installed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.lib.procs import CLI, PASSWORD, Cluster
from tests.signalling_client import SUBPROTOCOL


class Client:
    """One browser's worth of cookies; each request goes to the node (or haproxy) named."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.origin = {"Origin": cluster.url}  # the pages' origin is haproxy's

    def base(self, where: str | None) -> str:
        return self.cluster.url if where is None else self.cluster.node(where).url

    async def login(self, where: str | None = None, username: str = "anna") -> None:
        login = {"username": username, "password": PASSWORD}
        async with self.http.post(
            self.base(where) + "/api/login", headers=self.origin, json=login
        ) as r:
            assert r.status == 200, await r.text()
            self.csrf = (await r.json())["csrf"]

    async def post(self, path: str, body: Any = None, where: str | None = None):  # type: ignore[no-untyped-def]
        headers = {**self.origin, "X-CSRF-Token": self.csrf}
        async with self.http.post(self.base(where) + path, json=body or {}, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def get(self, path: str, where: str | None = None):  # type: ignore[no-untyped-def]
        async with self.http.get(self.base(where) + path, headers=self.origin) as r:
            return r.status, await r.json(content_type=None)

    async def open_link(self, link: str, where: str | None = None) -> int:
        path = "/j/" + link.split("/j/")[1]
        async with self.http.get(self.base(where) + path, allow_redirects=False) as r:
            if r.status != 200:
                return r.status
        async with self.http.post(self.base(where) + path, allow_redirects=False,
                                  headers=self.origin) as r:  # fmt: skip
            return r.status

    async def ws(self, path: str, where: str | None = None) -> Socket:
        ws = await self.http.ws_connect(
            self.base(where).replace("http", "ws", 1) + path,
            protocols=(SUBPROTOCOL,),
            origin=self.cluster.url,
        )
        sock = Socket(ws)
        sock.welcome = await sock.expect("welcome")
        return sock

    async def close(self) -> None:
        await self.http.close()


class Socket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self, timeout: float = 15) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else self.ws.close_code
            return {"type": "_closed", "code": code}
        return dict(json.loads(msg.data))

    async def expect(self, mtype: str, timeout: float = 15, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = await self.recv(max(deadline - time.monotonic(), 0.01))
            if data["type"] == "_closed" and mtype != "_closed":
                raise AssertionError(f"closed while waiting for {mtype}: {data}")
            if data["type"] == mtype and all(data.get(k) == v for k, v in match.items()):
                return data


async def owner_of(cluster: Cluster, room_id: str) -> str:
    client = aioredis.Redis.from_url(cluster.redis.url, decode_responses=True)
    try:
        return str(await client.get(f"callassist:room:{room_id}"))
    finally:
        await client.aclose()


def drain(cluster: Cluster, node: str, *flags: str) -> subprocess.CompletedProcess[str]:
    config = str(cluster.node(node).config)
    return subprocess.run([*CLI, "node", "drain", node, *flags, "--config", config],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
