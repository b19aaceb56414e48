"""Rooms: the live part of a support session, as pure state plus a small registry interface.

A room is `waiting` until media first flows, then `active`, then `ended` (for good). The
registry is an interface so a Redis-backed one can replace the in-memory one for several
nodes; nothing else in the server knows which one runs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

ROOM_STATES = ("waiting", "active", "ended")
CALLER_STATUSES = (
    "link_sent",
    "opened",
    "accepted",
    "connecting",
    "live",
    "paused",
    "reconnecting",
    "left",
    "ended",
)
END_REASONS = (
    "agent_ended",
    "caller_left",
    "inactive",
    "max_duration",
    "ops",
    "shutdown",
    "restart",
)
TRACKS = ("camera", "screen")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass
class Room:
    id: str
    agent_id: int
    agent_name: str
    created_at: float
    last_activity: float
    state: str = "waiting"
    caller_status: str = "link_sent"
    caller_device: str | None = None
    agent_connected: bool = False
    notice_accepted: bool = False
    tracks: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(TRACKS, False))
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    # Set by server/recording/service.py: the camera is being recorded since recording_started_at;
    # recording_warning names a storage problem agents should know of (e.g. the spool is
    # over its limit), None when all is well.
    recording_active: bool = False
    recording_started_at: float | None = None
    recording_warning: str | None = None

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    def touch(self, now: float) -> None:
        self.last_activity = now

    def set_caller_status(self, status: str) -> bool:
        """Change the caller's status; False when nothing changed (or the room ended)."""
        assert status in CALLER_STATUSES, status
        if self.ended or self.caller_status == status:
            return False
        self.caller_status = status
        return True

    def set_track(self, name: str, live: bool, now: float) -> bool:
        if self.ended or self.tracks.get(name) == live:
            return False
        self.tracks[name] = live
        if live and self.state == "waiting":
            self.state = "active"
            self.started_at = now
        return True

    def end(self, reason: str, now: float) -> bool:
        assert reason in END_REASONS, reason
        if self.ended:
            return False
        self.state = "ended"
        self.ended_at = now
        self.end_reason = reason
        self.caller_status = "ended"
        self.tracks = dict.fromkeys(TRACKS, False)
        self.recording_active = False  # the recorder ends with the room's media
        return True

    def expired(self, now: float, inactivity_s: float, max_duration_s: float) -> str | None:
        """The end reason if a timeout has passed, else None."""
        if self.ended:
            return None
        if now - self.created_at >= max_duration_s:
            return "max_duration"
        if now - self.last_activity >= inactivity_s:
            return "inactive"
        return None

    def to_message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "caller": {"status": self.caller_status, "device": self.caller_device},
            "agent": {
                "status": "connected" if self.agent_connected else "away",
                "name": self.agent_name,
            },
            "tracks": dict(self.tracks),
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "end_reason": self.end_reason,
            "recording": {
                "active": self.recording_active,
                "started_at": iso(self.recording_started_at),
                "warning": self.recording_warning,
            },
        }


class RoomRegistry(Protocol):
    """Where rooms live. The in-memory one serves a single node."""

    def add(self, room: Room) -> None: ...
    def get(self, room_id: str) -> Room | None: ...
    def remove(self, room_id: str) -> None: ...
    def all(self) -> list[Room]: ...


class LocalRoomRegistry:
    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}

    def add(self, room: Room) -> None:
        self._rooms[room.id] = room

    def get(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def remove(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)

    def all(self) -> list[Room]:
        return list(self._rooms.values())
