"""Video payload formats, pure: keyframe detection and RTP payload descriptors (VP8, H264).

Bytes in, facts out: no I/O, no aiortc, no PyAV (and nothing else of the server), so the
recorder imports it as cheaply as the forwarder. Two levels:

- one RTP payload (a packet): the VP8 payload descriptor (RFC 7741 4.2) parsed in place,
  its picture id / TL0PICIDX read and rewritten; whether an H264 payload (RFC 6184)
  starts a keyframe (an SPS or an IDR slice in a single NAL unit, a STAP-A, or the first
  FU-A fragment of an IDR slice);
- one depayloaded frame (VP8 as is, H264 as Annex B, what aiortc's depayloader and
  `rtp_hooks.h264_depayload` emit): whether it is a keyframe; a VP8 keyframe's size.

The packet-level functions run once per forwarded packet: they take the payload as
`data[off:end]` (no slicing) and `parse_vp8` writes into the caller's per-packet object
instead of returning a tuple, so they allocate nothing.
"""

from __future__ import annotations

from typing import Protocol

CLOCK_RATE = 90000  # the RTP clock of every video payload format (VP8, H264)

_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28


# --- VP8 RTP payloads (RFC 7741) ----------------------------------------------------


class Vp8Fields(Protocol):
    """What `parse_vp8` fills in (the forwarder's per-packet object)."""

    start: bool  # S=1 and PID=0: the first packet of a frame
    key: bool  # ... of a keyframe (the frame tag's P bit is 0)
    pid_pos: int  # offset from the payload start of a 15-bit picture id, or -1
    tl0_pos: int  # offset from the payload start of the TL0PICIDX, or -1
    body: int  # offset from the payload start of the VP8 data (the descriptor's length)


def parse_vp8(data: bytes, off: int, end: int, out: Vp8Fields) -> None:
    """Parse the VP8 payload descriptor of the RTP payload `data[off:end]` (not empty).

    A descriptor cut short leaves `out.body > end - off` and no picture id / TL0PICIDX
    position pointing past the payload."""
    d0 = data[off]
    pos = off + 1
    pid_pos = tl0_pos = -1
    if d0 & 0x80 and pos < end:  # X: extension byte
        x = data[pos]
        pos += 1
        if x & 0x80 and pos < end:  # I: picture id, 7 or 15 bits (M)
            if data[pos] & 0x80:
                if pos + 1 < end:
                    pid_pos = pos - off
                pos += 2
            else:
                pos += 1
        if x & 0x40:  # L: TL0PICIDX
            if pos < end:
                tl0_pos = pos - off
            pos += 1
        if x & 0x30:  # T and/or K: one byte
            pos += 1
    start = d0 & 0x17 == 0x10
    out.start = start
    # RFC 6386 9.1: bit 0 of the frame tag is the inverse keyframe flag.
    out.key = start and pos < end and not data[pos] & 0x01
    out.pid_pos = pid_pos
    out.tl0_pos = tl0_pos
    out.body = pos - off


def vp8_picture_id(payload: bytes, pid_pos: int) -> int:
    """The 15-bit picture id at `pid_pos` (from `parse_vp8`)."""
    return ((payload[pid_pos] & 0x7F) << 8) | payload[pid_pos + 1]


def vp8_rewrite(payload: bytes, pid_pos: int, pid: int, tl0_pos: int, tl0: int) -> bytes:
    """A copy of `payload` with the picture id and TL0PICIDX replaced (a position of -1:
    left as it is)."""
    b = bytearray(payload)
    if pid_pos >= 0:
        b[pid_pos] = 0x80 | ((pid >> 8) & 0x7F)
        b[pid_pos + 1] = pid & 0xFF
    if tl0_pos >= 0:
        b[tl0_pos] = tl0 & 0xFF
    return bytes(b)


# --- H264 RTP payloads (RFC 6184) ---------------------------------------------------


def h264_starts_keyframe(data: bytes, off: int, end: int) -> bool:
    """Whether the H264 RTP payload `data[off:end]` (not empty) carries an SPS or the
    start of an IDR slice: single NAL unit, STAP-A, or the first fragment of an FU-A."""
    nal = data[off] & 0x1F
    if nal in (_H264_IDR, _H264_SPS):
        return True
    if nal == _H264_STAP_A:
        pos = off + 1
        while pos + 2 < end:
            size = (data[pos] << 8) | data[pos + 1]
            if data[pos + 2] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            pos += 2 + size
        return False
    if nal == _H264_FU_A and off + 1 < end:
        fu = data[off + 1]
        return bool(fu & 0x80) and fu & 0x1F == _H264_IDR
    return False


# --- depayloaded frames -------------------------------------------------------------


def is_keyframe(codec: str, frame: bytes) -> bool:
    """Whether an encoded frame (VP8, or H264 in Annex B) can be decoded on its own."""
    name = codec.upper()
    if name == "VP8":
        # RFC 6386 9.1: bit 0 of the frame tag is the inverse keyframe flag.
        return len(frame) > 0 and (frame[0] & 0x01) == 0
    if name == "H264":
        return h264_has_idr(frame)
    return False


def h264_has_idr(annex_b: bytes) -> bool:
    """Whether an Annex-B access unit (start codes 00 00 01 / 00 00 00 01) has an IDR slice."""
    pos = 0
    n = len(annex_b)
    while True:
        pos = annex_b.find(b"\x00\x00\x01", pos)
        if pos < 0 or pos + 3 >= n:
            return False
        if annex_b[pos + 3] & 0x1F == _H264_IDR:
            return True
        pos += 3


def vp8_frame_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 keyframe; None when it is not one or is cut short."""
    # RFC 6386 9.1: 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height.
    if len(frame) < 10 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return (frame[6] | frame[7] << 8) & 0x3FFF, (frame[8] | frame[9] << 8) & 0x3FFF
