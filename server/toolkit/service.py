"""Visual-assist toolkit: relay of pointer, marks, freeze, camera controls, pushes, chat and
network quality between the agent and the caller of a room, the uploads they reference
(freeze frames, pushed images, photo-burst stills), and the operator's tutorials.

Messages are validated in `server.toolkit_messages` (via `server.protocol.parse`) and reach
`dispatch` from the signalling loop; each is rate-limited per connection and type, then
relayed to the other participant with `Connection.send` (non-blocking). Images go over
HTTP, never over the WebSocket: a client uploads one, then names it in a message.

docs/protocol.md, "Toolkit", is the contract.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB, ORIGINS
from server.core.config import ToolkitConfig
from server.core.db import Database
from server.core.ratelimit import TokenBucket
from server.http.auth import caller_cookie_name, error, origin_allowed
from server.http.web_auth import USER_KEY, current_user, deny, require_user
from server.paths import TUTORIALS as SAMPLE_TUTORIALS
from server.recording.service import RECORDING
from server.rooms.connection import Connection
from server.rooms.manager import ROOMS, LiveRoom
from server.rooms.state import RoomEvent, iso
from server.signalling import messages as P
from server.toolkit import messages as TK

log = logging.getLogger(__name__)

IMAGE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(png|jpg|jpeg|webp)$")
LANGS = ("lv", "en", "ru")
MAX_STEPS = 30

# Per connection and type: (messages per second, burst, drop silently when over). Pointer
# moves and stats are superseded by the next one, so extras are simply dropped.
LIMITS: dict[str, tuple[float, int, bool]] = {
    "pointer": (30, 30, True),
    "netq": (2, 4, True),
    "caps": (4, 8, True),
    "chat_receipt": (10, 20, True),
    "push_state": (5, 10, True),
    "camera_result": (5, 10, True),
    "mark": (20, 40, False),
    "clear": (10, 20, False),
    "freeze": (2, 4, False),
    "unfreeze": (2, 4, False),
    "camera_request": (4, 8, False),
    "still": (2, 3, False),
    "push": (2, 5, False),
    "chat": (3, 10, False),
}
# Uploads kept per room and kind (the oldest goes first), and in all.
BLOB_KINDS = {"frame": 3, "image": 6, "still": 2}
MAX_ROOM_BLOB_BYTES = 6_000_000
MAX_CHAT_KEPT = 200  # in memory, replayed to a participant that (re)connects
MAX_MARKS_KEPT = 100
FREEZE_REQUEST_TTL_S = 15.0


@dataclass
class Blob:
    id: str
    kind: str
    content_type: str
    data: bytes


@dataclass
class RoomKit:
    """The toolkit state of one room (in memory; gone when the room ends)."""

    blobs: OrderedDict[str, Blob] = field(default_factory=OrderedDict)
    frozen: dict[str, Any] | None = None  # the `frozen` message while a still is shown
    freeze_asked_at: float | None = None  # the caller asked the agent's page for a still
    marks: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)  # replayed
    chat: list[dict[str, Any]] = field(default_factory=list)
    chat_n: int = 0
    # What each role has received / read of the other's messages (cumulative numbers).
    receipts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {r: {"delivered": 0, "read": 0} for r in ("caller", "agent")}
    )
    caps: dict[str, Any] | None = None
    push_n: int = 0


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) > 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def blob_url(room_id: str, blob_id: str) -> str:
    return f"/api/rooms/{room_id}/blobs/{blob_id}"


class Toolkit:
    def __init__(self, config: ToolkitConfig, db: Database, clock: Any = time.time) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.rooms: dict[str, RoomKit] = {}
        self._buckets: weakref.WeakKeyDictionary[Connection, dict[str, TokenBucket]] = (
            weakref.WeakKeyDictionary()
        )
        self.tutorials_dir = Path(config.tutorials_dir) if config.tutorials_dir else None

    # --- room lifecycle ------------------------------------------------------------------
    def kit(self, room_id: str) -> RoomKit:
        kit = self.rooms.get(room_id)
        if kit is None:
            kit = self.rooms[room_id] = RoomKit()
        return kit

    def on_room_event(self, event: RoomEvent) -> None:
        if event.kind == "ended":
            self.rooms.pop(event.room.id, None)

    def settings(self) -> dict[str, Any]:
        """The `toolkit` field of `welcome`."""
        cfg = self.config
        return {
            "fade_s": cfg.mark_fade_s,
            "photo_interval_s": cfg.photo_interval_s,
            "max_frame_bytes": cfg.max_frame_bytes,
            "max_image_bytes": cfg.max_image_bytes,
            "max_chat": TK.MAX_CHAT_TEXT,
        }

    def joined(self, live: LiveRoom, conn: Connection) -> None:
        """A participant (re)connected, after its `welcome`: send what it missed."""
        kit = self.rooms.get(live.room.id)
        if kit is None:
            return
        for message in kit.chat:
            conn.send(message)
        other = "agent" if conn.role == "caller" else "caller"
        for state in ("delivered", "read"):
            if kit.receipts[other][state]:
                n = kit.receipts[other][state]
                conn.send(P.chat_receipt(other, n, state))
        if kit.frozen is not None:
            conn.send(kit.frozen)
        for mark in kit.marks.values():
            conn.send(mark)
        if conn.role == "agent" and kit.caps is not None:
            conn.send(kit.caps)

    # --- rate limits ---------------------------------------------------------------------
    def _allow(self, conn: Connection, mtype: str) -> bool:
        rate, burst, _ = LIMITS[mtype]
        buckets = self._buckets.setdefault(conn, {})
        bucket = buckets.get(mtype)
        now = time.monotonic()
        if bucket is None:
            bucket = buckets[mtype] = TokenBucket(rate, burst, now)
        return bucket.take(now)

    # --- messages ------------------------------------------------------------------------
    async def dispatch(self, live: LiveRoom, conn: Connection, msg: P.Message) -> None:
        mtype = msg.type
        if not self._allow(conn, mtype):
            if LIMITS[mtype][2]:
                return
            raise P.ProtocolError(P.RATE_LIMITED, f"too many '{mtype}' messages", mtype)
        role = conn.role
        out = dict(msg.data)
        kit = self.kit(live.room.id)
        peer = live.conns.get("agent" if role == "caller" else "caller")

        def to_peer(required: bool = False) -> None:
            if peer is not None:
                peer.send(out)
            elif required:
                raise P.ProtocolError(
                    P.PEER_ABSENT,
                    f"the {'agent' if role == 'caller' else 'caller'} is not "
                    "connected; nothing was sent",
                    mtype,
                )

        if mtype == "pointer":
            to_peer()
        elif mtype == "mark":
            if out["on"] == "freeze":
                if kit.frozen is None:
                    return  # drawn on a still the other side has just closed
                out["frame"] = kit.frozen["frame"]
            if out["on"] == "freeze" or out["pin"]:
                kit.marks.pop(out["id"], None)
                kit.marks[out["id"]] = out
                while len(kit.marks) > MAX_MARKS_KEPT:
                    kit.marks.popitem(last=False)
            else:
                kit.marks.pop(out["id"], None)
            to_peer()
        elif mtype == "clear":
            for mid, mark in list(kit.marks.items()):
                if mark["on"] == out["on"] and out.get("id") in (None, mid):
                    del kit.marks[mid]
            to_peer()
        elif mtype == "freeze":
            await self._freeze(live, conn, kit, peer, out)
        elif mtype == "unfreeze":
            if kit.frozen is None:
                conn.send(P.unfrozen(role))  # already gone: just agree
                return
            self._unfreeze(live, kit, role)
        elif mtype == "camera_request":
            to_peer(required=True)
        elif mtype in ("camera_result", "push_state"):
            to_peer()
        elif mtype == "caps":
            kit.caps = out
            to_peer()
        elif mtype == "still":
            blob = kit.blobs.get(out["image"])
            if blob is None or blob.kind != "still":
                raise P.ProtocolError(P.NOT_FOUND, "no such still; upload it first", mtype)
            out["src"] = blob_url(live.room.id, blob.id)
            to_peer()
        elif mtype == "push":
            await self._push(live, conn, kit, peer, out)
        elif mtype == "chat":
            await self._chat(live, kit, role, out)
        elif mtype == "chat_receipt":
            n = min(out["n"], kit.chat_n)
            mine = kit.receipts[role]
            states = ("delivered", "read") if out["state"] == "read" else ("delivered",)
            changed = False
            for state in states:
                if n > mine[state]:
                    mine[state] = n
                    changed = True
            if changed:
                out.update(by=role, n=n)
                to_peer()
        elif mtype == "netq":
            out["from"] = role
            to_peer()

    async def _freeze(
        self,
        live: LiveRoom,
        conn: Connection,
        kit: RoomKit,
        peer: Connection | None,
        out: dict[str, Any],
    ) -> None:
        now = self.clock()
        if conn.role == "caller":
            if kit.frozen is not None:
                conn.send(kit.frozen)
                return
            if peer is None:
                raise P.ProtocolError(
                    P.PEER_ABSENT, "the agent is not connected; nothing was frozen", "freeze"
                )
            # The agent's page takes the still from the video it receives, so both sides
            # end up showing the very same pixels.
            kit.freeze_asked_at = now
            peer.send(P.freeze_request("caller"))
            return
        blob = kit.blobs.get(out["frame"])
        if blob is None or blob.kind != "frame":
            raise P.ProtocolError(P.NOT_FOUND, "no such frame; upload it first", "freeze")
        asked = kit.freeze_asked_at
        by = "caller" if asked is not None and now - asked < FREEZE_REQUEST_TTL_S else "agent"
        kit.freeze_asked_at = None
        for mid, mark in list(kit.marks.items()):
            if mark["on"] == "freeze":
                del kit.marks[mid]
        kit.frozen = P.frozen(blob.id, blob_url(live.room.id, blob.id), by, iso(now))
        for role in ("caller", "agent"):
            c = live.conns.get(role)
            if c is not None:
                c.send(kit.frozen)

    def _unfreeze(self, live: LiveRoom, kit: RoomKit, by: str) -> None:
        kit.frozen = None
        kit.freeze_asked_at = None
        for mid, mark in list(kit.marks.items()):
            if mark["on"] == "freeze":
                del kit.marks[mid]
        for role in ("caller", "agent"):
            c = live.conns.get(role)
            if c is not None:
                c.send(P.unfrozen(by))

    async def _push(
        self,
        live: LiveRoom,
        conn: Connection,
        kit: RoomKit,
        peer: Connection | None,
        out: dict[str, Any],
    ) -> None:
        if out["kind"] == "image":
            blob = kit.blobs.get(out["image"])
            if blob is None or blob.kind != "image":
                raise P.ProtocolError(P.NOT_FOUND, "no such image; upload it first", "push")
            out["src"] = blob_url(live.room.id, blob.id)
        elif out["kind"] == "tutorial":
            if self.load_tutorial(out["tutorial"]) is None:
                raise P.ProtocolError(P.NOT_FOUND, "no such tutorial", "push")
            out["src"] = f"/api/tutorials/{out['tutorial']}"
        if peer is None:
            raise P.ProtocolError(P.PEER_ABSENT, "the caller is not connected", "push")
        kit.push_n += 1
        out["id"] = f"p{kit.push_n}"
        peer.send(out)
        conn.send(out)  # the agent's copy says it went out, with its id

    async def _chat(self, live: LiveRoom, kit: RoomKit, role: str, out: dict[str, Any]) -> None:
        now = self.clock()
        kit.chat_n += 1
        out.update(n=kit.chat_n, at=iso(now))
        out["from"] = role
        if self.config.keep_chat:
            await self.db.add_chat_message(live.room.id, kit.chat_n, role, out["text"], now)
        kit.chat.append(out)
        del kit.chat[:-MAX_CHAT_KEPT]
        for r in ("caller", "agent"):
            c = live.conns.get(r)
            if c is not None:
                c.send(out)

    # --- uploads ------------------------------------------------------------------------
    def store_blob(self, room_id: str, kind: str, data: bytes, content_type: str) -> Blob:
        kit = self.kit(room_id)
        blob = Blob("b" + secrets.token_urlsafe(12), kind, content_type, data)
        kit.blobs[blob.id] = blob
        keep = kit.frozen["frame"] if kit.frozen else None

        def evictable() -> list[Blob]:
            return [b for b in kit.blobs.values() if b.id not in (keep, blob.id)]

        while sum(1 for b in kit.blobs.values() if b.kind == kind) > BLOB_KINDS[kind]:
            oldest = next((b for b in evictable() if b.kind == kind), None)
            if oldest is None:
                break
            del kit.blobs[oldest.id]
        while sum(len(b.data) for b in kit.blobs.values()) > MAX_ROOM_BLOB_BYTES:
            candidates = evictable()
            if not candidates:
                break
            del kit.blobs[candidates[0].id]
        return blob

    def blob(self, room_id: str, blob_id: str) -> Blob | None:
        kit = self.rooms.get(room_id)
        return kit.blobs.get(blob_id) if kit else None

    # --- tutorials -----------------------------------------------------------------------
    def tutorials_root(self) -> Path:
        return self.tutorials_dir or SAMPLE_TUTORIALS

    def load_tutorial(self, tutorial_id: str) -> dict[str, Any] | None:
        """The tutorial's JSON, checked; None when it does not exist or is broken (logged)."""
        if not TK.TUTORIAL_ID_RE.match(tutorial_id):
            return None
        folder = self.tutorials_root() / tutorial_id
        try:
            data = json.loads((folder / "tutorial.json").read_text(encoding="utf-8"))
            return _check_tutorial(data, folder)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("tutorial %s is not usable: %s", tutorial_id, exc)
            return None

    def list_tutorials(self) -> list[dict[str, Any]]:
        root = self.tutorials_root()
        found = []
        try:
            names = sorted(p.name for p in root.iterdir() if p.is_dir())
        except OSError:
            log.warning("tutorials folder %s cannot be read", root)
            return []
        for name in names:
            tut = self.load_tutorial(name)
            if tut is not None:
                found.append({"id": name, "title": tut["title"], "steps": len(tut["steps"])})
        return found


def _lang_texts(value: Any, what: str, limit: int) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(value.get(lang), str) for lang in LANGS):
        raise ValueError(f"{what} needs a text for each of {', '.join(LANGS)}")
    return {lang: value[lang][:limit] for lang in LANGS}


def _check_tutorial(data: Any, folder: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("tutorial.json must be an object")
    steps = data.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise ValueError(f"'steps' must be a list of 1 to {MAX_STEPS} steps")
    out_steps = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise ValueError(f"step {i + 1} must be an object")
        image = step.get("image")
        if image is not None and (
            not isinstance(image, str)
            or not IMAGE_NAME_RE.match(image)
            or not (folder / image).is_file()
        ):
            raise ValueError(f"step {i + 1}: image {image!r} is not a file of the tutorial")
        out_steps.append({"image": image, "text": _lang_texts(step.get("text"), "text", 600)})
    return {"title": _lang_texts(data.get("title"), "title", 120), "steps": out_steps}


# --- HTTP ------------------------------------------------------------------------------------
TOOLKIT = web.AppKey("toolkit", Toolkit)


async def _caller_room(request: web.Request) -> LiveRoom | None:
    cfg = request.app[CONFIG]
    cookie = request.cookies.get(caller_cookie_name(cfg.secure_cookies))
    session_id = await request.app[DB].session_for_device(cookie) if cookie else None
    live = request.app[ROOMS].get(session_id) if session_id else None
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
    live = request.app[ROOMS].get(request.match_info["session_id"])
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
    live = request.app[ROOMS].get(room_id)
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
    from server.recording.photos import PhotoRejected

    data = await _read_limited(request, request.app[CONFIG].toolkit.max_image_bytes)
    if data is None:
        return error(413, "too_large", "the snapshot is too large")
    try:
        service.check_photo_quota(live)
        photo = await asyncio.to_thread(service.clean, data)
    except PhotoRejected as exc:
        return error(exc.status, exc.code, exc.message)
    try:
        view = await service.store_photo(live, photo, "snapshot")
    except Exception as exc:
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
