"""server/media/rtp_hooks.py against real aiortc objects: what RTP-level forwarding relies
on (raw packets after SRTP, aiortc's receive statistics and reports, hand-made packets
sent as a sender, RTCP feedback for a sender) must fail here, loudly, on an aiortc
upgrade that moves it."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket, RtcpRtpfbPacket
from media_helpers import RED, SolidTrack, wait_for

from server.media import aiortc_hooks, rtp_hooks


@pytest.fixture(autouse=True)
def hooks() -> None:
    aiortc_hooks.install(["127.0.0.1"])


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def pair(back: bool = False) -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """a sends RED video to b; with `back`, b's transceiver sends to a too."""
    a, b = new_pc(), new_pc()
    a.addTransceiver(SolidTrack(RED), direction="sendrecv")
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    if back:
        b.getTransceivers()[0].direction = "sendrecv"
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    return a, b


def test_check_compat() -> None:
    rtp_hooks.check_compat()


def test_check_compat_names_what_broke(monkeypatch: pytest.MonkeyPatch) -> None:
    def send_rtcp(self: Any, packet: Any) -> None: ...

    monkeypatch.setattr(RTCRtpReceiver, "_send_rtcp", send_rtcp)
    with pytest.raises(RuntimeError, match="RTCRtpReceiver._send_rtcp"):
        rtp_hooks.check_compat()


def test_check_compat_notices_statistics_reading_more(monkeypatch: pytest.MonkeyPatch) -> None:
    def add(self: Any, packet: Any) -> None:
        self.packets_received += packet.payload_type  # reads more than seq and timestamp

    monkeypatch.setattr(StreamStatistics, "add", add)
    with pytest.raises(RuntimeError, match="StreamStatistics.add"):
        rtp_hooks.check_compat()


async def test_tap_gets_raw_packets_and_aiortc_keeps_reporting() -> None:
    a, b = await pair()
    receiver = b.getTransceivers()[0].receiver
    got: list[bytes] = []
    stats = rtp_hooks.ReceiveStats(receiver)

    async def handler(data: bytes, arrival_ms: int) -> None:
        got.append(data)
        _, _, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
        stats.add(ssrc, seq, ts)

    rtp_hooks.tap_rtp(receiver, handler)
    assert rtp_hooks.tapped(receiver)
    try:
        neg = rtp_hooks.negotiated(b.getTransceivers()[0])
        assert neg.codec == "VP8" and neg.rtx_payload_type is not None
        assert neg.mid == "0" and neg.mid_ext_id and neg.abs_send_time_ext_id
        await wait_for(lambda: len(got) >= 10, 5, "tapped packets")
        assert all(p[0] >> 6 == 2 and p[1] & 0x7F == neg.payload_type for p in got)
        assert receiver.track._queue.qsize() == 0  # nothing reached aiortc's decoder
        inbound = [s for s in (await receiver.getStats()).values() if s.type == "inbound-rtp"]
        assert inbound and inbound[0].packetsReceived >= 10
        assert receiver.getSynchronizationSources()  # the active SSRC is known
        # aiortc's receiver reports, fed by ReceiveStats, reach the publisher
        sender = a.getTransceivers()[0].sender

        async def remote_inbound() -> bool:
            return any(s.type == "remote-inbound-rtp" for s in (await sender.getStats()).values())

        for _ in range(40):
            if await remote_inbound():
                break
            await asyncio.sleep(0.1)
        assert await remote_inbound()
        # untapped: aiortc's own path again (this receiver decodes)
        rtp_hooks.untap_rtp(receiver)
        count = len(got)
        frame = await asyncio.wait_for(receiver.track.recv(), 5)
        assert frame is not None and len(got) == count
    finally:
        await a.close()
        await b.close()


def test_check_compat_notices_aioice_receive_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from aioice.ice import Connection  # noqa: PLC0415

    def data_received(self: Any, data: bytes, component: int) -> None:
        self._events.put_nowait(data)  # a new aioice that no longer queues for recv()

    monkeypatch.setattr(Connection, "data_received", data_received)
    with pytest.raises(RuntimeError, match="Connection.data_received"):
        rtp_hooks.check_compat()


async def test_sync_tap_takes_srtp_straight_from_the_socket() -> None:
    """A sync handler runs in aioice's datagram_received (no task: not the DTLS
    transport's), every packet unprotected; the transport's counters still count them;
    a handler that raises is logged and the packets keep coming."""
    a, b = await pair()
    receiver = b.getTransceivers()[0].receiver
    tasks: list[object] = []
    raised = [0]

    def handler(data: bytes, arrival_ms: int) -> None:
        assert data[0] >> 6 == 2 and len(data) > 12  # RTP, unprotected
        tasks.append(asyncio.current_task())
        if len(tasks) == 5:
            raised[0] += 1
            raise ValueError("a bug in the forwarder")

    rtp_hooks.tap_rtp(receiver, handler)
    try:
        await wait_for(lambda: len(tasks) >= 30, 5, "tapped packets")
        assert raised == [1]
        # the first packets may have queued before the DTLS handshake ended; after them
        # none comes through aiortc's DTLS task
        assert tasks[-20:] == [None] * 20
        dtls = receiver.transport
        stats = [s for s in dtls._get_stats().values() if s.type == "transport"]
        assert stats[0].packetsReceived >= 30 and stats[0].bytesReceived > 30 * 12
        assert receiver.track._queue.qsize() == 0  # nothing reached aiortc's decoder
        rtp_hooks.untap_rtp(receiver)  # aiortc's own path again: this receiver decodes
        frame = await asyncio.wait_for(receiver.track.recv(), 5)
        assert frame is not None
    finally:
        await a.close()
        await b.close()


async def test_forged_datagrams_teach_the_router_nothing_and_empty_ones_end_nothing() -> None:
    """Datagrams from a real socket of another sender to the receiving pc's port: RTP
    with new SSRCs that is not authentic is dropped without aiortc's router learning the
    SSRCs (its table would grow with every forged one), and an empty datagram neither
    ends the connection (aiortc's DTLS task fails on it) nor stops the media."""
    import socket  # noqa: PLC0415

    a, b = await pair()
    receiver = b.getTransceivers()[0].receiver
    got: list[int] = []

    def handler(data: bytes, arrival_ms: int) -> None:
        got.append(struct.unpack_from("!I", data, 8)[0])

    rtp_hooks.tap_rtp(receiver, handler)
    try:
        await wait_for(lambda: len(got) >= 5, 5, "tapped packets")
        router = receiver.transport._rtp_router
        pt = rtp_hooks.negotiated(b.getTransceivers()[0]).payload_type
        host, port = b.getTransceivers()[0].receiver.transport.transport._connection._nominated[
            1
        ].protocol.transport.get_extra_info("sockname")[:2]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for forged in range(1000, 1100):
                header = struct.pack("!BBHII", 0x80, pt, forged, 0, forged)
                sock.sendto(header + bytes(100), (host, port))
            sock.sendto(b"", (host, port))
        count = len(got)
        await wait_for(lambda: len(got) >= count + 20, 5, "media after the forged datagrams")
        assert not set(range(1000, 1100)) & set(router.ssrc_table)
        assert not set(range(1000, 1100)) & set(got)
        assert receiver.transport.state == "connected"
    finally:
        await a.close()
        await b.close()


async def test_async_handlers_of_every_kind_are_awaited() -> None:
    """An async callable object (bench/lib's FrameCounter) is awaited on aiortc's path,
    not called from the socket and dropped; so is an async handler that looks sync."""
    a, b = await pair()
    receiver = b.getTransceivers()[0].receiver
    got: list[bytes] = []

    class Counter:
        async def __call__(self, data: bytes, arrival_ms: int) -> None:
            got.append(data)

    async def collect(data: bytes, arrival_ms: int) -> None:
        got.append(data)

    rtp_hooks.tap_rtp(receiver, Counter())
    try:
        await wait_for(lambda: len(got) >= 10, 5, "packets for an async callable object")
        rtp_hooks.tap_rtp(receiver, lambda data, ms: collect(data, ms))  # returns a coroutine
        count = len(got)
        await wait_for(lambda: len(got) >= count + 10, 5, "packets for a lambda's coroutine")
    finally:
        await a.close()
        await b.close()


async def test_sender_port_sends_hand_made_packets_and_counts_them() -> None:
    a, b = await pair(back=True)
    tb = b.getTransceivers()[0]
    back = a.getTransceivers()[0].receiver
    got: list[bytes] = []

    async def handler(data: bytes, arrival_ms: int) -> None:
        got.append(data)

    try:
        await wait_for(lambda: b.connectionState == "connected", 5, "connected")
        rtp_hooks.tap_rtp(back, handler)
        port = rtp_hooks.SenderPort(tb.sender)
        neg = rtp_hooks.negotiated(tb)
        assert port.connected and port.ssrc == tb.sender._ssrc
        packet = struct.pack("!BBHII", 0x80, 0x80 | neg.payload_type, 7, 9000, port.ssrc) + b"x"
        port.send(packet)
        port.sent(1, 1)
        port.sent_frame(9000, 1_700_000_000.0)
        await wait_for(lambda: packet in got, 2, "the packet at the other end")
        out = [s for s in (await tb.sender.getStats()).values() if s.type == "outbound-rtp"]
        assert out[0].packetsSent == 1 and out[0].bytesSent == 1
        assert tb.sender._RTCRtpSender__rtp_timestamp == 9000
        assert tb.sender._RTCRtpSender__ntp_timestamp >> 32 == 1_700_000_000 + 2_208_988_800
    finally:
        await a.close()
        await b.close()


async def test_sender_feedback_gets_nack_pli_fir_remb_and_reports_reach_aiortc() -> None:
    pc = new_pc()
    sender = pc.addTransceiver("video", direction="sendonly").sender
    calls: list[Any] = []

    class Feedback(rtp_hooks.SenderFeedback):
        async def on_nack(self, lost: list[int]) -> None:
            calls.append(("nack", lost))

        def on_keyframe_request(self) -> None:
            calls.append("kf")

        def on_remb(self, bitrate: int) -> None:
            calls.append(("remb", bitrate))

    fb = Feedback()
    rtp_hooks.on_sender_rtcp(sender, fb)
    rtp_hooks.on_sender_rtcp(sender, fb)  # idempotent
    try:
        nack = RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=sender._ssrc)
        nack.lost = [5, 6]
        await sender._handle_rtcp_packet(nack)
        for fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            await sender._handle_rtcp_packet(
                RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=sender._ssrc)
            )
        remb = rtp_hooks.aiortc_rtp.pack_remb_fci(400_000, [sender._ssrc])
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=remb))
        other = rtp_hooks.aiortc_rtp.pack_remb_fci(100_000, [12345])
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=other))
        assert calls == [("nack", [5, 6]), "kf", "kf", ("remb", 400_000)]
        # another owner's release does not remove this one; its own does
        rtp_hooks.on_sender_rtcp(sender, None, only=rtp_hooks.SenderFeedback())
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=1))
        assert calls[-1] == "kf"
        rtp_hooks.on_sender_rtcp(sender, None, only=fb)
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=1))
        assert len(calls) == 5
    finally:
        await pc.close()


async def test_feedback_to_the_publisher_is_sent() -> None:
    a, b = await pair()
    receiver = b.getTransceivers()[0].receiver
    sender = a.getTransceivers()[0].sender
    seen: list[str] = []
    original = sender._handle_rtcp_packet

    async def spy(packet: Any) -> None:
        seen.append(type(packet).__name__ + str(getattr(packet, "fmt", "")))
        await original(packet)

    sender._handle_rtcp_packet = spy
    try:
        await wait_for(lambda: bool(receiver.getSynchronizationSources()), 5, "media")
        ssrc = sender._ssrc
        assert await rtp_hooks.send_pli(receiver, ssrc)
        assert await rtp_hooks.send_nack(receiver, ssrc, [3, 1])
        assert await rtp_hooks.send_remb(receiver, 300_000, [ssrc])
        await wait_for(
            lambda: {"RtcpPsfbPacket1", "RtcpRtpfbPacket1", "RtcpPsfbPacket15"} <= set(seen),
            2,
            "PLI, NACK and REMB at the publisher",
        )
    finally:
        await a.close()
        await b.close()


def test_abs_send_time_and_ntp() -> None:
    # 6.18 fixed point of the seconds since the epoch, modulo 64 s
    assert rtp_hooks.abs_send_time(64.5) == 1 << 17
    assert rtp_hooks.ntp_time(0.5) == (2_208_988_800 << 32) + (1 << 31)
