"""The publisher side of RTP-level forwarding: packets, not frames.

A publisher's RTP packets are taken from aiortc right after SRTP (rtp_hooks.tap_rtp): no
jitter buffer, no depacketize/re-packetize, no decoder-thread hand-off, no per-frame
queue. For each packet `RtpPublisher` extends the sequence number, finds gaps and drops
duplicates, unwraps retransmissions (RTX), reads the payload descriptor (vcodec: frame and
keyframe starts, VP8 picture id positions) and hands one `rtp_packet.Packet` to every
packet subscriber of its RoomTrack (`rtp_subscriber.RtpSubscriber`, which rewrites and
sends it). While the track has frame subscribers (the recorder), complete frames are
assembled from the same packets (`rtp_assembly.FrameAssembler`).

Towards the publisher: the server NACKs gaps itself (retried, bounded) and forwards the
retransmissions it gets as late packets; keyframe requests (PLI/FIR) of subscribers go up
coalesced and rate-limited by the RoomTrack; the lowest fresh REMB of the subscribers goes
up, so a weak agent link slows the caller's encoder. aiortc's receiver reports keep
flowing to the publisher (rtp_hooks.ReceiveStats).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable

from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from . import assembly_batch, rtp_hooks, vcodec
from .relay import RoomTrack, Upstream
from .rtp_assembly import FrameAssembler
from .rtp_packet import HDR, Packet, spawn

logger = logging.getLogger(__name__)

NACK_RETRY_S = 0.05  # a packet still missing is asked for again after this
NACK_MAX_TRIES = 5
# uvloop's clock counts whole milliseconds as floats: a timer armed 50 ms ahead can read
# 0.04999999 s later, and an exact comparison skipped the retry for one more period.
TIMER_SLACK_S = 0.001
NACK_GIVE_UP_S = 1.0
MAX_MISSING = 256
MAX_GAP = 500  # a larger jump in sequence numbers is a new stream, not loss
REMB_MIN_INTERVAL_S = 0.25
REMB_MAX_AGE_S = 5.0


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
        self._assembler: FrameAssembler | None = None
        # The assembler's RTP timestamp base outlives it: pts must continue when a frame
        # subscriber (a second recording) comes back, not restart at 0.
        self._ts_clock: tuple[int | None, int, int] = (None, 0, 0)
        # Packets kept for the assembler until the next batch (assembly_batch): packet,
        # its bytes, payload start and end (the arrival time is the packet's own).
        self._backlog: list[tuple[Packet, bytes, int, int]] = []
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
        self.assemble_backlog()  # the frame subscribers get this publisher's last frames
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
            if s.remb and now - s.remb_at < REMB_MAX_AGE_S
        ]
        if not values:
            return
        value = min(values)
        if now - self._remb_sent < REMB_MIN_INTERVAL_S and value >= self._remb_value * 0.9:
            return  # only a drop goes up at once
        self._remb_sent, self._remb_value = now, value
        spawn(rtp_hooks.send_remb(self.receiver, value, [self.media_ssrc]))

    def _lost(self, first: int, end: int) -> None:
        # NACK times are the loop's clock, the one its timers run on: uvloop's is libuv's
        # time cached at the start of the loop's iteration, so a retry timer armed 50 ms
        # ahead fires when that clock (not time.monotonic()) has moved 50 ms on.
        now = asyncio.get_running_loop().time()
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
        now = asyncio.get_running_loop().time()  # see _lost
        lost: list[int] = []
        for ext, entry in list(self._missing.items()):
            first, tries, last = entry
            if tries >= NACK_MAX_TRIES or now - first > NACK_GIVE_UP_S:
                del self._missing[ext]
            elif tries == 0 or now - last >= NACK_RETRY_S - TIMER_SLACK_S:
                lost.append(ext & 0xFFFF)
                entry[1] = tries + 1
                entry[2] = now
        if lost:
            self.nacks_sent += 1
            spawn(rtp_hooks.send_nack(self.receiver, self.media_ssrc, lost))
        if self._missing:
            self._nack_timer = asyncio.get_running_loop().call_later(NACK_RETRY_S, self._send_nacks)

    # --- the packet path ----------------------------------------------------------------

    def _on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        # Sync: rtp_hooks' fast path calls it from the socket's datagram_received.
        try:
            b0, b1, seq, ts, ssrc = HDR.unpack_from(data)
        except struct.error:
            return
        if b0 >> 6 != 2:
            return
        n = len(data)
        off = 12 + 4 * (b0 & 0x0F)  # after the CSRCs and the header extension
        if b0 & 0x10:
            if off + 4 > n:
                return
            off += 4 + 4 * ((data[off + 2] << 8) | data[off + 3])
        end = n - data[-1] if b0 & 0x20 else n  # before the padding
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
            self._new_stream(ssrc)
        now = time.monotonic()
        max_ext = self._max_ext
        if max_ext is not None and (seq - max_ext) & 0xFFFF == 1:
            ext = self._max_ext = max_ext + 1  # the next one, in order: most packets
        else:
            ext = self._extend(seq, rtx)
        rt = self.room_track
        if ext < 0 or self.upstream is not rt._upstream or self._closed:
            return  # a duplicate; or a replaced publisher, whose packets go nowhere
        late = ext != self._max_ext
        pkt = Packet(ext, ts, b1 >> 7, b0 & 0x20, late, data[off:], now)
        if off >= end:
            pass  # no payload (padding only)
        elif self._vp8:
            vcodec.parse_vp8(data, off, end, pkt)
        elif ts != self._last_ts and not late:
            pkt.key = vcodec.h264_starts_keyframe(data, off, end)
        if not late:
            self._last_ts = ts
        rt.bytes_in += end - off
        if not late and (pkt.key or pkt.marker):
            self._count(rt, pkt)

        for sub in rt.packet_subscribers:
            sub.forward(pkt)

        if rt._subscribers or self._assembler is not None:
            self._keep(rt, pkt, data, off, end)

    def _keep(self, rt: RoomTrack, pkt: Packet, data: bytes, off: int, end: int) -> None:
        """A packet for the frame subscribers' next batch; or, once the last of them has
        gone, the assembler goes (its clock stays: a second recording's pts continue)."""
        if rt._subscribers:  # frame subscribers (rt.frame_subscribers, without the call)
            backlog = self._backlog
            if not backlog:
                assembly_batch.schedule(self)
            backlog.append((pkt, data, off, end))
        elif self._assembler is not None:
            self._backlog.clear()
            self._ts_clock = self._assembler.clock
            self._assembler = None

    def _new_stream(self, ssrc: int) -> None:
        """The first media packet, or the publisher restarted its stream (a new SSRC on the
        same connection): subscribers resume at its first keyframe."""
        if self.media_ssrc is not None:
            self._max_ext = None
            self._missing.clear()
            for sub in self.room_track.packet_subscribers:
                sub.restart()
        self.media_ssrc = ssrc
        if self._pli_pending:
            self._pli_pending = False
            spawn(rtp_hooks.send_pli(self.receiver, ssrc))

    def _extend(self, seq: int, rtx: bool) -> int:
        """The extended sequence number of `seq` (gaps ahead of it are NACKed); -1 for a
        duplicate, or a late packet already given up on. Late: below `self._max_ext`."""
        max_ext = self._max_ext
        if max_ext is None:
            self._max_ext = seq + 0x10000
            return seq + 0x10000
        d = (seq - max_ext) & 0xFFFF
        if d == 0:
            self.duplicates += 1
            return -1
        if d < 0x8000:
            ext = max_ext + d
            if d > 1 and not rtx and d <= MAX_GAP:
                self._lost(max_ext + 1, ext)
            self._max_ext = ext
            return ext
        ext = max_ext - (0x10000 - d)
        if self._missing.pop(ext, None) is None:
            self.duplicates += 1
            return -1  # already had it, or gave up on it
        self.packets_recovered += 1
        return ext

    def _count(self, rt: RoomTrack, pkt: Packet) -> None:
        """A keyframe starts, a frame ends (the packet is not late)."""
        if pkt.key:
            rt.keyframe_arrived()
        if pkt.marker:
            rt.frames_in += 1
            self.upstream._counted()

    def assemble_backlog(self) -> None:
        """Complete frames for the frame subscribers (the recorder) from the packets kept
        since the last batch (assembly_batch), now: also called before a frame subscriber
        leaves and before the publisher changes or closes, so none is left behind."""
        backlog = self._backlog
        if not backlog:
            return
        self._backlog = []
        rt = self.room_track
        if not rt._subscribers or self.upstream is not rt._upstream or self._closed:
            return  # nobody to assemble for, or a replaced publisher (as on the packet path)
        assembler = self._assembler
        if assembler is None:
            assembler = self._assembler = FrameAssembler(self.codec, self._ts_clock)
        upstream = self.upstream
        try:
            for pkt, data, off, end in backlog:
                for frame, keyframe, pts in assembler.add(pkt, data, off, end, pkt.arrival):
                    if frame is None:
                        rt.frame_gap()
                        continue
                    rt.fan_out_frame(upstream, frame, pts, keyframe)
        except Exception:
            # As on the packet path (rtp_hooks logs a failed handler): logged, the rest of
            # this batch dropped, forwarding unaffected.
            logger.exception("frame assembly for %s failed", rt.name)
