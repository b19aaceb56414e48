"""Post-session report: the timeline of one support session, from its database row.

`GET /api/sessions/{id}/report` (the owning agent; supervisors too, with the masked number) and the
`report` of the `session.ended` webhook. `snapshots` lists the session's photos (agent
snapshots and caller uploads) and `recording` its camera recordings (null when the camera was
not recorded), from the recordings table: what was taken, when, never the media.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.core.appkeys import DB
from server.core.db import Database, User
from server.core.phone import mask
from server.http.web_auth import USER_KEY, deny, require_user
from server.rooms.state import iso

# (timeline event, sessions column), in the order they happen.
STEPS = (
    ("created", "created_at"),
    ("link_sent", "link_sent_at"),
    ("opened", "opened_at"),
    ("accepted", "accepted_at"),
    ("connected", "media_started_at"),
    ("media_ended", "media_ended_at"),
    ("ended", "ended_at"),
)


def _span(row: dict[str, Any], start: str, end: str) -> float | None:
    a, b = row.get(start), row.get(end)
    if a is None or b is None:
        return None
    return round(max(b - a, 0.0), 3)


def _seconds(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(max(end - start, 0.0), 1)


def media_summary(recordings: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's `snapshots` and `recording` from the session's recording rows."""
    photos = [
        {"id": r["id"], "kind": r["kind"], "at": iso(r["started_at"]), "status": r["status"]}
        for r in recordings
        if r["kind"] != "video"
    ]
    videos = [r for r in recordings if r["kind"] == "video"]
    recording = None
    if videos:
        parts = [
            {"id": r["id"], "status": r["status"], "started_at": iso(r["started_at"]),
             "ended_at": iso(r["ended_at"]), "seconds": _seconds(r["started_at"], r["ended_at"]),
             "segments": r["segments"]}
            for r in videos
        ]  # fmt: skip
        recording = {
            "count": len(parts),
            "seconds": round(sum(p["seconds"] or 0.0 for p in parts), 1),
            "recordings": parts,
        }
    return {"snapshots": photos, "recording": recording}


def build_report(
    row: dict[str, Any], agent_name: str | None, recordings: list[dict[str, Any]] | None = None,
    holders: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    timeline = [
        {"event": name, "at": iso(row[column])} for name, column in STEPS if row.get(column)
    ]
    return {
        "session_id": row["id"],
        "reference": row["reference"],
        "agent": agent_name,
        "phone_masked": mask(row["phone"]),
        "device_type": row["device_type"] or None,
        "notice_version": row["notice_version"] or None,
        "state": row["state"],
        "end_reason": row["end_reason"],
        "timeline": timeline,
        "durations_s": {
            # From the session's creation (the agent on the phone) to the caller's video.
            "to_open": _span(row, "created_at", "opened_at"),
            "to_accept": _span(row, "opened_at", "accepted_at"),
            "to_connect": _span(row, "created_at", "media_started_at"),
            "media": _span(row, "media_started_at", "media_ended_at"),
            "total": _span(row, "created_at", "ended_at"),
        },
        "connected": row.get("media_started_at") is not None,
        # Who held the session when (hand-over, docs/protocol.md "Team"); one entry, the
        # opening agent, when it was never handed over.
        "holders": [
            {"agent": h["username"], "from": iso(h["since"]), "until": iso(h["until"])}
            for h in holders or []
        ]
        or [{"agent": agent_name, "from": iso(row["created_at"]), "until": None}],
        **media_summary(recordings or []),
    }


async def session_report(db: Database, session_id: str) -> dict[str, Any] | None:
    row = await db.get_session(session_id)
    if row is None:
        return None
    agent = await db.user_by_id(row["agent_id"])
    return build_report(row, agent.username if agent else None, await db.list_recordings(row["id"]),
                        await db.holders(row["id"]))  # fmt: skip


@require_user("agent", "supervisor")  # admins manage accounts, not sessions
async def report_handler(request: web.Request) -> web.StreamResponse:
    user: User = request[USER_KEY]
    db = request.app[DB]
    row = await db.get_session(request.match_info["session_id"])
    if row is None or (user.role == "agent" and row["agent_id"] != user.id):
        # The same answer for "not yours" and "does not exist" (as the sessions API).
        return await deny(request, user, 404, "not_found", "no such session")
    report = await session_report(db, row["id"])
    if report is None:  # erased between the two reads
        return await deny(request, user, 404, "not_found", "no such session")
    return web.json_response({"report": report})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/sessions/{session_id}/report", report_handler)
