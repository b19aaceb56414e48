"""Staff sockets of a room: a supervisor who watches silently (`/ws/watch/{room}`,
docs/protocol.md, "supervisor"), and staff who join visibly (docs/protocol.md, "Team").

A supervisor joins from the ops console (`/ws/join/{room}`); an expert through a one-time
staff link the agent made (`/x/<token>`, then `/ws/expert/{room}`). The holder hands the
session over (`POST /api/sessions/{id}/hand-over`). The socket is then served by
the same `serve` loop as every other (server/signalling/endpoints.py), as role `staff`;
the room's side (who is told, in which order; dismissal) is in server/rooms/manager.py.
"""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from server.cluster.forward import owned_room
from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB
from server.core.db import User
from server.http.auth import error
from server.http.web_auth import USER_KEY, current_user, deny, require_user
from server.paths import WEB_DIR
from server.rooms.manager import ROOMS
from server.rooms.state import iso
from server.sessions.api import own_session
from server.sessions.caller import TOKEN_RE
from server.signalling import messages as P
from server.signalling.endpoints import _precheck, _room_for, _serve

log = logging.getLogger(__name__)


async def staff_user(request: web.Request, role: str, may: str) -> User | web.StreamResponse:
    """The logged-in staff user of a room socket (watch, join, expert) in `role`, or the
    refusal (`may`: what the role may not do, for the 403)."""
    refused = _precheck(request)
    if refused:
        return refused
    user = await current_user(request)
    if user is None:
        return await deny(request, None, 401, "not_authenticated", "log in first")
    if user.role != role:
        return await deny(request, user, 403, "forbidden", f"your role ({user.role}) may not {may}")
    return user


async def watch_ws(request: web.Request) -> web.StreamResponse:
    """A supervisor receives the room's `camera`; the caller and agent are not told (the
    caller's notice says a supervisor may watch)."""
    user = await staff_user(request, "supervisor", "watch rooms")
    if not isinstance(user, User):
        return user
    room_id = request.match_info["room_id"]
    live = await _room_for(request, room_id)
    if isinstance(live, web.StreamResponse):
        return live
    await request.app[AUDIT].record(
        actor=user.username, role=user.role, action="media.watch", object=room_id
    )
    log.info("ops: supervisor %s started watching room %s", user.username, room_id)
    participant = f"supervisor-{user.id}-{secrets.token_hex(3)}"
    try:
        return await _serve(request, live, "supervisor", participant, user)
    finally:
        log.info("ops: supervisor %s stopped watching room %s", user.username, room_id)


async def join_ws(request: web.Request) -> web.StreamResponse:
    """A supervisor joins a room as a visible participant: the caller's page names them
    (`participant_joined`) before they get any media, and may ask them to leave."""
    user = await staff_user(request, "supervisor", "join rooms")
    if not isinstance(user, User):
        return user
    return await serve_staff(request, user, "supervisor")


async def serve_staff(request: web.Request, user: User, staff_role: str) -> web.StreamResponse:
    """The socket of a staff participant (`supervisor` from the ops console, `expert`
    invited by the agent), audited `media.join`."""
    room_id = request.match_info["room_id"]
    live = await _room_for(request, room_id)
    if isinstance(live, web.StreamResponse):
        return live
    await request.app[AUDIT].record(
        actor=user.username, role=user.role, action="media.join", object=room_id,
        reason=f"as {staff_role}",
    )  # fmt: skip
    # The role and user ride in the id, so a socket bridged from another node (which
    # carries role, participant and name only) joins the same way.
    participant = f"staff-{staff_role}-{user.id}-{secrets.token_hex(3)}"
    return await _serve(request, live, "staff", participant, user)


# --- an expert: a one-time staff link for one room (docs/protocol.md, "Team") ------------
STAFF_LINK_TTL_S = 900.0  # 15 minutes, like the caller's link


async def _own_live_session(request: web.Request) -> dict[str, object] | web.StreamResponse:
    """The session the agent holds (else the sessions API's audited 404), not ended."""
    row = await own_session(request)
    if row["state"] == "ended":
        return error(410, P.ROOM_ENDED, "this session has ended")
    return dict(row)


@require_user("agent")
async def staff_link_handler(request: web.Request) -> web.StreamResponse:
    """POST /api/sessions/{id}/staff-link: a one-time link for a colleague to join."""
    user: User = request[USER_KEY]
    row = await _own_live_session(request)
    if isinstance(row, web.StreamResponse):
        return row
    app = request.app
    now = app[CLOCK]()
    token = secrets.token_urlsafe(24)  # 192 bits; only its hash is stored
    await app[DB].add_staff_link(token, str(row["id"]), user.id, now, STAFF_LINK_TTL_S)
    await app[AUDIT].record(
        actor=user.username, role=user.role, action="team.link_create", object=str(row["id"])
    )
    link = f"{app[CONFIG].public_origin}/x/{token}"
    return web.json_response({"link": link, "expires_at": iso(now + STAFF_LINK_TTL_S)})


async def staff_link_page(request: web.Request) -> web.StreamResponse:
    """GET /x/<token>: the expert's page; it redeems the token after the staff login."""
    response = web.FileResponse(WEB_DIR / "join.html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token stays here
    return response


@require_user("agent", "supervisor")
async def redeem_handler(request: web.Request) -> web.StreamResponse:
    """POST /api/staff-links/redeem {"token"}: the link, used up, for this user's join."""
    user: User = request[USER_KEY]
    try:
        body = await request.json()
    except ValueError:
        body = None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not TOKEN_RE.match(token):
        return error(400, "bad_token", "field 'token' must be the token of the link")
    app = request.app
    session_id = await app[DB].use_staff_link(token, user.id, app[CLOCK]())
    result = "ok" if session_id else "invalid"
    await app[AUDIT].record(actor=user.username, role=user.role, action="team.link_use",
                            object=session_id or "", result=result)  # fmt: skip
    if session_id is None:
        return error(410, "link_invalid", "this link was used already or has expired")
    return web.json_response({"room": session_id})


async def expert_ws(request: web.Request) -> web.StreamResponse:
    """GET /ws/expert/{room}: an agent who redeemed a staff link of this room joins it as
    an expert, visibly (the same join as a supervisor's)."""
    user = await staff_user(request, "agent", "join as an expert")
    if not isinstance(user, User):
        return user
    if not await request.app[DB].staff_link_used_by(request.match_info["room_id"], user.id):
        return await deny(request, user, 403, "forbidden", "open the link you were sent first")
    return await serve_staff(request, user, "expert")


# --- hand-over (docs/protocol.md, "Team") -------------------------------------------------
@require_user("agent")
async def hand_over_handler(request: web.Request) -> web.StreamResponse:
    """POST /api/sessions/{id}/hand-over {"participant": "staff-…"} or {"username"}: the
    holder hands the session to a joined staff member or to another agent account."""
    user: User = request[USER_KEY]
    row = await _own_live_session(request)
    if isinstance(row, web.StreamResponse):
        return row
    try:
        body = await request.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    app = request.app
    live = await owned_room(request, str(row["id"]))
    if live is None:
        return error(410, P.ROOM_ENDED, "this session has ended")
    target: tuple[int, str] | None = None
    if isinstance(body.get("participant"), str):
        p = live.participants.get(body["participant"])
        if p is not None and p.kind == "staff" and p.state.user_id is not None:
            target = (p.state.user_id, p.state.name or "")
    elif isinstance(body.get("username"), str):
        other = await app[DB].user_by_name(body["username"])
        if other is not None and other.role == "agent" and not other.disabled:
            target = (other.id, other.username)
    if target is None:
        return error(400, "bad_target", "hand over to a joined participant or an agent account")
    if target[0] == user.id:
        return error(400, "bad_target", "you hold this session already")
    await app[ROOMS].hand_over(live, target[0], target[1])
    await app[AUDIT].record(actor=user.username, role=user.role, action="session.hand_over",
                            object=str(row["id"]), reason=f"to {target[1]}")  # fmt: skip
    log.info("room %s handed over from %s to %s", row["id"], user.username, target[1])
    return web.json_response({"holder": target[1]})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/ws/join/{room_id}", join_ws)
    r.add_get("/ws/expert/{room_id}", expert_ws)
    r.add_post("/api/sessions/{session_id}/staff-link", staff_link_handler)
    r.add_post("/api/sessions/{session_id}/hand-over", hand_over_handler)
    r.add_post("/api/staff-links/redeem", redeem_handler)
    r.add_get("/x/{token}", staff_link_page)
