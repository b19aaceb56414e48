"""The recorder's own WebM writer for VP8 (recorder/webm.py, through recorder.mux.SegmentMuxer):
FFmpeg (PyAV) reads back every frame as it went in, libvpx decodes them all, seeking finds
the keyframes through the cues, and the element layout is what docs/recording-format.md
says (checked with a small EBML reader here, not with the writer's own code)."""

from __future__ import annotations

import fractions
import io
from typing import Any

import av
import pytest

from recorder.mux import SegmentMuxer, concat, probe
from recorder.webm import CLUSTER_BYTES, CLUSTER_MS, WebmWriter

FPS = 30


def vp8_frames(count: int, keyframe_every: int, bit_rate: int = 1_500_000) -> list[Any]:
    """(data, ms, keyframe) of a moving picture, keyframes every `keyframe_every`."""
    enc: Any = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = 320, 240, "yuv420p"
    enc.time_base, enc.bit_rate = fractions.Fraction(1, FPS), bit_rate
    enc.options = {"deadline": "realtime", "cpu-used": "8", "kf-max-dist": "100000"}
    out: list[Any] = []
    for i in range(count):
        frame = av.VideoFrame(320, 240, "yuv420p")
        for n, plane in enumerate(frame.planes):
            row = bytes((x * 3 + i * 7 + n * 50) & 0xFF for x in range(plane.line_size))
            plane.update(row * (plane.buffer_size // plane.line_size))
        frame.pts = i
        frame.pict_type = (av.video.frame.PictureType.I if i % keyframe_every == 0
                           else av.video.frame.PictureType.NONE)  # fmt: skip
        for p in enc.encode(frame):
            out.append((bytes(p), 0, bool(p.is_keyframe)))
    for p in enc.encode(None):
        out.append((bytes(p), 0, bool(p.is_keyframe)))
    # 30 fps in whole milliseconds, starting 10 s in (a later segment of a recording)
    return [(d, 10_000 + i * 1000 // FPS, k) for i, (d, _, k) in enumerate(out)]


def mux(frames: list[Any]) -> bytes:
    muxer = SegmentMuxer("VP8")
    for frame in frames:
        muxer.add(*frame)
    return muxer.finish()


# --- a small EBML reader (ids with their marker bits, sizes without)


def _vint(buf: bytes, at: int, keep_marker: bool) -> tuple[int, int]:
    first, length = buf[at], 1
    while not first & (0x80 >> (length - 1)):
        length += 1
    value = first if keep_marker else first & ((0x80 >> (length - 1)) - 1)
    for i in range(1, length):
        value = value << 8 | buf[at + i]
    return value, length


def children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(id, data start, data end) of the elements in buf[start:end]."""
    return [(e, s, t) for e, _, s, t in elements(buf, start, end)]


def elements(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(id, element start, data start, data end) of the elements in buf[start:end]."""
    out = []
    while start < end:
        eid, n = _vint(buf, start, True)
        size, m = _vint(buf, start + n, False)
        data = start + n + m
        out.append((eid, start, data, data + size))
        start = data + size
    return out


SEGMENT, SEEK_HEAD, INFO, TRACKS, CLUSTER, CUES = (
    0x18538067, 0x114D9B74, 0x1549A966, 0x1654AE6B, 0x1F43B675, 0x1C53BB6B)  # fmt: skip


def test_every_frame_comes_back_as_it_went_in_and_decodes() -> None:
    frames = vp8_frames(150, keyframe_every=45)
    data = mux(frames)
    with av.open(io.BytesIO(data)) as inp:
        assert inp.format.name.startswith("matroska")
        stream = inp.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("vp8", 320, 240)
        got = [(bytes(p), p.pts, bool(p.is_keyframe)) for p in inp.demux(stream) if p.size]
        assert inp.duration == frames[-1][1] * 1000  # Info's Duration, in µs here
    assert got == frames
    decoder = av.CodecContext.create("libvpx", "r")
    decoded = [f for d, _, _ in got for f in decoder.decode(av.Packet(d))]
    assert len(decoded) == len(frames)
    p = probe(data)
    assert (p.frames, p.first_ms, p.last_ms) == (150, frames[0][1], frames[-1][1])


def test_seeking_lands_on_a_keyframe_through_the_cues() -> None:
    frames = vp8_frames(150, keyframe_every=45)
    keyframes = [ms for _, ms, k in frames if k]
    assert len(keyframes) == 4
    with av.open(io.BytesIO(mux(frames))) as inp:
        stream = inp.streams.video[0]
        inp.seek(keyframes[2] * 1000 + 500_000)  # half a second after the third keyframe
        first = next(p for p in inp.demux(stream) if p.size)
        assert first.is_keyframe and first.pts == keyframes[2]


def test_the_layout_is_the_documented_one() -> None:
    frames = vp8_frames(200, keyframe_every=90, bit_rate=6_000_000)  # big frames too
    data = mux(frames)
    top = children(data, 0, len(data))
    assert [e for e, _, _ in top] == [0x1A45DFA3, SEGMENT]
    _, seg_start, seg_end = top[1]
    assert seg_end == len(data)  # the Segment's size was filled in
    body = elements(data, seg_start, seg_end)
    ids = [e for e, _, _, _ in body]
    assert ids[:3] == [SEEK_HEAD, INFO, TRACKS] and ids[-1] == CUES
    assert set(ids[3:-1]) == {CLUSTER}
    # the SeekHead points at Info, Tracks and Cues (positions from the Segment's data)
    where = {e: at - seg_start for e, at, _, _ in body if e != CLUSTER}
    seeks = {}
    for _, s, e in children(data, body[0][2], body[0][3]):
        (_, i0, i1), (_, p0, p1) = children(data, s, e)
        seeks[int.from_bytes(data[i0:i1], "big")] = int.from_bytes(data[p0:p1], "big")
    assert seeks == {INFO: where[INFO], TRACKS: where[TRACKS], CUES: where[CUES]}
    # clusters: a keyframe starts one; none spans a second or grows past its size limit
    # but by its last frame; every keyframe has a cue pointing at its cluster
    cues = []
    for _, s, e in children(data, body[-1][2], body[-1][3]):
        (_, t0, t1), (_, p0, p1) = children(data, s, e)
        track = {i: data[a:b] for i, a, b in children(data, p0, p1)}
        assert track[0xF7] == b"\x01"
        cues.append((int.from_bytes(data[t0:t1], "big"), int.from_bytes(track[0xF1], "big")))
    seen = []
    for _, at, s, e in body[3:-1]:
        parts = children(data, s, e)
        assert parts[0][0] == 0xE7  # Timestamp first
        base = int.from_bytes(data[parts[0][1] : parts[0][2]], "big")
        blocks = [(int.from_bytes(data[a + 1 : a + 3], "big", signed=True), data[a + 3] & 0x80)
                  for i, a, _ in parts[1:] if i == 0xA3]  # fmt: skip
        assert len(blocks) == len(parts) - 1 and blocks[0][0] == 0
        assert all(0 <= rel < CLUSTER_MS for rel, _ in blocks)
        assert all(not key for _, key in blocks[1:]), "a keyframe inside a cluster"
        assert sum(b - a for _, a, b in parts[1:-1]) < CLUSTER_BYTES + 64
        assert all(data[a] == 0x81 for i, a, _ in parts[1:])  # track 1
        if blocks[0][1]:
            seen.append((base, at - seg_start))
    assert cues == seen and len(cues) == 3
    assert [ms for ms, _ in cues] == [ms for _, ms, k in frames if k]


def test_the_same_frames_give_the_same_bytes_and_segments_concatenate() -> None:
    frames = vp8_frames(60, keyframe_every=30)
    one, two = mux(frames[:30]), mux(frames[30:])
    assert mux(frames[:30]) == one
    out = io.BytesIO()
    assert concat([one, two], out, "webm") == 60
    with av.open(io.BytesIO(out.getvalue())) as inp:
        pts = [p.pts for p in inp.demux(inp.streams.video[0]) if p.size]
    assert pts == [ms for _, ms, _ in frames]


def test_bad_input_is_refused() -> None:
    frames = vp8_frames(3, keyframe_every=30)
    with pytest.raises(ValueError, match="keyframe"):
        SegmentMuxer("VP8").add(frames[1][0], 0, False)
    with pytest.raises(ValueError, match="keyframe"):
        WebmWriter(io.BytesIO(), 320, 240).add(frames[1][0], 0, False)
    muxer = SegmentMuxer("VP8")
    muxer.add(frames[0][0], 100, True)
    muxer.add(frames[1][0], 100, False)  # the same ms: nudged forward (1 ms resolution)
    muxer.add(frames[2][0], 50, False)  # backwards: likewise
    with av.open(io.BytesIO(muxer.finish())) as inp:
        assert [p.pts for p in inp.demux(inp.streams.video[0]) if p.size] == [100, 101, 102]
