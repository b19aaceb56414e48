"""A clip publisher that writes RTP itself: the bench clients' cheap sender (#18).

aiortc's RTCRtpSender costs a bench client, per frame, a `recv()` coroutine, an av.Packet,
the VP8 packetizer (a descriptor object and bytes concatenations), and per packet an
RtpPacket, its serialize() and four coroutine frames down to `sendto`. With 80 rooms on 2
cores the two client processes took ~1.8 cores beside the server and starved it.

Here each clip frame is packetized once, up front, exactly as aiortc would
(`Vp8Encoder._packetize`: the same ~1300-byte payloads and 4-byte payload descriptor; the
same header extensions, `mid` and `abs-send-time`, laid out by aiortc's own
HeaderExtensionsMap with the ids the transceiver negotiated). Per frame only the sequence
number, timestamp, SSRC, picture id and abs-send-time are written into one reused buffer,
and `rtp_hooks.SenderPort` protects and sends it (it also keeps the RTCRtpSender's
counters, so aiortc's own RTCP task still sends correct sender reports). So the server
receives what it received from aiortc's sender: same frames, same packet sizes, same fps.

A frame's packets leave in one `sendmsg` (bench/lib/frame_socket.py: UDP GSO, the kernel cuts the
buffer into the same datagrams; all but a frame's last packet have one size, as GSO
needs), protected in place in that buffer: on loopback the syscall per datagram was the
largest cost left (37% of the callers' main thread). Where GSO is refused, or the
socket's queue is not empty, the packets go one by one through `SenderPort.send`.

Kept from the aiortc path: `Sent` timestamps (taken as the frame's first packet leaves),
keyframe requests (PLI/FIR) restarting the clip at position 0, RTX retransmission on NACK
from a history of the last RTP_HISTORY packets (aiortc keeps as many), the stall rule
(more than 1 s behind: no burst to catch up), and the stop when the peer connection
closes.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from dataclasses import dataclass
from typing import Any

from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket

from bench.lib.clips import CLOCK
from bench.lib.frame_socket import FrameSocket
from bench.lib.media import rtp_hooks

RTP_HISTORY = 128  # aiortc's RTP_HISTORY_SIZE: how far back a NACK can reach
_SEQ_TS_SSRC = struct.Struct("!HII")  # at offset 2 of the RTP header
_U16 = struct.Struct("!H")
STALL_S = 1.0  # further behind than this: restart the schedule (ClipTrack's rule)


@dataclass(frozen=True)
class Layout:
    """One negotiation's header extensions, and where a template's variable fields are
    (every packet of that negotiation alike)."""

    mid: str | None
    mid_ext_id: int | None
    abs_ext_id: int | None
    abs_offset: int | None  # of the 3 abs-send-time bytes in the packet
    payload_offset: int  # RTP header + extensions: where the VP8 descriptor starts


def _ext_map(mid_ext_id: int | None, abs_ext_id: int | None) -> HeaderExtensionsMap:
    """aiortc's own HeaderExtensionsMap, configured as RTCRtpSender.send configures it."""
    ids = ((mid_ext_id, rtp_hooks.URI_MID), (abs_ext_id, rtp_hooks.URI_ABS_SEND_TIME))
    exts = [RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in ids if i]
    ext_map = HeaderExtensionsMap()
    ext_map.configure(RTCRtpParameters(headerExtensions=exts))
    return ext_map


def layout(mid: str | None, mid_ext_id: int | None, abs_ext_id: int | None) -> Layout:
    """The header extensions aiortc's sender writes for this negotiation."""
    _, value = _ext_map(mid_ext_id, abs_ext_id).set(HeaderExtensions(mid=mid, abs_send_time=0))
    abs_offset = None
    pos = 0
    # one-byte header elements (RFC 8285): id << 4 | (length - 1), then the value
    while pos < len(value) and value[pos]:
        ext_id, length = value[pos] >> 4, (value[pos] & 0x0F) + 1
        if ext_id == abs_ext_id:
            abs_offset = 12 + 4 + pos + 1
        pos += 1 + length
    payload_offset = 12 + (4 + len(value) if value else 0)
    return Layout(mid, mid_ext_id, abs_ext_id, abs_offset, payload_offset)


def packetize(clip: list[bytes], lay: Layout, payload_type: int) -> list[list[bytes]]:
    """Every clip frame as the RTP packets aiortc's sender would send for it (its VP8
    packetizer, its RtpPacket.serialize), with sequence number, timestamp, SSRC, picture
    id and abs-send-time 0 (written per send)."""
    ext_map = _ext_map(lay.mid_ext_id, lay.abs_ext_id)
    frames = []
    for data in clip:
        payloads = Vp8Encoder._packetize(data, 0)
        packets = []
        for i, payload in enumerate(payloads):
            p = RtpPacket(payload_type=payload_type, marker=int(i == len(payloads) - 1))
            p.payload = payload
            p.extensions = HeaderExtensions(mid=lay.mid, abs_send_time=0)
            packets.append(p.serialize(ext_map))
        frames.append(packets)
    return frames


# Templates shared by every room of a process (one negotiation layout a clip: 80 rooms
# of the camera clip would otherwise hold 80 copies of it).
_templates: dict[tuple[int, Layout, int], list[list[bytes]]] = {}


def templates(clip: list[bytes], lay: Layout, payload_type: int) -> list[list[bytes]]:
    key = (id(clip), lay, payload_type)
    t = _templates.get(key)
    if t is None:
        t = _templates[key] = packetize(clip, lay, payload_type)
    return t


class _Carrier(MediaStreamTrack):
    """The track the transceiver gets in place of the clip. aiortc's `_run_rtp` must not
    send too, and its first `recv()` is the moment to start: RTCRtpSender.send has run
    (after DTLS connected), so the transport is up and the negotiation known. recv never
    returns: `_run_rtp` waits in it until RTCRtpSender.stop cancels it (pc.close), then
    calls stop() on this track, which stops the publisher. (Cancelling `_run_rtp` instead
    would need the sender's private task and leave its stop() waiting on a flag the task
    sets.)"""

    kind = "video"

    def __init__(self, publisher: WirePublisher) -> None:
        super().__init__()
        self.publisher = publisher

    async def recv(self) -> Any:
        self.publisher.start()
        await asyncio.get_running_loop().create_future()  # never set: cancelled at stop

    def stop(self) -> None:
        super().stop()
        self.publisher.stop()


class WirePublisher(rtp_hooks.SenderFeedback):
    """Sends `track`'s clip (a peers.ClipTrack: its clip, fps, Sent, position and
    counters) on `transceiver`'s sender. Add `carrier` as the transceiver's track, then
    `bind(transceiver)`."""

    def __init__(self, track: Any) -> None:
        self.track = track
        self.carrier = _Carrier(self)
        self.transceiver: RTCRtpTransceiver | None = None
        self.port: rtp_hooks.SenderPort | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = False
        self._step = CLOCK // track.fps
        # random starts, as aiortc's sender and VP8 encoder draw theirs
        self.seq = random.randint(0, 0xFFFF)
        self._ts0 = random.randint(0, 0xFFFFFFFF)
        self.pid = random.randint(0, 0x7FFF)
        self._rtx_seq = random.randint(0, 0xFFFF)
        self._buf = bytearray(1500)
        self._view = memoryview(self._buf)
        # seq % RTP_HISTORY -> (seq, clip position, packet index, timestamp, pid, abs)
        self._history: list[tuple[int, int, int, int, int, int] | None] = [None] * RTP_HISTORY
        self.retransmitted = 0

    def bind(self, transceiver: RTCRtpTransceiver) -> None:
        self.transceiver = transceiver
        # NACK and PLI/FIR come here; receiver reports still reach aiortc (RTT, stats)
        rtp_hooks.on_sender_rtcp(transceiver.sender, self)

    def start(self) -> None:
        if self.port is not None or self._stopped:
            return
        assert self.transceiver is not None, "bind() before the sender starts"
        neg = rtp_hooks.negotiated(self.transceiver)
        sender: RTCRtpSender = self.transceiver.sender
        self.port = rtp_hooks.SenderPort(sender, batch=False)  # FrameSocket batches
        self._out = FrameSocket(sender)
        self._loop = asyncio.get_running_loop()  # once: get_running_loop() calls getpid()
        self._lay = layout(neg.mid, neg.mid_ext_id, neg.abs_send_time_ext_id)
        self._pt, self._rtx_pt = neg.payload_type, neg.rtx_payload_type
        self._frames = templates(self.track.clip, self._lay, self._pt)
        self._tick()

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.port is not None:
            self._out.close()

    # --- sending -------------------------------------------------------------------

    def _tick(self) -> None:
        """Send the frame that is due, then arm the timer for the next: a plain callback
        per frame (no task, no sleep future), and always back to the event loop in
        between, as ClipTrack.recv always yields (#18: a starved client must still
        answer the server's consent checks)."""
        self._handle = None
        if self._stopped:
            return
        track = self.track
        now = time.monotonic()
        if track.start is None:
            track.start = now
        try:
            self._send_frame(now)
        except ConnectionError:
            self.stop()  # the transport is down: aiortc's _run_rtp ends here too
            return
        due = track.start + track.n / track.fps
        if now - due > STALL_S:  # stalled: do not burst to catch up
            track.start = now - track.n / track.fps
            due = now
        self._handle = self._loop.call_later(max(0.0, due - now), self._tick)

    def _send_frame(self, now: float) -> None:
        """Frame n (clip position pos) now: `Sent` records `now` (microseconds before its
        first packet leaves)."""
        track, port = self.track, self.port
        assert port is not None
        pos = track.pos
        packets = self._frames[pos]
        ts = (self._ts0 + track.n * self._step) & 0xFFFFFFFF
        pid = self.pid
        wall = time.time()
        abs_time = rtp_hooks.abs_send_time(wall)
        ssrc = port.ssrc
        seq = self.seq
        buf, view, history = self._buf, self._view, self._history
        abs_off, pid_off = self._lay.abs_offset, self._lay.payload_offset + 2
        abs_bytes = abs_time.to_bytes(3, "big")
        payload_bytes = 0
        out = self._out
        to = out.ready()
        if track.sent is not None:
            track.sent.add(pos, now)
        if to is not None:  # one buffer, one sendmsg
            buf, sizes, at = out.buf, out.sizes, 0
            sizes.clear()
            for i, tpl in enumerate(packets):
                n = len(tpl)
                buf[at : at + n] = tpl
                _SEQ_TS_SSRC.pack_into(buf, at + 2, seq, ts, ssrc)
                _U16.pack_into(buf, at + pid_off, 0x8000 | pid)
                if abs_off is not None:
                    buf[at + abs_off : at + abs_off + 3] = abs_bytes
                m = out.protect(at, n)
                sizes.append(m)
                at += m
                history[seq % RTP_HISTORY] = (seq, pos, i, ts, pid, abs_time)
                payload_bytes += n - self._lay.payload_offset
                seq = (seq + 1) & 0xFFFF
            out.send(*to)
        else:
            for i, tpl in enumerate(packets):
                n = len(tpl)
                buf[:n] = tpl
                _SEQ_TS_SSRC.pack_into(buf, 2, seq, ts, ssrc)
                _U16.pack_into(buf, pid_off, 0x8000 | pid)
                if abs_off is not None:
                    buf[abs_off : abs_off + 3] = abs_bytes
                port.send(view[:n])
                history[seq % RTP_HISTORY] = (seq, pos, i, ts, pid, abs_time)
                payload_bytes += n - self._lay.payload_offset
                seq = (seq + 1) & 0xFFFF
        self.seq = seq
        port.sent(len(packets), payload_bytes)
        port.sent_frame(ts, wall)
        self.pid = (pid + 1) & 0x7FFF
        track.n += 1
        track.pos = (pos + 1) % len(track.clip)

    # --- feedback (rtp_hooks.on_sender_rtcp) ------------------------------------------

    def on_keyframe_request(self) -> None:
        self.track.keyframe()  # the clip's next frame is its keyframe, position 0

    def on_nack(self, lost: list[int]) -> None:
        for seq in lost:
            packet = self.packet(seq)
            if packet is None or self.port is None:
                continue
            try:
                self.port.send(self._rtx(packet) if self._rtx_pt is not None else packet)
            except ConnectionError:
                return
            self.retransmitted += 1

    def packet(self, seq: int) -> bytes | None:
        """The media packet `seq` as it was sent (None: no longer in the history)."""
        entry = self._history[seq % RTP_HISTORY]
        if entry is None or entry[0] != seq or self.port is None:
            return None
        _, pos, i, ts, pid, abs_time = entry
        raw = bytearray(self._frames[pos][i])
        _SEQ_TS_SSRC.pack_into(raw, 2, seq, ts, self.port.ssrc)
        _U16.pack_into(raw, self._lay.payload_offset + 2, 0x8000 | pid)
        off = self._lay.abs_offset
        if off is not None:
            raw[off : off + 3] = abs_time.to_bytes(3, "big")
        return bytes(raw)

    def _rtx(self, packet: bytes) -> bytes:
        """aiortc's wrap_rtx: RTX payload type, SSRC and sequence, the original sequence
        number before the payload, marker, timestamp and extensions kept."""
        assert self.port is not None and self._rtx_pt is not None
        off = self._lay.payload_offset
        raw = bytearray(packet[:off] + packet[2:4] + packet[off:])
        raw[1] = (packet[1] & 0x80) | self._rtx_pt
        _U16.pack_into(raw, 2, self._rtx_seq)
        raw[8:12] = self.port.rtx_ssrc.to_bytes(4, "big")
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        return bytes(raw)
