"""bench/lib/wire_sender.py against real aiortc peers on loopback: the bench clients'
cheap sender must put the clip on the wire as aiortc's RTCRtpSender does (the same VP8
frames, packet sizes and header extensions: the server's work must not change), restart
the clip on a keyframe request, answer NACKs with RTX, and stop when its peer closes."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.codecs.vpx import vp8_depayload

from bench.lib.clips import make_clip
from bench.lib.media import loopback_ice, rtp_hooks
from bench.lib.peers import ClipTrack, Sent, add_clip_sender

# Small and fast to encode, but several packets a frame (the keyframe many more).
SPEC = {"width": 320, "height": 240, "fps": 30, "bitrate": 2_000_000, "frames": 12}
HDR = struct.Struct("!BBHII")


async def wait_for(cond: Any, limit_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def ice() -> None:
    loopback_ice()


class Capture:
    """Every RTP packet b's receiver gets, raw (the tap's bytes are a reused buffer)."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def __call__(self, data: bytes, arrival_ms: int) -> None:
        self.packets.append(bytes(data))

    def media(self, pt: int) -> list[bytes]:
        return [p for p in self.packets if p[1] & 0x7F == pt]


async def call(sender: str, clip: list[bytes]) -> tuple[RTCPeerConnection, RTCPeerConnection,
                                                         ClipTrack, Capture]:  # fmt: skip
    """a sends `clip` at 30 fps with `sender`; b captures what arrives."""
    a, b = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    track = ClipTrack(clip, SPEC["fps"], Sent())
    add_clip_sender(a, track, sender)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    capture = Capture()
    rtp_hooks.tap_rtp(b.getTransceivers()[0].receiver, capture)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    return a, b, track, capture


def payload_of(packet: bytes) -> bytes:
    off = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        off += 4 + 4 * struct.unpack_from("!H", packet, off + 2)[0]
    return packet[off:]


def extensions(packet: bytes) -> dict[int, bytes]:
    """The one-byte header extensions (RFC 8285): id -> value."""
    assert packet[0] & 0x10
    profile, words = struct.unpack_from("!HH", packet, 12)
    assert profile == 0xBEDE
    value, out, pos = packet[16 : 16 + 4 * words], {}, 0
    while pos < len(value) and value[pos]:
        ext_id, n = value[pos] >> 4, (value[pos] & 0x0F) + 1
        out[ext_id] = value[pos + 1 : pos + 1 + n]
        pos += 1 + n
    return out


def frames_of(packets: list[bytes]) -> list[tuple[int, list[bytes]]]:
    """(RTP timestamp, its packets in sequence order) for every complete frame."""
    by_ts: dict[int, list[bytes]] = {}
    for p in packets:
        by_ts.setdefault(HDR.unpack_from(p)[3], []).append(p)
    out = []
    for ts, ps in by_ts.items():
        ps.sort(key=lambda p: HDR.unpack_from(p)[2])
        seqs = [HDR.unpack_from(p)[2] for p in ps]
        whole = seqs == list(range(seqs[0], seqs[0] + len(seqs))) and ps[-1][1] & 0x80
        if whole and payload_of(ps[0])[0] & 0x10:  # S bit: the frame's first packet
            out.append((ts, ps))
    return out


async def test_wire_packets_are_the_clip_frames_as_aiortc_sends_them() -> None:
    """Depacketized, every frame the wire sender sent is the clip's frame at the position
    it recorded in Sent; its packets have the sizes, marker, descriptor layout and header
    extensions aiortc's own sender gives the same clip."""
    clip = make_clip(SPEC)
    got: dict[str, list[tuple[int, list[bytes]]]] = {}
    tracks: dict[str, ClipTrack] = {}
    for sender in ("wire", "aiortc"):
        a, b, track, capture = await call(sender, clip)
        try:
            await wait_for(lambda c=capture: len(frames_of(c.packets)) >= len(clip) + 2, 20)
        finally:
            await a.close()
            await b.close()
        pt = HDR.unpack_from(capture.packets[0])[1] & 0x7F
        got[sender], tracks[sender] = frames_of(capture.media(pt)), track
    for sender, frames in got.items():
        sent = tracks[sender].sent
        assert sent is not None
        ts0 = frames[0][0]
        pids = []
        for ts, packets in frames:
            n = ((ts - ts0) & 0xFFFFFFFF) // 3000  # the n-th frame sent
            data = b"".join(vp8_depayload(payload_of(p)) for p in packets)
            assert data == clip[sent.positions[n]], (sender, n)
            pids.append(struct.unpack_from("!H", payload_of(packets[0]), 2)[0])
        # the picture id (15 bits, M set) counts frames, as aiortc's VP8 encoder does
        assert all(p & 0x8000 for p in pids)
        assert [(p - pids[0]) & 0x7FFF for p in pids] == [
            (((ts - ts0) & 0xFFFFFFFF) // 3000) & 0x7FFF for ts, _ in frames
        ]

    def shape(frames: list[tuple[int, list[bytes]]], track: ClipTrack) -> list[Any]:
        """Per clip position: packet sizes, first two bytes' flags, descriptor flags and
        the extensions' ids and lengths (abs-send-time's value is a clock)."""
        sent = track.sent
        assert sent is not None
        out = {}
        ts0 = frames[0][0]
        for ts, packets in frames:
            pos = sent.positions[((ts - ts0) & 0xFFFFFFFF) // 3000]
            out[pos] = [(len(p), p[0], p[1], payload_of(p)[:2],
                         sorted((i, len(v)) for i, v in extensions(p).items()))
                        for p in packets]  # fmt: skip
        return [out[k] for k in sorted(out)]

    assert shape(got["wire"], tracks["wire"]) == shape(got["aiortc"], tracks["aiortc"])
    # and the wire sender's frames went out in one sendmsg each (UDP GSO), not one by one
    wire = tracks["wire"].wire
    assert wire is not None and wire._out.gso and wire._out.batches >= len(clip)
    # the same mid value in both (the transceiver's)
    w, o = extensions(got["wire"][0][1][0]), extensions(got["aiortc"][0][1][0])
    assert {i: v for i, v in w.items() if len(v) != 3} == {
        i: v for i, v in o.items() if len(v) != 3
    }


async def test_a_keyframe_request_restarts_the_clip_at_its_keyframe() -> None:
    clip = make_clip(SPEC)
    a, b, track, capture = await call("wire", clip)
    try:
        await wait_for(lambda: track.pos >= 5, 20)
        receiver = b.getTransceivers()[0].receiver
        ssrc = HDR.unpack_from(capture.packets[0])[4]
        sent = track.sent
        assert sent is not None and track.keyframes == 0
        before = len(sent.positions)
        assert await rtp_hooks.send_pli(receiver, ssrc)
        await wait_for(lambda: track.keyframes == 1 and len(sent.positions) > before + 2, 10)
        after = list(sent.positions[before:])
        assert 0 in after, after
        restart = after.index(0)
        assert after[restart : restart + 3] == [0, 1, 2]  # the clip goes on from there
        # and the frame on the wire at that moment is the clip's keyframe
        n = before + restart
        frames = frames_of(capture.packets)
        ts0 = frames[0][0]
        await wait_for(lambda: any(((ts - ts0) & 0xFFFFFFFF) // 3000 == n
                                   for ts, _ in frames_of(capture.packets)), 10)  # fmt: skip
        packets = next(ps for ts, ps in frames_of(capture.packets)
                       if ((ts - ts0) & 0xFFFFFFFF) // 3000 == n)  # fmt: skip
        data = b"".join(vp8_depayload(payload_of(p)) for p in packets)
        assert data == clip[0] and not data[0] & 1  # P bit 0: a keyframe
    finally:
        await a.close()
        await b.close()


async def test_a_nack_is_answered_with_rtx_and_close_stops_the_sender() -> None:
    clip = make_clip(SPEC)
    a, b, track, capture = await call("wire", clip)
    try:
        await wait_for(lambda: len(capture.packets) >= 10, 20)
        receiver = b.getTransceivers()[0].receiver
        original = capture.packets[-3]
        _, b1, seq, ts, ssrc = HDR.unpack_from(original)
        assert await rtp_hooks.send_nack(receiver, ssrc, [seq, (seq - 1000) & 0xFFFF])
        neg = rtp_hooks.negotiated(a.getTransceivers()[0])
        assert neg.rtx_payload_type is not None
        await wait_for(lambda: capture.media(neg.rtx_payload_type), 10)
        (rtx,) = capture.media(neg.rtx_payload_type)  # the old seq is out of history
        _, rb1, _, rts, rssrc = HDR.unpack_from(rtx)
        assert rb1 & 0x80 == b1 & 0x80 and rts == ts and rssrc != ssrc
        assert payload_of(rtx) == struct.pack("!H", seq) + payload_of(original)
        assert track.wire is not None and track.wire.retransmitted == 1
    finally:
        await a.close()
        await b.close()
    wire = track.wire
    assert wire._stopped and wire._handle is None
    n = track.n
    await asyncio.sleep(0.2)
    assert track.n == n  # nothing more sent after the close


def test_unknown_sender_is_a_clear_error() -> None:
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    with pytest.raises(ValueError, match="wire"):
        add_clip_sender(a, ClipTrack([b"\x00"], 30, None), "gstreamer")
