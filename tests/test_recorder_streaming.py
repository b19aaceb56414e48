"""The recorder streams each segment through encryption into its spool file (issue 18).

- the streamed object is byte for byte the recording format (docs/recording-format.md):
  its plaintext is the file the muxer makes in memory, and a decryptor written from the
  doc alone (here, with nothing from recorder.crypto) decrypts it;
- a long segment is written with a bounded buffer: tracemalloc's peak while a 24 MB
  segment is recorded stays far below the segment (before: the whole segment was held
  in a BytesIO and copied when it closed);
- a muxer that goes back into an encrypted chunk fails its segment, never stores it wrong;
- a crash in the middle of a segment leaves a partial spool file that is dropped (or, if
  one were renamed into place anyway, reported), never a silently corrupt recording.
"""

from __future__ import annotations

import asyncio
import ctypes
import fractions
import hashlib
import hmac
import shutil
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import av
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from recorder.crypto import Recording, new_recording, segment_object
from recorder.keys import MasterKeyring
from recorder.mux import SegmentMuxer
from recorder.participant import RecorderParticipant
from recorder.recovery import ObjectSource, export, recover, verify
from recorder.sink import EncryptingSink
from recorder.spool import Spool
from recorder.storage import LocalStorage
from recorder.vault import Keys
from server.media.relay import RoomTrack
from tests.media_helpers import wait_for
from tests.recorder_helpers import quadrant_frame

MiB = 1024 * 1024
BITEXACT = {"fflags": "+bitexact"}  # no random UIDs: two muxings of one input are equal


def encoded(codec: str, count: int, noise: bool = False, bit_rate: int = 2_000_000
            ) -> list[tuple[bytes, int, bool]]:  # fmt: skip
    """`count` frames at 30 fps (data, ms, keyframe); the first is a keyframe. `noise`:
    random pictures at a high bitrate, so frames are big (~100 KB)."""
    name = "libvpx" if codec == "VP8" else "libx264"
    enc: Any = av.CodecContext.create(name, "w")
    enc.width, enc.height, enc.pix_fmt = 640, 480, "yuv420p"
    enc.time_base, enc.bit_rate = fractions.Fraction(1, 30), bit_rate
    vpx = {"deadline": "realtime", "cpu-used": "8", "kf-max-dist": "100000"}
    enc.options = vpx if name == "libvpx" else {"preset": "ultrafast", "tune": "zerolatency"}
    out = []
    for i in range(count + 5):
        if noise:
            import os

            frame = av.VideoFrame(640, 480, "yuv420p")
            for plane in frame.planes:
                plane.update(os.urandom(plane.buffer_size))
        else:
            frame = quadrant_frame(640, 480)
        frame.pts = i
        for p in enc.encode(frame):
            out.append((bytes(p), len(out) * 33, bool(p.is_keyframe)))
    return out[:count]


class MemoryFile:
    """A ChunkTarget in memory (the sink's own checks, without a spool)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write_at(self, offset: int, data: bytes) -> None:
        if len(self.data) < offset:
            self.data.extend(bytes(offset - len(self.data)))
        self.data[offset : offset + len(data)] = data


# --- a decryptor written from docs/recording-format.md ("Keys", "Segment") alone


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def doc_decrypt_segment(data_key: bytes, rid: bytes, index: int, obj: bytes) -> bytes:
    info = b"callassist/rec/v1 "  # I, the prefix of every HKDF info string
    hdr = obj[:100]
    magic, version, r, i, chunk, salt, prefix = struct.unpack(">4sB16sII32s7s", hdr[:68])
    assert (magic, version, r, i) == (b"CASG", 1, rid, index)
    k_smac = _hkdf(data_key, rid, info + b"segment-mac")
    assert hmac.compare_digest(hmac.digest(k_smac, hdr[:68], "sha256"), hdr[68:100])
    gcm = AESGCM(_hkdf(data_key, salt, info + b"segment" + rid + struct.pack(">I", index)))
    body, out, j = obj[100:], [], 0
    while len(body) > chunk + 16:  # more than one sealed chunk left: not the last
        out.append(gcm.decrypt(prefix + struct.pack(">I", j) + b"\0", body[: chunk + 16],
                               hdr[:68]))  # fmt: skip
        body, j = body[chunk + 16 :], j + 1
    out.append(gcm.decrypt(prefix + struct.pack(">I", j) + b"\1", body, hdr[:68]))
    return b"".join(out)


# --- the streamed object is the format


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_streamed_segment_is_the_muxed_file_and_the_doc_decrypts_it(
    tmp_path: Path, codec: str
) -> None:
    frames = encoded(codec, 150, noise=True, bit_rate=8_000_000)  # several 64 KiB chunks
    in_memory = SegmentMuxer(codec, options=BITEXACT)
    for f in frames:
        in_memory.add(*f)
    plain = in_memory.finish()
    assert len(plain) > 5 * 65536

    rec = new_recording(MasterKeyring({"mk-0001": bytes(range(32))}))
    spool = Spool(tmp_path / "spool", LocalStorage(tmp_path / "store"))  # not uploading
    writer = spool.open(segment_object(rec.id, 7))
    sealer = rec.segment_sealer(7)
    sink = EncryptingSink(sealer, writer)
    streamed = SegmentMuxer(codec, dest=sink, options=BITEXACT)
    for f in frames:
        streamed.add(*f)
    assert streamed.finish() == b""
    sink.finish()
    assert sink.error is None and sink.plaintext_size == len(plain)
    entry = sealer.entry(sink.plaintext_size, await asyncio.to_thread(writer.sha256))
    await writer.commit()
    obj = (spool.directory / segment_object(rec.id, 7)).read_bytes()
    assert entry.ciphertext_size == len(obj) == writer.size
    assert entry.sha256 == hashlib.sha256(obj).digest()
    # The reference reader, against the manifest entry, and the doc's decryptor agree.
    assert b"".join(rec.decrypt_segment(7, [obj[:1000], obj[1000:]], entry)) == plain
    assert doc_decrypt_segment(rec._data_key, rec.recording_id, 7, obj) == plain


def test_a_write_into_an_encrypted_chunk_fails_the_segment() -> None:
    rec = new_recording(MasterKeyring({"mk-0001": bytes(32)}))
    target = MemoryFile()
    sink = EncryptingSink(rec.segment_sealer(0), target)
    sink.write(bytes(300_000))
    sink.seek(70_000)  # chunk 1 (65536..131071) is sealed already
    assert sink.write(b"x" * 10) == 10  # never raises into the muxer...
    sink.finish()
    assert isinstance(sink.error, OSError) and "already encrypted" in str(sink.error)
    with pytest.raises(ValueError, match="not every chunk"):  # ...and it cannot be listed
        rec.segment_sealer(0).entry(1, b"")
    sealer = rec.segment_sealer(1)
    sealer.seal(1, bytes(65536), last=False)
    with pytest.raises(ValueError, match="sealed already"):  # a nonce is never reused
        sealer.seal(1, bytes(65536), last=False)


def test_a_segment_within_the_first_chunk_is_one_final_chunk() -> None:
    rec = new_recording(MasterKeyring({"mk-0001": bytes(32)}))
    for size in (1, 65535, 65536, 65537, 3 * 65536):
        target, sealer = MemoryFile(), rec.segment_sealer(2)
        sink = EncryptingSink(sealer, target)
        data = bytes(i % 251 for i in range(size))
        for off in range(0, size, 30_000):
            sink.write(data[off : off + 30_000])
        sink.finish()
        entry = sealer.entry(size, hashlib.sha256(target.data).digest())
        assert b"".join(rec.decrypt_segment(2, [bytes(target.data)], entry)) == data


# --- memory


Parts = tuple[RecorderParticipant, Spool, LocalStorage, Keys, RoomTrack]


async def _recorder(tmp_path: Path, segment_s: float, upload: bool = True) -> Parts:
    keys = Keys(MasterKeyring.from_directory(tmp_path / "keys"))
    storage = LocalStorage(tmp_path / "store")
    spool = Spool(tmp_path / "spool", storage)
    if upload:
        await spool.start()
    track = RoomTrack("camera", keyframe_min_interval_s=0.0)
    rec: Recording = keys.remember(new_recording(keys.keyring))
    recorder = RecorderParticipant(track, rec, spool, segment_s=segment_s)
    await recorder.start()
    return recorder, spool, storage, keys, track


class Camera:
    """Pushes pre-encoded frames into a RoomTrack: its first keyframe when asked for one
    (the recorder's segment cuts), else its delta frames in a loop."""

    def __init__(self, track: RoomTrack, frames: list[tuple[bytes, int, bool]]) -> None:
        self.frames, self.n, self.want_keyframe = frames, 0, True
        self.upstream = track.attach_upstream(self._asked)

    def _asked(self) -> None:
        self.want_keyframe = True

    async def push(self, recorder: RecorderParticipant, count: int) -> None:
        """Each frame is taken by the recorder before the next is pushed (the relay would
        drop frames of a lagging subscriber, or of one that has not started)."""
        sub = recorder.subscription
        await wait_for(lambda: sub is not None and sub.started, 10, "the recorder's first recv")
        for _ in range(count):
            key, self.want_keyframe = self.want_keyframe, False
            data = self.frames[0 if key else 1 + self.n % (len(self.frames) - 1)][0]
            packet = av.Packet(data)
            packet.pts, packet.time_base = self.n * 3000, fractions.Fraction(1, 90000)
            self.upstream.push(packet, key)
            self.n += 1
            # One loop turn at a time (not wait_for's 10 ms): hundreds of frames.
            while recorder.stats.frames_received < self.n:  # noqa: ASYNC110
                await asyncio.sleep(0)


async def test_a_long_segment_is_recorded_with_a_bounded_buffer(tmp_path: Path) -> None:
    frames = encoded("VP8", 40, noise=True, bit_rate=40_000_000)
    per_frame = sum(len(f[0]) for f in frames[1:]) / (len(frames) - 1)  # pushed: deltas
    count = int(24 * MiB / per_frame) + 1
    recorder, spool, storage, keys, track = await _recorder(tmp_path, segment_s=3600)
    camera = Camera(track, frames)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        await camera.push(recorder, count)
        summary = await recorder.stop()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert summary.complete and summary.segments == 1 and summary.frames == count
    assert recorder.stats.bytes_plain > 24 * MiB
    # One segment of 24 MB went through a few chunks at a time: the peak of Python's heap
    # is the frames in flight and two 64 KiB chunks, not the segment (which was > 48 MB:
    # the BytesIO plus its copy).
    assert peak < 3 * MiB, f"peak {peak / MiB:.1f} MiB while recording 24 MiB"
    assert await spool.drain(30)
    report = await verify(ObjectSource(storage, spool.directory), keys, recorder.id)
    assert report.complete and report.frames == count, report.lines()
    await spool.stop()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]  # fmt: skip


def malloc_in_use() -> int:
    """Bytes glibc's malloc has handed out and not got back (C libraries included)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def test_an_open_segment_costs_no_encoder() -> None:
    """The muxer's stream has no codec context: PyAV's add_stream opened a libvpx encoder
    for each segment (lookahead frames: ~15 MB per room, measured in C, not by
    tracemalloc), which a stream copy never uses."""
    frames = encoded("VP8", 30)
    rec = new_recording(MasterKeyring({"mk-0001": bytes(32)}))
    before = malloc_in_use()
    open_segments = []
    for i in range(10):  # ten rooms, each with its segment open
        sink = EncryptingSink(rec.segment_sealer(i), MemoryFile())
        muxer = SegmentMuxer("VP8", dest=sink)
        for f in frames:
            muxer.add(*f)
        open_segments.append((muxer, sink))
    grown = malloc_in_use() - before
    assert grown < 8 * MiB, f"10 open segments hold {grown / MiB:.1f} MiB of C heap"
    for muxer, sink in open_segments:
        muxer.finish()
        sink.finish()
        assert sink.error is None


# --- crashes


async def test_a_crash_mid_segment_leaves_a_partial_that_is_dropped_or_reported(
    tmp_path: Path,
) -> None:
    frames = encoded("VP8", 40, noise=True, bit_rate=20_000_000)
    # The uploader is off: everything stays in the spool, as with a storage outage.
    recorder, spool, storage, keys, track = await _recorder(tmp_path, 1.0, upload=False)
    camera = Camera(track, frames)
    # Two segments or more (1 s each), then the open one some chunks in.
    while (seg := recorder._open) is None or seg.index < 2 or seg.muxer.frames < 8:
        await camera.push(recorder, 1)
    n = seg.index
    await wait_for(lambda: recorder.stats.segments == n, 10, "the closed segments committed")
    assert seg.sink.plaintext_size > 3 * 65536  # chunks 1.. are on disk already
    # What a SIGKILL now leaves on disk (what Python had not flushed yet is lost with it).
    crashed = tmp_path / "crashed"
    shutil.copytree(spool.directory, crashed)
    recorder._pump_task.cancel()  # type: ignore[union-attr]
    await recorder.wait()
    partials = [p for p in crashed.rglob(".*.part")]
    assert len(partials) == 1 and partials[0].stat().st_size > 65536

    # 1. If a partial were ever renamed into place (it never is), it is reported, not used:
    # its chunk 0 was not written yet, so it fails authentication.
    torn = tmp_path / "torn"
    shutil.copytree(crashed, torn)
    torn_part = next(torn.rglob(".*.part"))
    torn_part.rename(torn / segment_object(recorder.id, n))
    source = ObjectSource(storage, torn)
    report = await recover(source, keys, recorder.id, lambda *_: asyncio.sleep(0))
    assert [s.index for s in report.segments] == list(range(n))
    assert any(f"segment {n} is not usable" in note and "ChunkTampered" in note
               for note in report.notes), report.notes  # fmt: skip

    # 2. The server's way: the spool drops the partial at start; recovery seals the rest.
    restarted = Spool(crashed, storage)
    await restarted.start()
    assert restarted.stats.discarded_partials == 1 and not list(crashed.rglob(".*.part"))
    source = ObjectSource(storage, crashed)
    recovered = await recover(source, keys, recorder.id, restarted.put)
    assert recovered.manifest == "recovery"
    assert [s.index for s in recovered.segments] == list(range(n))
    report = await verify(source, keys, recorder.id)
    assert report.ok and report.manifest == "recovery" and len(report.segments) == n
    out = await export(source, keys, recorder.id, tmp_path / "x.webm", allow_incomplete=True)
    assert out.frames == report.frames > 0

    # 3. A committed segment cut short afterwards (a torn disk): verify names it.
    await restarted.drain(10)
    seg1 = storage.directory / segment_object(recorder.id, 1)
    seg1.write_bytes(seg1.read_bytes()[: 100 + 65536 + 16 + 500])
    report = await verify(ObjectSource(storage, crashed), keys, recorder.id)
    assert not report.ok and any("segment 1 is truncated" in e or "segment 1, chunk" in e
                                 for e in report.errors), report.errors  # fmt: skip
    await restarted.stop()
    await spool.stop()
