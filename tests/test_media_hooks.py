"""server/media/aiortc_hooks.py against real aiortc objects: an aiortc upgrade that moves
any private symbol the hooks rely on must fail here, loudly."""

from __future__ import annotations

import asyncio

import aioice.ice
import av
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    rtcrtpreceiver,
)
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket
from media_helpers import BLUE, RED, SolidTrack, center_rgb, close_to, wait_for

from server.media import aiortc_hooks, rtp_hooks


@pytest.fixture(autouse=True)
def hooks() -> None:
    aiortc_hooks.install(["127.0.0.1"])


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def connect_pair(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


def test_check_compat_and_install_idempotent() -> None:
    aiortc_hooks.check_compat()
    aiortc_hooks.install(["127.0.0.1"])
    assert aiortc_hooks.installed()
    assert rtcrtpreceiver.decoder_worker is aiortc_hooks._dispatch_worker
    # the original is kept, not the dispatcher wrapping itself
    assert aiortc_hooks._original_decoder_worker is not aiortc_hooks._dispatch_worker
    assert aiortc_hooks._original_decoder_worker.__module__ == "aiortc.rtcrtpreceiver"


def test_check_compat_names_what_broke(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpSender, "_send_keyframe")
    with pytest.raises(RuntimeError, match="RTCRtpSender._send_keyframe"):
        aiortc_hooks.check_compat()


def test_check_compat_notices_a_changed_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def worker(loop: object, input_q: object, output_q: object) -> None: ...

    monkeypatch.setattr(aiortc_hooks, "_original_decoder_worker", worker)
    with pytest.raises(RuntimeError, match="decoder_worker"):
        aiortc_hooks.check_compat()


async def test_host_addresses_are_exactly_the_configured_ones() -> None:
    try:
        aiortc_hooks.install(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == [
            "127.0.0.1",
            "::1",
        ]
        aiortc_hooks.install(["127.0.0.1"])
        pc = new_pc()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:")
        ]
        assert candidates and all(" 127.0.0.1 " in c for c in candidates)
        await pc.close()
    finally:
        aiortc_hooks.install(["127.0.0.1"])


async def test_passthrough_pli_and_fallback_on_real_peers() -> None:
    """The answerer's receiver, marked, decodes nothing and reports its end, while the
    offerer, unmarked, decodes what the answerer sends back."""
    offerer, answerer = new_pc(), new_pc()
    ended = asyncio.Event()
    remote: list[MediaStreamTrack] = []

    def on_track(track: MediaStreamTrack) -> None:
        remote.append(track)
        aiortc_hooks.mark_passthrough(track, on_end=ended.set)

    answerer.on("track", on_track)
    sender_t = offerer.addTransceiver(SolidTrack(RED), direction="sendrecv")
    kf_requests: list[int] = []
    aiortc_hooks.on_keyframe_request(sender_t.sender, lambda: kf_requests.append(1))
    try:
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        back = answerer.getTransceivers()[0]
        back.sender.replaceTrack(SolidTrack(BLUE))
        back.direction = "sendrecv"
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)

        receiver = answerer.getReceivers()[0]
        await wait_for(lambda: receiver.getSynchronizationSources() != [], 5, "media")
        await asyncio.sleep(0.3)  # frames reached the decoder thread
        assert remote[0]._queue.qsize() == 0  # nothing was decoded into the track

        # fallback: the offerer's receiver was not marked, so it decodes
        back_track = offerer.getTransceivers()[0].receiver.track
        frame = await asyncio.wait_for(back_track.recv(), 5)
        assert isinstance(frame, av.VideoFrame) and close_to(center_rgb(frame), BLUE)
        with pytest.raises(RuntimeError, match="already decodes"):
            aiortc_hooks.mark_passthrough(back_track)

        # a PLI from the passthrough receiver reaches the sender
        ssrc = receiver.getSynchronizationSources()[0].source
        assert await rtp_hooks.send_pli(receiver, ssrc)
        await wait_for(lambda: kf_requests != [], 2, "the PLI at the sender")

        # unmarked: still drained, nothing decoded; marking again re-points the callback
        aiortc_hooks.unmark_passthrough(remote[0])
        await asyncio.sleep(0.2)
        assert remote[0]._queue.qsize() == 0
        aiortc_hooks.mark_passthrough(remote[0], on_end=ended.set)
    finally:
        await offerer.close()
        await asyncio.wait_for(ended.wait(), 5)  # the receiver's end is reported
        await answerer.close()
    assert remote[0]._queue.get_nowait() is None  # and the track ended like aiortc's


async def test_on_keyframe_request_sees_pli_and_fir() -> None:
    pc = new_pc()
    sender = pc.addTransceiver("video", direction="sendonly").sender
    calls: list[int] = []
    aiortc_hooks.on_keyframe_request(sender, lambda: calls.append(1))
    for fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
        await sender._handle_rtcp_packet(
            RtcpPsfbPacket(fmt=fmt, ssrc=1234, media_ssrc=sender._ssrc)
        )
    assert calls == [1, 1]
    await pc.close()


def test_mark_requires_a_remote_track() -> None:
    with pytest.raises(TypeError):
        aiortc_hooks.mark_passthrough(SolidTrack(RED))
