"""The room manager: the one writer of the rooms this node holds.

Every change to a room goes through a method here: it changes the pure state
(server.rooms.state), which returns the events the change caused, and `_apply` then
persists them (the session record), notifies the participants (`room` message) and tells
the listeners (webhooks, metrics, ops, recording, toolkit) — in that order, in one place.
Nothing else writes a `Room`.

Over 400 lines because it is the one writer: the room's lifecycle, its participants
(including the staff who join visibly: join, dismiss) and its media events belong
together, and splitting the writer would make two.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.core.config import Config
from server.core.db import Database, unavailable
from server.media.peers import MediaEvent, MediaRoom
from server.rooms.connection import CLOSE_REMOVED, CLOSE_REPLACED, CLOSE_ROOM_ENDED
from server.rooms.participant import AGENT, CALLER, MessageSink, Participant
from server.rooms.router import LocalRouter, RoomTaken, Router
from server.rooms.state import ParticipantState, Room, RoomEvent
from server.signalling import messages as M

log = logging.getLogger(__name__)

RoomListener = Callable[[RoomEvent], None]
# Participant events of these kinds change nothing the agent or caller is shown.
_SILENT_KINDS = ("supervisor",)


@dataclass(eq=False)
class LiveRoom:
    """A room held by this node: its state, its media, its participants."""

    room: Room
    media: MediaRoom
    participants: dict[str, Participant] = field(default_factory=dict)

    @property
    def conns(self) -> dict[str, MessageSink]:
        """The participants that have a signalling socket, by participant id."""
        return {pid: p.sink for pid, p in self.participants.items() if p.sink is not None}

    def send(self, participant_id: str, message: dict[str, Any]) -> bool:
        """Send to one participant; False when it is not connected."""
        p = self.participants.get(participant_id)
        return p is not None and p.send(message)


class RoomManager:
    def __init__(
        self,
        config: Config,
        db: Database,
        clock: Callable[[], float] = time.time,
        router: Router | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.router: Router = router or LocalRouter(config.cluster.node_id)
        self.router.deliver_to(self._deliver)
        self._live: dict[str, LiveRoom] = {}
        # coturn's static-auth-secret, for the server's own TURN (media.server_turn_url).
        self.turn_secret: str | None = None
        self._listeners: list[RoomListener] = []
        # Session writes that waited for the database (see _persist), oldest first.
        self._unwritten: deque[tuple[RoomEvent, float]] = deque()
        self._writer: asyncio.Task[None] | None = None

    def listen(self, listener: RoomListener) -> None:
        """Add a listener for room events (webhooks, metrics, the ops console)."""
        self._listeners.append(listener)

    def emit(self, kind: str, room: Room, **data: Any) -> None:
        self._emit(RoomEvent(kind, room, data))

    def _emit(self, event: RoomEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the room
                log.exception("room listener failed on %s", event.kind)

    # --- applying changes --------------------------------------------------------------
    async def _apply(
        self, live: LiveRoom, events: list[RoomEvent], broadcast: bool = False
    ) -> None:
        for event in events:
            await self._persist(event)
        if broadcast or any(_visible(e) for e in events):
            self._broadcast(live)
        for event in events:
            self._emit(event)

    async def _persist(self, event: RoomEvent) -> None:
        """Write what `event` changed in the session record. While the database cannot be
        reached the room goes on (media, messages): the write waits, in order, and is
        retried until the database is back (docs/ops.md, "Database down")."""
        at = self.clock()
        if self._unwritten:  # behind the writes already waiting: the order is kept
            self._unwritten.append((event, at))
            return
        try:
            await self._write(event, at)
        except Exception as exc:
            if not unavailable(exc):
                raise
            log.warning("database unavailable: %s of room %s is kept and written later (%s)",
                        event.kind, event.room.id, exc)  # fmt: skip
            self._unwritten.append((event, at))
            if self._writer is None or self._writer.done():
                self._writer = asyncio.ensure_future(self._write_later())

    async def _write_later(self) -> None:
        delay = 0.5
        while self._unwritten:
            event, at = self._unwritten[0]
            try:
                await self._write(event, at)
            except Exception as exc:
                if unavailable(exc):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                log.exception("writing %s of room %s failed", event.kind, event.room.id)
            self._unwritten.popleft()
            delay = 0.5
        log.info("database back: the room changes kept meanwhile are written")

    @property
    def unwritten(self) -> int:
        """Room changes waiting for the database."""
        return len(self._unwritten)

    async def _write(self, event: RoomEvent, at: float) -> None:
        room, d, db = event.room, event.data, self.db
        if event.kind == "caller_status":
            await db.update_session(room.id, caller_status=d["status"])
        elif event.kind == "notice":
            await db.set_session_time_once(room.id, "accepted_at", at)
            await db.update_session(room.id, notice_version=d["version"])
        elif event.kind == "device":
            await db.update_session(room.id, device_type=d["device"])
        elif event.kind == "track" and d["track"] == "camera" and d["live"]:
            await db.set_session_time_once(room.id, "media_started_at", at)
        elif event.kind == "active":
            await db.update_session(room.id, state="active")
        elif event.kind == "ended":
            await db.update_session(
                room.id,
                state="ended",
                caller_status="ended",
                ended_at=room.ended_at,
                end_reason=d["reason"],
            )
        elif event.kind == "holder":  # a hand-over: the record and who held it when
            await db.update_session(room.id, agent_id=d["user_id"])
            first = (d["from_id"], d["from_name"], room.created_at)
            await db.hand_over(room.id, d["user_id"], d["name"], at, first=first)
        elif event.kind == "media_ended":  # not a Room event: written by `end`
            await db.set_session_time_once(room.id, "media_ended_at", at)

    def _broadcast(self, live: LiveRoom) -> None:
        message = M.room(live.room)
        for p in list(live.participants.values()):
            p.send(message)

    def _deliver(self, room_id: str, participant_id: str, message: dict[str, Any]) -> bool:
        live = self._live.get(room_id)
        return live is not None and live.send(participant_id, message)

    # --- lifecycle ---------------------------------------------------------------------
    async def open(self, room: Room) -> LiveRoom:
        await self.router.claim(room.id)
        live = await self.open_claimed(room)
        self.emit("created", room)
        return live

    async def reopen(self, room: Room) -> LiveRoom | None:
        """Open again a room whose node is gone (a cluster: killed, or it handed the room
        over while draining), rebuilt from its session record by server.cluster.failover.
        None when another node won the claim (RoomTaken): the caller asks where it is."""
        try:
            await self.router.claim(room.id)
        except RoomTaken:
            return None
        live = self._live.get(room.id)
        if live is not None:  # two requests reopened it at once on this node: one room
            return live
        live = await self.open_claimed(room)
        log.info("room %s re-opened on node %s from its session record", room.id,
                 self.router.node_id)  # fmt: skip
        return live

    async def open_claimed(self, room: Room) -> LiveRoom:
        media = MediaRoom(
            room.id,
            self.config.media,
            on_event=lambda ev: self._on_media_event(room.id, ev),
            turn_secret=self.turn_secret,
        )
        live = LiveRoom(room=room, media=media)
        self._live[room.id] = live
        return live

    async def hand_off(self, room_id: str, message: dict[str, Any], code: int,
                       released: Callable[[], Awaitable[None]] | None = None) -> bool:  # fmt: skip
        """A draining node lets go of a room without ending it, in an order that has the
        pages' reconnect find it free for another node: out of this node's map (no new
        socket joins here), pending session writes, key released, `released` (a node
        asked to adopt it: server/cluster/failover.py); then every participant gets
        `message` (`moved`), its socket closed with `code`; the media closes."""
        live = self._live.get(room_id)
        if live is None or live.room.ended:
            return False
        self._live.pop(room_id, None)
        if self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer], timeout=3)
        await self.router.release(room_id)
        if released is not None:
            await released()
        for p in list(live.participants.values()):
            p.send(message)
            if p.sink is not None:
                p.sink.close_soon(code, "moved")
        await live.media.close()
        return True

    def get(self, room_id: str) -> LiveRoom | None:
        return self._live.get(room_id)

    def rooms(self) -> list[LiveRoom]:
        return list(self._live.values())

    async def end(self, room_id: str, reason: str) -> bool:
        live = self._live.get(room_id)
        if live is None:
            return False
        events = live.room.end(reason, self.clock())
        if not events:
            return False
        log.info("room %s ended: %s", room_id, reason)
        for event in events:
            await self._persist(event)
        self._broadcast(live)
        for p in list(live.participants.values()):
            p.send(M.ended(reason))
            if p.sink is not None:
                p.sink.close_soon(CLOSE_ROOM_ENDED, "room ended")
        await live.media.close()
        if live.room.started_at is not None:
            await self._persist(RoomEvent("media_ended", live.room, {}))
        self._live.pop(room_id, None)
        await self.router.release(room_id)
        for event in events:
            self._emit(event)
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
        if self._writer is not None and not self._writer.done():
            # A moment for writes still waiting for the database; what is left is logged.
            # (The next start ends sessions left open, reason `restart`.)
            done, _ = await asyncio.wait([self._writer], timeout=3)
            if not done:
                self._writer.cancel()
                log.error("database unavailable at shutdown: %d room changes not written",
                          len(self._unwritten))  # fmt: skip

    # --- participants ------------------------------------------------------------------
    async def join(
        self,
        live: LiveRoom,
        kind: str,
        participant_id: str,
        sink: MessageSink | None = None,
        name: str | None = None,
        **state: Any,
    ) -> Participant:
        """Add a participant (or replace its socket: a reconnect) and tell the room."""
        old = live.participants.get(participant_id)
        if old is not None and old.sink is not None and old.sink is not sink:
            old.sink.close_soon(CLOSE_REPLACED, "replaced by a newer connection")
        pstate = ParticipantState(participant_id, kind, self.clock(), name, **state)
        participant = Participant(pstate, sink)
        live.participants[participant_id] = participant
        events = live.room.join(pstate)
        if kind == "staff" and events:
            # The caller's page names who joined before the joiner can get any media: its
            # offer is read only after this returns (docs/protocol.md, "Team").
            self._tell_others(live, participant_id, M.participant_joined(pstate.public()))
        if kind not in _SILENT_KINDS:
            live.room.touch(self.clock())
        # A reconnecting agent or caller changes no state, but the others' pages refresh.
        await self._apply(live, events, broadcast=kind not in _SILENT_KINDS)
        return participant

    async def leave(
        self, live: LiveRoom, participant_id: str, sink: MessageSink | None = None
    ) -> None:
        """A participant went (its socket closed, or the recorder stopped). With `sink`,
        only if that is still the participant's socket (not replaced by a newer one)."""
        p = live.participants.get(participant_id)
        if p is None or (sink is not None and p.sink is not sink):
            return
        await self._remove(live, p, "left")

    async def dismiss(self, live: LiveRoom, participant_id: str) -> bool:
        """The caller asked a staff participant to leave: it is told (`removed`), its
        socket closed and its media dropped; everyone else gets `participant_left`."""
        p = live.participants.get(participant_id)
        if p is None or p.kind != "staff":
            return False
        p.send(M.removed("caller_asked"))
        if p.sink is not None:
            p.sink.close_soon(CLOSE_REMOVED, "the caller asked you to leave")
        log.info("room %s: the caller asked %s to leave", live.room.id, participant_id)
        await self._remove(live, p, "caller_asked")
        return True

    def _tell_others(self, live: LiveRoom, participant_id: str, message: dict[str, Any]) -> None:
        # The caller first: what it is shown must not lag behind the staff's pages.
        others = sorted(
            (p for pid, p in live.participants.items() if pid != participant_id),
            key=lambda p: p.id != CALLER,
        )
        for other in others:
            other.send(message)

    async def _remove(self, live: LiveRoom, p: Participant, reason: str) -> None:
        participant_id = p.id
        del live.participants[participant_id]
        if self._live.get(live.room.id) is not live:
            # Handed over (drain): the room's record is the new node's to write now.
            return
        events = live.room.leave(participant_id)
        if p.kind == "supervisor":
            await live.media.drop(participant_id)
        if p.kind == "staff":
            for media_id in staff_media_ids(participant_id):
                await live.media.drop(media_id)
            if events:
                left = M.participant_left(p.state.public(), reason)
                self._tell_others(live, participant_id, left)
        if participant_id == CALLER and live.room.caller_status in ("live", "paused", "connecting"):
            # The page went away without saying goodbye (network change, backgrounded):
            # keep the media a moment; the page reconnects by itself.
            events += live.room.set_caller_status("reconnecting")
        await self._apply(live, events)

    async def hand_over(self, live: LiveRoom, user_id: int, name: str) -> bool:
        """The session's holder changes (docs/protocol.md, "Team"): every page's `room`
        names the new one; the record and session_holders are written."""
        events = live.room.hand_over(user_id, name)
        await self._apply(live, events)
        return bool(events)

    async def set_warning(self, live: LiveRoom, participant_id: str, warning: str | None) -> None:
        await self._apply(live, live.room.set_warning(participant_id, warning))

    # --- the caller and the tracks -----------------------------------------------------
    async def set_caller_status(self, live: LiveRoom, status: str) -> None:
        await self._apply(live, live.room.set_caller_status(status))

    async def set_device(self, live: LiveRoom, device: str) -> None:
        await self._apply(live, live.room.set_device(device))

    async def set_camera_unavailable(self, live: LiveRoom, reason: str) -> None:
        await self._apply(live, live.room.set_camera_unavailable(reason), broadcast=True)

    async def accept_notice(self, live: LiveRoom, version: str) -> None:
        await self._apply(live, live.room.accept_notice(version))

    async def set_track(self, live: LiveRoom, name: str, is_live: bool) -> None:
        """What a publisher says of its track (the server cannot see a browser's
        replaceTrack(null)): the page shows or hides the track's area."""
        await self._apply(live, live.room.set_track(name, is_live, self.clock()), broadcast=True)

    def touch(self, live: LiveRoom) -> None:
        live.room.touch(self.clock())

    def notify(self, live: LiveRoom) -> None:
        self._broadcast(live)

    # --- media events ------------------------------------------------------------------
    def _on_media_event(self, room_id: str, event: MediaEvent) -> None:
        # Called synchronously by the media layer; persistence runs in a task so the
        # media path never waits on the database.
        asyncio.ensure_future(self._apply_media_event(room_id, event))

    async def _apply_media_event(self, room_id: str, event: MediaEvent) -> None:
        live = self._live.get(room_id)
        if live is None or live.room.ended:
            return
        room = live.room
        now = self.clock()
        room.touch(now)
        if event.kind in ("track_live", "track_ended"):
            name = str(event.value)
            is_live = event.kind == "track_live"
            events = room.set_track(name, is_live, now)
            if events and name == "camera" and is_live and room.caller_status != "paused":
                events += room.set_caller_status("live")
            await self._apply(live, events)
        elif event.kind == "codec_mismatch" and event.participant_id in (AGENT, CALLER):
            # The agent's leg receives the camera, the caller's the screen (a supervisor's
            # problem is its own: not shown to the agent).
            track, _, codec = str(event.value).partition("=")
            await self._apply(live, room.set_codec_mismatch(track, codec or None))
        elif (
            event.kind == "pc_state"
            and event.participant_id == CALLER
            and event.value in ("failed", "closed", "disconnected")
            and room.caller_status in ("live", "paused", "connecting")
        ):
            # The caller's page sees this status and makes a new peer connection.
            await self.set_caller_status(live, "reconnecting")


def staff_media_ids(participant_id: str) -> tuple[str, str]:
    """A staff participant's two media legs (one per track it receives): camera, screen."""
    return participant_id, f"{participant_id}/screen"


def _visible(event: RoomEvent) -> bool:
    """Whether the event changes what the `room` message shows."""
    if event.kind == "participant":
        return event.data["kind"] not in _SILENT_KINDS
    return event.kind != "created"


# This feature's application key (docs/architecture.md).
ROOMS = web.AppKey("rooms", RoomManager)
