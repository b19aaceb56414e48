"""The subscriber side of RTP-level forwarding: one receiving leg (an agent's or a
caller's RTCRtpSender) fed the publisher's packets by `rtp_publisher.RtpPublisher`.

For every packet (rtp_hooks.SenderPort sends it as the leg's RTCRtpSender):

- SSRC and payload type become the leg's; sequence numbers and timestamps are shifted by
  per-subscriber offsets (fixed while one upstream lasts, so a gap upstream stays a gap
  downstream and a retransmission fills it); header extensions are rebuilt for the leg
  (mid, a fresh abs-send-time for the leg's bandwidth estimate);
- the subscriber starts, and resumes after the publisher changed (a caller's new peer
  connection), at the first packet of a keyframe; sequence numbers, timestamps and the VP8
  picture id / TL0PICIDX then continue where they were, so the receiver sees one stream;
- the packet is kept in a small history (HISTORY packets) to answer the leg's NACKs, as
  RTX when the leg negotiated it.

The leg's PLI/FIR go to the RoomTrack (coalesced, rate-limited, to the publisher), its
REMB to the publisher (the lowest of the subscribers goes up).
"""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from . import rtp_hooks, vcodec
from .relay import CLOCK_RATE, RoomTrack
from .rtp_packet import HDR, Packet

HISTORY = 256  # packets kept per subscriber for NACKs (~2.4 s of 1 Mbps video); power of 2
_MASK = HISTORY - 1
SLOT = 1400  # bytes per history slot (aiortc and browsers send <= ~1300-byte payloads)


class _History:
    """The last HISTORY packets sent, for NACKs: one buffer allocated once (a list of
    per-packet bytes objects with mixed lifetimes fragments the heap for minutes). The
    forwarder writes each packet straight into its slot (`slot`) and sends it from there."""

    def __init__(self) -> None:
        self._view: memoryview | None = None
        self._lengths = array("H", bytes(2 * HISTORY))
        self._large: dict[int, bytes] = {}

    def slot(self, seq: int, n: int) -> memoryview | None:
        """The slot of `seq`, `n` bytes long, to write the packet into; None when it is
        too large for a slot (then `put` it)."""
        if n > SLOT:
            return None
        i = seq & _MASK
        view = self._view
        if view is None:
            view = self._view = memoryview(bytearray(HISTORY * SLOT))
        if self._large:
            self._large.pop(i, None)
        self._lengths[i] = n
        return view[i * SLOT : i * SLOT + n]

    def put(self, seq: int, data: bytes) -> None:
        i = seq & _MASK
        if len(data) > SLOT:
            self._large[i] = data
            self._lengths[i] = 0
            return
        view = self.slot(seq, len(data))
        assert view is not None
        view[:] = data

    def get(self, seq: int) -> bytes | None:
        i = seq & _MASK
        n = self._lengths[i]
        if n:
            assert self._view is not None
            data = bytes(self._view[i * SLOT : i * SLOT + n])
        else:
            data = self._large.get(i)  # type: ignore[assignment]
        if data is None or ((data[2] << 8) | data[3]) != seq:
            return None
        return data

    def release(self) -> None:
        self._view = None
        self._large.clear()
        self._lengths = array("H", bytes(2 * HISTORY))


class RtpSubscriber(MediaStreamTrack, rtp_hooks.SenderFeedback):
    """A RoomTrack subscriber fed RTP packets, sent as the transceiver's RTCRtpSender.

    Put on the sender like any track (replaceTrack): aiortc's sender loop then waits in
    recv() forever and sends nothing itself. The first recv() means the connection is up
    and the answer negotiated: forwarding starts at the next keyframe (asked for)."""

    kind = "video"

    def __init__(
        self,
        source: RoomTrack,
        transceiver: RTCRtpTransceiver,
        on_codec: Callable[[str | None], None] | None = None,
        send_batching: bool = True,
        send_counts: dict[str, int] | None = None,
    ) -> None:
        """on_codec(codec): the publisher sends `codec`, which this leg did not negotiate
        (nothing is forwarded: there is no transcoding); on_codec(None) once it matches
        again. send_batching: media.send_batching (rtp_hooks.SenderPort); send_counts:
        where its outbox counts (the room's, for the metrics)."""
        super().__init__()
        self._send_batching = send_batching
        self._send_counts = send_counts
        self._on_codec = on_codec
        self.codec_mismatch: str | None = None
        self._pt_by_codec: dict[str, tuple[int, int | None]] = {}
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
        self._tl0_off = 0
        # The last (not late) packets sent with a VP8 picture id / TL0PICIDX: read only
        # when the next publisher starts, so nothing is computed per packet for them.
        self._last_pid_pkt: Packet | None = None
        self._last_tl0_pkt: Packet | None = None
        self._rtx_seq = random.randint(0, 0x7FFF)
        self._pt = 0
        self._rtx_pt: int | None = None
        self._ssrc = 0
        self._b0 = 0x80
        self._ext_pre = b""
        self._ext_post = b""
        self._ext = b""  # the whole header extension block (abs-send-time zero)
        self._abs = False
        self._abs_at = 0  # offset of the abs-send-time value in the packet
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
        if self.port is not None:
            self.port.close()
        self._history.release()
        self._last_pid_pkt = self._last_tl0_pkt = None
        if source is not None:
            source.unsubscribe(self)

    def restart(self) -> None:
        if not self.waiting_keyframe:
            self.waiting_keyframe = True
            self.resets += 1

    def _bind(self) -> None:
        neg = rtp_hooks.negotiated(self._transceiver)
        self.port = rtp_hooks.SenderPort(self._transceiver.sender, batch=self._send_batching,
                                         counts=self._send_counts)  # fmt: skip
        self._pt = neg.payload_type
        self._rtx_pt = neg.rtx_payload_type
        # A leg may have negotiated VP8 and H264 (docs/media-performance.md, "Codecs"): each
        # publisher's packets go out with this leg's payload type for that publisher's codec.
        for pt, name in neg.media_types.items():
            if name not in self._pt_by_codec:
                rtx = next((r for r, apt in neg.rtx_types.items() if apt == pt), None)
                self._pt_by_codec[name] = (pt, rtx)
        self._pt_by_codec[neg.codec] = (neg.payload_type, neg.rtx_payload_type)
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
            self._ext = self._ext_pre + (b"\x00\x00\x00" if self._abs else b"") + self._ext_post
            self._abs_at = 12 + len(self._ext_pre)

    # --- packets ------------------------------------------------------------------------

    def _codec_ok(self) -> bool:
        """At a keyframe start: use the payload type of the current publisher's codec on
        this leg; False (reported once) when this leg cannot take that codec."""
        source = self._source
        upstream = source.upstream if source is not None else None
        codec = getattr(upstream.rtp, "codec", None) if upstream is not None else None
        if codec is None:
            return True  # a frame-level publisher: the leg's first codec, as negotiated
        types = self._pt_by_codec.get(codec)
        if types is None:
            if self.codec_mismatch != codec:
                self.codec_mismatch = codec
                if self._on_codec is not None:
                    self._on_codec(codec)
            return False
        self._pt, self._rtx_pt = types
        if self.codec_mismatch is not None:
            self.codec_mismatch = None
            if self._on_codec is not None:
                self._on_codec(None)
        return True

    def _rebase(self, pkt: Packet, now: float) -> None:
        """Start (or resume after an upstream change) at this keyframe packet."""
        if self._last_seq is None:
            self._seq_off = (random.randint(0, 0x7FFF) - pkt.ext) & 0xFFFF
            self._ts_off = 0
            self._pid_off = self._tl0_off = 0
        else:
            self._seq_off = (self._last_seq + 1 - pkt.ext) & 0xFFFF
            gap = max(1, int((now - self._last_time) * CLOCK_RATE))
            self._ts_off = (self._last_ts + gap - pkt.timestamp) & 0xFFFFFFFF
            last = self._last_pid_pkt
            if pkt.pid_pos >= 0 and last is not None:
                sent = vcodec.vp8_picture_id(last.payload, last.pid_pos) + self._pid_off
                pid = vcodec.vp8_picture_id(pkt.payload, pkt.pid_pos)
                self._pid_off = (sent + 1 - pid) & 0x7FFF
            last = self._last_tl0_pkt
            if pkt.tl0_pos >= 0 and last is not None:
                sent = last.payload[last.tl0_pos] + self._tl0_off
                self._tl0_off = (sent + 1 - pkt.payload[pkt.tl0_pos]) & 0xFF
        self._start_ext = pkt.ext
        self.waiting_keyframe = False

    def _vp8_ids(self, pkt: Packet) -> bytes:
        """The payload with this leg's VP8 picture id and TL0PICIDX, continuing across
        publishers (only called once a publisher switch made an offset)."""
        payload = pkt.payload
        pid = tl0 = -1
        if pkt.pid_pos >= 0:
            pid = (vcodec.vp8_picture_id(payload, pkt.pid_pos) + self._pid_off) & 0x7FFF
        if pkt.tl0_pos >= 0:
            tl0 = (payload[pkt.tl0_pos] + self._tl0_off) & 0xFF
        return vcodec.vp8_rewrite(payload, pkt.pid_pos, pid, pkt.tl0_pos, tl0)

    def forward(self, pkt: Packet) -> None:
        """Send one publisher packet (or wait for a keyframe, asking for one)."""
        if self.waiting_keyframe:
            if not self.started or self.port is None:
                return
            if self.codec_mismatch is not None and not self._codec_ok():
                if pkt.marker:
                    self.frames_dropped += 1
                return  # no keyframe requests: none would help until the publisher changes
            if not pkt.key or pkt.late:
                if pkt.marker:
                    self.frames_dropped += 1
                if self._source is not None:
                    self._source.request_keyframe()  # coalesced, rate-limited
                return
            if not self._codec_ok():
                return
            self._rebase(pkt, time.monotonic())
        elif pkt.ext < self._start_ext:
            return  # a retransmission from before this subscriber started
        seq = (pkt.ext + self._seq_off) & 0xFFFF
        ts = (pkt.timestamp + self._ts_off) & 0xFFFFFFFF
        payload = pkt.payload if not (self._pid_off or self._tl0_off) else self._vp8_ids(pkt)
        # Written in place into this packet's history slot (no per-packet bytes objects
        # but the 3-byte abs-send-time), and sent from there.
        hl = 12 + len(self._ext)
        n = hl + len(payload)
        view = self._history.slot(seq, n)
        large = view is None
        if view is None:
            view = memoryview(bytearray(n))  # over a slot: rare
        b1 = (pkt.marker << 7) | self._pt
        HDR.pack_into(view, 0, self._b0 | pkt.pad, b1, seq, ts, self._ssrc)
        view[12:hl] = self._ext
        if self._abs:
            wall = time.time()
            at = self._abs_at
            view[at : at + 3] = (int(wall * 262144) & 0xFFFFFF).to_bytes(3, "big")
        else:
            wall = 0.0
        view[hl:n] = payload
        if large:
            self._history.put(seq, view.tobytes())
        if not pkt.late:
            self._last_seq = seq
            self._last_ts = ts
            self._last_time = pkt.arrival
            if pkt.pid_pos >= 0:
                self._last_pid_pkt = pkt
            if pkt.tl0_pos >= 0:
                self._last_tl0_pkt = pkt
        port = self.port
        assert port is not None
        try:
            port.send(view, pkt.marker)
        except ConnectionError:
            return
        self.packets_sent += 1
        port.sent(1, len(payload))
        if pkt.marker and not pkt.late:
            port.sent_frame(ts, wall or time.time())
            self.frames_forwarded += 1
            if self._source is not None:
                self._source.frames_forwarded += 1

    # --- feedback from the subscriber's receiver ------------------------------------------

    def on_nack(self, lost: list[int]) -> None:
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
                        HDR.pack(
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
                port.send(data)
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
        if upstream is not None and upstream.rtp is not None:
            upstream.rtp.on_remb()  # its RtpPublisher
