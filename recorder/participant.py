"""The recorder: a participant of the room that subscribes to the caller's camera.

Like Galène's disk writer, it is one more receiver of the room's track: it subscribes to a
`RoomTrack` (server/media/relay.py) exactly as an agent's sender does, gets *encoded* frames
(`av.Packet`, pts in 1/90000 s) starting at a keyframe, and never decodes or re-encodes them.

Pipeline, all on the event loop, every stage bounded:

    RoomTrack --(ForwardedTrack, bounded queue)--> pump: mux (recorder.mux) into an
        EncryptingSink (recorder.sink: STREAM AES-GCM, chunk by chunk, into a spool file)
        --(finished segment, bounded queue)--> writer: hash, fsync, commit to the Spool
        --(uploader, retries)--> Storage (local directory or S3)

- Segments are cut at keyframes only: when a segment has run for `segment_s`, the recorder
  asks the source for a keyframe (a PLI upstream, rate-limited by the RoomTrack) and cuts
  at the next one; also when the picture size changes (the caller reconnected).
- A slow storage never reaches the room: the spool takes ciphertext on the local disk and
  uploads in the background; the room's other receivers never wait for the recorder (the
  relay drops a lagging subscriber to the next keyframe, which the recorder counts).
- Plaintext exists only in memory, and little of it: the open segment's first chunk and
  its last unsealed one (2 x 64 KiB), whatever the segment's length; every other chunk is
  encrypted into the spool file as it is muxed (issue 18: a whole segment held and copied
  at its end, plus an encoder PyAV opened per segment, cost ~18 MB per room; now 0.5 MB).
- A segment's index is in its encryption, so it is fixed when the segment opens: a
  segment that cannot be stored gives its index to the next one (a failure at commit also
  drops the segments opened after it), so the stored segments stay 0..n-1.
- `stop()` finishes the current segment and writes the manifest. A crash leaves the header
  and every committed segment in the spool/storage, each decryptable on its own;
  recorder.recovery seals a recovery manifest and reports the gap.

Over 400 lines because it is one class on purpose: the pump, the segment cutter and the
writer share one recording's state, bounds and loss counters, and the crash guarantees
above hold only if they change together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import av
from aiortc.mediastreams import MediaStreamError

from recorder import SpoolFull
from recorder.crypto import (
    Recording,
    SegmentEntry,
    SegmentSealer,
    header_object,
    manifest_object,
    segment_object,
)
from recorder.mux import CLOCK_RATE, SegmentMuxer, container_for, frame_size
from recorder.sink import EncryptingSink
from recorder.spool import Spool, SpoolWriter
from server.media.vcodec import is_keyframe

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# A segment that found no keyframe to end at grows at most this much before it is closed
# anyway (the frames until the next keyframe are then lost and counted).
MAX_SEGMENT_BYTES = 64 * MiB


class PacketTrack(Protocol):
    """What RoomTrack.subscribe() returns (relay.ForwardedTrack). One that also has
    `deliver(sink)` hands each frame to `sink(data, pts, keyframe)` as it completes instead, and its
    recv() then only waits for the end: the recorder uses that when it is there."""

    frames_dropped: int

    async def recv(self) -> Any: ...
    def stop(self) -> None: ...


class TrackSource(Protocol):
    """What the recorder needs of a room track (relay.RoomTrack)."""

    def subscribe(self) -> PacketTrack: ...
    def request_keyframe(self) -> None: ...


@dataclass(frozen=True)
class SegmentInfo:
    index: int
    start_ms: int
    end_ms: int  # timestamp of its last frame
    frames: int
    width: int
    height: int
    plaintext_size: int
    ciphertext_size: int

    def as_metadata(self) -> dict[str, int]:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms, "frames": self.frames,
                "width": self.width, "height": self.height}  # fmt: skip


@dataclass
class RecorderStats:
    frames_received: int = 0  # from the room track
    frames_recorded: int = 0  # in committed segments
    frames_waiting_keyframe: int = 0  # received before the first keyframe (normally 0)
    # from a publisher in another codec than the recording's (not muxed: no transcoding)
    frames_other_codec: int = 0
    frames_lost: int = 0  # in segments that could not be stored, or cut without keyframe
    segments: int = 0
    segments_lost: int = 0
    bytes_plain: int = 0
    bytes_cipher: int = 0  # header + segments + manifest
    keyframe_requests: int = 0


@dataclass(frozen=True)
class RecordingSummary:
    recording_id: str
    complete: bool  # the manifest was written
    segments: int
    frames: int
    frames_lost: int
    duration_ms: int
    bytes: int
    started_at: float
    ended_at: float
    error: str | None = None


class _Nowhere:
    """The target of a segment whose spool file could not be opened (its sink fails)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def write_at(self, offset: int, data: bytes) -> None:
        raise self.exc


@dataclass
class _Open:
    """The segment being muxed: its index, muxer, sink and spool file."""

    index: int
    muxer: SegmentMuxer
    sealer: SegmentSealer
    sink: EncryptingSink
    writer: SpoolWriter | None

    def sink_entry(self, sha256: bytes) -> SegmentEntry:
        return self.sealer.entry(self.sink.plaintext_size, sha256)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.discard_now()


@dataclass
class _Pending:
    seg: _Open
    start_ms: int
    end_ms: int
    frames: int
    size: tuple[int, int]


@dataclass
class _Cut:
    segment_ms: int
    lead_ms: int
    requested_at: int | None = None


class RecorderParticipant:
    """Records one room track into one encrypted recording (see the module docstring)."""

    def __init__(
        self,
        source: TrackSource,
        recording: Recording,
        spool: Spool,
        *,
        codec: str = "VP8",
        segment_s: float = 10.0,
        max_pending: int = 4,
        metadata: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        if segment_s <= 0:
            raise ValueError("segment_s must be positive")
        self.source = source
        self.rec = recording
        self.id = recording.id
        self.spool = spool
        self.codec = codec.upper()
        self.container = container_for(self.codec)
        self.clock = clock
        self.metadata = dict(metadata or {})
        self.stats = RecorderStats()
        self._on_event = on_event
        seg_ms = max(1, int(segment_s * 1000))
        self._cut = _Cut(seg_ms, min(300, seg_ms // 4))
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue(maxsize=max(1, max_pending))
        self._entries: list[SegmentEntry] = []
        self._segments: list[SegmentInfo] = []
        self._lost: list[dict[str, Any]] = []
        self._track: PacketTrack | None = None
        self._open: _Open | None = None
        self._next_index = 0  # the index the next segment opened gets
        self._base_pts: int | None = None
        self._last_ms: int | None = None
        self._stopping = False
        self._sync_error: str | None = None  # what failed in _on_frame_sync, if anything
        self._pump_task: asyncio.Task[None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[RecordingSummary] | None = None
        self.started_at = 0.0
        self.ended_at: float | None = None

    # --- lifecycle

    @property
    def subscription(self) -> PacketTrack | None:
        return self._track

    @property
    def running(self) -> bool:
        return self._done is not None and not self._done.done()

    async def start(self) -> None:
        """Store the header, subscribe to the track and start recording."""
        if self._done is not None:
            raise RuntimeError("recorder already started")
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self.started_at = self.clock()
        # The header first: the spool uploads in commit order, so storage never holds a
        # segment whose key is not there too.
        await self.spool.put(header_object(self.id), self.rec.header, essential=True)
        self.stats.bytes_cipher += len(self.rec.header)
        self._track = self.source.subscribe()
        deliver = getattr(self._track, "deliver", None)
        if deliver is not None:
            # Each frame straight from the forwarder: no queue, no task wake-up and no
            # av.Packet per frame (simpler per frame; measured, it did not lower the
            # recorder's cost beyond noise: docs/media-performance.md, #18).
            deliver(self._on_frame_sync)
        self._writer_task = asyncio.create_task(self._writer(), name=f"recorder-writer-{self.id}")
        self._pump_task = asyncio.create_task(self._pump(), name=f"recorder-pump-{self.id}")

    async def stop(self) -> RecordingSummary:
        """Finish the current segment, store the manifest, return what was recorded."""
        if self._done is None:
            raise RuntimeError("recorder not started")
        if not self._done.done() and not self._stopping:
            self._stopping = True
            track = self._track
            # Frames already queued for us are recorded first; an empty queue means the
            # pump waits in recv(): stopping the track wakes it with MediaStreamError.
            if track is not None and getattr(track, "queued", 0) == 0:
                track.stop()
        return await asyncio.shield(self._done)

    async def wait(self) -> RecordingSummary:
        assert self._done is not None
        return await asyncio.shield(self._done)

    def _emit(self, kind: str, **data: Any) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, data)
        except Exception:
            log.exception("recorder event handler failed on %s", kind)

    # --- pump: packets -> muxer

    async def _pump(self) -> None:
        error: str | None = None
        track = self._track
        assert track is not None
        try:
            while True:
                if self._stopping and getattr(track, "queued", 0) == 0:
                    break
                try:
                    packet = await track.recv()
                except MediaStreamError:
                    break  # stopped by us, or the room's media closed
                self._on_packet(packet)
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except Exception as exc:  # a bug must end this recording cleanly, not the room
            log.exception("recorder %s failed", self.id)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            track.stop()  # idempotent; unsubscribes from the room track
            error = error or self._sync_error
            if error == "cancelled":
                self._abandon("cancelled")
            else:
                await self._finish(error)

    def _ms(self, pts: int) -> int:
        if self._base_pts is None:
            self._base_pts = pts
        return (pts - self._base_pts) * 1000 // CLOCK_RATE

    def _on_frame_sync(self, data: bytes, pts: int, keyframe: bool) -> None:
        """A frame from the forwarder (`deliver`): whatever fails ends this recording
        cleanly (the pump finishes it with the error), never the packet path."""
        if self._sync_error is not None:
            return
        try:
            self._on_frame(data, pts, keyframe)
        except Exception as exc:
            log.exception("recorder %s failed", self.id)
            self._sync_error = f"{type(exc).__name__}: {exc}"
            if self._track is not None:
                self._track.stop()  # the pump's recv() ends: it finishes the recording

    def _on_packet(self, packet: av.Packet) -> None:
        # a copy: the same packet object goes to every queueing subscriber
        data = bytes(packet)
        self._on_frame(data, packet.pts or 0, is_keyframe(self.codec, data))

    def _on_frame(self, data: bytes, pts: int, keyframe: bool) -> None:
        self.stats.frames_received += 1
        # A caller whose browser has no VP8 publishes H264 in a VP8 room (and back): its
        # frames cannot go into this recording's container.
        codec = getattr(self.source, "codec", None)
        if codec is not None and codec != self.codec:
            if self.stats.frames_other_codec == 0:
                log.warning("recorder %s: the camera is now %s, the recording %s: its frames "
                            "are not recorded", self.id, codec, self.codec)  # fmt: skip
            self.stats.frames_other_codec += 1
            return
        if self._open is not None and self._open.index >= self._next_index:
            # An earlier segment failed at commit and took this index back: this one can
            # never be listed, so it ends here (lost) and the next keyframe starts anew.
            self._drop_open("an earlier segment could not be stored")
        muxer = self._open.muxer if self._open is not None else None
        if muxer is None:
            if not keyframe:
                if self._base_pts is None:
                    self.stats.frames_waiting_keyframe += 1
                else:  # after a forced cut: these frames cannot be decoded, so are lost
                    ms_now = self._ms(pts)
                    self._lost_frames(ms_now, ms_now, 1, "no_keyframe")
                self._request_keyframe(None)
                return
            muxer = self._open_segment(data)
        else:
            ms_now = self._ms(pts)
            if keyframe and self._should_cut(muxer, ms_now, data):
                self._close_segment()
                muxer = self._open_segment(data)
            elif muxer.bytes_in > MAX_SEGMENT_BYTES:
                log.warning("recorder %s: no keyframe for %d bytes; cutting", self.id,
                            muxer.bytes_in)  # fmt: skip
                self._close_segment()
                self._lost_frames(ms_now, ms_now, 1, "no_keyframe")
                self._request_keyframe(None)
                return
        ms = self._ms(pts)
        if self._last_ms is not None and ms <= self._last_ms:
            ms = self._last_ms + 1
        self._last_ms = ms
        muxer.add(data, ms, keyframe)
        first = muxer.first_ms or 0
        cut = self._cut
        if ms - first >= cut.segment_ms - cut.lead_ms:
            self._request_keyframe(ms)

    def _request_keyframe(self, ms: int | None) -> None:
        cut = self._cut
        if ms is not None and cut.requested_at is not None and ms - cut.requested_at < 1000:
            return  # asked already; ask again only if nothing came within a second
        cut.requested_at = ms
        self.stats.keyframe_requests += 1
        try:
            self.source.request_keyframe()
        except Exception:
            log.exception("recorder %s: keyframe request failed", self.id)

    def _should_cut(self, muxer: SegmentMuxer, ms: int, data: bytes) -> bool:
        first = muxer.first_ms or 0
        if ms - first >= self._cut.segment_ms - self._cut.lead_ms:
            return True
        size = frame_size(self.codec, data) if self.codec == "VP8" else None
        return size is not None and muxer.size is not None and size != muxer.size

    def _open_segment(self, data: bytes) -> SegmentMuxer:
        index = self._next_index
        self._next_index += 1
        writer: SpoolWriter | None = None
        try:
            writer = self.spool.open(segment_object(self.id, index))
            target: Any = writer
        except OSError as exc:  # the segment fails (its sink says why) and is counted lost
            target = _Nowhere(exc)
        sealer = self.rec.segment_sealer(index)
        sink = EncryptingSink(sealer, target)
        muxer = SegmentMuxer(self.codec, frame_size(self.codec, data), dest=sink)
        self._open = _Open(index, muxer, sealer, sink, writer)
        self._cut.requested_at = None
        return muxer

    def _drop_open(self, reason: str) -> None:
        seg, self._open = self._open, None
        if seg is None:
            return
        muxer = seg.muxer
        muxer.abandon()
        seg.discard()
        if muxer.frames:
            self._lost_frames(muxer.first_ms or 0, muxer.last_ms or 0, muxer.frames, reason)

    def _segment_failed(self, index: int) -> None:
        """Segment `index` will not be stored: the next segment opened takes its index."""
        self._next_index = min(self._next_index, index)

    def _close_segment(self) -> None:
        seg, self._open = self._open, None
        if seg is None:
            return
        muxer, sink = seg.muxer, seg.sink
        if muxer.frames == 0:
            muxer.abandon()
            seg.discard()
            self._segment_failed(seg.index)
            return
        start, end, frames = muxer.first_ms or 0, muxer.last_ms or 0, muxer.frames
        reason = None
        try:
            muxer.finish()
            sink.finish()
        except Exception as exc:
            log.exception("recorder %s: muxer failed", self.id)
            reason = f"mux: {exc}"
        if reason is None and sink.error is not None:
            exc = sink.error
            reason = f"spool: {exc}" if isinstance(exc, SpoolFull | OSError) else f"mux: {exc}"
        if reason is None:
            try:
                self._queue.put_nowait(_Pending(seg, start, end, frames, muxer.size or (0, 0)))
                return
            except asyncio.QueueFull:
                # The writer is stuck (disk): drop this segment rather than wait for it.
                reason = "writer_backlog"
        seg.discard()
        self._segment_failed(seg.index)
        self._lost_frames(start, end, frames, reason)

    def _lost_frames(self, start: int, end: int, frames: int, reason: str) -> None:
        self.stats.frames_lost += frames
        self.stats.segments_lost += 1
        self._lost.append({"start_ms": start, "end_ms": end, "frames": frames, "reason": reason})
        log.warning("recorder %s: %d frames (%d-%d ms) lost: %s", self.id, frames, start, end,
                    reason)  # fmt: skip
        self._emit("lost", start_ms=start, end_ms=end, frames=frames, reason=reason)

    # --- writer: segments -> encryption -> spool

    async def _writer(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    return
                await self._store(item)
            except Exception as exc:  # never let the writer die with segments queued
                log.exception("recorder %s: storing a segment failed", self.id)
                assert item is not None
                await self._fail_stored(item, f"store: {exc}")
            finally:
                self._queue.task_done()

    async def _fail_stored(self, item: _Pending, reason: str) -> None:
        writer = item.seg.writer
        if writer is not None:
            await writer.abort()
        self._segment_failed(item.seg.index)
        self._lost_frames(item.start_ms, item.end_ms, item.frames, reason)

    async def _store(self, item: _Pending) -> None:
        """Hash the encrypted segment (read back from its file), fsync and commit it."""
        index, writer = item.seg.index, item.seg.writer
        assert writer is not None  # a segment without a spool file fails in its sink
        if index != len(self._entries):  # opened after a segment that then failed
            await writer.abort()
            self._lost_frames(item.start_ms, item.end_ms, item.frames,
                              "an earlier segment could not be stored")  # fmt: skip
            return
        try:
            sha = await asyncio.to_thread(writer.sha256)
            await writer.commit()
        except (SpoolFull, OSError) as exc:
            await self._fail_stored(item, f"spool: {exc}")
            return
        entry = item.seg.sink_entry(sha)
        self._entries.append(entry)
        info = SegmentInfo(index, item.start_ms, item.end_ms, item.frames, item.size[0],
                           item.size[1], entry.plaintext_size,
                           entry.ciphertext_size)  # fmt: skip
        self._segments.append(info)
        self.stats.segments += 1
        self.stats.frames_recorded += item.frames
        self.stats.bytes_plain += info.plaintext_size
        self.stats.bytes_cipher += info.ciphertext_size
        self._emit("segment", index=index, frames=item.frames, bytes=info.ciphertext_size)

    # --- the end

    def manifest_metadata(self, complete: bool) -> dict[str, Any]:
        meta = dict(self.metadata)
        meta.update(
            kind=meta.get("kind", "video"),
            codec=self.codec,
            container=self.container.name,
            started_at=self.started_at,
            ended_at=self.ended_at,
            frames=self.stats.frames_recorded,
            frames_lost=self.stats.frames_lost,
            segments=[s.as_metadata() for s in self._segments],
            lost=list(self._lost),
        )
        if not complete:
            meta["recovered"] = True
        return meta

    def _summary(self, complete: bool, error: str | None) -> RecordingSummary:
        duration = 0
        if self._segments:
            duration = self._segments[-1].end_ms - self._segments[0].start_ms
        return RecordingSummary(
            self.id, complete, len(self._entries), self.stats.frames_recorded,
            self.stats.frames_lost, duration, self.stats.bytes_cipher, self.started_at,
            self.ended_at or self.clock(), error,
        )  # fmt: skip

    def _abandon(self, error: str) -> None:
        """Cancelled (the loop is going away): like a crash, no manifest is written."""
        if self._open is not None:
            self._open.muxer.abandon()
            self._open.discard()
            self._open = None
        if self._writer_task is not None:
            self._writer_task.cancel()
        if self._done is not None and not self._done.done():
            self._done.set_result(self._summary(False, error))

    async def _finish(self, error: str | None) -> None:
        assert self._done is not None
        complete = False
        try:
            self._close_segment()
            await self._queue.put(None)
            if self._writer_task is not None:
                await self._writer_task
            self.ended_at = self.clock()
            manifest = self.rec.seal_manifest(
                self._entries, complete=True, metadata=self.manifest_metadata(True)
            )
            await self.spool.put(manifest_object(self.id), manifest, essential=True)
            self.stats.bytes_cipher += len(manifest)
            complete = True
        except Exception as exc:
            log.exception("recorder %s: could not write the manifest", self.id)
            error = error or f"manifest: {type(exc).__name__}: {exc}"
        finally:
            if self._writer_task is not None and not self._writer_task.done():
                self._writer_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer_task
            if not self._done.done():
                self._done.set_result(self._summary(complete, error))
            self._emit("finished", complete=complete, error=error)
