"""Webhook deliveries on the admin page: what is pending, what was given up (dead
letters), and replaying a dead letter (docs/ops.md, "Webhooks"; the same outbox as
`callassist webhooks dead|replay`).

    GET  /api/admin/webhooks                       counts, pending and dead rows (audited
                                                   `webhooks.view`, as the CLI's `dead`)
    POST /api/admin/webhooks/{event_id}/replay     the event's dead rows pending again
                                                   (audited `webhooks.replay`)

A replay is safe to repeat: only rows still `dead` change, the event keeps its id (the
receiver drops a repeat, docs/webhooks.md), and a second click — or two admins at once —
finds nothing dead and gets `409 not_dead` with nothing sent twice and no second audit
record. Receiver URLs are shown by origin only: a hook URL's path is often its token.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from server.core.appkeys import AUDIT, DB
from server.core.db import User
from server.core.repositories.outbox import DEAD, PENDING
from server.http.admin_config import origin_only
from server.http.auth import error
from server.http.web_auth import USER_KEY, require_user
from server.observe.webhooks import WEBHOOKS
from server.rooms.state import iso

EVENT_ID = re.compile(r"^evt_[0-9a-f]{1,64}$")
LIMIT = 200


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": r["id"], "type": r["type"], "session_id": r["session_id"],
        "receiver": origin_only(r["url"]), "status": r["status"],
        "created_at": iso(r["created_at"]), "attempts": int(r["attempts"]),
        "next_attempt_at": iso(r["next_attempt_at"]) if r["status"] == PENDING else None,
        "last_error": r["last_error"],
    }  # fmt: skip


@require_user("admin")
async def deliveries(request: web.Request) -> web.StreamResponse:
    db = request.app[DB]
    pending = await db.outbox_list(PENDING, LIMIT)
    dead = await db.outbox_list(DEAD, LIMIT)
    counts = await db.outbox_counts()
    user: User = request[USER_KEY]
    reason = f"{counts[PENDING]} pending, {counts[DEAD]} dead"
    await request.app[AUDIT].record(actor=user.username, role=user.role,
                                    action="webhooks.view", reason=reason)  # fmt: skip
    sender = request.app.get(WEBHOOKS)
    return web.json_response({
        "enabled": bool(sender and sender.enabled),
        "receivers": [origin_only(u) for u in (sender.config.urls if sender else [])],
        "counts": counts,
        "pending": [_row(r) for r in pending],
        "dead": [_row(r) for r in dead],
        "limit": LIMIT,
    })  # fmt: skip


@require_user("admin")
async def replay(request: web.Request) -> web.StreamResponse:
    event_id = request.match_info["event_id"]
    if not EVENT_ID.match(event_id):
        return error(400, "bad_event_id", "an event id looks like evt_ and hex digits")
    db = request.app[DB]
    changed = await db.outbox_replay_event(event_id)
    if not changed:
        if await db.outbox_has_event(event_id):
            return error(409, "not_dead", "this event is not a dead letter (already pending "
                         "again, or being delivered): nothing was changed")  # fmt: skip
        return error(404, "not_found", "no such event in the outbox (delivered, or never "
                     "there)")  # fmt: skip
    user: User = request[USER_KEY]
    await request.app[AUDIT].record(actor=user.username, role=user.role,
                                    action="webhooks.replay", object=event_id,
                                    reason="admin page")  # fmt: skip
    sender = request.app.get(WEBHOOKS)
    if sender is not None:
        sender.wake()  # this node may hold the lease: send it now, not at the next poll
    return web.json_response({"event_id": event_id, "replayed": changed})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/admin/webhooks", deliveries)
    app.router.add_post("/api/admin/webhooks/{event_id}/replay", replay)
