"""Team signalling endpoints: staff who join a room visibly (docs/protocol.md, "Team").

A supervisor joins from the ops console (`/ws/join/{room}`). The socket is then served by
the same `serve` loop as every other (server/signalling/endpoints.py), as role `staff`;
the room's side (who is told, in which order; dismissal) is in server/rooms/manager.py.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from server.core.appkeys import AUDIT
from server.core.db import User
from server.http.web_auth import current_user, deny
from server.signalling.endpoints import _precheck, _room_for, _serve


async def join_ws(request: web.Request) -> web.StreamResponse:
    """A supervisor joins a room as a visible participant: the caller's page names them
    (`participant_joined`) before they get any media, and may ask them to leave."""
    refused = _precheck(request)
    if refused:
        return refused
    user = await current_user(request)
    if user is None:
        return await deny(request, None, 401, "not_authenticated", "log in first")
    if user.role != "supervisor":
        return await deny(
            request, user, 403, "forbidden", f"your role ({user.role}) may not join rooms"
        )
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
