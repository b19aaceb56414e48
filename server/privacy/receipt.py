"""The caller's privacy receipt: what this session captured, until when it is kept, and whom
to ask for access or erasure. `GET /api/caller/receipt` (the caller's device cookie) is read
by the caller page when the session ends (web/receipt.js); docs/protocol.md describes it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.core.appkeys import CLOCK, CONFIG, DB
from server.core.audit import Audit
from server.core.config import Config
from server.core.phone import mask
from server.http.auth import caller_cookie_name, error
from server.privacy.retention import DAY
from server.rooms.state import iso


def build_receipt(
    cfg: Config, row: dict[str, Any], recordings: list[dict[str, Any]], now: float,
    watched: bool = False,
) -> dict[str, Any]:  # fmt: skip
    rc = cfg.retention
    ended = row["ended_at"]
    base = ended if ended is not None else now  # retention counts from the session's end
    videos = [r for r in recordings if r["kind"] == "video"]
    snapshots = sum(1 for r in recordings if r["kind"] == "snapshot")
    uploads = sum(1 for r in recordings if r["kind"] == "upload")
    seconds = 0.0
    for r in videos:
        end = r["ended_at"] or ended or now
        seconds += max(end - r["started_at"], 0.0)

    def until(days: int) -> str | None:
        return iso(base + min(days, rc.sessions_days) * DAY)

    return {
        "session_id": row["id"],
        "phone_masked": mask(row["phone"]),
        "operator": cfg.session.operator_name,
        "started_at": iso(row["created_at"]),
        "ended_at": iso(ended),
        "ended": ended is not None,
        "notice_version": row["notice_version"] or None,
        "notice_accepted_at": iso(row["accepted_at"]),
        "device_type": row["device_type"] or None,
        "snapshots": snapshots,
        "uploads": uploads,
        # Faces blurred in those stills before they were stored (privacy.redact_faces).
        "faces_blurred": sum(r.get("faces_blurred") or 0 for r in recordings
                             if r["kind"] in ("snapshot", "upload")),  # fmt: skip
        "recording": {
            "recorded": bool(videos),
            "count": len(videos),
            "seconds": round(seconds),
        },  # fmt: skip
        "kept_until": {
            "record": iso(base + rc.sessions_days * DAY),
            "recordings": until(rc.recordings_days) if videos else None,
            "photos": until(rc.media_days) if snapshots or uploads else None,
        },
        # A supervisor watched the call silently, for quality (the notice says one may):
        # the caller is told afterwards, here (docs/protocol.md, "Privacy receipt").
        "watched_by_supervisor": watched,
        "contact": cfg.session.privacy_contact,
    }


async def caller_receipt(request: web.Request) -> web.StreamResponse:
    """GET /api/caller/receipt: for the browser that opened the session's link, during and
    after the session (as long as its device cookie lives)."""
    cfg = request.app[CONFIG]
    db = request.app[DB]
    cookie = request.cookies.get(caller_cookie_name(cfg.secure_cookies))
    session_id = await db.session_for_device(cookie) if cookie and len(cookie) < 200 else None
    row = await db.get_session(session_id) if session_id else None
    if row is None:
        return error(401, "not_authenticated", "open the link from your SMS again")
    recordings = await db.list_recordings(row["id"])
    watched = any(r["action"] == "media.watch" for r in await Audit.rows_about(db, {row["id"]}))
    receipt = build_receipt(cfg, row, recordings, request.app[CLOCK](), watched)
    return web.json_response({"receipt": receipt})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/caller/receipt", caller_receipt)
