"""server/media/vcodec.py: keyframe detection and payload descriptors, on hand-made bytes;
and that it stays pure (the recorder imports it without the media layer or aiortc)."""

from __future__ import annotations

import fractions
import struct
import subprocess
import sys
from pathlib import Path

import av

from server.media import vcodec

ROOT = Path(__file__).resolve().parent.parent


class Fields:
    """What parse_vp8 writes into (the forwarder's per-packet object)."""

    def __init__(self) -> None:
        self.start = self.key = False
        self.pid_pos = self.tl0_pos = -2  # parse_vp8 sets every field
        self.body = -2


def fields() -> Fields:
    return Fields()


def vp8_descriptor(
    *, start: bool = True, pid: int | None = 100, tl0: int | None = None, tk: bool = False
) -> bytes:
    """An RFC 7741 payload descriptor (PID 0): X when any extension is present."""
    x = (0x80 if pid is not None else 0) | (0x40 if tl0 is not None else 0) | (0x20 if tk else 0)
    out = bytes([(0x80 if x else 0) | (0x10 if start else 0)])
    if x:
        out += bytes([x])
    if pid is not None:
        out += struct.pack("!H", 0x8000 | pid) if pid > 0x7F else bytes([pid])
    if tl0 is not None:
        out += bytes([tl0])
    if tk:
        out += b"\x40"
    return out


# --- depayloaded frames (was aiortc_hooks.is_keyframe and recorder.mux.is_keyframe) ------


def test_keyframe_detection() -> None:
    assert vcodec.is_keyframe("VP8", bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]))
    assert not vcodec.is_keyframe("VP8", bytes([0x31, 0x02, 0x00]))
    assert not vcodec.is_keyframe("VP8", b"")
    sps, pps = b"\x00\x00\x00\x01\x67\x42", b"\x00\x00\x00\x01\x68\xce"
    idr, non_idr = b"\x00\x00\x01\x65\x88\x84", b"\x00\x00\x00\x01\x41\x9a"
    assert vcodec.is_keyframe("H264", sps + pps + idr)
    assert not vcodec.is_keyframe("H264", non_idr)
    assert not vcodec.is_keyframe("H264", sps + pps)
    assert vcodec.is_keyframe("h264", idr)  # codec names in any case
    assert not vcodec.is_keyframe("AV1", b"\x00")


def test_keyframes_of_real_encoders() -> None:
    for name, codec in (("libvpx", "VP8"), ("libx264", "H264")):
        enc = av.CodecContext.create(name, "w")
        enc.width, enc.height, enc.pix_fmt = 64, 48, "yuv420p"
        enc.time_base = fractions.Fraction(1, 30)
        packets = []
        for i in range(5):
            frame = av.VideoFrame(64, 48, "yuv420p")
            frame.pts = i
            packets.extend(enc.encode(frame))
        packets.extend(enc.encode(None))
        flags = [vcodec.is_keyframe(codec, bytes(p)) for p in packets]
        assert flags == [bool(p.is_keyframe) for p in packets] and flags[0], (codec, flags)
        if codec == "VP8":
            assert vcodec.vp8_frame_size(bytes(packets[0])) == (64, 48)
            assert vcodec.vp8_frame_size(bytes(packets[1])) is None  # not a keyframe


# --- VP8 payload descriptors ------------------------------------------------------------


def test_vp8_descriptor_positions_and_keyframe_start() -> None:
    key_tag, delta_tag = b"\x10\x02\x00", b"\x31\x02\x00"
    cases = [
        # descriptor, VP8 data, start, key, pid_pos, tl0_pos, body
        (vp8_descriptor(pid=0x1234), key_tag, True, True, 2, -1, 4),
        (vp8_descriptor(pid=0x12), key_tag, True, True, -1, -1, 3),  # 7-bit picture id
        (vp8_descriptor(pid=300, tl0=9, tk=True), delta_tag, True, False, 2, 4, 6),
        (vp8_descriptor(pid=None, tl0=9), key_tag, True, True, -1, 2, 3),
        (vp8_descriptor(pid=None), key_tag, True, True, -1, -1, 1),  # no X byte
        (vp8_descriptor(start=False, pid=300), b"rest", False, False, 2, -1, 4),
    ]
    for descriptor, body, start, key, pid_pos, tl0_pos, body_at in cases:
        payload = b"\x99\x99" + descriptor + body + b"\x00\x02"  # RTP header bytes, padding
        out = fields()
        vcodec.parse_vp8(payload, 2, len(payload) - 2, out)
        got = (out.start, out.key, out.pid_pos, out.tl0_pos, out.body)
        assert got == (start, key, pid_pos, tl0_pos, body_at), (descriptor, got)


def test_vp8_descriptor_cut_short_points_nowhere() -> None:
    for payload in (b"\x90", b"\x90\x80", b"\x90\x80\x81", b"\x90\xc0"):
        out = fields()
        vcodec.parse_vp8(payload, 0, len(payload), out)
        assert not out.key and out.body >= len(payload), payload
        assert out.pid_pos < 0 or out.pid_pos + 1 < len(payload)
        assert out.tl0_pos < len(payload)


def test_vp8_picture_id_read_and_rewrite() -> None:
    payload = vp8_descriptor(pid=0x7FFE, tl0=250) + b"\x31data"
    out = fields()
    vcodec.parse_vp8(payload, 0, len(payload), out)
    assert vcodec.vp8_picture_id(payload, out.pid_pos) == 0x7FFE
    new = vcodec.vp8_rewrite(payload, out.pid_pos, 5, out.tl0_pos, 3)
    assert vcodec.vp8_picture_id(new, out.pid_pos) == 5
    assert new[out.pid_pos] & 0x80  # still a 15-bit picture id
    assert new[out.tl0_pos] == 3 and new[out.body :] == payload[out.body :]
    assert len(new) == len(payload) and payload[out.tl0_pos] == 250  # a copy
    only_pid = vcodec.vp8_rewrite(payload, out.pid_pos, 7, -1, 0)
    assert only_pid[out.tl0_pos] == 250


# --- H264 RTP payloads (was rtp_forward._h264_keyframe) ------------------------------------


def test_h264_keyframe_detection() -> None:
    sps, pps, idr, non_idr = b"\x67\x42\x00", b"\x68\xce", b"\x65\x88\x84", b"\x41\x9a"
    stap = b"\x18" + b"".join(struct.pack("!H", len(n)) + n for n in (sps, pps))
    fu_idr_start, fu_idr_mid = b"\x7c\x85\x88", b"\x7c\x05\x88"
    for payload, want in [
        (sps, True),
        (idr, True),
        (non_idr, False),
        (stap, True),
        (b"\x18" + struct.pack("!H", 2) + non_idr, False),
        (fu_idr_start, True),
        (fu_idr_mid, False),
    ]:
        assert vcodec.h264_starts_keyframe(payload, 0, len(payload)) is want, payload
        framed = b"\xaa" * 12 + payload + b"\x00\x01"  # in a packet, before its padding
        assert vcodec.h264_starts_keyframe(framed, 12, len(framed) - 2) is want, payload


# --- purity ---------------------------------------------------------------------------------


def test_pure_and_cheap_to_import() -> None:
    """vcodec imports nothing but the standard library, and the recorder's muxer pulls in
    neither aiortc nor the media layer through it (no import cycle, no weight)."""
    code = (
        "import sys; import recorder.mux, server.media.vcodec; "
        "print(sorted(m for m in sys.modules if m.startswith(('aiortc', 'aioice', "
        "'server.media.peers', 'server.media.relay', 'server.media.rtp'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
    source = (ROOT / "server/media/vcodec.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["from __future__ import annotations", "from typing import Protocol"]
