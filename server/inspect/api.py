"""POST /api/sessions/{id}/inspect {"photo": PHOTO_ID}: read a stored still's codes and text.

The agent of the session only. The still is one the photos API lists (a snapshot, a
frozen frame saved as a snapshot, or an upload): decrypted, read in the inspect pool, and
answered with its findings and their boxes. Nothing read is stored; the audit log says
that this agent read this photo (`inspect.read`), never what was read.

POST /api/sessions/{id}/inspect/reference {"value": "..."}: what the agent chose to keep
(one finding's value) is appended to the session's reference (the ticket field, at most
128 characters): the one way something read is stored.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from recorder import RecordingError
from server.core.appkeys import AUDIT, CONFIG, DB
from server.core.db import User
from server.http.auth import error
from server.http.web_auth import USER_KEY, require_user
from server.inspect.pool import InspectPool, PoolBusy, PoolTimeout
from server.recording.service import RECORDING
from server.sessions.api import own_session

log = logging.getLogger(__name__)

PHOTO_KINDS = ("snapshot", "upload")
REFERENCE_MAX = 128  # the sessions.reference column (server/core/schema.py)
VALUE_MAX = 64
SEPARATOR = " · "


async def _audit(request: web.Request, obj: str, result: str) -> None:
    user: User = request[USER_KEY]
    try:
        await request.app[AUDIT].record(
            actor=user.username, role=user.role, action="inspect.read", object=obj,
            result=result,
        )  # fmt: skip
    except Exception:
        log.exception("audit record inspect.read failed")


async def _own_session(request: web.Request) -> tuple[Any, Any]:
    """The session row (this agent's own, else an audited 404: sessions.api.own_session)
    and the JSON body (None when it is not JSON): what both routes start with."""
    row = await own_session(request)
    try:
        body: Any = await request.json()
    except ValueError:
        body = None
    return row, body


@require_user("agent")
async def inspect_photo(request: web.Request) -> web.StreamResponse:
    db = request.app[DB]
    row, body = await _own_session(request)
    photo_id = body.get("photo") if isinstance(body, dict) else None
    if not isinstance(photo_id, str) or not 0 < len(photo_id) <= 64:
        return error(400, "bad_request", 'send {"photo": PHOTO_ID} (an id from the photos list)')
    rec = await db.get_recording(photo_id)
    if rec is None or rec["session_id"] != row["id"] or rec["kind"] not in PHOTO_KINDS:
        return error(404, "not_found", "no such photo")
    try:
        jpeg, _ = await request.app[RECORDING].read_photo(photo_id)
    except RecordingError as exc:
        log.error("photo %s cannot be read: %s", photo_id, exc)
        await _audit(request, photo_id, "failed")
        return error(500, "photo_unreadable", f"the photo cannot be decrypted: {exc}")
    # numpy, zxing-cpp and OpenCV load at the first read, not when the server starts.
    from server.inspect.read import InspectError, read_still

    pool = request.app[INSPECT]
    tesseract = request.app[CONFIG].inspect.tesseract
    try:
        reading = await pool.run(lambda: read_still(jpeg, pool.timeout_s, tesseract))
    except PoolBusy:
        await _audit(request, photo_id, "refused")
        return error(503, "inspect_busy", "every reader is busy: try again in a moment")
    except PoolTimeout:
        await _audit(request, photo_id, "failed")
        return error(504, "inspect_timeout", "reading this still took too long")
    except InspectError as exc:
        await _audit(request, photo_id, "failed")
        status = 504 if exc.code == "inspect_timeout" else 422
        return error(status, exc.code, exc.message)
    await _audit(request, photo_id, "ok")
    result = reading.as_dict()
    result.pop("timings_ms")  # for the CLI and the bench, not the console
    return web.json_response({"photo": photo_id, **result},
                             headers={"Cache-Control": "no-store"})  # fmt: skip


def appended(reference: str, value: str) -> str | None:
    """The reference with `value` added (not twice), or None when it would not fit."""
    parts = [p for p in reference.split(SEPARATOR) if p]
    if value in parts:
        return reference
    out = SEPARATOR.join([*parts, value])
    return out if len(out) <= REFERENCE_MAX else None


@require_user("agent")
async def add_to_reference(request: web.Request) -> web.StreamResponse:
    user: User = request[USER_KEY]
    db = request.app[DB]
    row, body = await _own_session(request)
    value = body.get("value") if isinstance(body, dict) else None
    if isinstance(value, str):
        value = " ".join(value.split())  # no control characters, newlines or runs of spaces
    if not isinstance(value, str) or not 0 < len(value) <= VALUE_MAX or SEPARATOR in value:
        return error(400, "bad_value", f"send {{\"value\": ...}}: 1-{VALUE_MAX} characters")
    reference = appended(row["reference"] or "", value)
    if reference is None:
        return error(409, "reference_full", f"the reference would be over {REFERENCE_MAX} "
                     "characters: copy the value instead")  # fmt: skip
    if reference == (row["reference"] or ""):
        return web.json_response({"reference": reference})  # already there: nothing changes
    await db.update_session(row["id"], reference=reference)
    try:
        await request.app[AUDIT].record(actor=user.username, role=user.role,
                                        action="session.reference", object=row["id"])  # fmt: skip
    except Exception:
        log.exception("audit record session.reference failed")
    return web.json_response({"reference": reference})


async def _pool(app: web.Application) -> Any:
    yield
    app[INSPECT].close()


def setup(app: web.Application) -> None:
    """The pool and the route (called by create_app, after recording.setup)."""
    ic = app[CONFIG].inspect
    app[INSPECT] = InspectPool(ic.workers, ic.max_waiting, ic.timeout_s)
    app.cleanup_ctx.append(_pool)
    app.router.add_post("/api/sessions/{session_id}/inspect", inspect_photo)
    app.router.add_post("/api/sessions/{session_id}/inspect/reference", add_to_reference)


# This feature's application key (docs/architecture.md).
INSPECT = web.AppKey("inspect", InspectPool)
