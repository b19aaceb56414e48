"""Complete encoded frames from a publisher's RTP packets, for frame subscribers (the
recorder) of a RoomTrack; `rtp_publisher.RtpPublisher` feeds it only while there is one."""

from __future__ import annotations

from collections.abc import Sequence

from . import rtp_hooks, vcodec
from .rtp_packet import Packet

ASSEMBLY_MAX_PACKETS = 1024  # frame assembly for the recorder gives up a hole beyond this
ASSEMBLY_MAX_WAIT_S = 0.5  # ... or after this long

# (frame, keyframe, pts) of a complete frame; (None, False, 0) after frames were skipped.
Assembled = tuple[bytes | None, bool, int]


class FrameAssembler:
    """Frames come out in order; a hole waits for its retransmission up to
    ASSEMBLY_MAX_WAIT_S / ASSEMBLY_MAX_PACKETS, then the frames it spoils are skipped and a
    `(None, False, 0)` tells the track to resume its frame subscribers at a keyframe."""

    def __init__(self, codec: str, clock: tuple[int | None, int, int] = (None, 0, 0)) -> None:
        self.codec = codec
        self._vp8 = codec == "VP8"
        # ext -> ts, marker, start, data
        self._packets: dict[int, tuple[int, int, bool, bytes]] = {}
        # The payloads of the frame being received in order from self._next on, while the
        # map is empty; its RTP timestamp and whether its first packet starts a frame.
        self._run: list[bytes] = []
        self._run_ts = 0
        self._run_start = False
        self._next: int | None = None  # ext seq of the first packet of the next frame
        self._hole_since: float | None = None
        # The RTP timestamp mapping (base, last, wrap cycles) may come from a predecessor:
        # a second recording's pts continue the first's instead of restarting at 0.
        self._ts_base: int | None
        self._ts_base, self._ts_last, self._ts_cycles = clock

    @property
    def clock(self) -> tuple[int | None, int, int]:
        """The RTP timestamp mapping (base, last, wrap cycles), for a successor."""
        return self._ts_base, self._ts_last, self._ts_cycles

    def _depayload(self, pkt: Packet, data: bytes, off: int, end: int) -> tuple[bool, bytes]:
        if self._vp8:
            body = off + pkt.body
            if body > end:
                raise ValueError("VP8 payload descriptor cut short")
            return pkt.start, data[body:end]
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

    def add(self, pkt: Packet, data: bytes, off: int, end: int, now: float) -> Sequence[Assembled]:
        """Take one packet (its payload is data[off:end]); returns the frames completed
        (most packets complete none: the same empty tuple, nothing allocated)."""
        if off >= end:
            return ()
        if self._vp8:  # _depayload's VP8 case, inline: every packet of a recorded camera
            body = off + pkt.body
            if body > end:
                return ()  # the VP8 payload descriptor cut short
            start, payload = pkt.start, data[body:end]
        else:
            try:
                start, payload = self._depayload(pkt, data, off, end)
            except (ValueError, IndexError):
                return ()
        ext = pkt.ext
        if self._next is None:
            if not start:
                return ()
            self._next = ext
        elif ext < self._next:
            return ()
        ts = pkt.timestamp
        run = self._run
        packets = self._packets
        if not packets and ext == self._next + len(run) and (not run or self._run_ts == ts):
            # In order with nothing missing (nearly every packet): the frame's payloads
            # are kept in a list and joined at its marker, no map and no search per
            # packet; the run's timestamp and first start flag are kept once, not per part.
            if not pkt.marker:
                if len(run) < ASSEMBLY_MAX_PACKETS:
                    if not run:
                        self._run_ts, self._run_start = ts, start
                    run.append(payload)
                    return ()
            else:
                if run:
                    run.append(payload)
                    data = b"".join(run)
                    run.clear()
                else:
                    data = payload
                self._next = ext + 1
                self._hole_since = None
                return [(data, vcodec.is_keyframe(self.codec, data), self._pts(ts))]
        # Anything else (a gap, a late packet, a frame without its marker) takes the map:
        # the run so far goes in first, at the sequence numbers it came with.
        if run:
            first = self._next
            run_ts = self._run_ts
            packets[first] = (run_ts, 0, self._run_start, run[0])
            for i in range(1, len(run)):
                packets[first + i] = (run_ts, 0, False, run[i])
            run.clear()
        packets[ext] = (ts, pkt.marker, start, payload)
        out: list[Assembled] = []
        self._take_all(out)
        if self._packets:
            if self._hole_since is None:
                self._hole_since = now
            elif (
                now - self._hole_since > ASSEMBLY_MAX_WAIT_S
                or len(self._packets) > ASSEMBLY_MAX_PACKETS
            ):
                self._skip()
                out.append((None, False, 0))
                self._take_all(out)
        if not self._packets:
            self._hole_since = None
        return out

    def _take_all(self, out: list[Assembled]) -> None:
        while True:
            frame = self._take()
            if frame is None:
                return
            out.append(frame)

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
