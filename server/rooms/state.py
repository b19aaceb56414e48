"""A room's state, pure: no I/O, no clock, no sockets.

A room is the live part of a support session (the session is its database record and
has the same id). It is `waiting` until media first flows, then `active`, then `ended`
(for good). Who is in it is its participant list: the agent, the caller, silent
supervisors and the recorder (the recording state is derived from the recorder being
there, not set by another module).

Every change is a method that returns the events it caused (an empty list when nothing
changed), so the one writer, `server.rooms.manager.RoomManager`, can persist them, tell
the listeners and notify the participants in one place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

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
# Who can be in a room. A supervisor watches silently (the caller's notice says one may);
# `staff` is a supervisor or an expert who joined visibly (the caller's page names them
# before they receive media, and the caller can ask them to leave); the recorder receives
# the camera and writes it, encrypted.
PARTICIPANT_KINDS = ("agent", "caller", "supervisor", "staff", "recorder")
# The roles a visible `staff` participant joins in (ParticipantState.role).
STAFF_ROLES = ("supervisor", "expert")

# Event kinds (RoomEvent.kind) and what `data` holds:
#   created                                 a room was opened
#   participant  {id, kind, joined: bool}   someone joined or left
#   caller_status {status}                  the caller's status changed
#   notice       {version}                  the caller accepted the notice
#   device       {device}                   the caller's device type is known
#   track        {track, live: bool}        a track started or stopped
#   active                                  media flowed for the first time
#   recording    {active: bool, warning}    the recorder joined, left, or warns
#   codec        {track, mismatch}          a track's receiver cannot take its codec (or can)
#   ended        {reason}                   the room ended
#   holder       {user_id, name, from_id, from_name}  handed over to another staff user
EVENT_KINDS = (
    "created",
    "participant",
    "caller_status",
    "notice",
    "device",
    "track",
    "active",
    "recording",
    "codec",
    "ended",
    "holder",
)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class RoomEvent:
    """Something happened in a room. Listeners get it synchronously and must not block
    (queue, then return)."""

    kind: str
    room: Room
    data: dict[str, Any]


@dataclass
class ParticipantState:
    """One participant as the room knows it; its socket and media leg are elsewhere
    (server.rooms.participant)."""

    id: str
    kind: str
    joined_at: float
    name: str | None = None
    # The recorder's: the recording's id, and a storage problem agents should know of
    # (e.g. the spool is over its limit), None when all is well.
    recording_id: str | None = None
    warning: str | None = None
    # A staff participant's role (STAFF_ROLES) and staff user id.
    role: str | None = None
    user_id: int | None = None

    def public(self) -> dict[str, Any]:
        """How pages name a visible participant (`participant_joined`, `room.staff`)."""
        return {"id": self.id, "name": self.name, "role": self.role or self.kind}


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
    # Why the caller's page cannot share the camera (signalling media "unavailable"), None
    # when it can or has not said; a live camera clears it.
    caller_camera: str | None = None
    # A track whose codec its receiving side did not negotiate (there is no transcoding):
    # track -> the codec it is sent in. The agent's page switches its screen to H264 for a
    # caller without VP8; a camera the agent's browser cannot take is shown as a warning.
    codec_mismatch: dict[str, str | None] = field(
        default_factory=lambda: dict.fromkeys(TRACKS, None)
    )
    notice_accepted: bool = False
    tracks: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(TRACKS, False))
    participants: dict[str, ParticipantState] = field(default_factory=dict)
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    # When this node re-opened the room from its session record after the node that held
    # it died or drained (server/cluster/failover.py); None for a room opened here.
    reopened_at: float | None = None

    # --- derived -----------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def agent_connected(self) -> bool:
        return any(p.kind == "agent" for p in self.participants.values())

    @property
    def staff(self) -> list[ParticipantState]:
        """The supervisors and experts who joined visibly, oldest first."""
        return sorted(
            (p for p in self.participants.values() if p.kind == "staff"), key=lambda p: p.joined_at
        )

    def counted(self) -> int:
        """People counted against rooms.max_participants: the agent and the caller always
        (their places are kept while they reconnect), plus the staff who joined."""
        return 2 + len(self.staff)

    def full(self, max_participants: int, participant_id: str) -> bool:
        """Whether staff `participant_id` joining would be one too many (a reconnect, the
        same id again, is never refused)."""
        if participant_id in self.participants:
            return False
        return self.counted() >= max_participants

    @property
    def recorder(self) -> ParticipantState | None:
        return next((p for p in self.participants.values() if p.kind == "recorder"), None)

    def recording(self) -> dict[str, Any]:
        rec = self.recorder
        return {
            "active": rec is not None,
            "started_at": iso(rec.joined_at) if rec else None,
            "warning": rec.warning if rec else None,
        }

    def _event(self, event_kind: str, **data: Any) -> RoomEvent:
        return RoomEvent(event_kind, self, data)

    # --- changes -----------------------------------------------------------------------
    def touch(self, now: float) -> None:
        self.last_activity = now

    def join(self, participant: ParticipantState) -> list[RoomEvent]:
        assert participant.kind in PARTICIPANT_KINDS, participant.kind
        if self.ended:
            return []
        replaced = participant.id in self.participants
        self.participants[participant.id] = participant
        if replaced:  # a reconnect: the same participant, a new socket
            return []
        events = [self._event("participant", id=participant.id, kind=participant.kind, joined=True)]
        if participant.kind == "staff":
            events[0].data.update(participant.public())
        if participant.kind == "recorder":
            events.append(self._event("recording", active=True, warning=participant.warning))
        return events

    def leave(self, participant_id: str) -> list[RoomEvent]:
        gone = self.participants.pop(participant_id, None)
        if gone is None:
            return []
        events = [self._event("participant", id=gone.id, kind=gone.kind, joined=False)]
        if gone.kind == "staff":
            events[0].data.update(gone.public())
        if gone.kind == "recorder" and not self.ended:
            events.append(self._event("recording", active=False, warning=None))
        return events

    def hand_over(self, user_id: int, name: str) -> list[RoomEvent]:
        """Another staff user holds the session from now: its agent (the name the caller
        is shown, whose console may hold it) changes."""
        if self.ended or self.agent_id == user_id:
            return []
        before = (self.agent_id, self.agent_name)
        self.agent_id, self.agent_name = user_id, name
        return [self._event("holder", user_id=user_id, name=name, from_id=before[0],
                            from_name=before[1])]  # fmt: skip

    def set_warning(self, participant_id: str, warning: str | None) -> list[RoomEvent]:
        p = self.participants.get(participant_id)
        if p is None or self.ended or p.warning == warning:
            return []
        p.warning = warning
        return [self._event("recording", active=True, warning=warning)]

    def set_caller_status(self, status: str) -> list[RoomEvent]:
        """Change the caller's status; no event when nothing changed (or the room ended)."""
        assert status in CALLER_STATUSES, status
        if self.ended or self.caller_status == status:
            return []
        self.caller_status = status
        return [self._event("caller_status", status=status)]

    def set_device(self, device: str) -> list[RoomEvent]:
        if self.ended or self.caller_device == device:
            return []
        self.caller_device = device
        return [self._event("device", device=device)]

    def set_camera_unavailable(self, reason: str | None) -> list[RoomEvent]:
        if self.ended or self.caller_camera == reason:
            return []
        self.caller_camera = reason
        return [self._event("camera", unavailable=reason)]

    def set_codec_mismatch(self, track: str, codec: str | None) -> list[RoomEvent]:
        """`track` is sent in `codec`, which its receiver cannot take (None: it can)."""
        if self.ended or track not in TRACKS or self.codec_mismatch.get(track) == codec:
            return []
        self.codec_mismatch[track] = codec
        return [self._event("codec", track=track, mismatch=codec)]

    def accept_notice(self, version: str) -> list[RoomEvent]:
        if self.ended or self.notice_accepted:
            return []
        self.notice_accepted = True
        return [self._event("notice", version=version), *self.set_caller_status("accepted")]

    def set_track(self, name: str, live: bool, now: float) -> list[RoomEvent]:
        if self.ended or self.tracks.get(name) == live:
            return []
        self.tracks[name] = live
        events = [self._event("track", track=name, live=live)]
        if name == "camera" and live:
            events += self.set_camera_unavailable(None)
        if live and self.state == "waiting":
            self.state = "active"
            self.started_at = now
            events.append(self._event("active"))
        return events

    def end(self, reason: str, now: float) -> list[RoomEvent]:
        assert reason in END_REASONS, reason
        if self.ended:
            return []
        self.state = "ended"
        self.ended_at = now
        self.end_reason = reason
        self.caller_status = "ended"
        self.tracks = dict.fromkeys(TRACKS, False)
        # The recorder ends with the room's media; the others' sockets are closed by the
        # manager after it told them.
        self.participants = {k: p for k, p in self.participants.items() if p.kind != "recorder"}
        return [self._event("ended", reason=reason)]

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
        """The `room` field of the signalling messages `welcome` and `room`."""
        return {
            "id": self.id,
            "state": self.state,
            "caller": {
                "status": self.caller_status,
                "device": self.caller_device,
                "camera_unavailable": self.caller_camera,
            },
            "agent": {
                "status": "connected" if self.agent_connected else "away",
                "name": self.agent_name,
            },
            "tracks": dict(self.tracks),
            "codec_mismatch": dict(self.codec_mismatch),
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "end_reason": self.end_reason,
            "recording": self.recording(),
            "staff": [p.public() for p in self.staff],
        }
