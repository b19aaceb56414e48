"""A small Janus VideoRoom client over the HTTP API (aiohttp, long-poll): one session per
process, one handle per peer connection. Just what bench/capacity.py's Janus cell needs:
create a room, publish with an aiortc offer, subscribe to a feed and answer Janus' offer.

Janus answers a plugin request with `ack` at once and the result later as an event with
the same transaction on the session's long poll; events nobody waits for (webrtcup,
media, publishers, ...) are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import zlib
from typing import Any

import aiohttp

VIDEOROOM = "janus.plugin.videoroom"
ROOM_EXISTS = 427  # JANUS_VIDEOROOM_ERROR_ROOM_EXISTS


class JanusError(RuntimeError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"janus error {code}: {reason}")
        self.code = code


def room_id(name: str) -> int:
    """A bench room's VideoRoom id (numeric, stable across the two client processes)."""
    return zlib.crc32(name.encode()) % 10**8 + 1


def feed_id(name: str, track: str) -> int:
    """The publisher id of a room's `camera` or `screen`: both sides know the other's."""
    return room_id(name) * 10 + (1 if track == "camera" else 2)


class JanusSession:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession()
        self.id = 0
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tx = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> JanusSession:
        self.id = (await self._post(self.url, {"janus": "create"}))["data"]["id"]
        self._tasks = [asyncio.ensure_future(self._poll()), asyncio.ensure_future(self._alive())]
        return self

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": body.get("transaction") or f"t{next(self._tx)}"}
        async with self.http.post(url, json=body) as r:
            reply: dict[str, Any] = await r.json(content_type=None)
        if reply.get("janus") == "error":
            e = reply["error"]
            raise JanusError(e["code"], e["reason"])
        return reply

    async def _poll(self) -> None:
        """The session's events; a long poll also counts as the session's keepalive."""
        url = f"{self.url}/{self.id}?maxev=10"
        while True:
            try:
                async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=40)) as r:
                    events = await r.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            for ev in events if isinstance(events, list) else [events]:
                fut = self.waiting.pop(ev.get("transaction") or "", None)
                if fut is not None and not fut.done():
                    fut.set_result(ev)

    async def _alive(self) -> None:
        while True:  # well inside Janus' session_timeout (60 s)
            await asyncio.sleep(25)
            with contextlib.suppress(aiohttp.ClientError, JanusError):
                await self._post(f"{self.url}/{self.id}", {"janus": "keepalive"})

    async def attach(self) -> int:
        reply = await self._post(f"{self.url}/{self.id}",
                                 {"janus": "attach", "plugin": VIDEOROOM})  # fmt: skip
        return int(reply["data"]["id"])

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A VideoRoom request: (plugin data, JSEP) of its result, sync or async."""
        tx = f"t{next(self._tx)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[tx] = fut
        msg: dict[str, Any] = {"janus": "message", "body": body, "transaction": tx}
        if jsep is not None:
            msg["jsep"] = jsep
        try:
            reply = await self._post(f"{self.url}/{self.id}/{handle}", msg)
            if reply.get("janus") == "ack":
                reply = await asyncio.wait_for(fut, 30)
        finally:
            self.waiting.pop(tx, None)
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise JanusError(data["error_code"], data.get("error", ""))
        return data, reply.get("jsep")

    async def create_room(self, handle: int, room: int, rec_dir: str | None = None) -> None:
        """A VideoRoom room for two publishers, VP8, no bitrate cap and no periodic
        keyframe requests (the project forwards as sent); an existing room is fine (both
        client processes try). Without `rec_dir` recordings go to Janus' working directory."""
        body: dict[str, Any] = {"request": "create", "room": room, "publishers": 2,
                                "videocodec": "vp8", "bitrate": 0, "fir_freq": 0,
                                "record": False}  # fmt: skip
        if rec_dir is not None:
            body["rec_dir"] = rec_dir
        try:
            await self.message(handle, body)
        except JanusError as exc:
            if exc.code != ROOM_EXISTS:
                raise

    async def publish(
        self, handle: int, room: int, feed: int, sdp: str, record: bool
    ) -> str:
        """Join `room` as publisher `feed` and configure with the offer: Janus' answer.
        `record`: VideoRoom's own recording of this publisher (.mjr files in rec_dir)."""
        await self.message(handle, {"request": "join", "ptype": "publisher", "room": room,
                                    "id": feed})  # fmt: skip
        body = {"request": "configure", "audio": False, "video": True, "record": record}
        _, jsep = await self.message(handle, body, {"type": "offer", "sdp": sdp})
        if jsep is None:
            raise JanusError(0, "configure: no answer")
        return str(jsep["sdp"])

    async def subscribe(self, handle: int, room: int, feed: int) -> str:
        """Join `room` as a subscriber of `feed`: Janus' offer."""
        body = {"request": "join", "ptype": "subscriber", "room": room,
                "streams": [{"feed": feed}]}  # fmt: skip
        _, jsep = await self.message(handle, body)
        if jsep is None:
            raise JanusError(0, "subscribe: no offer")
        return str(jsep["sdp"])

    async def start_subscriber(self, handle: int, room: int, sdp: str) -> None:
        await self.message(handle, {"request": "start", "room": room},
                           {"type": "answer", "sdp": sdp})  # fmt: skip

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        with contextlib.suppress(aiohttp.ClientError, JanusError):
            await self._post(f"{self.url}/{self.id}", {"janus": "destroy"})
        await self.http.close()
