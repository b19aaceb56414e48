"""Issue #14 (items 14, 17): hostile signalling input gets its documented error code and
never a traceback; remote ICE candidates outside the allowed ranges are dropped."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from server.core.config import MediaConfig
from server.media.peers import MediaRoom
from tests.media_helpers import RED, Client, wait_for
from tests.signalling_client import Signalling


async def _accepted_caller(server) -> Signalling:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    caller = await Signalling.caller(server.url, created["link"])
    await caller.send({"type": "accept", "notice": caller.welcome["notice"]["version"]})
    await caller.wait_room(status="accepted")
    return caller


async def _offer_sdp() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.exc_info or "Task exception was never retrieved" in r.getMessage()
        or "Traceback" in r.getMessage()
    ]


async def test_hostile_frames_get_codes_not_tracebacks(
    server, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.DEBUG)
    caller = await _accepted_caller(server)
    # Deeply nested JSON: json.loads raises RecursionError.
    await caller.ws.send_str("[" * 25_000 + "]" * 25_000)
    assert (await caller.expect("error"))["code"] == "bad_json"
    await caller.ws.send_str('{"type": "ping", "x": ' + "[" * 20_000 + "]" * 20_000 + "}")
    assert (await caller.expect("error"))["code"] == "bad_json"
    # A junk candidate for the current pc (a pc exists after the first offer).
    pc, sdp = await _offer_sdp()
    await caller.send({"type": "offer", "pc": 1, "sdp": sdp})
    await caller.expect("answer")
    for junk in ("candidate:junk", "candidate:1 1 udp x 1.2.3.4 5 typ host",
                 "candidate:1 1 udp 1 1.2.3.4 99999999 typ host", "x" * 200):  # fmt: skip
        await caller.send({"type": "candidate", "pc": 1,
                           "candidate": {"candidate": junk, "sdpMid": "0"}})  # fmt: skip
        err = await caller.expect("error")
        assert err["code"] == "bad_message" and err["ref"] == "candidate", (junk, err)
    # An offer without a=fingerprint: refused before aiortc's DTLS task can trip on it.
    no_fp = "".join(line + "\r\n" for line in sdp.splitlines()
                    if not line.startswith("a=fingerprint"))  # fmt: skip
    await caller.send({"type": "offer", "pc": 2, "sdp": no_fp})
    err = await caller.expect("error")
    assert err["code"] == "sdp_failed" and "fingerprint" in err["message"], err
    await caller.send({"type": "ping"})
    await caller.expect("pong")
    await pc.close()
    await caller.close()
    await asyncio.sleep(0.5)
    gc.collect()  # a never-retrieved task exception is logged when the task is collected
    await asyncio.sleep(0.1)
    assert _tracebacks(caplog) == []


# --- item 17: remote candidates outside the allowed ranges --------------------------------


def _connection(room: MediaRoom, participant_id: str) -> Any:
    """The aioice Connection of that participant's current pc (the bundle's transport)."""
    leg = room._participants[participant_id].leg
    assert leg is not None
    return leg.pc.getTransceivers()[0].sender.transport.transport._connection


def _remote_hosts(room: MediaRoom, participant_id: str) -> list[str]:
    """The remote candidates the server's ICE agent of that participant will check."""
    # Peer-reflexive ones are where the peer's own checks came from (it proved it is
    # there); the filter is about the addresses a client merely names.
    remote = _connection(room, participant_id).remote_candidates
    return [c.host for c in remote if c.type != "prflx"]


def _with_candidate(sdp: str, host: str) -> str:
    """`sdp` naming one more candidate in every m-section, as browsers do (aiortc reads a
    bundle's candidates from its last m-section)."""
    out: list[str] = []
    for line in sdp.splitlines():
        if line == "a=end-of-candidates":
            out.append(f"a=candidate:9 1 udp 100 {host} 40000 typ host")
        out.append(line)
    return "\r\n".join(out) + "\r\n"


@pytest.mark.parametrize("private", [False, True], ids=["public-only", "private-allowed"])
async def test_remote_candidates_outside_allowed_ranges_are_dropped(private: bool) -> None:
    config = MediaConfig(ice_host_addresses=["127.0.0.1"], allow_private_candidates=private)
    assert config.allow_loopback_candidates is False  # the default: a real deployment
    room = MediaRoom("r-cand", config, on_event=lambda e: None, connect_timeout_s=60)
    client = Client("caller", RED)
    try:
        await client.pc.setLocalDescription(await client.pc.createOffer())
        offer = client.pc.localDescription.sdp
        assert "a=candidate:" in offer and "127.0.0.1" in offer  # a real aiortc peer's own
        offer = _with_candidate(_with_candidate(offer, "10.20.30.40"), "8.8.4.4")
        # Candidates keep trickling after the offer (as a browser's do).
        offer = offer.replace("a=end-of-candidates\r\n", "")
        answer = await room.handle_offer("caller", "caller", 1, offer)
        await client.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.sleep(0.2)
        # Trickled ones too: loopback, unspecified, a private one, a public one.
        for host in ("127.0.0.1", "0.0.0.0", "192.168.1.9", "1.1.1.1"):  # noqa: S104
            await room.add_candidate("caller", 1, {"candidate": f"candidate:7 1 udp 99 {host} "
                                                   "40001 typ host", "sdpMid": "0"})  # fmt: skip
        hosts = set(_remote_hosts(room, "caller"))
        assert "127.0.0.1" not in hosts and "0.0.0.0" not in hosts  # noqa: S104
        assert {"8.8.4.4", "1.1.1.1"} <= hosts
        assert ({"10.20.30.40", "192.168.1.9"} <= hosts) is private
        assert not ({"10.20.30.40", "192.168.1.9"} & hosts) or private
        pairs = {p.remote_candidate.host for p in _connection(room, "caller")._check_list}
        assert "10.20.30.40" in pairs if private else "10.20.30.40" not in pairs
    finally:
        await client.close()
        await room.close()


async def test_loopback_candidates_when_the_deployment_allows_them() -> None:
    config = MediaConfig(ice_host_addresses=["127.0.0.1"], allow_loopback_candidates=True)
    room = MediaRoom("r-lo", config, on_event=lambda e: None)
    client = Client("caller", RED)
    try:
        await client.connect(room, "caller", 1)
        await wait_for(lambda: client.pc.connectionState == "connected", 15, "connected")
        assert "127.0.0.1" in _remote_hosts(room, "caller")
    finally:
        await client.close()
        await room.close()
