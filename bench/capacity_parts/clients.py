"""A process of aiortc clients: role "callers" (publish the camera, receive the screen)
or "agents" (the reverse), one peer per room. Each sends its clip with `sender`
(bench/lib/peers.SENDERS: "wire", the cheap one, or aiortc's RTCRtpSender) and counts
what it receives at the RTP level (peers.FrameCounter). Commands from the orchestrator on stdin,
one JSON object a line; answers on stdout. How an offer reaches the server is the
caller's business (`serve_clients`' `offer`): here the capacity server's RPC port,
bench/cluster_parts/clients.py the product's own signalling through haproxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from bench.capacity_parts.room import CAMERA, SCREEN
from bench.lib.clips import make_clip
from bench.lib.ice_watch import consent_expiries, lag_max, start_lag_probe, watch_consent
from bench.lib.media import loopback_ice
from bench.lib.peers import ClipTrack, FrameCounter, Sent, client_peer
from bench.lib.rpc import RpcClient, serve_stdio

# (room name, offer SDP) -> answer SDP
Offer = Callable[[str, str], Awaitable[str]]
# the "add" command -> extra fields of its answer (run before the rooms' offers)
Prepare = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
# (room name, track, counter) -> the room's peer connections, and how many it will hold:
# a server with one peer connection per participant has them all at once; Janus' VideoRoom
# (bench/capacity_parts/janus.py) appends the subscriber when the other side publishes.
Connect = Callable[[str, ClipTrack, FrameCounter], Awaitable[tuple[list[RTCPeerConnection], int]]]


async def run_clients(role: str, port: int, sender: str = "wire") -> None:
    rpc = await RpcClient.connect(port)

    async def offer(name: str, sdp: str) -> str:
        return str(await rpc.call(op="offer", room=name, participant=role[:-1],
                                  role=role[:-1], sdp=sdp))  # fmt: skip

    await serve_clients(role, offer, sender=sender)


async def serve_clients(role: str, offer: Offer | None, prepare: Prepare | None = None,
                        close: Callable[[], Awaitable[None]] | None = None,
                        connect: Connect | None = None, sender: str = "wire") -> None:  # fmt: skip
    """`offer` (one peer connection a room, its offer answered) or `connect` (any)."""
    loopback_ice()
    watch_consent()
    lag_probe = start_lag_probe()  # noqa: F841 (kept alive for the process's life)
    camera, screen = make_clip(CAMERA), make_clip(SCREEN)
    rooms: dict[str, dict[str, Any]] = {}
    caller = role == "callers"

    async def add(name: str) -> None:
        sent = Sent() if caller else None
        track = ClipTrack(camera if caller else screen, CAMERA["fps"] if caller else 5, sent)
        counter = FrameCounter(anchor=not caller)
        if connect is not None:
            pcs, want = await connect(name, track, counter)
        else:
            assert offer is not None
            pc = client_peer(caller, track, counter, sender)
            await pc.setLocalDescription(await pc.createOffer())
            answer = await offer(name, pc.localDescription.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            pcs, want = [pc], 1
        rooms[name] = {"pcs": pcs, "want": want, "sent": sent, "counter": counter,
                       "track": track}  # fmt: skip

    def connected(r: dict[str, Any], all_of_them: bool) -> bool:
        pcs = r["pcs"]
        if all_of_them and len(pcs) < r["want"]:
            return False
        return all(pc.connectionState == "connected" for pc in pcs)

    async def wait(all_of_them: bool) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(connected(r, all_of_them) for r in rooms.values()):
                break
            await asyncio.sleep(0.05)
        return sum(connected(r, all_of_them) for r in rooms.values())

    async def command(msg: dict[str, Any]) -> Any:
        op = msg["op"]
        if op == "add":
            extra = await prepare(msg) if prepare is not None else {}
            await asyncio.gather(*(add(n) for n in msg["rooms"]))
            # the peer connections made so far (Janus: the subscribers may come later)
            return {"connected": await wait(False), **extra}
        if op == "wait":  # every peer connection of every room
            return {"connected": await wait(True)}
        if op == "anchors":
            return {n: r["counter"].anchor for n, r in rooms.items() if r["counter"].anchor}
        if op == "sent":
            t0, t1 = msg["since"], msg["until"]
            names = msg.get("rooms") or list(rooms)
            return {n: rooms[n]["sent"].between(t0, t1) for n in names if n in rooms}
        if op == "keyframes":  # before "frames" (it trims)
            t0, t1 = msg["since"], msg["until"]
            return {n: r["counter"].keyframes_between(t0, t1) for n, r in rooms.items()}
        if op == "frames":
            t0, t1 = msg["since"], msg["until"]
            out = {n: r["counter"].between(t0, t1) for n, r in rooms.items()}
            for r in rooms.values():
                r["counter"].trim(t1 - 5)
            return out
        if op == "states":  # peer connections by state (a soak: did ICE give up?)
            states: dict[str, int] = {}
            for r in rooms.values():
                for pc in r["pcs"]:
                    states[pc.connectionState] = states.get(pc.connectionState, 0) + 1
            return {"states": states, "consent_expired": consent_expiries(),
                    "loop_lag_max_s": lag_max(),
                    "keyframe_requests": sum(r["track"].keyframes for r in rooms.values()),
                    "frames_sent": sum(r["track"].n for r in rooms.values())}  # fmt: skip
        if op == "close":
            await asyncio.gather(*(pc.close() for r in rooms.values() for pc in r["pcs"]))
            if close is not None:
                await close()
            return {}
        raise ValueError(op)

    await serve_stdio(command, last_op="close")
