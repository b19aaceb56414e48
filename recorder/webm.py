"""A WebM writer for VP8 frames that are already encoded: the recorder's muxer for VP8.

FFmpeg's Matroska muxer (through PyAV) cost the recorder about 6.5 µs of the event loop's
time per frame, most of it in PyAV's per-packet Python: an `av.Packet` with its pts, dts,
time base, stream and keyframe flag set one property at a time, then `mux()` (issue 18:
the recorder's share of a recorded room's CPU). A WebM file of one VP8 track needs very
little of Matroska: this writes each frame as a SimpleBlock into the open cluster (a
bytearray), and a cluster into the file in one `write` when it closes.

The file is what FFmpeg writes for the same frames, element for element, but for what
only FFmpeg's own tags say (docs/recording-format.md, "What the plaintext is"):

    EBML header (DocType webm)
    Segment (8-byte size, filled in at the end)
      SeekHead    -> Info, Tracks, Cues (the Cues position filled in at the end)
      Info        TimestampScale 1 ms, MuxingApp/WritingApp, Duration (filled in at the end)
      Tracks      one VP8 video track, number 1, UID 1 (no random UIDs: the same frames
                  give the same bytes)
      Cluster...  Timestamp, then SimpleBlocks (track 1, time relative to the cluster)
      Cues        a CuePoint for each cluster that starts with a keyframe

Clusters hold at most `CLUSTER_MS` of frames or `CLUSTER_BYTES` of blocks, and a keyframe
always starts one (so every keyframe is a cue). What the writer goes back to when it
closes is all in the first ~150 bytes, which the encrypting sink holds (recorder/sink.py).
"""

from __future__ import annotations

import struct
from typing import Any

CLUSTER_MS = 1000  # recorder.mux.CLUSTER_OPTIONS asks the same of FFmpeg (H264)
CLUSTER_BYTES = 64 * 1024
APP = b"callassist"

# Element ids (Matroska/WebM), written as their bytes
EBML, SEGMENT = b"\x1a\x45\xdf\xa3", b"\x18\x53\x80\x67"
SEEK_HEAD, SEEK, SEEK_ID, SEEK_POSITION = b"\x11\x4d\x9b\x74", b"\x4d\xbb", b"\x53\xab", b"\x53\xac"
INFO, TRACKS, CUES = b"\x15\x49\xa9\x66", b"\x16\x54\xae\x6b", b"\x1c\x53\xbb\x6b"
CLUSTER, TIMESTAMP, SIMPLE_BLOCK = b"\x1f\x43\xb6\x75", b"\xe7", b"\xa3"

_BLOCK = struct.Struct(">BhB")  # track number 1 as a 1-byte vint, relative time, flags
_KEY = 0x80  # SimpleBlock flag: keyframe
_UNSIGNED_8 = struct.Struct(">Q")
_DOUBLE = struct.Struct(">d")


def size_vint(n: int) -> bytes:
    """An element's data size, in the fewest bytes (all ones would mean "unknown")."""
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(f"element too large: {n} bytes")


def element(eid: bytes, data: bytes) -> bytes:
    return eid + size_vint(len(data)) + data


def uint(eid: bytes, value: int) -> bytes:
    return element(eid, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _seek_head(info_at: int, tracks_at: int) -> bytes:
    """Where Info and Tracks are (each below 256: one byte), and 8 bytes for the Cues."""
    if not (0 <= info_at < 256 and 0 <= tracks_at < 256):
        raise ValueError("Info and Tracks must start within 256 bytes")
    return element(SEEK_HEAD, b"".join((
        element(SEEK, element(SEEK_ID, INFO) + element(SEEK_POSITION, bytes([info_at]))),
        element(SEEK, element(SEEK_ID, TRACKS) + element(SEEK_POSITION, bytes([tracks_at]))),
        element(SEEK, element(SEEK_ID, CUES) + element(SEEK_POSITION, bytes(8))),
    )))  # fmt: skip


class WebmWriter:
    """VP8 frames into a WebM file on `dest` (write, seek, tell: a BytesIO, or the
    recorder's EncryptingSink). `add()` each frame, the first a keyframe, with its time in
    milliseconds (not going backwards), then `close()`."""

    def __init__(self, dest: Any, width: int, height: int) -> None:
        self._dest = dest
        self._start = dest.tell()  # the file may not begin at offset 0 of dest
        header = element(EBML, b"".join((
            uint(b"\x42\x86", 1), uint(b"\x42\xf7", 1),  # EBMLVersion, EBMLReadVersion
            uint(b"\x42\xf2", 4), uint(b"\x42\xf3", 8),  # EBMLMaxIDLength, EBMLMaxSizeLength
            element(b"\x42\x82", b"webm"),  # DocType
            uint(b"\x42\x87", 2), uint(b"\x42\x85", 2),  # DocTypeVersion, DocTypeReadVersion
        )))  # fmt: skip
        # The segment's size and the Cues position are written as fixed 8-byte fields
        # now and filled in by close(); Info's Duration likewise (an 8-byte float), each
        # the last 8 bytes of its element.
        info = element(INFO, b"".join((
            uint(b"\x2a\xd7\xb1", 1_000_000),  # TimestampScale: 1 ms
            element(b"\x4d\x80", APP), element(b"\x57\x41", APP),  # MuxingApp, WritingApp
            element(b"\x44\x89", bytes(8)),  # Duration
        )))  # fmt: skip
        video = element(b"\xe0", uint(b"\xb0", width) + uint(b"\xba", height))
        tracks = element(TRACKS, element(b"\xae", b"".join((
            uint(b"\xd7", 1), uint(b"\x73\xc5", 1),  # TrackNumber, TrackUID
            uint(b"\x9c", 0), element(b"\x22\xb5\x9c", b"und"),  # FlagLacing, Language
            element(b"\x86", b"V_VP8"), uint(b"\x83", 1), video,  # CodecID, TrackType
        ))))  # fmt: skip
        # Positions count from the start of the Segment's data; Info and Tracks come
        # right after the SeekHead, whose size does not depend on them (one byte each).
        size = len(_seek_head(0, 0))
        seek_head = _seek_head(size, size + len(info))
        self._data_at = len(header) + len(SEGMENT) + 8
        self._cues_pos_at = self._data_at + len(seek_head) - 8
        self._duration_at = self._data_at + len(seek_head) + len(info) - 8
        dest.write(header + SEGMENT + b"\x01" + bytes(7) + seek_head + info + tracks)
        self._cluster = bytearray()
        self._cluster_ms = 0
        self._cues: list[tuple[int, int]] = []  # (time, cluster position) of keyframes
        self.last_ms: int | None = None

    def add(self, data: bytes, ms: int, keyframe: bool) -> None:
        cluster = self._cluster
        if self.last_ms is None and not keyframe:
            raise ValueError("a WebM segment must start with a keyframe")
        rel = ms - self._cluster_ms
        if not cluster or keyframe or rel >= CLUSTER_MS or len(cluster) >= CLUSTER_BYTES:
            if cluster:
                self._write_cluster()
            if keyframe:
                self._cues.append((ms, self._dest.tell() - self._start - self._data_at))
            self._cluster_ms, rel = ms, 0
            cluster += uint(TIMESTAMP, ms)
        cluster += SIMPLE_BLOCK
        cluster += size_vint(len(data) + 4)
        cluster += _BLOCK.pack(0x81, rel, _KEY if keyframe else 0)
        cluster += data
        self.last_ms = ms

    def _write_cluster(self) -> None:
        cluster = self._cluster
        self._dest.write(CLUSTER + size_vint(len(cluster)))
        self._dest.write(cluster)  # copied by the sink (or the BytesIO): reused after
        cluster.clear()

    def close(self) -> None:
        """The last cluster, the cues, and the sizes and positions left open."""
        dest, start = self._dest, self._start
        if self._cluster:
            self._write_cluster()
        cues_at = dest.tell() - start - self._data_at
        points = b"".join(
            element(b"\xbb", uint(b"\xb3", ms) + element(b"\xb7", uint(b"\xf7", 1)
                                                         + uint(b"\xf1", pos)))  # fmt: skip
            for ms, pos in self._cues
        )
        dest.write(element(CUES, points))
        end = dest.tell()
        for at, value in (
            (self._data_at - 8, (1 << 56) | (end - start - self._data_at)),
            (self._cues_pos_at, cues_at),
        ):
            dest.seek(start + at)
            dest.write(_UNSIGNED_8.pack(value))
        dest.seek(start + self._duration_at)
        dest.write(_DOUBLE.pack(float(self.last_ms or 0)))
        dest.seek(end)
