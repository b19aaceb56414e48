"""Live rooms on this node: participants' sockets, the room's media, and the room record.

Galène's rule: a slow peer never stalls a room. Every socket has a bounded outbox drained
by its own writer task, so `send` never awaits; lists are copied before notifying.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from server.core.config import Config
from server.core.db import Database
from server.media.peers import MediaEvent, MediaRoom
from server.rooms.state import Room, RoomRegistry

log = logging.getLogger(__name__)

CLOSE_ROOM_ENDED = 4000
CLOSE_REPLACED = 4001


class Connection:
    """One participant's WebSocket, with a bounded outbox."""

    def __init__(self, ws: web.WebSocketResponse, role: str, participant: str, size: int):
        self.ws = ws
        self.role = role
        self.participant = participant
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=size)
        self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{participant}")
        self.closing = False

    def send(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        try:
            self._outbox.put_nowait(json.dumps(message, separators=(",", ":")))
        except asyncio.QueueFull:
            # The client does not read: drop it rather than buffer without bound. It will
            # reconnect and get a fresh `welcome` with the current state.
            log.warning("dropping slow %s connection", self.role)
            self.close_soon(WSCloseCode.TRY_AGAIN_LATER, "slow consumer")

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self._close_code = (code, reason)
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        if self._outbox.full():
            self._writer.cancel()
            asyncio.ensure_future(self.ws.close(code=code, message=reason.encode()))

    async def _write(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if item is None:
                    code, reason = self._close_code
                    await self.ws.close(code=code, message=reason.encode())
                    return
                await self.ws.send_str(item)
        except (ConnectionError, RuntimeError):
            pass  # the socket went away; the reader side notices and cleans up

    async def wait_closed(self) -> None:
        self.close_soon(WSCloseCode.GOING_AWAY, "closing")
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._writer, 2)


@dataclass(frozen=True)
class RoomEvent:
    """Something happened in a room. `kind` is one of: created, caller_status, track,
    active, ended. Listeners get it synchronously and must not block (queue, then return)."""

    kind: str
    room: Room
    data: dict[str, Any]


RoomListener = Callable[[RoomEvent], None]


@dataclass
class LiveRoom:
    room: Room
    media: MediaRoom
    conns: dict[str, Connection] = field(default_factory=dict)


class LiveRooms:
    def __init__(
        self,
        config: Config,
        registry: RoomRegistry,
        db: Database,
        clock: Callable[[], float] = time.time,
        turn_secret: str | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.db = db
        self.clock = clock
        self.turn_secret = turn_secret
        self._live: dict[str, LiveRoom] = {}
        self._listeners: list[RoomListener] = []

    def listen(self, listener: RoomListener) -> None:
        """Add a listener for room events (webhooks, metrics, the ops console)."""
        self._listeners.append(listener)

    def emit(self, kind: str, room: Room, **data: Any) -> None:
        event = RoomEvent(kind, room, data)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the room
                log.exception("room listener failed on %s", kind)

    # --- lifecycle ---------------------------------------------------------------------
    def open(self, room: Room) -> LiveRoom:
        media = MediaRoom(
            room.id, self.config.media, on_event=lambda ev: self._on_media_event(room.id, ev)
        )
        live = LiveRoom(room=room, media=media)
        self.registry.add(room)
        self._live[room.id] = live
        self.emit("created", room)
        return live

    def get(self, room_id: str) -> LiveRoom | None:
        return self._live.get(room_id)

    def rooms(self) -> list[LiveRoom]:
        return list(self._live.values())

    async def end(self, room_id: str, reason: str) -> bool:
        live = self._live.get(room_id)
        if live is None or not live.room.end(reason, self.clock()):
            return False
        log.info("room %s ended: %s", room_id, reason)
        room = live.room
        await self.db.update_session(
            room_id,
            state="ended",
            caller_status="ended",
            ended_at=room.ended_at,
            end_reason=reason,
        )
        self._broadcast(live)
        for conn in list(live.conns.values()):
            conn.send({"type": "ended", "reason": reason})
            conn.close_soon(CLOSE_ROOM_ENDED, "room ended")
        await live.media.close()
        if live.room.started_at is not None:
            await self.db.set_session_time_once(room_id, "media_ended_at", self.clock())
        self._live.pop(room_id, None)
        self.registry.remove(room_id)
        self.emit("ended", room, reason=reason)
        return True

    async def reap(self) -> None:
        """End rooms whose inactivity or maximum-duration timeout has passed."""
        now = self.clock()
        s = self.config.session
        for live in self.rooms():
            reason = live.room.expired(now, s.inactivity_timeout_s, s.max_duration_s)
            if reason:
                await self.end(live.room.id, reason)

    async def shutdown(self) -> None:
        for live in self.rooms():
            await self.end(live.room.id, "shutdown")

    # --- participants ------------------------------------------------------------------
    def attach(self, live: LiveRoom, conn: Connection) -> None:
        old = live.conns.get(conn.participant)
        if old is not None:
            old.close_soon(CLOSE_REPLACED, "replaced by a newer connection")
        live.conns[conn.participant] = conn
        live.room.touch(self.clock())
        if conn.role == "agent":
            live.room.agent_connected = True
        self._broadcast(live)

    async def detach(self, live: LiveRoom, conn: Connection) -> None:
        if live.conns.get(conn.participant) is not conn:
            return  # already replaced by a newer socket
        del live.conns[conn.participant]
        if live.room.ended:
            return
        if conn.role == "agent":
            live.room.agent_connected = False
            self._broadcast(live)
        elif live.room.caller_status in ("live", "paused", "connecting"):
            # The page went away without saying goodbye (network change, backgrounded):
            # keep the media a moment; the page reconnects by itself.
            await self.set_caller_status(live, "reconnecting")

    async def set_caller_status(self, live: LiveRoom, status: str) -> None:
        if live.room.set_caller_status(status):
            await self.db.update_session(live.room.id, caller_status=status)
            self._broadcast(live)
            self.emit("caller_status", live.room, status=status)

    def touch(self, live: LiveRoom) -> None:
        live.room.touch(self.clock())

    def notify(self, live: LiveRoom) -> None:
        self._broadcast(live)

    def _broadcast(self, live: LiveRoom) -> None:
        message = {"type": "room", "room": live.room.to_message()}
        for conn in list(live.conns.values()):
            conn.send(message)

    # --- media events ------------------------------------------------------------------
    def _on_media_event(self, room_id: str, event: MediaEvent) -> None:
        # Called synchronously by the media layer; persistence runs in a task so the
        # media path never waits on the database.
        asyncio.ensure_future(self._apply_media_event(room_id, event))

    async def _apply_media_event(self, room_id: str, event: MediaEvent) -> None:
        live = self._live.get(room_id)
        if live is None or live.room.ended:
            return
        now = self.clock()
        live.room.touch(now)
        if event.kind in ("track_live", "track_ended"):
            name = str(event.value)
            is_live = event.kind == "track_live"
            was_waiting = live.room.state == "waiting"
            if live.room.set_track(name, is_live, now):
                if name == "camera" and is_live:
                    await self.db.set_session_time_once(room_id, "media_started_at", now)
                    if live.room.caller_status != "paused":
                        await self.set_caller_status(live, "live")
                if was_waiting and live.room.state == "active":
                    await self.db.update_session(room_id, state="active")
                    self.emit("active", live.room)
                self._broadcast(live)
                self.emit("track", live.room, track=name, live=is_live)
        elif (
            event.kind == "pc_state"
            and event.participant_id == "caller"
            and event.value in ("failed", "closed", "disconnected")
            and live.room.caller_status in ("live", "paused", "connecting")
        ):
            # The caller's page sees this status and makes a new peer connection.
            await self.set_caller_status(live, "reconnecting")


# This feature's application key (docs/architecture.md).
ROOMS = web.AppKey("rooms", LiveRooms)
