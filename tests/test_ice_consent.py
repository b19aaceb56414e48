"""ICE consent freshness (RFC 7675) on a slow link: a caller whose answers take longer than
0.5 s keeps its call (#18, part 2: the capacity soak's media stopped after minutes).

aioice checks consent every ~5 s, gives each check 0.5 s and no retransmission, and closes
the ICE connection after 6 failed checks in a row; server/media/aiortc_hooks.py retransmits
each check (an answer within 3.5 s counts) and expires consent after 30 s without an
answer. Real peers: the caller is an aiortc client, relay only, through the impairment
relay (tests/impair.py) in front of a real coturn, adding 0.45 s each way (0.9 s RTT, a
congested mobile uplink); the agent talks to the server's MediaRoom directly.

The clock is sped up through aioice's own constants, which the hook reads at each check
(its seam): a check every ~0.5 s, expiry after 3 s without an answer (6 x 0.5 s), so the
30 s of the real timing take a few seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import aioice.ice
import pytest
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)

from server.media.peers import MediaRoom, turn_credentials
from tests.coturn import Turn, start_coturn, stop_coturn
from tests.impair import CLEAN, Impairment, ImpairRelay
from tests.media_helpers import BLUE, RED, Client, EventLog, SolidTrack, loopback_config

SLOW_LINK = Impairment(delay_s=0.45)


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    turn, proc = start_coturn(tmp_path_factory.mktemp("coturn"))
    yield turn
    stop_coturn(proc)


@pytest.fixture
async def relay(coturn: Turn) -> AsyncIterator[ImpairRelay]:
    relay = await ImpairRelay(("127.0.0.1", coturn.port)).start()
    yield relay
    relay.close()


def relayed_caller(coturn: Turn, relay: ImpairRelay) -> tuple[RTCPeerConnection, SolidTrack]:
    """The caller's layout (docs/protocol.md), every packet through the relay and coturn."""
    username, credential = turn_credentials(coturn.secret, 600, time.time())
    server = RTCIceServer(
        urls=f"turn:127.0.0.1:{relay.port}?transport=udp",
        username=username,
        credential=credential,
    )
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=[server], iceTransportPolicy=RTCIceTransportPolicy.RELAY)
    )
    track = SolidTrack(RED)
    pc.addTransceiver(track, direction="sendonly")
    pc.addTransceiver("video", direction="recvonly")
    return pc, track


async def test_a_caller_on_a_slow_link_keeps_its_call(
    coturn: Turn, relay: ImpairRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.5)
    log = EventLog()
    room = MediaRoom("r-consent", loopback_config(), on_event=log)
    caller, _ = relayed_caller(coturn, relay)
    agent = Client("agent", BLUE)
    try:
        await caller.setLocalDescription(await caller.createOffer())
        answer = await room.handle_offer("c", "caller", 1, caller.localDescription.sdp)
        await caller.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await agent.connect(room, "a", 1)
        await agent.wait_frames(10, 20)
        assert caller.connectionState == "connected"

        relay.set(SLOW_LINK)
        # 8 s of a 0.9 s RTT: aioice's own checks expire after ~6 x 0.5 s; ours never do,
        # every check being answered within its 3.5 s.
        for _ in range(16):
            await asyncio.sleep(0.5)
            assert room.stats()["participants"]["c"]["connection_state"] == "connected", (
                "the server closed the slow caller's connection (ICE consent expired)"
            )
            assert caller.connectionState == "connected"
        assert not log.has("c", "pc_state", "closed")
        assert relay.counters()["down"]["passed"] > 0  # the slow link carried the call
        await agent.wait_frames(10, 10)  # and the camera still reaches the agent
    finally:
        await caller.close()
        await agent.close()
        await room.close()


async def test_consent_expires_when_the_caller_is_gone(
    coturn: Turn, relay: ImpairRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other half of RFC 7675: no answer for the expiry time ends the connection."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.5)
    log = EventLog()
    room = MediaRoom("r-consent-gone", loopback_config(), on_event=log)
    caller, _ = relayed_caller(coturn, relay)
    try:
        await caller.setLocalDescription(await caller.createOffer())
        answer = await room.handle_offer("c", "caller", 1, caller.localDescription.sdp)
        await caller.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        deadline = time.monotonic() + 20
        while not log.has("c", "pc_state", "connected"):
            assert time.monotonic() < deadline, "the caller did not connect"
            await asyncio.sleep(0.05)
        relay.set(Impairment(blackout=True))
        gone = time.monotonic()
        while not log.has("c", "pc_state", "closed"):
            # 3 s without an answer, plus at most one check's 3.5 s
            assert time.monotonic() - gone < 12, "consent never expired"
            await asyncio.sleep(0.1)
    finally:
        relay.set(CLEAN)  # aioice's TURN deallocation would wait a minute for coturn
        await caller.close()
        await room.close()
