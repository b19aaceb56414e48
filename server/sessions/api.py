"""REST API for the agent console: support sessions, their one-time links and SMS."""

from __future__ import annotations

import base64
import io
import logging
import secrets
from typing import Any

import segno
from aiohttp import web

from server.cluster.forward import owned_room, place_session, unavailable
from server.cluster.redis import ClusterUnavailable
from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB
from server.core.db import User
from server.core.phone import BadPhone, mask, normalise
from server.http.auth import error
from server.http.web_auth import USER_KEY, deny, require_user
from server.rooms.manager import ROOMS
from server.rooms.state import Room, iso
from server.sessions.sms import DEFAULT_LANG, LANGS, SMS, SmsError, compose, previews
from server.sessions.sms_policy import SMS_BUDGET, refusal

log = logging.getLogger(__name__)


def new_session_id() -> str:
    return "s-" + base64.b32encode(secrets.token_bytes(10)).decode().lower().rstrip("=")


def new_link_token() -> str:
    # 256 bits from the OS CSPRNG: guessing is hopeless, and only the hash is stored.
    return secrets.token_urlsafe(32)


def session_view(row: dict[str, Any], room: Room | None) -> dict[str, Any]:
    state = room.state if room else row["state"]
    return {
        "id": row["id"],
        "phone": row["phone"],
        "phone_masked": mask(row["phone"]),
        "reference": row["reference"],
        "state": state,
        "caller_status": room.caller_status if room else row["caller_status"],
        "device_type": row["device_type"] or None,
        "created_at": iso(row["created_at"]),
        "ended_at": iso(row["ended_at"]),
        "end_reason": row["end_reason"],
    }


def qr_svg(link: str) -> str:
    out = io.BytesIO()
    segno.make(link, error="m").save(out, kind="svg", scale=6, border=2, xmldecl=False)
    return out.getvalue().decode()


async def audit(request: web.Request, action: str, obj: str, result: str = "ok") -> None:
    user: User = request[USER_KEY]
    await request.app[AUDIT].record(
        actor=user.username, role=user.role, action=action, object=obj, result=result
    )


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": {"code": "bad_request", "message": "send a JSON object"}}',
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"error": {"code": "bad_request", "message": "send a JSON object"}}',
            content_type="application/json",
        )
    return body


async def _issue_link(request: web.Request, session_id: str) -> dict[str, Any]:
    cfg = request.app[CONFIG]
    now = request.app[CLOCK]()
    token = new_link_token()
    await request.app[DB].add_link(token, session_id, now, cfg.session.link_ttl_s)
    link = cfg.http.public_url.rstrip("/") + "/j/" + token
    return {
        "link": link,
        "qr_svg": qr_svg(link),
        "expires_at": iso(now + cfg.session.link_ttl_s),
        # Encoding and segment count of the SMS per language, shown before sending.
        "sms": previews(cfg.session.operator_name, link),
    }


async def own_session(request: web.Request) -> dict[str, Any]:
    """The session of the URL held by the logged-in agent; else a 404 (audited), raised."""
    user: User = request[USER_KEY]
    row = await request.app[DB].get_session(request.match_info["session_id"])
    if row is None or row["agent_id"] != user.id:
        # The same answer for "not yours" and "does not exist": ids reveal nothing. Both
        # are denied requests, and so audit events.
        await deny(request, user, 404, "not_found", "no such session")
        raise web.HTTPNotFound(
            text='{"error": {"code": "not_found", "message": "no such session"}}',
            content_type="application/json",
        )
    return row


@require_user("agent")
async def create_session(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    body = await _json(request)
    raw_phone = body.get("phone")
    reference = body.get("reference") or ""
    if not isinstance(raw_phone, str):
        return error(400, "bad_phone", "enter the caller's phone number")
    if not isinstance(reference, str) or len(reference) > 128:
        return error(400, "bad_reference", "the reference may have at most 128 characters")
    try:
        phone = normalise(raw_phone, cfg.session.default_country_code)
    except BadPhone as exc:
        return error(400, "bad_phone", str(exc))
    placed = await place_session(request)  # a cluster: maybe another node, or no capacity
    if placed is not None:
        return placed
    user: User = request[USER_KEY]
    cap = cfg.session.max_live_rooms_per_agent
    # Counted in the database, not this node's rooms: the cap holds across a cluster.
    if await request.app[DB].count_open_sessions(user.id) >= cap:
        return error(
            429, "too_many_rooms",
            f"you have {cap} live sessions (session.max_live_rooms_per_agent); end one first",
        )  # fmt: skip
    now = request.app[CLOCK]()
    session_id = new_session_id()
    row = {
        "id": session_id,
        "agent_id": user.id,
        "phone": phone,
        "reference": reference.strip(),
        "state": "waiting",
        "caller_status": "link_sent",
        "device_type": "",
        "notice_version": "",
        "created_at": now,
    }
    await request.app[DB].add_session(**row)
    room = Room(
        id=session_id,
        agent_id=user.id,
        agent_name=user.username,
        created_at=now,
        last_activity=now,
    )
    try:
        await request.app[ROOMS].open(room)
    except ClusterUnavailable:
        # Redis went between placement and claim: the record must not stay "waiting".
        await request.app[DB].update_session(
            session_id, state="ended", caller_status="ended", ended_at=now,
            end_reason="cluster_unavailable",
        )  # fmt: skip
        return unavailable()
    link = await _issue_link(request, session_id)
    full = await request.app[DB].get_session(session_id)
    assert full is not None
    log.info("agent %s created session %s for %s", user.username, session_id, mask(phone))
    await audit(request, "session.create", session_id)
    return web.json_response({"session": session_view(full, room), **link}, status=201)


@require_user("agent")
async def list_sessions(request: web.Request) -> web.StreamResponse:
    user: User = request[USER_KEY]
    rooms = request.app[ROOMS]
    rows = await request.app[DB].list_sessions(user.id)
    views = []
    for row in rows:
        live = rooms.get(row["id"])
        views.append(session_view(row, live.room if live else None))
    return web.json_response({"sessions": views})


@require_user("agent")
async def get_session(request: web.Request) -> web.StreamResponse:
    row = await own_session(request)
    live = await owned_room(request, row["id"])
    return web.json_response({"session": session_view(row, live.room if live else None)})


@require_user("agent")
async def new_link(request: web.Request) -> web.StreamResponse:
    row = await own_session(request)
    live = await owned_room(request, row["id"])
    if live is None:
        return error(409, "room_ended", "this session has ended; start a new one")
    # Also after the caller opened the link (a lost tab in another browser, cookies
    # cleared): the new link revokes the old one, the session stays the same.
    await audit(request, "link.new", row["id"])
    return web.json_response(await _issue_link(request, row["id"]))


@require_user("agent")
async def send_sms(request: web.Request) -> web.StreamResponse:
    row = await own_session(request)
    body = await _json(request)
    link = body.get("link")
    cfg = request.app[CONFIG]
    prefix = cfg.http.public_url.rstrip("/") + "/j/"
    db = request.app[DB]
    now = request.app[CLOCK]()
    # Only the session's own, still valid link can be sent: the endpoint cannot be used to
    # send arbitrary text to arbitrary numbers.
    if (
        not isinstance(link, str)
        or not link.startswith(prefix)
        or not await db.link_matches(link[len(prefix) :], row["id"], now)
    ):
        return error(400, "bad_link", "this link is not this session's current link")
    lang = body.get("lang", DEFAULT_LANG)
    if lang not in LANGS:
        return error(400, "bad_lang", f"the SMS language must be one of {', '.join(LANGS)}")
    why = refusal(row["phone"], cfg.sms.allowed_countries, cfg.sms.allowed_types)
    if why:
        await audit(request, "sms.send", row["id"], result="refused")
        return error(400, "sms_not_allowed", why)
    why = await request.app[SMS_BUDGET].check(row["id"], row["agent_id"], now)
    if why:
        return error(429, "rate_limited", why)
    sms = compose(lang, cfg.session.operator_name, link)
    try:
        await request.app[SMS].send(row["phone"], sms.text)
    except SmsError as exc:
        await audit(request, "sms.send", row["id"], result="failed")
        return error(502, "sms_failed", str(exc))
    await db.update_session(row["id"], link_sent_at=now)
    await audit(request, "sms.send", row["id"])
    return web.json_response({"sms": {"status": "sent", "to": mask(row["phone"]), **sms.view()}})


@require_user("agent")
async def end_session(request: web.Request) -> web.StreamResponse:
    row = await own_session(request)
    await owned_room(request, row["id"])  # held by another node: it ends the room
    await request.app[ROOMS].end(row["id"], "agent_ended")
    await audit(request, "session.end", row["id"])
    row = await request.app[DB].get_session(row["id"])
    assert row is not None
    return web.json_response({"session": session_view(row, None)})
