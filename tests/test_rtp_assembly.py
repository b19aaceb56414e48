"""Frame assembly for frame subscribers (server/media/rtp_assembly.py): the in-order fast
path (a list per frame, issue 18) and the map it falls back to give the same frames."""

from __future__ import annotations

import os
import random

from server.media import vcodec
from server.media.rtp_assembly import FrameAssembler
from server.media.rtp_packet import Packet

HEADER = bytes(12)


def frames(n: int) -> list[bytes]:
    """VP8-looking frames: a keyframe every 10th (frame tag bit 0 clear), 1-5 packets each."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        body = os.urandom(rng.randint(100, 5000))
        tag = body[0] & 0xFE if i % 10 == 0 else body[0] | 0x01
        out.append(bytes([tag]) + body[1:])
    return out


def packets(frames: list[bytes], size: int = 1200) -> list[tuple[Packet, bytes]]:
    out = []
    seq = 0x10000
    for i, frame in enumerate(frames):
        parts = [frame[j : j + size] for j in range(0, len(frame), size)]
        for k, part in enumerate(parts):
            data = HEADER + bytes([0x10 if k == 0 else 0x00]) + part
            pkt = Packet(seq, i * 3000, int(k == len(parts) - 1), 0, False, data[12:], 0.0)
            vcodec.parse_vp8(data, 12, len(data), pkt)
            out.append((pkt, data))
            seq += 1
    return out


def assemble(order: list[tuple[Packet, bytes]]) -> list[tuple[bytes | None, bool, int]]:
    asm = FrameAssembler("VP8")
    out = []
    for pkt, data in order:
        out += asm.add(pkt, data, 12, len(data), 0.0)
    return out


def test_in_order_frames_come_out_whole_with_keyframes_and_pts() -> None:
    clip = frames(40)
    out = assemble(packets(clip))
    assert [f for f, _, _ in out] == clip
    assert [k for _, k, _ in out] == [i % 10 == 0 for i in range(40)]
    assert [pts for _, _, pts in out] == [i * 3000 for i in range(40)]


def test_reordered_and_retransmitted_packets_give_the_same_frames() -> None:
    clip = frames(40)
    pkts = packets(clip)
    swapped = list(pkts)
    for i in range(3, len(swapped) - 1, 7):  # neighbours swapped, inside and across frames
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    assert [f for f, _, _ in assemble(swapped)] == clip
    late = list(pkts)
    lost = late.pop(20)  # lost, then repaired (an RTX) five packets later
    late.insert(25, lost)
    assert [f for f, _, _ in assemble(late)] == clip
    dup = pkts[:10] + pkts[5:]  # duplicates are ignored
    assert [f for f, _, _ in assemble(dup)] == clip


def test_a_frame_without_its_marker_is_dropped_after_the_wait() -> None:
    clip = frames(12)
    pkts = packets(clip)
    # the marker packet of frame 2 never comes; frame 3 and later arrive in order
    marker = next(i for i, (p, _) in enumerate(pkts) if p.timestamp == 2 * 3000 and p.marker)
    asm = FrameAssembler("VP8")
    out = []
    for i, (pkt, data) in enumerate(pkts):
        if i == marker:
            continue
        now = 0.0 if pkt.timestamp < 5 * 3000 else 1.0  # past ASSEMBLY_MAX_WAIT_S later on
        out += asm.add(pkt, data, 12, len(data), now)
    got = [f for f, _, _ in out]
    assert got[:2] == clip[:2]
    assert None in got  # the gap is reported: subscribers resume at a keyframe
    assert got[-2:] == clip[-2:]  # and frames flow again after it
