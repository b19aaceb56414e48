"""The data-protection officer's page and API (role `dpo` only; docs/security.md).

    GET  /dpo                              the page (web/dpo.html; it asks for a login)
    POST /api/dpo/search                   {"phone"} -> the subject's sessions
    POST /api/dpo/export                   {"phone"} -> one ZIP archive (records, media, manifest)
    POST /api/dpo/erase                    {"phone", "confirm"} -> what was deleted
    POST /api/dpo/objection                {"phone", "do_not_record": bool}
    POST /api/dpo/sessions/{id}/rectify    {"phone"?, "reference"?, "reason"}
    GET  /api/dpo/audit[?limit=&before=]   the audit log, newest first, and its verification

Phone numbers travel in request bodies, never in URLs (URLs end up in access logs). Every
request is an audit event naming the subject by an HMAC of the number (server/privacy/subjects.py),
with the DPO's optional `reason` (e.g. the request's ticket number).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from server.core.appkeys import AUDIT, CLOCK, CONFIG, DATA_DIR, DB, SECRETS
from server.core.db import User
from server.http.auth import error
from server.http.web_auth import USER_KEY, require_user
from server.paths import WEB_DIR
from server.privacy.retention import server_media
from server.privacy.subjects import (
    SubjectError,
    agent_names,
    audit_subject,
    erase_subject,
    export_subject,
    parse_phone,
    phone_key,
    rectify,
    session_summary,
    set_do_not_record,
    subject_ref,
    subject_sessions,
)
from server.rooms.manager import ROOMS
from server.rooms.state import iso
from server.sessions.api import session_view


async def dpo_page(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(WEB_DIR / "dpo.html")
    response.headers["Cache-Control"] = "no-store"
    return response


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SubjectError(400, "bad_request", "send a JSON object")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 200:
        raise SubjectError(400, "bad_reason", "the reason may have at most 200 characters")
    return body


def _phone(request: web.Request, body: dict[str, Any]) -> str:
    return parse_phone(body.get("phone"), request.app[CONFIG].session.default_country_code)


def _actor(request: web.Request) -> tuple[str, str]:
    user: User = request[USER_KEY]
    return user.username, user.role


def _handler(fn: Any) -> Any:
    """Turn SubjectError into the JSON error answer."""

    async def inner(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except SubjectError as exc:
            return error(exc.status, exc.code, exc.message)

    inner.__name__ = fn.__name__
    inner.__doc__ = fn.__doc__
    return inner


@require_user("dpo")
@_handler
async def search(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    phone = _phone(request, body)
    app = request.app
    key = app[SECRETS].server_key
    rows = await subject_sessions(app[DB], phone)
    names = await agent_names(app[DB], rows)
    await audit_subject(app[AUDIT], _actor(request), "subject.search", key, phone,
                        reason=body.get("reason", ""))  # fmt: skip
    return web.json_response({
        "phone": phone,
        "do_not_record": await app[DB].has_objection(phone_key(key, phone)),
        "sessions": [session_summary(r, names[r["agent_id"]]) for r in rows],
    })  # fmt: skip


@require_user("dpo")
@_handler
async def export(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    phone = _phone(request, body)
    app = request.app
    key = app[SECRETS].server_key
    actor = _actor(request)
    ref = subject_ref(key, phone)
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="export-",
                                          dir=app[DATA_DIR]))  # fmt: skip
    try:
        name = f"{ref.replace(':', '-')[:24]}-{time.strftime('%Y%m%d', time.gmtime())}.zip"
        try:
            result = await export_subject(
                app[DB], server_media(app), phone, folder / name, server_key=key,
                now=app[CLOCK](), requested_by=f"{actor[0]} ({actor[1]})",
            )  # fmt: skip
        except Exception:
            await audit_subject(app[AUDIT], actor, "subject.export", key, phone, "failed")
            raise
        for rid in result.recording_ids:  # every decryption is an audit event of its own
            await app[AUDIT].record(actor=actor[0], role=actor[1], action="recording.export",
                                    object=rid, reason=ref)  # fmt: skip
        reason = f"{result.sessions} sessions, {len(result.files)} files"
        if body.get("reason"):
            reason += f"; {body['reason']}"
        await audit_subject(app[AUDIT], actor, "subject.export", key, phone, reason=reason)
        response = web.StreamResponse(headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        })  # fmt: skip
        response.content_length = result.path.stat().st_size
        await response.prepare(request)
        fh = await asyncio.to_thread(open, result.path, "rb")
        try:  # all of it is sent before the folder (plaintext) goes
            while chunk := await asyncio.to_thread(fh.read, 256 * 1024):
                await response.write(chunk)
        finally:
            fh.close()
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


@require_user("dpo")
@_handler
async def erase(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    phone = _phone(request, body)
    cc = request.app[CONFIG].session.default_country_code
    confirm = body.get("confirm")
    try:
        confirmed = isinstance(confirm, str) and parse_phone(confirm, cc) == phone
    except SubjectError:
        confirmed = False
    if not confirmed:
        raise SubjectError(400, "not_confirmed", "type the phone number again in 'confirm'")
    app = request.app
    key = app[SECRETS].server_key
    actor = _actor(request)
    try:
        erased = await erase_subject(app[DB], server_media(app), phone)
    except SubjectError as exc:
        await audit_subject(app[AUDIT], actor, "subject.erase", key, phone, "refused", exc.code)
        raise
    except Exception:
        await audit_subject(app[AUDIT], actor, "subject.erase", key, phone, "failed")
        raise
    reason = (f"{erased.sessions} sessions, {erased.recordings} recordings/photos, "
              f"{erased.objects} objects")  # fmt: skip
    if body.get("reason"):
        reason += f"; {body['reason']}"
    await audit_subject(app[AUDIT], actor, "subject.erase", key, phone, reason=reason)
    return web.json_response({"erased": {"sessions": erased.sessions,
                                         "recordings": erased.recordings,
                                         "objects": erased.objects}})  # fmt: skip


@require_user("dpo")
@_handler
async def objection(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    phone = _phone(request, body)
    flag = body.get("do_not_record")
    if not isinstance(flag, bool):
        raise SubjectError(400, "bad_request", "'do_not_record' must be true or false")
    app = request.app
    key = app[SECRETS].server_key
    await set_do_not_record(app[DB], key, phone, flag, app[CLOCK]())
    reason = "do_not_record " + ("on" if flag else "off")
    if body.get("reason"):
        reason += f"; {body['reason']}"
    await audit_subject(app[AUDIT], _actor(request), "subject.objection", key, phone,
                        reason=reason)  # fmt: skip
    return web.json_response({"phone": phone, "do_not_record": flag})


@require_user("dpo")
@_handler
async def rectify_session(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    reason = body.get("reason", "").strip()
    if not reason:
        raise SubjectError(400, "bad_reason", "say why (e.g. the request's reference)")
    app = request.app
    session_id = request.match_info["session_id"]
    row, changed = await rectify(
        app[DB], session_id, phone=body.get("phone"), reference=body.get("reference"),
        default_country_code=app[CONFIG].session.default_country_code,
    )  # fmt: skip
    user: User = request[USER_KEY]
    await app[AUDIT].record(
        actor=user.username, role=user.role, action="session.rectify", object=session_id,
        reason=f"changed: {', '.join(changed) or 'nothing'}; {reason}",
    )  # fmt: skip
    live = app[ROOMS].get(session_id)
    return web.json_response({"session": session_view(row, live.room if live else None),
                              "changed": changed})  # fmt: skip


@require_user("dpo")
@_handler
async def audit_view(request: web.Request) -> web.StreamResponse:
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 500)
        before = int(request.query["before"]) if "before" in request.query else None
    except ValueError:
        raise SubjectError(400, "bad_request", "limit and before are numbers") from None
    audit = request.app[AUDIT]
    records = await audit.page(limit, before)
    # From the newest verified anchor on, not the whole chain (server/core/audit.py): the
    # full check is `callassist audit verify`.
    verdict = await audit.verify_recent()
    user: User = request[USER_KEY]
    await audit.record(actor=user.username, role=user.role, action="audit.view")
    more = len(records) == limit and records[-1]["seq"] > verdict.pruned_through + 1
    return web.json_response({
        "records": [{**{k: r[k] for k in ("seq", "actor", "role", "action", "object", "reason",
                                           "result", "hash")}, "at": iso(r["at"])}
                    for r in records],
        "next_before": records[-1]["seq"] if more else None,
        "verify": {"ok": verdict.ok, "count": verdict.count, "head": verdict.head,
                   "problem": verdict.problem, "pruned_through": verdict.pruned_through,
                   "from_seq": verdict.from_seq, "rows_read": verdict.rows_read},
    })  # fmt: skip


async def _remove_leftovers(app: web.Application) -> None:
    """An export interrupted by a crash leaves decrypted files behind: remove them."""
    for folder in app[DATA_DIR].glob("export-*"):
        await asyncio.to_thread(shutil.rmtree, folder, True)


def setup(app: web.Application) -> None:
    app.on_startup.append(_remove_leftovers)
    r = app.router
    r.add_get("/dpo", dpo_page)
    r.add_post("/api/dpo/search", search)
    r.add_post("/api/dpo/export", export)
    r.add_post("/api/dpo/erase", erase)
    r.add_post("/api/dpo/objection", objection)
    r.add_post("/api/dpo/sessions/{session_id}/rectify", rectify_session)
    r.add_get("/api/dpo/audit", audit_view)
