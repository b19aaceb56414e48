"""A process of aiortc clients: role "callers" (publish the camera, receive the screen)
or "agents" (the reverse), one peer per room. Commands from the orchestrator on stdin,
one JSON object a line; answers on stdout. How an offer reaches the server is the
caller's business (`serve_clients`' `offer`): here the capacity server's RPC port,
bench/cluster_parts/clients.py the product's own signalling through haproxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCSessionDescription

from bench.capacity_parts.room import CAMERA, SCREEN
from bench.lib.clips import make_clip
from bench.lib.media import loopback_ice
from bench.lib.peers import ClipTrack, FrameCounter, Sent, client_peer
from bench.lib.rpc import RpcClient, serve_stdio

# (room name, offer SDP) -> answer SDP
Offer = Callable[[str, str], Awaitable[str]]
# the "add" command -> extra fields of its answer (run before the rooms' offers)
Prepare = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def run_clients(role: str, port: int) -> None:
    rpc = await RpcClient.connect(port)

    async def offer(name: str, sdp: str) -> str:
        return str(await rpc.call(op="offer", room=name, participant=role[:-1],
                                  role=role[:-1], sdp=sdp))  # fmt: skip

    await serve_clients(role, offer)


async def serve_clients(role: str, offer: Offer, prepare: Prepare | None = None,
                        close: Callable[[], Awaitable[None]] | None = None) -> None:  # fmt: skip
    loopback_ice()
    camera, screen = make_clip(CAMERA), make_clip(SCREEN)
    rooms: dict[str, dict[str, Any]] = {}
    caller = role == "callers"

    async def add(name: str) -> None:
        sent = Sent() if caller else None
        track = ClipTrack(camera if caller else screen, CAMERA["fps"] if caller else 5, sent)
        counter = FrameCounter(anchor=not caller)
        pc = client_peer(caller, track, counter)
        await pc.setLocalDescription(await pc.createOffer())
        answer = await offer(name, pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        rooms[name] = {"pc": pc, "sent": sent, "counter": counter, "track": track}

    async def command(msg: dict[str, Any]) -> Any:
        op = msg["op"]
        if op == "add":
            extra = await prepare(msg) if prepare is not None else {}
            await asyncio.gather(*(add(n) for n in msg["rooms"]))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all(r["pc"].connectionState == "connected" for r in rooms.values()):
                    break
                await asyncio.sleep(0.05)
            return {
                "connected": sum(r["pc"].connectionState == "connected" for r in rooms.values()),
                **extra,
            }
        if op == "anchors":
            return {n: r["counter"].anchor for n, r in rooms.items() if r["counter"].anchor}
        if op == "sent":
            t0, t1 = msg["since"], msg["until"]
            names = msg.get("rooms") or list(rooms)
            return {n: rooms[n]["sent"].between(t0, t1) for n in names if n in rooms}
        if op == "frames":
            t0, t1 = msg["since"], msg["until"]
            out = {n: r["counter"].between(t0, t1) for n, r in rooms.items()}
            for r in rooms.values():
                r["counter"].trim(t1 - 5)
            return out
        if op == "close":
            await asyncio.gather(*(r["pc"].close() for r in rooms.values()))
            if close is not None:
                await close()
            return {}
        raise ValueError(op)

    await serve_stdio(command, last_op="close")
