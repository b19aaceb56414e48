"""The toolkit over HTTP (docs/protocol.md, "Toolkit over HTTP"): uploads of freeze frames,
pushed images and photo-burst stills, the room's blobs, tutorials, the kept chat, and the
agent's annotated snapshot; `setup` creates the toolkit and adds these routes."""

from __future__ import annotations

import logging

from aiohttp import web

from server.cluster.forward import owned_room
from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB, ORIGINS
from server.http.auth import error, origin_allowed
from server.http.web_auth import USER_KEY, current_user, deny, require_user
from server.recording.photos import PhotoRejected
from server.recording.service import RECORDING
from server.rooms.manager import ROOMS, LiveRoom
from server.rooms.state import iso
from server.sessions.caller import device_session
from server.toolkit.service import TOOLKIT, Toolkit, _sniff, blob_url

log = logging.getLogger(__name__)


async def _caller_room(request: web.Request) -> LiveRoom | None:
    session_id = await device_session(request)
    live = await owned_room(request, session_id) if session_id else None
    return live if live is not None and not live.room.ended else None


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    if request.content_length is not None and request.content_length > limit:
        return None
    data = bytearray()
    while chunk := await request.content.read(65_536):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


async def _store_upload(request: web.Request, live: LiveRoom, kind: str) -> web.Response:
    cfg = request.app[CONFIG].toolkit
    limit = cfg.max_image_bytes if kind == "image" else cfg.max_frame_bytes
    data = await _read_limited(request, limit)
    if data is None:
        return error(413, "too_large", f"the image may have at most {limit} bytes")
    content_type = _sniff(data)
    if content_type is None:
        return error(415, "bad_image", "send a JPEG, PNG or WebP image")
    blob = request.app[TOOLKIT].store_blob(live.room.id, kind, data, content_type)
    return web.json_response(
        {"blob": {"id": blob.id, "kind": kind, "src": blob_url(live.room.id, blob.id)}},
        status=201,
    )


async def _own_live_room(request: web.Request) -> LiveRoom | web.Response:
    live = await owned_room(request, request.match_info["session_id"])
    if live is None or live.room.agent_id != request[USER_KEY].id:
        # "Not yours", "unknown" and "ended" look the same from outside (and are audited).
        return await deny(request, request[USER_KEY], 404, "not_found", "no such live session")
    return live


@require_user("agent")
async def agent_upload(request: web.Request) -> web.StreamResponse:
    """POST /api/sessions/{id}/blobs?kind=frame|image: a freeze frame or an image to push."""
    kind = request.query.get("kind")
    if kind not in ("frame", "image"):
        return error(400, "bad_request", "kind must be 'frame' or 'image'")
    live = await _own_live_room(request)
    if isinstance(live, web.Response):
        return live
    return await _store_upload(request, live, kind)


async def caller_upload(request: web.Request) -> web.StreamResponse:
    """POST /api/caller/blobs?kind=still: a photo-burst still from the caller's camera."""
    if not origin_allowed(request, request.app[ORIGINS]):
        return error(403, "origin_not_allowed", "request from another site refused")
    if request.query.get("kind") != "still":
        return error(400, "bad_request", "kind must be 'still'")
    live = await _caller_room(request)
    if live is None:
        return error(401, "not_authenticated", "open the link from your SMS again")
    if not live.room.notice_accepted:
        return error(403, "notice_not_accepted", "accept the notice first")
    return await _store_upload(request, live, "still")


async def get_blob(request: web.Request) -> web.StreamResponse:
    """GET /api/rooms/{room}/blobs/{id}: for the room's agent and caller only."""
    room_id = request.match_info["room_id"]
    live = await owned_room(request, room_id)
    allowed = False
    user = await current_user(request)
    if live is not None:
        if user is not None and user.id == live.room.agent_id:
            allowed = True
        else:
            mine = await _caller_room(request)
            allowed = mine is not None and mine.room.id == room_id
    blob = request.app[TOOLKIT].blob(room_id, request.match_info["blob_id"]) if allowed else None
    if blob is None:
        if user is not None and not allowed:  # staff asking for another room's image
            return await deny(request, user, 404, "not_found", "no such image")
        return error(404, "not_found", "no such image")
    return web.Response(
        body=blob.data,
        content_type=blob.content_type,
        headers={"Cache-Control": "private, no-store", "Content-Disposition": "inline"},
    )


@require_user()
async def list_tutorials(request: web.Request) -> web.StreamResponse:
    return web.json_response({"tutorials": request.app[TOOLKIT].list_tutorials()})


async def _tutorial_reader(request: web.Request) -> bool:
    """Tutorials are for signed-in staff and for callers in a live room."""
    return await current_user(request) is not None or await _caller_room(request) is not None


async def get_tutorial(request: web.Request) -> web.StreamResponse:
    tutorial_id = request.match_info["tutorial_id"]
    tut = request.app[TOOLKIT].load_tutorial(tutorial_id)
    if tut is None or not await _tutorial_reader(request):
        return error(404, "not_found", "no such tutorial")
    for step in tut["steps"]:
        if step["image"]:
            step["image"] = f"/api/tutorials/{tutorial_id}/{step['image']}"
    return web.json_response({"id": tutorial_id, **tut})


async def tutorial_image(request: web.Request) -> web.StreamResponse:
    toolkit = request.app[TOOLKIT]
    tutorial_id = request.match_info["tutorial_id"]
    name = request.match_info["name"]
    tut = toolkit.load_tutorial(tutorial_id)
    # Only the images a tutorial names are served: no path can reach anything else.
    if (
        tut is None
        or name not in {s["image"] for s in tut["steps"]}
        or not await _tutorial_reader(request)
    ):
        return error(404, "not_found", "no such image")
    response = web.FileResponse(toolkit.tutorials_root() / tutorial_id / name)
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


@require_user("agent")
async def session_chat(request: web.Request) -> web.StreamResponse:
    """GET /api/sessions/{id}/chat: the chat kept in the session record (keep_chat)."""
    db = request.app[DB]
    row = await db.get_session(request.match_info["session_id"])
    if row is None or row["agent_id"] != request[USER_KEY].id:
        return await deny(request, request[USER_KEY], 404, "not_found", "no such session")
    kept = request.app[CONFIG].toolkit.keep_chat
    rows = await db.chat_messages(row["id"]) if kept else []
    messages = [
        {"n": r["n"], "from": r["sender"], "text": r["text"], "at": iso(r["at"])} for r in rows
    ]
    return web.json_response({"kept": kept, "messages": messages})


@require_user("agent")
async def save_snapshot(request: web.Request) -> web.StreamResponse:
    """POST /api/sessions/{id}/freeze/snapshot: store the annotated still (a JPEG the agent's
    page composed from the frozen frame and its marks) like every other snapshot."""
    live = await _own_live_room(request)
    if isinstance(live, web.Response):
        return live
    service = request.app.get(RECORDING)
    if service is None:
        return error(501, "snapshots_unavailable", "snapshot storage is not set up here")

    data = await _read_limited(request, request.app[CONFIG].toolkit.max_image_bytes)
    if data is None:
        return error(413, "too_large", "the snapshot is too large")
    try:
        service.reserve_photo(live)  # before any await (server/recording/service.py)
    except PhotoRejected as exc:
        return error(exc.status, exc.code, exc.message)
    try:
        photo = await service.clean(data)  # the one image pool, within its memory share
        view = await service.store_photo(live, photo, "snapshot")
    except PhotoRejected as exc:
        service.release_photo(live)
        return error(exc.status, exc.code, exc.message)
    except Exception as exc:
        service.release_photo(live)
        log.exception("room %s: storing an annotated snapshot failed", live.room.id)
        return error(503, "storage_unavailable", f"the snapshot could not be stored: {exc}")
    user = request[USER_KEY]
    audit = request.app.get(AUDIT)
    if audit is not None:
        await audit.record(
            actor=user.username, role=user.role, action="photo.snapshot", object=view["id"]
        )
    return web.json_response({"photo": view}, status=201)


def setup(app: web.Application) -> None:
    """Create the toolkit, follow the rooms, add the routes (called by create_app)."""
    toolkit = Toolkit(app[CONFIG].toolkit, app[DB], app[CLOCK])
    app[TOOLKIT] = toolkit
    app[ROOMS].listen(toolkit.on_room_event)
    r = app.router
    r.add_post("/api/sessions/{session_id}/blobs", agent_upload)
    r.add_post("/api/sessions/{session_id}/freeze/snapshot", save_snapshot)
    r.add_get("/api/sessions/{session_id}/chat", session_chat)
    r.add_post("/api/caller/blobs", caller_upload)
    r.add_get("/api/rooms/{room_id}/blobs/{blob_id}", get_blob)
    r.add_get("/api/tutorials", list_tutorials)
    r.add_get("/api/tutorials/{tutorial_id}", get_tutorial)
    r.add_get("/api/tutorials/{tutorial_id}/{name}", tutorial_image)
