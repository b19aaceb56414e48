"""RTP-level forwarding (media.forwarding = "rtp"): packets, not frames.

A publisher's RTP packets are taken from aiortc right after SRTP (rtp_hooks.tap_rtp) and
sent on to every subscriber's RTCRtpSender with its own header (rtp_hooks.SenderPort):
no jitter buffer, no depacketize/re-packetize, no decoder-thread hand-off, no per-frame
queue. For every packet, per subscriber:

- SSRC and payload type become the subscriber leg's; sequence numbers and timestamps are
  shifted by per-subscriber offsets (fixed while one upstream lasts, so a gap upstream
  stays a gap downstream and a retransmission fills it); header extensions are rebuilt
  for the leg (mid, a fresh abs-send-time for the leg's bandwidth estimate);
- a subscriber starts, and resumes after the publisher changed (a caller's new peer
  connection), at the first packet of a keyframe; sequence numbers, timestamps and the VP8
  picture id / TL0PICIDX then continue where they were, so the receiver sees one stream;
- the packet is kept in a small history (HISTORY packets) to answer the subscriber's
  NACKs, as RTX when the leg negotiated it.

Towards the publisher: the server NACKs gaps itself (retried, bounded) and forwards the
retransmissions it gets as late packets; keyframe requests (PLI/FIR) of subscribers go up
coalesced and rate-limited by the RoomTrack; the lowest fresh REMB of the subscribers goes
up, so a weak agent link slows the caller's encoder. aiortc's receiver reports keep
flowing to the publisher (rtp_hooks.ReceiveStats).

Frame subscribers of the same RoomTrack (the recorder) get complete frames assembled from
these packets (`_FrameAssembler`), only while there is one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from array import array
from collections.abc import Awaitable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from . import aiortc_hooks, rtp_hooks, vcodec
from .relay import CLOCK_RATE, RoomTrack, Upstream

logger = logging.getLogger(__name__)

HISTORY = 256  # packets kept per subscriber for NACKs (~2.4 s of 1 Mbps video); power of 2
_MASK = HISTORY - 1
SLOT = 1400  # bytes per history slot (aiortc and browsers send <= ~1300-byte payloads)
NACK_RETRY_S = 0.05  # a packet still missing is asked for again after this
NACK_MAX_TRIES = 5
NACK_GIVE_UP_S = 1.0
MAX_MISSING = 256
MAX_GAP = 500  # a larger jump in sequence numbers is a new stream, not loss
REMB_MIN_INTERVAL_S = 0.25
REMB_MAX_AGE_S = 5.0
ASSEMBLY_MAX_PACKETS = 1024  # frame assembly for the recorder gives up a hole beyond this
ASSEMBLY_MAX_WAIT_S = 0.5  # ... or after this long

_HDR = struct.Struct("!BBHII")
_TB = CLOCK_RATE


def _spawn(coro: Awaitable[Any]) -> None:
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, ConnectionError):
            logger.warning("RTCP feedback failed: %r", exc)


class _Packet:
    """One media packet of the publisher, as the subscribers need it."""

    __slots__ = (
        "ext",
        "key",
        "late",
        "marker",
        "pad",
        "payload",
        "pid_pos",
        "timestamp",
        "tl0_pos",
    )

    def __init__(self) -> None:
        self.ext = 0
        self.timestamp = 0
        self.marker = 0
        self.pad = 0
        self.payload = b""
        self.key = False
        self.late = False
        self.pid_pos = -1  # offset in payload of a 15-bit VP8 picture id, or -1
        self.tl0_pos = -1  # offset in payload of the VP8 TL0PICIDX, or -1


class RtpPublisher:
    """Forwards one publishing receiver's packets to its RoomTrack's packet subscribers."""

    def __init__(self, room_track: RoomTrack, upstream: Upstream, transceiver: RTCRtpTransceiver):
        neg = rtp_hooks.negotiated(transceiver)
        self.room_track = room_track
        self.upstream = upstream
        self.receiver = transceiver.receiver
        self.codec = neg.codec
        self._vp8 = neg.codec == "VP8"
        self._media_types = neg.media_types
        self._rtx_types = neg.rtx_types
        self._stats = rtp_hooks.ReceiveStats(self.receiver)
        self.media_ssrc: int | None = None
        self._max_ext: int | None = None
        self._last_ts: int | None = None
        # ext seq -> [first missed, tries, last asked]
        self._missing: dict[int, list[float]] = {}
        self._nack_timer: asyncio.Handle | None = None
        self._remb_sent = 0.0
        self._pli_pending = False  # asked for a keyframe before the first packet
        self._remb_value = 0
        self._assembler: _FrameAssembler | None = None
        self._closed = False
        # counters
        self.packets_in = 0
        self.packets_recovered = 0
        self.nacks_sent = 0
        self.duplicates = 0
        upstream.rtp = self
        rtp_hooks.tap_rtp(self.receiver, self._on_rtp)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        rtp_hooks.untap_rtp(self.receiver)
        if self._nack_timer is not None:
            self._nack_timer.cancel()
            self._nack_timer = None
        self._missing.clear()
        self._assembler = None

    # --- feedback towards the publisher ---------------------------------------------

    def request_keyframe(self) -> Awaitable[bool] | None:
        """PLI to the publisher (RoomTrack coalesces and rate-limits the calls)."""
        if self._closed:
            return None
        if self.media_ssrc is None:
            self._pli_pending = True  # sent with the first packet
            return None
        return rtp_hooks.send_pli(self.receiver, self.media_ssrc)

    def on_remb(self) -> None:
        """A subscriber's REMB changed: send the lowest fresh one upstream."""
        if self.media_ssrc is None or self._closed:
            return
        now = time.monotonic()
        values = [
            s.remb
            for s in self.room_track.packet_subscribers
            if isinstance(s, RtpSubscriber) and s.remb and now - s.remb_at < REMB_MAX_AGE_S
        ]
        if not values:
            return
        value = min(values)
        if now - self._remb_sent < REMB_MIN_INTERVAL_S and value >= self._remb_value * 0.9:
            return  # only a drop goes up at once
        self._remb_sent, self._remb_value = now, value
        _spawn(rtp_hooks.send_remb(self.receiver, value, [self.media_ssrc]))

    def _lost(self, first: int, end: int, now: float) -> None:
        missing = self._missing
        for ext in range(first, end):
            missing[ext] = [now, 0.0, 0.0]
        while len(missing) > MAX_MISSING:
            del missing[next(iter(missing))]
        if self._nack_timer is None:
            self._nack_timer = asyncio.get_running_loop().call_soon(self._send_nacks)

    def _send_nacks(self) -> None:
        self._nack_timer = None
        if self._closed or self.media_ssrc is None:
            return
        now = time.monotonic()
        lost: list[int] = []
        for ext, entry in list(self._missing.items()):
            first, tries, last = entry
            if tries >= NACK_MAX_TRIES or now - first > NACK_GIVE_UP_S:
                del self._missing[ext]
            elif tries == 0 or now - last >= NACK_RETRY_S:
                lost.append(ext & 0xFFFF)
                entry[1] = tries + 1
                entry[2] = now
        if lost:
            self.nacks_sent += 1
            _spawn(rtp_hooks.send_nack(self.receiver, self.media_ssrc, lost))
        if self._missing:
            self._nack_timer = asyncio.get_running_loop().call_later(NACK_RETRY_S, self._send_nacks)

    # --- the packet path ----------------------------------------------------------------

    async def _on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        try:
            b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
        except struct.error:
            return
        if b0 >> 6 != 2:
            return
        n = len(data)
        off = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:
            if off + 4 > n:
                return
            off += 4 + 4 * ((data[off + 2] << 8) | data[off + 3])
        end = n - data[-1] if b0 & 0x20 else n
        if end < off:
            return
        self._stats.add(ssrc, seq, ts)
        self.packets_in += 1
        pt = b1 & 0x7F
        rtx = pt in self._rtx_types
        if rtx:
            if end - off < 2 or self.media_ssrc is None:
                return  # padding-only bandwidth probe, or nothing to repair yet
            seq = (data[off] << 8) | data[off + 1]
            off += 2
        elif pt not in self._media_types:
            return
        elif ssrc != self.media_ssrc:
            if self.media_ssrc is not None:
                # The publisher restarted its stream on the same connection.
                self._max_ext = None
                self._missing.clear()
                for sub in self.room_track.packet_subscribers:
                    sub.restart()
            self.media_ssrc = ssrc
            if self._pli_pending:
                self._pli_pending = False
                _spawn(rtp_hooks.send_pli(self.receiver, ssrc))

        # sequence numbers: extend, find gaps, drop duplicates
        now = time.monotonic()
        max_ext = self._max_ext
        if max_ext is None:
            ext = seq + 0x10000
            self._max_ext = ext
            late = False
        else:
            d = (seq - max_ext) & 0xFFFF
            if d == 0:
                self.duplicates += 1
                return
            if d < 0x8000:
                ext = max_ext + d
                if d > 1 and not rtx and d <= MAX_GAP:
                    self._lost(max_ext + 1, ext, now)
                self._max_ext = ext
                late = False
            else:
                ext = max_ext - (0x10000 - d)
                if self._missing.pop(ext, None) is None:
                    self.duplicates += 1
                    return  # already had it, or gave up on it
                late = True
                self.packets_recovered += 1

        rt = self.room_track
        if self.upstream is not rt._upstream or self._closed:
            return  # a replaced publisher: its packets go nowhere
        pkt = _Packet()
        pkt.ext = ext
        pkt.timestamp = ts
        pkt.marker = b1 >> 7
        pkt.pad = b0 & 0x20
        pkt.late = late
        pkt.payload = data[off:]
        # frame boundaries and keyframes
        key = False
        if off >= end:
            pass  # no payload (padding only)
        elif self._vp8:
            d0 = data[off]
            pos = off + 1
            if d0 & 0x80 and pos < end:
                x = data[pos]
                pos += 1
                if x & 0x80 and pos < end:
                    if data[pos] & 0x80:
                        pkt.pid_pos = pos - off
                        pos += 2
                    else:
                        pos += 1
                if x & 0x40:
                    pkt.tl0_pos = pos - off
                    pos += 1
                if x & 0x30:
                    pos += 1
            # S=1, PID=0 starts a frame; the VP8 frame tag's bit 0 is "not a keyframe".
            key = d0 & 0x17 == 0x10 and pos < end and not data[pos] & 0x01
        else:
            if ts != self._last_ts and not late:
                key = vcodec.h264_starts_keyframe(data, off, end)
        if not late:
            self._last_ts = ts
        pkt.key = key

        rt.bytes_in += end - off
        if not late:
            if key:
                rt.keyframe_arrived()
            if pkt.marker:
                rt.frames_in += 1
                self.upstream._counted()

        need_keyframe = False
        for sub in tuple(rt.packet_subscribers):
            if await sub.forward(pkt):  # type: ignore[attr-defined]
                need_keyframe = True
        if need_keyframe:
            rt.request_keyframe()

        if rt.frame_subscribers:
            assembler = self._assembler
            if assembler is None:
                assembler = self._assembler = _FrameAssembler(self.codec)
            for frame, keyframe, pts in assembler.add(pkt, data, off, end, now):
                if frame is None:
                    rt.frame_gap()
                    continue
                packet = av.Packet(frame)
                packet.pts = pts
                packet.time_base = aiortc_hooks.VIDEO_TIME_BASE
                rt._fan_out(self.upstream, packet, keyframe)
        elif self._assembler is not None:
            self._assembler = None


class _FrameAssembler:
    """Complete encoded frames from the publisher's packets, for frame subscribers only.

    Frames come out in order; a hole waits for its retransmission up to
    ASSEMBLY_MAX_WAIT_S / ASSEMBLY_MAX_PACKETS, then the frames it spoils are skipped and a
    `(None, False, 0)` tells the track to resume its frame subscribers at a keyframe."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self._vp8 = codec == "VP8"
        self._packets: dict[
            int, tuple[int, int, bool, bytes]
        ] = {}  # ext -> ts, marker, start, data
        self._next: int | None = None  # ext seq of the first packet of the next frame
        self._hole_since: float | None = None
        self._ts_base: int | None = None
        self._ts_last = 0
        self._ts_cycles = 0

    def _depayload(self, pkt: _Packet, data: bytes, off: int, end: int) -> tuple[bool, bytes]:
        if self._vp8:
            pos = off + 1
            d0 = data[off]
            if d0 & 0x80:
                x = data[pos]
                pos += 1
                if x & 0x80:
                    pos += 2 if data[pos] & 0x80 else 1
                if x & 0x40:
                    pos += 1
                if x & 0x30:
                    pos += 1
            return d0 & 0x17 == 0x10, data[pos:end]
        # H264: only a keyframe's first packet is known to start a frame we can resume at.
        return pkt.key, rtp_hooks.h264_depayload(data[off:end])

    def _pts(self, ts: int) -> int:
        if self._ts_base is None:
            self._ts_base = ts
            self._ts_last = ts
        elif ts < self._ts_last and self._ts_last - ts > 0x80000000:
            self._ts_cycles += 1 << 32
        elif ts > self._ts_last and ts - self._ts_last > 0x80000000:
            return self._ts_cycles - (1 << 32) + ts - self._ts_base  # a late packet
        self._ts_last = ts
        return self._ts_cycles + ts - self._ts_base

    def add(
        self, pkt: _Packet, data: bytes, off: int, end: int, now: float
    ) -> list[tuple[bytes | None, bool, int]]:
        if off >= end:
            return []
        try:
            start, payload = self._depayload(pkt, data, off, end)
        except (ValueError, IndexError):
            return []
        ext = pkt.ext
        if self._next is None:
            if not start:
                return []
            self._next = ext
        elif ext < self._next:
            return []
        self._packets[ext] = (pkt.timestamp, pkt.marker, start, payload)
        out: list[tuple[bytes | None, bool, int]] = []
        while True:
            frame = self._take()
            if frame is None:
                break
            out.append(frame)
        if self._packets:
            if self._hole_since is None:
                self._hole_since = now
            elif (
                now - self._hole_since > ASSEMBLY_MAX_WAIT_S
                or len(self._packets) > ASSEMBLY_MAX_PACKETS
            ):
                self._skip()
                out.append((None, False, 0))
                while True:
                    frame = self._take()
                    if frame is None:
                        break
                    out.append(frame)
        if not self._packets:
            self._hole_since = None
        return out

    def _take(self) -> tuple[bytes, bool, int] | None:
        """The next frame if all its packets are here."""
        nxt = self._next
        packets = self._packets
        if nxt is None or nxt not in packets:
            return None
        ts = packets[nxt][0]
        ext = nxt
        while True:
            item = packets.get(ext)
            if item is None or item[0] != ts:
                return None  # a hole, or the frame ended without its marker packet
            if item[1]:
                break
            ext += 1
        parts = [packets.pop(s)[3] for s in range(nxt, ext + 1)]
        self._next = ext + 1
        self._hole_since = None
        data = b"".join(parts)
        return data, vcodec.is_keyframe(self.codec, data), self._pts(ts)

    def _skip(self) -> None:
        """Give up on the frame at the hole: resume at the next frame start we have."""
        assert self._next is not None
        later = sorted(s for s in self._packets if s > self._next)
        for s in later:
            if self._packets[s][2]:  # a frame start (VP8), a keyframe start (H264)
                for old in [x for x in self._packets if x < s]:
                    del self._packets[old]
                self._next = s
                self._hole_since = None
                return
        self._packets.clear()
        self._next = None  # wait for the next frame start
        self._hole_since = None


class _History:
    """The last HISTORY packets sent, for NACKs: one buffer allocated once (a list of
    per-packet bytes objects with mixed lifetimes fragments the heap for minutes)."""

    def __init__(self) -> None:
        self._buf: bytearray | None = None
        self._lengths = array("H", bytes(2 * HISTORY))
        self._large: dict[int, bytes] = {}

    def put(self, seq: int, data: bytes) -> None:
        i = seq & _MASK
        n = len(data)
        if n > SLOT:
            self._large[i] = data
            self._lengths[i] = 0
            return
        if self._buf is None:
            self._buf = bytearray(HISTORY * SLOT)
        if self._large:
            self._large.pop(i, None)
        self._buf[i * SLOT : i * SLOT + n] = data
        self._lengths[i] = n

    def get(self, seq: int) -> bytes | None:
        i = seq & _MASK
        n = self._lengths[i]
        if n:
            assert self._buf is not None
            data = bytes(self._buf[i * SLOT : i * SLOT + n])
        else:
            data = self._large.get(i)  # type: ignore[assignment]
        if data is None or ((data[2] << 8) | data[3]) != seq:
            return None
        return data

    def release(self) -> None:
        self._buf = None
        self._large.clear()
        self._lengths = array("H", bytes(2 * HISTORY))


class RtpSubscriber(MediaStreamTrack, rtp_hooks.SenderFeedback):
    """A RoomTrack subscriber fed RTP packets, sent as the transceiver's RTCRtpSender.

    Put on the sender like any track (replaceTrack): aiortc's sender loop then waits in
    recv() forever and sends nothing itself. The first recv() means the connection is up
    and the answer negotiated: forwarding starts at the next keyframe (asked for)."""

    kind = "video"

    def __init__(self, source: RoomTrack, transceiver: RTCRtpTransceiver) -> None:
        super().__init__()
        self._source: RoomTrack | None = source
        self._transceiver = transceiver
        self.port: rtp_hooks.SenderPort | None = None
        self.started = False
        self.waiting_keyframe = True
        self._ended: asyncio.Future[None] | None = None
        self._history = _History()
        self._seq_off = 0
        self._ts_off = 0
        self._start_ext = 0
        self._last_seq: int | None = None
        self._last_ts = 0
        self._last_time = 0.0
        self._pid_off = 0
        self._last_pid: int | None = None
        self._tl0_off = 0
        self._last_tl0: int | None = None
        self._rtx_seq = random.randint(0, 0x7FFF)
        self._pt = 0
        self._rtx_pt: int | None = None
        self._ssrc = 0
        self._b0 = 0x80
        self._ext_pre = b""
        self._ext_post = b""
        self._abs = False
        self.remb = 0
        self.remb_at = 0.0
        # counters
        self.frames_forwarded = 0
        self.frames_dropped = 0
        self.packets_sent = 0
        self.retransmitted = 0
        self.resets = 0
        source.add_packet_subscriber(self)
        rtp_hooks.on_sender_rtcp(transceiver.sender, self)

    # --- MediaStreamTrack -------------------------------------------------------------

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if not self.started:
            self._bind()
            self.started = True
            if self._source is not None:
                self._source.request_keyframe()
        self._ended = asyncio.get_running_loop().create_future()
        await self._ended
        raise MediaStreamError

    def stop(self) -> None:
        source, self._source = self._source, None
        super().stop()
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)
        rtp_hooks.on_sender_rtcp(self._transceiver.sender, None, only=self)
        self._history.release()
        if source is not None:
            source.unsubscribe(self)

    def restart(self) -> None:
        if not self.waiting_keyframe:
            self.waiting_keyframe = True
            self.resets += 1

    def _bind(self) -> None:
        neg = rtp_hooks.negotiated(self._transceiver)
        self.port = rtp_hooks.SenderPort(self._transceiver.sender)
        self._pt = neg.payload_type
        self._rtx_pt = neg.rtx_payload_type
        self._ssrc = self.port.ssrc
        elements = b""
        if neg.mid_ext_id and neg.mid:
            mid = neg.mid.encode()[:16]
            elements += bytes([(neg.mid_ext_id << 4) | (len(mid) - 1)]) + mid
        if neg.abs_send_time_ext_id:
            elements += bytes([(neg.abs_send_time_ext_id << 4) | 2])
            self._abs = True
        total = len(elements) + (3 if self._abs else 0)
        if total:
            words = (total + 3) // 4
            self._b0 = 0x90
            self._ext_pre = b"\xbe\xde" + words.to_bytes(2, "big") + elements
            self._ext_post = b"\x00" * (words * 4 - total)

    # --- packets ------------------------------------------------------------------------

    def _rebase(self, pkt: _Packet, now: float) -> None:
        """Start (or resume after an upstream change) at this keyframe packet."""
        if self._last_seq is None:
            self._seq_off = (random.randint(0, 0x7FFF) - pkt.ext) & 0xFFFF
            self._ts_off = 0
            self._pid_off = self._tl0_off = 0
        else:
            self._seq_off = (self._last_seq + 1 - pkt.ext) & 0xFFFF
            gap = max(1, int((now - self._last_time) * _TB))
            self._ts_off = (self._last_ts + gap - pkt.timestamp) & 0xFFFFFFFF
            p = pkt.payload
            if pkt.pid_pos >= 0 and self._last_pid is not None:
                pid = ((p[pkt.pid_pos] & 0x7F) << 8) | p[pkt.pid_pos + 1]
                self._pid_off = (self._last_pid + 1 - pid) & 0x7FFF
            if pkt.tl0_pos >= 0 and self._last_tl0 is not None:
                self._tl0_off = (self._last_tl0 + 1 - p[pkt.tl0_pos]) & 0xFF
        self._start_ext = pkt.ext
        self.waiting_keyframe = False

    async def forward(self, pkt: _Packet) -> bool:
        """Send one publisher packet; True when waiting for a keyframe."""
        if self.waiting_keyframe:
            if not self.started or self.port is None:
                return False
            if not pkt.key or pkt.late:
                if pkt.marker:
                    self.frames_dropped += 1
                return True
            self._rebase(pkt, time.monotonic())
        elif pkt.ext < self._start_ext:
            return False  # a retransmission from before this subscriber started
        seq = (pkt.ext + self._seq_off) & 0xFFFF
        ts = (pkt.timestamp + self._ts_off) & 0xFFFFFFFF
        payload = pkt.payload
        if pkt.pid_pos >= 0:
            pos = pkt.pid_pos
            pid = ((((payload[pos] & 0x7F) << 8) | payload[pos + 1]) + self._pid_off) & 0x7FFF
            if self._pid_off:
                b = bytearray(payload)
                b[pos] = 0x80 | (pid >> 8)
                b[pos + 1] = pid & 0xFF
                payload = bytes(b)
            if not pkt.late:
                self._last_pid = pid
        if pkt.tl0_pos >= 0:
            tl0 = (payload[pkt.tl0_pos] + self._tl0_off) & 0xFF
            if self._tl0_off:
                b = bytearray(payload)
                b[pkt.tl0_pos] = tl0
                payload = bytes(b)
            if not pkt.late:
                self._last_tl0 = tl0
        header = _HDR.pack(self._b0 | pkt.pad, (pkt.marker << 7) | self._pt, seq, ts, self._ssrc)
        if self._abs:
            wall = time.time()
            ext = self._ext_pre + (int(wall * 262144) & 0xFFFFFF).to_bytes(3, "big")
            data = b"".join((header, ext, self._ext_post, payload))
        else:
            wall = 0.0
            data = b"".join((header, self._ext_pre, self._ext_post, payload))
        if not pkt.late:
            self._last_seq = seq
            self._last_ts = ts
            self._last_time = time.monotonic()
        self._history.put(seq, data)
        port = self.port
        assert port is not None
        try:
            await port.send(data)
        except ConnectionError:
            return False
        self.packets_sent += 1
        port.sent(1, len(payload))
        if pkt.marker and not pkt.late:
            port.sent_frame(ts, wall or time.time())
            self.frames_forwarded += 1
            if self._source is not None:
                self._source.frames_forwarded += 1
        return False

    # --- feedback from the subscriber's receiver ------------------------------------------

    async def on_nack(self, lost: list[int]) -> None:
        port = self.port
        if port is None:
            return
        hl = 12 + len(self._ext_pre) + (3 if self._abs else 0) + len(self._ext_post)
        for seq in lost:
            data = self._history.get(seq)
            if data is None:
                continue  # too old, or never had it (lost upstream: being repaired there)
            if self._rtx_pt is not None:
                data = b"".join(
                    (
                        _HDR.pack(
                            data[0],
                            (data[1] & 0x80) | self._rtx_pt,
                            self._rtx_seq,
                            int.from_bytes(data[4:8], "big"),
                            port.rtx_ssrc,
                        ),
                        data[12:hl],
                        data[2:4],
                        data[hl:],
                    )
                )
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            try:
                await port.send(data)
            except ConnectionError:
                return
            self.retransmitted += 1

    def on_keyframe_request(self) -> None:
        if self._source is not None:
            self._source.request_keyframe()

    def on_remb(self, bitrate: int) -> None:
        self.remb = bitrate
        self.remb_at = time.monotonic()
        source = self._source
        upstream = source.upstream if source is not None else None
        if upstream is not None and isinstance(upstream.rtp, RtpPublisher):
            upstream.rtp.on_remb()

    @property
    def queued(self) -> int:
        return 0
