"""Issue #14 (items 14, 17): hostile signalling input gets its documented error code and
never a traceback; remote ICE candidates outside the allowed ranges are dropped."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

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
