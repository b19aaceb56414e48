"""Recording and photos in the server: wiring recorder/ to rooms, config, the database.

`setup(app)` (called by server.recording.api.setup) adds a
cleanup context that, at startup, builds the keyring, the storage (an S3 bucket outside
the EU/EEA allow-list stops the start, naming its region) and the spool, seals recovery
manifests for recordings a crashed process left open, and at shutdown (SIGTERM) finishes
every recording (current segment + manifest) and gives the spool time to upload.

The recorder joins a room as one more receiver of the caller's camera
(recorder.participant); nothing here touches media frames.

Over 400 lines because one service owns the recording lifecycle (start, supervise, stop,
crash recovery) and the snapshot and photo requests: they share the storage, spool,
keyring and per-room locks; building the pieces (building.py) and the metrics
(metrics.py) are apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from recorder.crypto import (
    header_object,
    manifest_object,
    new_recording,
    segment_object,
)
from recorder.keys import Keyring, MasterKeyring
from recorder.mux import container_for
from recorder.participant import RecorderParticipant, RecordingSummary
from recorder.recovery import ObjectSource, recover
from recorder.spool import Spool
from recorder.storage import Storage
from recorder.vault import Keys
from server.core.appkeys import CLOCK, CONFIG, DATA_DIR, DB, SECRETS
from server.core.config import Config
from server.core.db import Database
from server.privacy.subjects import recording_objected
from server.recording.building import build_keyring, build_storage, check_storage, spool_dir
from server.recording.image_pool import ImagePool
from server.recording.keystore import database_keys, expected, store_key
from server.recording.photos import CleanPhoto, PhotoRejected, clean_photo
from server.rooms.manager import ROOMS, LiveRoom, RoomManager
from server.rooms.participant import AGENT
from server.rooms.state import RoomEvent
from server.signalling import messages as M

log = logging.getLogger(__name__)

MiB = 1024 * 1024
SNAPSHOT_TTL_S = 60.0
WARNING_SPOOL = "spool_over_limit"


class RecordingStartError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _codec_of(container: str | None, default: str) -> str:
    """A recording's codec from its container (a caller without VP8 is recorded in H264
    in a VP8 room): media.codec only when the row does not say."""
    for codec in ("VP8", "H264"):
        if container == container_for(codec).name:
            return codec
    return default


# --- the service


@dataclass
class ActiveRecording:
    recorder: RecorderParticipant
    session_id: str
    started_at: float
    task: asyncio.Task[None] | None = None

    @property
    def participant_id(self) -> str:
        """The recorder's id in its room's participant list."""
        return f"recorder-{self.recorder.id}"


@dataclass
class RecordingCounters:
    started: int = 0
    completed: int = 0
    failed: int = 0
    recovered: int = 0
    segments: int = 0
    segments_lost: int = 0
    frames: int = 0
    frames_lost: int = 0
    photos: Counter[str] = field(default_factory=Counter)
    photos_refused: Counter[str] = field(default_factory=Counter)
    upload_failures: int = 0
    spool_over_limit: int = 0
    bytes: int = 0  # ciphertext written by recordings that ended (live ones: their stats)


class RecordingService:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.config: Config = app[CONFIG]
        self.data_dir: Path = app[DATA_DIR]
        self.db: Database = app[DB]
        self.rooms: RoomManager = app[ROOMS]
        self.clock = app[CLOCK]
        self.keyring: Keyring | None = None
        self.storage: Storage | None = None
        self.spool: Spool | None = None
        self.source: ObjectSource | None = None
        self.active: dict[str, ActiveRecording] = {}
        self.counters = RecordingCounters()
        self.spool_over_limit = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._snapshots: dict[str, dict[str, float]] = {}  # room -> request id -> expiry
        # Photos stored or being stored, per room: reserved before the first await of an
        # upload, so parallel uploads cannot pass the cap together (released on failure).
        self._photo_counts: Counter[str] = Counter()
        rc = self.config.recording
        self.images = ImagePool(rc.photo_decode_workers, rc.photo_decode_budget_mb << 20)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    @property
    def mode(self) -> str:
        return self.config.recording.mode

    @property
    def keys(self) -> Keys:
        """The master keyring with the database's recording keys: what readers need."""
        assert self.keyring is not None
        return database_keys(self.db, self.keyring)

    # --- lifecycle

    async def start(self) -> None:
        cfg = self.config
        rc = cfg.recording
        storage = build_storage(cfg, self.data_dir)
        await check_storage(storage, cfg)
        self.storage = storage
        hard = rc.spool_hard_limit_mb * MiB if rc.spool_hard_limit_mb else None
        self.spool = Spool(
            spool_dir(cfg, self.data_dir), storage,
            limit_bytes=rc.spool_limit_mb * MiB, hard_limit_bytes=hard,
            on_limit=self._on_spool_limit, on_error=self._on_upload_error,
            backoff_max=rc.upload_retry_max_s,
        )  # fmt: skip
        self.source = ObjectSource(storage, self.spool.directory)
        await self.spool.start()
        self.rooms.listen(self._on_room_event)
        self._spawn(self._recover_interrupted())

    async def close(self) -> None:
        """Finish every recording (segment + manifest), then let the spool upload a while."""
        self._closing = True
        self.images.close()
        await asyncio.gather(
            *(self._stop_active(room_id) for room_id in list(self.active)),
            return_exceptions=True,
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.spool is not None:
            drained = await self.spool.stop(self.config.recording.shutdown_drain_s or 0.0)
            if not drained:
                log.warning("recording spool: %d object(s) left for the next start",
                            len(self.spool.pending))  # fmt: skip

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _lock(self, room_id: str) -> asyncio.Lock:
        return self._locks.setdefault(room_id, asyncio.Lock())

    # --- crash recovery

    async def _recover_interrupted(self) -> None:
        if self.config.cluster.router == "redis":
            # Another node may be writing them right now: the node that re-opens a dead
            # node's room seals its recording, or the orphan sweep (server/cluster/failover.py).
            return
        rows = await self.db.list_recordings(status="recording")
        for row in rows:
            if row["id"] in {a.recorder.id for a in self.active.values()}:
                continue
            await self.recover_one(row)

    async def recover_one(self, row: dict[str, Any]) -> None:
        assert self.source is not None and self.keyring is not None and self.spool is not None
        rid = row["id"]
        try:
            report = await recover(
                self.source, self.keys, rid, self.spool.put,
                metadata={"session_id": row["session_id"], "started_at": row["started_at"],
                          "codec": _codec_of(row["container"], self.config.media.codec),
                          "container": row["container"] or "webm"},
            )  # fmt: skip
        except Exception as exc:
            log.error("recording %s: recovery failed (%s); retried at the next start", rid, exc)
            return
        ended = row["started_at"] + (report.metadata.get("interrupted_after_ms") or 0) / 1000
        await self.db.update_recording(
            rid, status="incomplete", ended_at=ended, segments=len(report.segments),
            frames=report.frames, error="interrupted: recovered after a crash",
        )  # fmt: skip
        self.counters.recovered += 1
        log.warning("recording %s was interrupted; sealed a recovery manifest over %d "
                    "segment(s), %d frames", rid, len(report.segments), report.frames)  # fmt: skip

    # --- room events

    def _on_room_event(self, event: RoomEvent) -> None:
        if self._closing:
            return
        room = event.room
        if (
            self.mode == "always"
            and event.kind == "track"
            and event.data.get("track") == "camera"
            and event.data.get("live")
            and room.id not in self.active
        ):
            self._spawn(self._auto_start(room.id))
        elif event.kind == "ended" and room.id in self.active:
            self._spawn(self._stop_active(room.id))
        if event.kind == "ended":
            self.forget(room.id)

    def forget(self, room_id: str) -> None:
        """Drop the room's per-room state (pending snapshots, photo count, lock): its room
        ended, or was handed to another node (server/cluster/failover.py), which keeps
        its own from then on. Without this a draining node kept them for good."""
        self._snapshots.pop(room_id, None)
        self._photo_counts.pop(room_id, None)
        self._locks.pop(room_id, None)

    async def _auto_start(self, room_id: str) -> None:
        live = self.rooms.get(room_id)
        if live is None:
            return
        try:
            await self.start_recording(live, actor=("system", "system"))
        except RecordingStartError as exc:
            log.warning("room %s: automatic recording did not start: %s", room_id, exc)
            live.send(AGENT, M.error(exc.code, exc.message))  # the agent sees why
        except Exception:
            log.exception("room %s: automatic recording failed to start", room_id)

    # --- start / stop

    def state(self, live: LiveRoom) -> dict[str, Any]:
        active = self.active.get(live.room.id)
        return {
            "active": active is not None,
            "id": active.recorder.id if active else None,
            "mode": self.mode,
            **live.room.recording(),
        }

    async def start_recording(self, live: LiveRoom, actor: tuple[str, str]) -> dict[str, Any]:
        if self.mode == "off":
            raise RecordingStartError(409, "recording_disabled",
                                      "recording is turned off on this service")  # fmt: skip
        if self._closing:
            raise RecordingStartError(503, "shutting_down", "the service is shutting down")
        if await recording_objected(self.db, self.app[SECRETS].server_key, live.room.id):
            raise RecordingStartError(409, "do_not_record", "the caller has objected to being "
                                      "recorded (do-not-record flag set by the data-protection "
                                      "officer): this session is not recorded")  # fmt: skip
        async with self._lock(live.room.id):
            if live.room.ended:
                raise RecordingStartError(409, "room_ended", "this session has ended")
            if live.room.id in self.active:
                return self.state(live)
            assert self.keyring is not None and self.spool is not None
            rec = await asyncio.to_thread(new_recording, self.keyring)  # KMS blocks
            # The camera's own codec when it runs (a caller without VP8 publishes H264 in
            # a VP8 room); else media.codec.
            codec = live.media.tracks["camera"].codec or self.config.media.codec
            now = self.clock()
            # The key record first: the database holds the only way to the data key.
            await store_key(self.db, rec, live.room.id, now)
            recorder = RecorderParticipant(
                live.media.tracks["camera"], rec, self.spool, codec=codec,
                segment_s=self.config.recording.segment_s, clock=self.clock,
                metadata={"kind": "video", "session_id": live.room.id},
                on_event=self._recorder_event,
            )  # fmt: skip
            await self.db.add_recording(
                id=rec.id, session_id=live.room.id, kind="video", status="recording",
                started_at=now, storage_key=f"recordings/{rec.id}/", bytes=0, segments=0,
                frames=0, container=container_for(codec).name,
            )  # fmt: skip
            try:
                await recorder.start()
            except Exception as exc:
                await self.db.update_recording(rec.id, status="failed", ended_at=self.clock(),
                                               error=str(exc)[:256])  # fmt: skip
                log.exception("room %s: recorder did not start", live.room.id)
                raise RecordingStartError(503, "storage_unavailable",
                                          f"recording could not start: {exc}") from exc  # fmt: skip
            active = ActiveRecording(recorder, live.room.id, now)
            self.active[live.room.id] = active
            active.task = self._spawn(self._supervise(active))
            self.counters.started += 1
            # The recorder joins the room like any participant: the room's recording
            # state (what pages and ops show) is its presence.
            await self.rooms.join(
                live, "recorder", active.participant_id, recording_id=rec.id,
                warning=WARNING_SPOOL if self.spool_over_limit else None,
            )  # fmt: skip
            log.info("room %s: recording %s started by %s", live.room.id, rec.id, actor[0])
            return self.state(live)

    async def stop_recording(self, live: LiveRoom) -> dict[str, Any]:
        if self.mode == "always" and not live.room.ended:
            raise RecordingStartError(409, "recording_required",
                                      "this service records every session: recording cannot be "
                                      "stopped")  # fmt: skip
        async with self._lock(live.room.id):
            await self._stop_active(live.room.id)
            return self.state(live)

    async def finish_room(self, room_id: str) -> None:
        """A draining node hands the room over: its recording ends complete here (the next
        node records into a new one, linked to the same session)."""
        async with self._lock(room_id):
            await self._stop_active(room_id)

    async def _stop_active(self, room_id: str) -> RecordingSummary | None:
        active = self.active.get(room_id)
        if active is None:
            return None
        summary = await active.recorder.stop()
        if active.task is not None:
            await asyncio.shield(active.task)
        return summary

    async def _supervise(self, active: ActiveRecording) -> None:
        """Wait for the recorder to finish (stopped, room ended, or failed) and record it."""
        summary = await active.recorder.wait()
        status = "complete" if summary.complete else "failed"
        if summary.complete:
            self.counters.completed += 1
        else:
            self.counters.failed += 1
        try:
            await self.db.update_recording(
                summary.recording_id, status=status, ended_at=summary.ended_at,
                bytes=summary.bytes, segments=summary.segments, frames=summary.frames,
                error=(summary.error or None) and summary.error[:256],
            )  # fmt: skip
        except Exception:
            log.exception("recording %s: could not update its database row",
                          summary.recording_id)  # fmt: skip
        # No await between these two: a scrape counts the recorder's bytes once, either
        # live (in self.active) or here.
        self.counters.bytes += summary.bytes
        if self.active.get(active.session_id) is active:
            del self.active[active.session_id]
        live = self.rooms.get(active.session_id)
        if live is not None:
            await self.rooms.leave(live, active.participant_id)
        log.info("recording %s ended: %s, %d segments, %d frames (%d lost)",
                 summary.recording_id, status, summary.segments, summary.frames,
                 summary.frames_lost)  # fmt: skip

    def _recorder_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "segment":
            self.counters.segments += 1
            self.counters.frames += int(data.get("frames", 0))
        elif kind == "lost":
            self.counters.segments_lost += 1
            self.counters.frames_lost += int(data.get("frames", 0))

    # --- spool

    def _on_spool_limit(self, over: bool, size: int, limit: int) -> None:
        self.spool_over_limit = over
        if over:
            self.counters.spool_over_limit += 1
        warning = WARNING_SPOOL if over else None
        for room_id, active in list(self.active.items()):
            live = self.rooms.get(room_id)
            if live is not None:
                self._spawn(self.rooms.set_warning(live, active.participant_id, warning))

    def _on_upload_error(self, key: str, exc: BaseException) -> None:
        self.counters.upload_failures += 1

    # --- reading back

    async def read_photo(self, photo_id: str) -> tuple[bytes, dict[str, Any]]:
        """A stored photo, verified and decrypted. A key the running service does not know
        yet (`callassist keys rotate` ran meanwhile) makes it reload its key directory."""
        from recorder import UnknownMasterKey
        from recorder.recovery import read_photo

        assert self.source is not None and self.keyring is not None
        expect = await expected(self.db, photo_id)
        try:
            return await read_photo(self.source, self.keys, photo_id, expect)
        except UnknownMasterKey:
            ring = self.keyring
            if not isinstance(ring, MasterKeyring) or ring.directory is None:
                raise
            self.keyring = await asyncio.to_thread(
                MasterKeyring.from_directory, ring.directory, create=False
            )
            log.info("recording keys reloaded: %s", ", ".join(self.keyring.key_ids))
            return await read_photo(self.source, self.keys, photo_id, expect)

    # --- photos

    def request_snapshot(self, live: LiveRoom) -> str:
        if live.room.ended:
            raise RecordingStartError(409, "room_ended", "this session has ended")
        caller = live.conns.get("caller")
        if caller is None or not live.room.tracks.get("camera"):
            raise RecordingStartError(
                409, "camera_not_live", "the caller's camera is not on: a snapshot needs it"
            )
        now = self.clock()
        pending = self._snapshots.setdefault(live.room.id, {})
        for rid, expiry in list(pending.items()):
            if expiry < now:
                del pending[rid]
        if len(pending) >= 5:
            raise RecordingStartError(429, "too_many_snapshots",
                                      "wait for the snapshots already asked for")  # fmt: skip
        request_id = "snap-" + secrets.token_urlsafe(9)
        pending[request_id] = now + SNAPSHOT_TTL_S
        caller.send(M.snapshot(request_id))
        return request_id

    def snapshot_failed(self, live: LiveRoom, request_id: str, reason: str) -> None:
        """The caller's page could not take the still (its `snapshot_failed` message)."""
        if self._snapshots.get(live.room.id, {}).pop(request_id, None) is not None:
            self.tell_snapshot_failed(live, request_id, reason)

    def tell_snapshot_failed(self, live: LiveRoom, request_id: str, reason: str) -> None:
        agent = live.conns.get("agent")
        if agent is not None:
            agent.send(M.snapshot_failed(request_id, reason))

    def take_snapshot_request(self, live: LiveRoom, request_id: str) -> bool:
        expiry = self._snapshots.get(live.room.id, {}).pop(request_id, None)
        return expiry is not None and expiry >= self.clock()

    def reserve_photo(self, live: LiveRoom) -> None:
        """Take one of the session's photos, or refuse (429). Call before any await;
        `release_photo` gives it back when the upload then fails."""
        limit = self.config.recording.photo_max_per_session
        if self._photo_counts[live.room.id] >= limit:
            raise PhotoRejected(429, "too_many_photos",
                                f"at most {limit} photos can be sent in one session")  # fmt: skip
        self._photo_counts[live.room.id] += 1

    def release_photo(self, live: LiveRoom) -> None:
        if self._photo_counts[live.room.id] > 0:
            self._photo_counts[live.room.id] -= 1

    async def clean(self, data: bytes) -> CleanPhoto:
        """Check and re-encode a photo in the image pool, within its memory share."""
        rc = self.config.recording
        return await self.images.run(lambda: clean_photo(
            data, max_pixels=rc.photo_max_pixels, max_side=rc.photo_max_side_px,
            quality=rc.photo_jpeg_quality, max_decode_bytes=self.images.per_decode_bytes,
            redact_faces=self.config.privacy.redact_faces,
            redact_documents=self._documents if self.config.privacy.redact_documents else None,
        ))  # fmt: skip

    def _documents(self, im: Any) -> tuple[Any, int]:
        """Blur ID documents' machine-readable zones (privacy.redact_documents). Without a
        working OCR the photo is stored with its faces blurred but not its documents (the
        caller's photo is not lost; the log says so)."""
        from server.inspect.documents import blur_documents
        from server.inspect.read import InspectError

        ic = self.config.inspect
        try:
            return blur_documents(im, ic.tesseract, ic.timeout_s * 0.75)
        except InspectError as exc:
            log.error("ID documents not looked for in a photo: %s: %s", exc.code, exc.message)
            return im, 0

    async def store_photo(
        self, live: LiveRoom, photo: CleanPhoto, kind: str, snapshot_id: str | None = None
    ) -> dict[str, Any]:
        """Encrypt and store a cleaned photo as a one-segment recording (header, segment 0,
        manifest), then list it. All or nothing: a failure removes what was written."""
        assert self.keyring is not None and self.spool is not None and self.storage is not None
        rec = await asyncio.to_thread(new_recording, self.keyring)
        now = self.clock()
        await store_key(self.db, rec, live.room.id, now)
        seg = rec.segment_writer(0)
        segment = seg.write(photo.jpeg) + seg.close()
        assert seg.entry is not None
        meta = {"kind": kind, "session_id": live.room.id, "content_type": "image/jpeg",
                "container": "jpeg", "width": photo.width, "height": photo.height,
                "taken_at": now, "original_format": photo.original_format,
                "snapshot_id": snapshot_id, "faces_blurred": photo.faces_blurred,
                "documents_blurred": photo.documents_blurred}  # fmt: skip
        manifest = rec.seal_manifest([seg.entry], complete=True, metadata=meta)
        objects = [(header_object(rec.id), rec.header), (segment_object(rec.id, 0), segment),
                   (manifest_object(rec.id), manifest)]  # fmt: skip
        done: list[str] = []
        try:
            for key, blob in objects:
                await self.spool.put(key, blob)
                done.append(key)
            size = sum(len(b) for _, b in objects)
            await self.db.add_recording(
                id=rec.id, session_id=live.room.id, kind=kind, status="complete",
                started_at=now, ended_at=now, storage_key=f"recordings/{rec.id}/", bytes=size,
                segments=1, frames=0, container="jpeg", faces_blurred=photo.faces_blurred,
            )  # fmt: skip
        except BaseException:
            for key in reversed(done):
                with contextlib.suppress(Exception):
                    await self.spool.discard(key)
                with contextlib.suppress(Exception):
                    await self.storage.delete(key)
            with contextlib.suppress(Exception):
                await self.db.delete_recording_rows([rec.id])  # and its key record
            raise
        self.counters.photos[kind] += 1
        view = photo_view(live.room.id, rec.id, kind, now, photo.width, photo.height, size,
                          snapshot_id)  # fmt: skip
        agent = live.conns.get("agent")
        if agent is not None:
            agent.send(M.photo(view))
        return view


def photo_view(
    session_id: str, photo_id: str, kind: str, taken_at: float, width: int | None,
    height: int | None, size: int, snapshot_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    from server.rooms.state import iso

    return {
        "id": photo_id, "kind": kind, "taken_at": iso(taken_at), "width": width,
        "height": height, "bytes": size, "snapshot_id": snapshot_id,
        "url": f"/api/sessions/{session_id}/photos/{photo_id}",
    }  # fmt: skip


# --- setup


async def _service(app: web.Application) -> AsyncIterator[None]:
    # Raises (and so stops the start) on RegionNotAllowed, KeyringError, MissingSecret.
    service = app[RECORDING]
    await service.start()
    yield
    await service.close()


def setup(app: web.Application) -> None:
    """The service and its lifecycle; server.recording.api.setup adds its routes too."""
    service = RecordingService(app)
    # Now, not at startup: missing production keys (MissingSecret) stop create_app, so
    # `serve` names them like every other missing secret.
    service.keyring = build_keyring(app[CONFIG], app[DATA_DIR])
    app[RECORDING] = service
    app.cleanup_ctx.append(_service)


# This feature's application key (docs/architecture.md).
RECORDING = web.AppKey("recording", RecordingService)
