"""Issue #14 item 15: answered offers must not keep their peer connections alive.

100 offers in one room (a caller making a new pc each time, as a recovering page does, and
an agent renegotiating its receive-only leg), some of them connected and forwarding, then
the room ends: the live RTCPeerConnection and RTCDtlsTransport objects are back to what
there was before (counted through the garbage collector)."""

from __future__ import annotations

import asyncio
import gc

from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport

from server.media.peers import MediaRoom
from tests.media_helpers import BLUE, RED, Client, loopback_config, wait_for


def _live() -> tuple[int, int]:
    gc.collect()
    objects = gc.get_objects()
    return (sum(isinstance(o, RTCPeerConnection) for o in objects),
            sum(isinstance(o, RTCDtlsTransport) for o in objects))  # fmt: skip


async def test_peer_connections_are_freed_after_100_offers_and_the_room_ended() -> None:
    await asyncio.sleep(0.5)  # what earlier tests closed has finished closing
    baseline = _live()
    room = MediaRoom("r-mem", loopback_config(), on_event=lambda e: None)
    agent = Client("agent", BLUE)
    await agent.connect(room, "agent", 1)
    offers = 1
    for n in range(1, 91):
        caller = Client("caller", RED)
        await caller.connect(room, "caller", n)  # a new pc number: the old leg is retired
        offers += 1
        if n % 30 == 0:  # some really connect and forward, publishing and receiving
            await wait_for(lambda c=caller: c.pc.connectionState == "connected", 15, "pc")
            await agent.wait_frames(3, 15)
        await caller.close()
    for n in range(2, 11):  # the agent: new receive-only legs
        await agent.close()
        agent = Client("agent", None, send=False)
        await agent.connect(room, "agent", n)
        offers += 1
    assert offers == 100
    await agent.close()
    await room.close()
    del caller, agent, room
    for _ in range(50):  # aiortc's own tasks (ICE, DTLS, RTCP) wind down after close()
        await asyncio.sleep(0.1)
        if _live() == baseline:
            break
    assert _live() == baseline, f"live (RTCPeerConnection, RTCDtlsTransport): {_live()}"
