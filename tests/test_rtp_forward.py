"""RTP-level forwarding (server/media/rtp_publisher.py, rtp_subscriber.py, rtp_assembly.py):
header rewriting, keyframe starts, NACK both ways, upstream switches, REMB and frame
assembly on synthetic packets; then real aiortc peers through a MediaRoom, with 5% loss
injected in the caller's send path and in the server's send path."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator
from typing import Any

import av
import pytest
from media_helpers import (
    GREEN,
    RED,
    Client,
    PatternTrack,
    center_rgb,
    close_to,
    inject_send_loss,
    loopback_config,
    wait_for,
)

from server.core import config as config_mod
from server.media import assembly_batch, rtp_assembly, rtp_hooks, rtp_publisher
from server.media.peers import MediaRoom
from server.media.relay import RoomTrack
from server.media.rtp_publisher import RtpPublisher
from server.media.rtp_subscriber import RtpSubscriber

PT, RTX_PT, OUT_PT, OUT_RTX_PT = 96, 97, 100, 101
IN_SSRC, IN_RTX_SSRC, OUT_SSRC, OUT_RTX_SSRC = 1111, 2222, 3333, 4444


# --- synthetic packets and fake aiortc ends ---------------------------------------------------


def vp8(
    seq: int,
    ts: int,
    *,
    pid: int = 100,
    start: bool = True,
    key: bool = False,
    marker: bool = True,
    body: bytes = b"frame",
    ssrc: int = IN_SSRC,
    pt: int = PT,
) -> bytes:
    """An RTP packet of VP8 with a 15-bit picture id and one header extension."""
    descriptor = bytes([0x90 if start else 0x80, 0x80]) + struct.pack("!H", 0x8000 | pid)
    tag = bytes([0x00 if key else 0x01]) if start else b""
    ext = b"\xbe\xde\x00\x01" + bytes([0x30, 1, 2, 3])  # abs-send-time, id 3
    header = struct.pack("!BBHII", 0x90, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    return header + ext + descriptor + tag + body


def rtx(osn_packet: bytes, rtx_seq: int) -> bytes:
    """The RTX form of a packet built by vp8()."""
    b0, b1, seq, ts, _ = struct.unpack_from("!BBHII", osn_packet)
    header = struct.pack("!BBHII", b0, (b1 & 0x80) | RTX_PT, rtx_seq, ts, IN_RTX_SSRC)
    return header + osn_packet[12:20] + struct.pack("!H", seq) + osn_packet[20:]


def parse(data: bytes) -> dict[str, Any]:
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    off = 12
    ext = b""
    if b0 & 0x10:
        words = struct.unpack_from("!H", data, 14)[0]
        ext = data[16 : 16 + 4 * words]
        off = 16 + 4 * words
    return {
        "pt": b1 & 0x7F,
        "marker": b1 >> 7,
        "seq": seq,
        "ts": ts,
        "ssrc": ssrc,
        "ext": ext,
        "payload": data[off:],
    }


def picture_id(payload: bytes) -> int:
    return struct.unpack_from("!H", payload, 2)[0] & 0x7FFF


class FakePort:
    def __init__(self) -> None:
        self.ssrc, self.rtx_ssrc = OUT_SSRC, OUT_RTX_SSRC
        self.sent_packets: list[bytes] = []
        self.counted = [0, 0]

    def send(self, data: bytes | memoryview, last: bool = False) -> None:
        self.sent_packets.append(bytes(data))  # a view of the history: copied, as SRTP does

    def sent(self, packets: int, payload_bytes: int) -> None:
        self.counted[0] += packets
        self.counted[1] += payload_bytes

    def sent_frame(self, rtp_timestamp: int, wallclock: float) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Fakes:
    """Stands in for rtp_hooks' aiortc side: records taps and RTCP sent upstream."""

    def __init__(self) -> None:
        self.handlers: dict[Any, Any] = {}
        self.rtcp: list[tuple[str, Any]] = []
        self.ports: dict[Any, FakePort] = {}

    def negotiated(self, transceiver: Any) -> rtp_hooks.Negotiated:
        out = transceiver.name == "out"
        pt, rtx_pt = (OUT_PT, OUT_RTX_PT) if out else (PT, RTX_PT)
        return rtp_hooks.Negotiated(
            codec="VP8",
            payload_type=pt,
            rtx_payload_type=rtx_pt,
            media_types={pt: "VP8"},
            rtx_types={rtx_pt: pt},
            mid="1" if out else "0",
            mid_ext_id=4 if out else 1,
            abs_send_time_ext_id=2 if out else 3,
        )

    def port(self, sender: Any, batch: bool = True, counts: Any = None) -> FakePort:
        return self.ports.setdefault(sender, FakePort())

    async def pli(self, receiver: Any, ssrc: int) -> bool:
        self.rtcp.append(("pli", ssrc))
        return True

    async def nack(self, receiver: Any, ssrc: int, lost: list[int]) -> bool:
        self.rtcp.append(("nack", sorted(lost)))
        return True

    async def remb(self, receiver: Any, bitrate: int, ssrcs: list[int]) -> bool:
        self.rtcp.append(("remb", (bitrate, ssrcs)))
        return True


class FakeTransceiver:
    def __init__(self, name: str) -> None:
        self.name = name
        self.receiver = object()
        self.sender = object()


class NullStats:
    def __init__(self, receiver: Any) -> None:
        pass

    def add(self, ssrc: int, seq: int, ts: int) -> None:
        pass


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    f = Fakes()
    h = rtp_hooks
    monkeypatch.setattr(h, "negotiated", f.negotiated)
    monkeypatch.setattr(h, "tap_rtp", lambda r, handler: f.handlers.__setitem__(r, handler))
    monkeypatch.setattr(h, "untap_rtp", lambda r: f.handlers.pop(r, None))
    monkeypatch.setattr(h, "ReceiveStats", NullStats)
    monkeypatch.setattr(h, "SenderPort", f.port)
    monkeypatch.setattr(h, "on_sender_rtcp", lambda *a, **k: None)
    monkeypatch.setattr(h, "send_pli", f.pli)
    monkeypatch.setattr(h, "send_nack", f.nack)
    monkeypatch.setattr(h, "send_remb", f.remb)
    return f


async def publish(track: RoomTrack, fakes: Fakes) -> tuple[RtpPublisher, Any]:
    holder: list[RtpPublisher] = []
    upstream = track.attach_upstream(lambda: holder[0].request_keyframe())
    t = FakeTransceiver("in")
    pub = RtpPublisher(track, upstream, t)  # type: ignore[arg-type]
    holder.append(pub)
    return pub, fakes.handlers[t.receiver]


async def subscriber(track: RoomTrack, fakes: Fakes) -> tuple[RtpSubscriber, FakePort]:
    t = FakeTransceiver("out")
    sub = RtpSubscriber(track, t)  # type: ignore[arg-type]
    task = asyncio.ensure_future(sub.recv())  # what the RTCRtpSender does once connected
    await asyncio.sleep(0)
    sub._test_task = task  # type: ignore[attr-defined]
    return sub, fakes.ports[t.sender]


# --- synthetic -------------------------------------------------------------------------------


async def test_rewrites_headers_and_starts_at_a_keyframe(fakes: Fakes) -> None:
    track = RoomTrack("camera", keyframe_min_interval_s=0.05)
    pub, feed = await publish(track, fakes)
    sub, port = await subscriber(track, fakes)
    feed(vp8(10, 9000, pid=7), 0)  # a delta frame: the subscriber waits
    assert port.sent_packets == [] and sub.waiting_keyframe
    await asyncio.sleep(0.01)
    assert ("pli", IN_SSRC) in fakes.rtcp  # asked the publisher for a keyframe
    feed(vp8(11, 12000, pid=8, key=True, marker=False, body=b"k1"), 0)
    feed(vp8(12, 12000, pid=8, start=False, body=b"k2"), 0)
    feed(vp8(13, 15000, pid=9, body=b"d"), 0)
    out = [parse(p) for p in port.sent_packets]
    assert [o["pt"] for o in out] == [OUT_PT] * 3 and {o["ssrc"] for o in out} == {OUT_SSRC}
    assert [o["seq"] - out[0]["seq"] for o in out] == [0, 1, 2]
    assert [o["ts"] - out[0]["ts"] for o in out] == [0, 0, 3000]
    assert [o["marker"] for o in out] == [0, 1, 1]
    # the payload is the publisher's, byte for byte; extensions are the leg's (mid "1")
    assert out[0]["payload"] == vp8(11, 0, pid=8, key=True, body=b"k1")[20:]
    assert out[0]["ext"][:2] == bytes([0x40, ord("1")]) and out[0]["ext"][2] >> 4 == 2
    assert track.keyframes_in == 1 and track.frames_in == 3 and sub.frames_forwarded == 2
    assert port.counted == [3, sum(len(o["payload"]) for o in out)]
    sub.stop()
    assert track.subscribers == []
    pub.close()


async def test_gaps_are_nacked_upstream_and_repairs_forwarded(fakes: Fakes) -> None:
    track = RoomTrack("camera")
    pub, feed = await publish(track, fakes)
    sub, port = await subscriber(track, fakes)
    packets = {s: vp8(s, 3000 * s, pid=s, key=s == 1) for s in range(1, 8)}
    for s in (1, 2, 5, 6):  # 3 and 4 lost on the way in
        feed(packets[s], 0)
    await asyncio.sleep(0.01)
    assert ("nack", [3, 4]) in fakes.rtcp
    feed(rtx(packets[3], 500), 0)
    feed(rtx(packets[3], 501), 0)  # a second copy: dropped
    await asyncio.sleep(rtp_publisher.NACK_RETRY_S + 0.03)
    assert fakes.rtcp.count(("nack", [4])) >= 1  # still missing: asked again
    feed(packets[4], 0)  # late original
    feed(packets[7], 0)
    seqs = [parse(p)["seq"] - parse(port.sent_packets[0])["seq"] for p in port.sent_packets]
    assert seqs == [0, 1, 4, 5, 2, 3, 6]  # repairs go out late, in their place
    assert pub.packets_recovered == 2 and pub.duplicates == 1
    pub.close()
    sub.stop()


async def test_subscriber_nacks_answered_from_history_as_rtx(fakes: Fakes) -> None:
    track = RoomTrack("camera")
    pub, feed = await publish(track, fakes)
    sub, port = await subscriber(track, fakes)
    for s in range(1, 6):
        feed(vp8(s, 3000 * s, pid=s, key=s == 1, body=bytes([s]) * 50), 0)
    sent = [parse(p) for p in port.sent_packets]
    want = sent[2]
    sub.on_nack([want["seq"], (want["seq"] + 1000) & 0xFFFF])  # one never sent
    assert len(port.sent_packets) == 6 and sub.retransmitted == 1
    r = parse(port.sent_packets[-1])
    assert r["pt"] == OUT_RTX_PT and r["ssrc"] == OUT_RTX_SSRC and r["ts"] == want["ts"]
    assert struct.unpack_from("!H", r["payload"])[0] == want["seq"]
    assert r["payload"][2:] == want["payload"]
    pub.close()
    sub.stop()


async def test_new_publisher_continues_sequence_timestamps_and_picture_ids(
    fakes: Fakes,
) -> None:
    track = RoomTrack("camera", keyframe_min_interval_s=0.01)
    pub1, feed1 = await publish(track, fakes)
    sub, port = await subscriber(track, fakes)
    for s in range(1, 4):
        feed1(vp8(s, 3000 * s, pid=30000 + s, key=s == 1), 0)
    await asyncio.sleep(0.05)
    pub2, feed2 = await publish(track, fakes)  # the caller's new peer connection
    feed1(vp8(4, 12000, pid=30004), 0)  # the old one: ignored
    feed2(vp8(60000, 777, pid=5, ssrc=9999), 0)  # not a keyframe: skipped
    feed2(vp8(60001, 3777, pid=6, ssrc=9999, key=True), 0)
    feed2(vp8(60002, 6777, pid=7, ssrc=9999), 0)
    out = [parse(p) for p in port.sent_packets]
    assert len(out) == 5
    assert [(o["seq"] - out[0]["seq"]) & 0xFFFF for o in out] == [0, 1, 2, 3, 4]
    gap = (out[3]["ts"] - out[2]["ts"]) & 0xFFFFFFFF
    assert 0.04 * 90000 < gap < 0.5 * 90000  # the wall-clock pause, not a jump
    assert (out[4]["ts"] - out[3]["ts"]) & 0xFFFFFFFF == 3000
    assert [picture_id(o["payload"]) for o in out] == [30001, 30002, 30003, 30004, 30005]
    assert sub.resets == 1 and track.upstreams_attached == 2
    pub1.close()
    pub2.close()
    sub.stop()


async def test_lowest_remb_goes_upstream(fakes: Fakes) -> None:
    track = RoomTrack("camera")
    pub, feed = await publish(track, fakes)
    a, _ = await subscriber(track, fakes)
    b, _ = await subscriber(track, fakes)
    feed(vp8(1, 0, key=True), 0)
    a.on_remb(900_000)
    b.on_remb(300_000)  # a drop goes up at once
    b.on_remb(320_000)  # a small rise waits
    await asyncio.sleep(0)
    rembs = [v for k, v in fakes.rtcp if k == "remb"]
    assert rembs == [(900_000, [IN_SSRC]), (300_000, [IN_SSRC])]
    pub.close()
    a.stop()
    b.stop()


async def batch_done() -> None:
    """Past the next assembly batch (server/media/assembly_batch.py)."""
    await asyncio.sleep(assembly_batch.ASSEMBLY_BATCH_S + 0.05)


async def test_frames_assembled_for_frame_subscribers(fakes: Fakes) -> None:
    track = RoomTrack("camera", keyframe_min_interval_s=0.01)
    pub, feed = await publish(track, fakes)
    frames: list[av.Packet] = []
    recorder = track.subscribe()

    async def drain() -> None:
        while True:
            frames.append(await recorder.recv())

    task = asyncio.ensure_future(drain())
    await asyncio.sleep(0)

    def frame(seq: int, ts: int, parts: list[bytes], key: bool) -> list[bytes]:
        return [
            vp8(seq + i, ts, pid=seq, start=i == 0, key=key, marker=i == len(parts) - 1, body=b)
            for i, b in enumerate(parts)
        ]

    f1 = frame(1, 3000, [b"AA", b"BB"], True)
    f2 = frame(3, 6000, [b"CC", b"DD", b"EE"], False)
    f3 = frame(6, 9000, [b"FF"], False)
    for p in f1 + [f2[0], f2[2]] + f3:  # f2's middle packet comes late
        feed(p, 0)
    await asyncio.sleep(0)
    assert frames == []  # assembled in the next batch, not per packet
    await batch_done()
    assert len(frames) == 1
    feed(f2[1], 0)
    await batch_done()
    assert [bytes(f) for f in frames] == [b"\x00AABB", b"\x01CCDDEE", b"\x01FF"]
    assert [f.pts for f in frames] == [0, 3000, 6000]
    # a packet that never comes: the recorder resumes at the next keyframe
    f4 = frame(7, 12000, [b"GG", b"HH"], False)
    f5 = frame(9, 15000, [b"II"], False)
    f6 = frame(10, 18000, [b"JJ"], True)
    for p in [f4[0], *f5]:
        feed(p, 0)
    await asyncio.sleep(rtp_assembly.ASSEMBLY_MAX_WAIT_S + 0.05)
    for p in f6:
        feed(p, 0)
    await batch_done()
    assert [bytes(f) for f in frames[3:]] == [b"\x00JJ"]
    assert recorder.frames_dropped >= 1
    task.cancel()
    pub.close()


async def test_frames_of_a_batch_reach_a_subscriber_that_stops_and_a_publisher_that_closes(
    fakes: Fakes,
) -> None:
    """Assembly waits for the next batch, but nothing received is lost to it: a frame
    subscriber that stops, a publisher that closes and a publisher that is replaced each
    assemble what is pending first (the recorder's last frames before its stop)."""
    track = RoomTrack("camera", keyframe_min_interval_s=0.01)
    pub, feed = await publish(track, fakes)
    got: list[bytes] = []
    first = track.subscribe()
    first.deliver(lambda data, pts, key: got.append(data))
    feed(vp8(1, 3000, pid=1, key=True, body=b"AA"), 0)
    assert got == []
    first.stop()  # before the batch: its frame is delivered first
    assert got == [b"\x00AA"]

    second: list[bytes] = []
    track.subscribe().deliver(lambda data, pts, key: second.append(data))
    feed(vp8(2, 6000, pid=2, key=True, body=b"BB"), 0)
    pub.close()
    assert second == [b"\x00BB"]

    pub2, feed2 = await publish(track, fakes)
    feed2(vp8(1, 3000, pid=1, key=True, body=b"CC"), 0)
    await publish(track, fakes)  # a new publisher: the old one's pending frame goes first
    assert second == [b"\x00BB", b"\x00CC"]
    await batch_done()  # and the timer that was due finds nothing left
    assert second == [b"\x00BB", b"\x00CC"] and got == [b"\x00AA"]
    pub2.close()


def test_one_batch_assembles_every_publisher_of_a_loop() -> None:
    """One timer per event loop for all publishers with pending packets, in the order
    they got their first; a new loop has its own."""
    order: list[str] = []

    class Pub:
        def __init__(self, name: str) -> None:
            self.name = name

        def assemble_backlog(self) -> None:
            order.append(self.name)

    batches: list[object] = []

    async def main() -> None:
        a, b = Pub("a"), Pub("b")
        assembly_batch.schedule(a)
        first = assembly_batch._batches[asyncio.get_running_loop()]
        assert first._armed  # its one timer is set
        assembly_batch.schedule(b)
        batch = assembly_batch._batches[asyncio.get_running_loop()]
        assert batch is first and batch._armed and batch._due == [a, b]  # no second one
        batches.append(batch)
        await asyncio.sleep(assembly_batch.ASSEMBLY_BATCH_S + 0.05)
        assert not batch._armed and batch._due == []

    for _ in range(2):
        order.clear()
        asyncio.run(main())
        assert order == ["a", "b"]
    assert batches[0] is not batches[1]


def test_a_loop_closed_with_a_batch_due_is_not_kept_alive() -> None:
    """A test suite (or a server restarted in-process) closes loops with packets still
    waiting for their batch: neither the loop nor the publishers due on it may stay
    reachable through assembly_batch."""
    import gc
    import weakref

    class Pub:
        def assemble_backlog(self) -> None:
            pass

    refs: list[weakref.ref[Any]] = []

    async def main() -> None:
        pub = Pub()
        refs.extend([weakref.ref(asyncio.get_running_loop()), weakref.ref(pub)])
        assembly_batch.schedule(pub)  # due in 0.1 s: the loop closes first

    asyncio.run(main())
    gc.collect()
    assert [r() for r in refs] == [None, None]


async def test_keyframe_request_before_media_goes_with_the_first_packet(
    fakes: Fakes,
) -> None:
    track = RoomTrack("camera")
    pub, feed = await publish(track, fakes)
    assert pub.request_keyframe() is None  # no SSRC to address it to yet
    assert fakes.rtcp == []
    feed(vp8(1, 0), 0)
    await asyncio.sleep(0)
    assert fakes.rtcp == [("pli", IN_SSRC)]
    pub.close()


def test_forwarding_config_is_retired() -> None:
    # media.forwarding ("rtp" or "frame") is gone: RTP-level forwarding is the only path.
    assert not hasattr(config_mod.MediaConfig(), "forwarding")
    with pytest.raises(config_mod.ConfigError, match="media.forwarding"):
        config_mod.from_dict({"media": {"forwarding": "frame"}})


# --- real peers ------------------------------------------------------------------------------


@pytest.fixture
async def room() -> AsyncIterator[MediaRoom]:
    r = MediaRoom("r-rtp", loopback_config(), on_event=lambda e: None)
    yield r
    await r.close()


def leg(room: MediaRoom, pid: str) -> Any:
    return room._participants[pid].leg


async def test_five_percent_loss_upstream_agent_still_decodes(
    room: MediaRoom, caplog: pytest.LogCaptureFixture
) -> None:
    caller = Client("caller", None)
    caller.pc.getTransceivers()[0].sender.replaceTrack(PatternTrack(RED))
    agent = Client("agent", None, send=False)
    dropped = inject_send_loss(caller.pc, 0.05, seed=3)
    try:
        await agent.connect(room, "a", 1)
        await caller.connect(room, "c", 1)
        await agent.wait_frames(10, 5)
        with caplog.at_level(logging.WARNING, logger="aiortc.rtcrtpreceiver"):
            took = await agent.wait_frames(90, 8)
        assert took < 5.0  # about 30 fps
        assert dropped[0] > 20
        pub = leg(room, "c").rtp
        assert pub.packets_recovered > 0  # the server's NACKs repaired the losses
        assert agent.last_rgb is not None and close_to(agent.last_rgb, RED)
        errors = [r for r in caplog.records if "failed to decode" in r.getMessage()]
        assert len(errors) <= 2
    finally:
        await caller.close()
        await agent.close()


async def test_loss_towards_the_agent_is_repaired_from_history(room: MediaRoom) -> None:
    caller = Client("caller", None)
    caller.pc.getTransceivers()[0].sender.replaceTrack(PatternTrack(GREEN))
    agent = Client("agent", None, send=False)
    try:
        await agent.connect(room, "a", 1)
        await caller.connect(room, "c", 1)
        await agent.wait_frames(5, 5)
        sub = leg(room, "a").subscription
        port = sub.port
        original = port.send
        count = [0]

        def lossy(data: bytes, last: bool = False) -> None:
            count[0] += 1
            if count[0] % 20 == 0:
                return  # 5% of what the server sends the agent
            original(data, last)

        port.send = lossy
        took = await agent.wait_frames(60, 6)
        assert took < 4.0
        assert sub.retransmitted > 0
        assert agent.last_rgb is not None and close_to(agent.last_rgb, GREEN)
    finally:
        await caller.close()
        await agent.close()


async def test_agents_remb_slows_the_callers_encoder(room: MediaRoom) -> None:
    caller, agent = Client("caller", RED), Client("agent", None, send=False)
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await agent.wait_frames(5, 5)
        server_ssrc = leg(room, "a").receive_t.sender._ssrc
        receiver = agent.pc.getReceivers()[0]
        encoder_of = caller.pc.getSenders()[0]

        def target() -> int | None:
            enc = encoder_of._RTCRtpSender__encoder
            return getattr(enc, "target_bitrate", None)

        await asyncio.sleep(rtp_publisher.REMB_MIN_INTERVAL_S)
        assert await rtp_hooks.send_remb(receiver, 260_000, [server_ssrc])
        await wait_for(lambda: target() == 260_000, 2, "the caller's encoder at 260 kbps")
    finally:
        await caller.close()
        await agent.close()


async def test_frame_subscriber_gets_decodable_frames(room: MediaRoom) -> None:
    caller = Client("caller", None)
    caller.pc.getTransceivers()[0].sender.replaceTrack(PatternTrack(RED))
    agent = Client("agent", None, send=False)
    recorder = room.tracks["camera"].subscribe()  # what the recorder does
    try:
        await agent.connect(room, "a", 1)
        await caller.connect(room, "c", 1)
        decoder = av.CodecContext.create("libvpx", "r")
        decoded: list[av.VideoFrame] = []
        pts: list[int] = []
        while len(decoded) < 30:
            packet = await asyncio.wait_for(recorder.recv(), 5)
            pts.append(packet.pts)
            decoded.extend(decoder.decode(packet))
        assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
        assert close_to(center_rgb(decoded[-1]), RED)
        await agent.wait_frames(10, 5)  # the RTP subscriber is unaffected
    finally:
        recorder.stop()
        await caller.close()
        await agent.close()
