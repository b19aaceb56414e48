"""Visual-assist toolkit: relay of pointer, marks, freeze, camera controls, pushes, chat and
network quality between the agent and the caller of a room, the uploads they reference
(freeze frames, pushed images, photo-burst stills), and the operator's tutorials.

Messages are validated in `server.toolkit.messages` (via
`server.signalling.messages.parse`) and reach `dispatch` from the signalling loop; each is
rate-limited per connection and type, then relayed to the other participant with
`Connection.send` (non-blocking). Images go over HTTP, never over the WebSocket: a client
uploads one, then names it in a message.

docs/protocol.md, "Toolkit", is the contract. Its HTTP side (uploads, tutorials, chat,
annotated snapshots) is server/toolkit/api.py; tutorial folders, server/toolkit/tutorials.py.
"""

from __future__ import annotations

import logging
import secrets
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from server.core.config import ToolkitConfig
from server.core.db import Database
from server.core.ratelimit import TokenBucket
from server.paths import TUTORIALS as SAMPLE_TUTORIALS
from server.rooms.connection import Connection
from server.rooms.manager import LiveRoom
from server.rooms.state import RoomEvent, iso
from server.signalling import messages as P
from server.toolkit import messages as TK
from server.toolkit import tutorials

log = logging.getLogger(__name__)

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
        if mtype in ATTRIBUTED and role != "caller":
            # Several staff may point, mark and chat: the caller's page says whose it is.
            out["sender"] = sender(live, conn.participant)
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
        for c in _with_staff(live, "caller", "agent"):
            c.send(kit.frozen)

    def _unfreeze(self, live: LiveRoom, kit: RoomKit, by: str) -> None:
        kit.frozen = None
        kit.freeze_asked_at = None
        for mid, mark in list(kit.marks.items()):
            if mark["on"] == "freeze":
                del kit.marks[mid]
        for c in _with_staff(live, "caller", "agent"):
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
        for c in _with_staff(live, "caller", "agent"):
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
        return tutorials.load(self.tutorials_root(), tutorial_id)

    def list_tutorials(self) -> list[dict[str, Any]]:
        return tutorials.list_all(self.tutorials_root())


# Relayed with `sender` (name and role) when staff send them (docs/protocol.md, "Team").
ATTRIBUTED = frozenset({"pointer", "mark", "chat"})


def sender(live: LiveRoom, participant_id: str) -> dict[str, Any]:
    """Who sent a toolkit message: {"name", "role"} (agent, supervisor or expert)."""
    p = live.participants.get(participant_id)
    if p is None or p.kind != "staff":
        return {"name": live.room.agent_name, "role": "agent"}
    public = p.state.public()
    return {"name": public["name"], "role": public["role"]}


def _with_staff(live: LiveRoom, *roles: str) -> list[Any]:
    """The sockets of `roles` and of every staff participant who joined (they see what the
    agent sees: chat, stills)."""
    conns = live.conns
    out = [conns[r] for r in roles if r in conns]
    return out + [c for pid, c in conns.items() if pid.startswith("staff-")]


TOOLKIT = web.AppKey("toolkit", Toolkit)
