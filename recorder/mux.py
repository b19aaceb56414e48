"""Muxing already-encoded video frames into segment files, never re-encoding.

VP8 goes into WebM (recorder.webm's own writer: a SimpleBlock per frame, no PyAV per
frame), H264 (Annex-B, as aiortc's depayloader emits it) into Matroska (FFmpeg's muxer
through PyAV, which builds the avcC codec private data from the stream). A
`SegmentMuxer` builds one self-contained, playable file: into a BytesIO (`finish()` returns
its bytes), or into a file object it is given: the recorder gives it a
recorder.sink.EncryptingSink, which encrypts the file into the spool as it is muxed, so
neither a whole segment is held in memory nor plaintext touches a disk. Timestamps are
milliseconds since the recording started (the Matroska time base), so segments
concatenate without any rewriting: `concat()` joins decrypted segments into one file for
export.
"""

from __future__ import annotations

import contextlib
import fractions
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from recorder import webm
from recorder.webm import WebmWriter
from server.media import vcodec

MS = fractions.Fraction(1, 1000)
CLOCK_RATE = vcodec.CLOCK_RATE  # RTP video clock: input pts are in 1/90000 s


@dataclass(frozen=True)
class Container:
    codec: str  # the media.codec name: VP8 or H264
    av_codec: str  # PyAV/FFmpeg codec name
    format: str  # FFmpeg muxer
    name: str  # what the manifest's metadata calls it
    suffix: str  # file name suffix of an export


CONTAINERS = {
    "VP8": Container("VP8", "vp8", "webm", "webm", ".webm"),
    "H264": Container("H264", "h264", "matroska", "mkv", ".mkv"),
}
BY_NAME = {c.name: c for c in CONTAINERS.values()}
# FFmpeg's Matroska muxer holds a whole cluster in its own buffer (grown by doubling) and
# writes it when the cluster ends: 5 s or 5 MiB by default on a seekable file, with one
# keyframe per segment. Short clusters keep that buffer small (and its blocks under glibc's
# mmap threshold, issue 18); players and the export's stream copy do not mind.
CLUSTER_OPTIONS = {"cluster_size_limit": str(webm.CLUSTER_BYTES),
                   "cluster_time_limit": str(webm.CLUSTER_MS)}  # what recorder.webm does


def container_for(codec: str) -> Container:
    try:
        return CONTAINERS[codec.upper()]
    except KeyError:
        raise ValueError(f"no container for codec {codec!r} (VP8 or H264)") from None


# --- frames (keyframe detection: server.media.vcodec.is_keyframe)


def frame_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) of a keyframe; None when it cannot be read."""
    if codec.upper() == "VP8":
        return vcodec.vp8_frame_size(data)
    # H264: parsing the SPS by hand is long; decoding the one keyframe is ~1 ms per segment.
    try:
        decoder = av.CodecContext.create("h264", "r")
        for frame in decoder.decode(av.Packet(data)):
            return frame.width, frame.height
        for frame in decoder.decode(None):
            return frame.width, frame.height
    except av.FFmpegError:
        return None
    return None


# --- one segment


class SegmentMuxer:
    """One segment: starts at a keyframe, takes frames, writes the file into `dest` (a
    seekable file object; by default a BytesIO whose bytes `finish()` returns). `options`:
    the FFmpeg muxer's (a test asks for `fflags=+bitexact`: no random UIDs)."""

    def __init__(
        self, codec: str, size: tuple[int, int] | None = None, dest: Any = None,
        options: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.container = container_for(codec)
        self._own = dest is None
        self._buf: Any = io.BytesIO() if dest is None else dest
        # VP8: recorder.webm's own writer (made at the first frame, which gives the size);
        # H264 (avcC extradata from the stream) through FFmpeg's Matroska muxer.
        self._webm: WebmWriter | None = None
        self._out: Any = None
        if self.container.codec != "VP8":
            self._out = av.open(self._buf, "w", format=self.container.format,
                                container_options={**CLUSTER_OPTIONS, **(options or {})})
        self._stream: Any = None
        self._size = size
        self.frames = 0
        self.keyframes = 0
        self.bytes_in = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    def add(self, data: bytes, ms: int, keyframe: bool) -> None:
        """One encoded frame at `ms` milliseconds since the recording started.

        The first frame must be a keyframe. Timestamps must not go backwards; equal ones
        are nudged forward by 1 ms (Matroska's resolution).
        """
        if self._stream is None:
            if not keyframe:
                raise ValueError("a segment must start with a keyframe")
            size = self._size or frame_size(self.container.codec, data) or (640, 480)
            self._size = size
            if self._out is None:  # VP8: the file starts with the first frame's size
                self._stream = self._webm = WebmWriter(self._buf, *size)
            else:
                self._stream = self._mux_stream(size)
        if self.last_ms is not None and ms <= self.last_ms:
            ms = self.last_ms + 1
        writer = self._webm
        if writer is not None:
            writer.add(data, ms, keyframe)
            self.keyframes += keyframe
        else:
            self._mux(data, ms, keyframe)
        if self.first_ms is None:
            self.first_ms = ms
        self.last_ms = ms
        self.frames += 1
        self.bytes_in += len(data)

    def _mux_stream(self, size: tuple[int, int]) -> Any:
        # A stream without a codec context: `add_stream` would open an *encoder*
        # (libvpx keeps ~25 frames of lookahead: ~15 MB per open segment, issue 18)
        # that a stream copy never uses (PyAV before add_mux_stream: add_stream).
        if hasattr(self._out, "add_mux_stream"):  # the size goes in codecpar, here only
            stream = self._out.add_mux_stream(self.container.av_codec, width=size[0],
                                              height=size[1])  # fmt: skip
        else:
            stream = self._out.add_stream(self.container.av_codec)
            stream.width, stream.height = size
        stream.time_base = MS
        return stream

    def _mux(self, data: bytes, ms: int, keyframe: bool) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = ms
        packet.time_base = MS
        packet.stream = self._stream
        if keyframe:
            packet.is_keyframe = True
            self.keyframes += 1
        self._out.mux(packet)

    def finish(self) -> bytes:
        """Close the file (cues, duration); its bytes when the muxer made its own BytesIO,
        else b"" (they are in `dest`). The muxer is unusable after."""
        if self._webm is not None:
            self._webm.close()
        elif self._out is not None:
            self._out.close()
        data = self._buf.getvalue() if self._own else b""
        self._buf = None
        return data

    def abandon(self) -> None:
        with contextlib.suppress(Exception):  # nothing useful to do with a broken muxer
            if self._out is not None:
                self._out.close()
        self._buf = None


# --- reading back


@dataclass(frozen=True)
class Probe:
    frames: int
    first_ms: int | None
    last_ms: int | None
    width: int
    height: int
    codec: str


def probe(data: bytes) -> Probe:
    """Count the frames of a segment file and read its time span (demux only, no decoding)."""
    with av.open(io.BytesIO(data)) as inp:
        stream = inp.streams.video[0]
        frames, first, last = 0, None, None
        for packet in inp.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            ms = int(packet.pts * packet.time_base * 1000)
            first = ms if first is None else min(first, ms)
            last = ms if last is None else max(last, ms)
            frames += 1
        return Probe(frames, first, last, stream.width, stream.height, stream.codec_context.name)


class Concatenator:
    """Joins segment files (same codec, timestamps continuing) into one file.

    A stream copy: packets keep their timestamps, nothing is decoded or encoded. Feed
    segments one at a time with `add()` (memory holds one segment), then `close()`.
    """

    def __init__(self, dest: Path | io.BytesIO, fmt: str) -> None:
        self._out: Any = av.open(dest, "w", format=fmt)
        self._stream: Any = None
        self._last: int | None = None
        self.frames = 0

    def add(self, data: bytes | Path) -> int:
        """One segment file, in memory or on disk (a big one: bounded memory)."""
        added = 0
        with av.open(io.BytesIO(data) if isinstance(data, bytes) else str(data)) as inp:
            src = inp.streams.video[0]
            if self._stream is None:
                # The codec parameters as they are (H264: the avcC extradata), not rebuilt.
                self._stream = self._out.add_stream_from_template(src)
            for packet in inp.demux(src):
                if packet.pts is None or packet.size == 0:
                    continue
                ms = int(packet.pts * packet.time_base * 1000)
                if self._last is not None and ms <= self._last:
                    ms = self._last + 1
                packet.pts = packet.dts = ms
                packet.time_base = MS
                packet.stream = self._stream
                self._out.mux(packet)
                self._last = ms
                added += 1
        self.frames += added
        return added

    def close(self) -> None:
        self._out.close()


def concat(segments: Iterable[bytes], dest: Path | io.BytesIO, fmt: str) -> int:
    """Join segment files into one; returns the number of frames."""
    joined = Concatenator(dest, fmt)
    try:
        for data in segments:
            joined.add(data)
    finally:
        joined.close()
    return joined.frames
