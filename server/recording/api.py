"""HTTP side of recording and photos (docs/protocol.md, "Recording, snapshots and photos").

Agent (login + CSRF, own sessions only):
    POST /api/sessions/{id}/recording   {"action": "start" | "stop"}
    GET  /api/sessions/{id}/recordings  the session's recordings and photos
    POST /api/sessions/{id}/snapshot    ask the caller's page for a still
    GET  /api/sessions/{id}/photos      the session's photos
    GET  /api/sessions/{id}/photos/{p}  one photo, decrypted on the fly (image/jpeg)
Caller (the device cookie of the one-time link, same-origin only):
    POST /api/caller/photos[?snapshot=ID]   the image as the request body
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from recorder import RecordingError
from server.cluster.forward import owned_room
from server.core.appkeys import AUDIT, CONFIG, DB, ORIGINS
from server.core.db import User
from server.http.auth import error, origin_allowed
from server.http.web_auth import USER_KEY, require_user
from server.observe.metrics import METRICS
from server.recording import metrics as recording_metrics
from server.recording.photos import PhotoRejected
from server.recording.service import RECORDING, RecordingService, RecordingStartError, photo_view
from server.recording.service import setup as service_setup
from server.rooms.manager import LiveRoom
from server.rooms.state import iso
from server.sessions.api import own_session
from server.sessions.caller import device_session

log = logging.getLogger(__name__)

PHOTO_KINDS = ("snapshot", "upload")
READ_CHUNK = 256 * 1024


async def _audit(request: web.Request, action: str, obj: str, result: str = "ok") -> None:
    user: User | None = request.get(USER_KEY)
    actor, role = (user.username, user.role) if user else ("caller", "caller")
    audit = request.app.get(AUDIT)
    if audit is None:
        return
    try:
        await audit.record(actor=actor, role=role, action=action, object=obj, result=result)
    except Exception:
        log.exception("audit record %s failed", action)


def recording_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "kind": row["kind"], "status": row["status"],
        "started_at": iso(row["started_at"]), "ended_at": iso(row["ended_at"]),
        "storage_key": row["storage_key"], "bytes": row["bytes"], "segments": row["segments"],
        "frames": row["frames"], "container": row["container"], "error": row["error"],
    }  # fmt: skip


# --- agent


@require_user("agent")
async def recording_action(request: web.Request) -> web.StreamResponse:
    row = await own_session(request)  # this agent's, else an audited 404
    try:
        body = await request.json()
    except ValueError:
        body = None
    action = body.get("action") if isinstance(body, dict) else None
    if action not in ("start", "stop"):
        return error(400, "bad_action", 'send {"action": "start"} or {"action": "stop"}')
    live = await owned_room(request, row["id"])
    if live is None:
        return error(409, "room_ended", "this session has ended")
    service = request.app[RECORDING]
    user: User = request[USER_KEY]
    try:
        if action == "start":
            state = await service.start_recording(live, (user.username, user.role))
        else:
            state = await service.stop_recording(live)
    except RecordingStartError as exc:
        await _audit(request, f"recording.{action}", row["id"], result="refused")
        return error(exc.status, exc.code, exc.message)
    await _audit(request, f"recording.{action}", state.get("id") or row["id"])
    return web.json_response({"recording": state})


@require_user("agent")
async def list_recordings(request: web.Request) -> web.StreamResponse:
    row = await own_session(request)  # this agent's, else an audited 404
    rows = await request.app[DB].list_recordings(row["id"])
    mode = request.app[CONFIG].recording.mode
    return web.json_response({"mode": mode, "recordings": [recording_view(r) for r in rows]})


@require_user("agent")
async def request_snapshot(request: web.Request) -> web.StreamResponse:
    row = await own_session(request)  # this agent's, else an audited 404
    live = await owned_room(request, row["id"])
    if live is None:
        return error(409, "room_ended", "this session has ended")
    try:
        request_id = request.app[RECORDING].request_snapshot(live)
    except RecordingStartError as exc:
        return error(exc.status, exc.code, exc.message)
    await _audit(request, "snapshot.request", row["id"])
    return web.json_response({"snapshot": {"id": request_id}}, status=202)


@require_user("agent")
async def list_photos(request: web.Request) -> web.StreamResponse:
    row = await own_session(request)  # this agent's, else an audited 404
    rows = await request.app[DB].list_recordings(row["id"], kinds=PHOTO_KINDS)
    photos = [photo_view(row["id"], r["id"], r["kind"], r["started_at"], None, None, r["bytes"])
              for r in rows]  # fmt: skip
    return web.json_response({"photos": photos})


@require_user("agent")
async def get_photo(request: web.Request) -> web.StreamResponse:
    row = await own_session(request)  # this agent's, else an audited 404
    photo_id = request.match_info["photo_id"]
    rec = await request.app[DB].get_recording(photo_id)
    if rec is None or rec["session_id"] != row["id"] or rec["kind"] not in PHOTO_KINDS:
        return error(404, "not_found", "no such photo")
    try:
        jpeg, _ = await request.app[RECORDING].read_photo(photo_id)
    except RecordingError as exc:
        log.error("photo %s cannot be read: %s", photo_id, exc)
        await _audit(request, "photo.view", photo_id, result="failed")
        return error(500, "photo_unreadable", f"the photo cannot be decrypted: {exc}")
    await _audit(request, "photo.view", photo_id)
    return web.Response(
        body=jpeg,
        content_type="image/jpeg",
        headers={"Cache-Control": "no-store", "Content-Disposition": "inline"},
    )


# --- caller


async def _caller_room(request: web.Request) -> LiveRoom | web.Response:
    if not origin_allowed(request, request.app[ORIGINS]):
        return error(403, "origin_not_allowed", "request from another site refused")
    session_id = await device_session(request)
    if session_id is None:
        return error(401, "not_authenticated", "open the link from your SMS again")
    live = await owned_room(request, session_id)
    if live is None or live.room.ended:
        return error(410, "room_ended", "this session has ended")
    if not live.room.notice_accepted:
        return error(403, "notice_not_accepted", "accept the notice before sending photos")
    return live


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body, at most `limit` bytes (aiohttp's client_max_size is far smaller and not
    meant for photos): refused as soon as it is known to be larger."""
    mb = limit / (1024 * 1024)
    too_large = PhotoRejected(413, "too_large", f"the photo is larger than {mb:.0f} MB")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks, size = [], 0
    while chunk := await request.content.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def caller_upload(request: web.Request) -> web.StreamResponse:
    found = await _caller_room(request)
    if isinstance(found, web.Response):
        return found
    live = found
    service = request.app[RECORDING]
    snapshot_id = request.query.get("snapshot")
    kind = "snapshot" if snapshot_id else "upload"
    if snapshot_id and not service.take_snapshot_request(live, snapshot_id):
        service.counters.photos_refused["snapshot_unknown"] += 1
        return error(409, "snapshot_unknown", "this snapshot was not asked for, or it expired")
    try:
        service.reserve_photo(live)  # before any await: parallel uploads count at once
    except PhotoRejected as exc:
        return _refused(service, live, kind, snapshot_id, exc)
    try:
        data = await _read_body(request, request.app[CONFIG].recording.photo_max_bytes)
        photo = await service.clean(data)  # in the image pool, within its memory share
    except PhotoRejected as exc:
        service.release_photo(live)
        return _refused(service, live, kind, snapshot_id, exc)
    except BaseException:  # the client went away mid-body, or the server is stopping
        service.release_photo(live)
        raise
    try:
        view = await service.store_photo(live, photo, kind, snapshot_id)
    except Exception as exc:
        service.release_photo(live)
        log.exception("room %s: storing a photo failed", live.room.id)
        if snapshot_id:
            service.tell_snapshot_failed(live, snapshot_id, "storage_unavailable")
        return error(503, "storage_unavailable", f"the photo could not be stored: {exc}")
    except BaseException:
        service.release_photo(live)
        raise
    await _audit(request, f"photo.{kind}", view["id"])
    return web.json_response({"photo": {k: view[k] for k in ("id", "kind", "taken_at",
                                                            "width", "height")}},
                             status=201)  # fmt: skip


def _refused(
    service: RecordingService, live: LiveRoom, kind: str, snapshot_id: str | None,
    exc: PhotoRejected,
) -> web.Response:  # fmt: skip
    service.counters.photos_refused[exc.code] += 1
    log.info("room %s: %s refused: %s", live.room.id, kind, exc.code)
    if snapshot_id:
        service.tell_snapshot_failed(live, snapshot_id, exc.code)
    return error(exc.status, exc.code, exc.message)


def setup(app: web.Application) -> None:
    """Recording, snapshots and photo uploads: the service, then its routes."""
    service_setup(app)
    if METRICS in app:  # this feature's families (server/recording/metrics.py)
        service = app[RECORDING]
        app[METRICS].add_collector(lambda: recording_metrics.collect_metrics(service))
    r = app.router
    r.add_post("/api/sessions/{session_id}/recording", recording_action)
    r.add_get("/api/sessions/{session_id}/recordings", list_recordings)
    r.add_post("/api/sessions/{session_id}/snapshot", request_snapshot)
    r.add_get("/api/sessions/{session_id}/photos", list_photos)
    r.add_get("/api/sessions/{session_id}/photos/{photo_id}", get_photo)
    r.add_post("/api/caller/photos", caller_upload)
