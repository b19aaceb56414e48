"""Signalling protocol v1: every message, both directions, defined once (pure, no I/O).

Client -> server: `parse` validates a frame for a role and returns a clean `Message`.
Server -> client: the constructors below (`welcome`, `room`, `answer`, ...) are the only
place a server message is built; toolkit messages one participant sends reach the other
as their validated copy (`RELAYED`). docs/protocol.md is the specification; this module
and that page change together (tests/test_messages.py checks both lists).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.toolkit import messages as TK

if TYPE_CHECKING:
    from server.rooms.state import Room

from server.toolkit.messages import BAD_URL, NOT_FOUND, PEER_ABSENT  # noqa: F401 (error codes)

VERSION = 1
SUBPROTOCOL = "callassist.v1"

# Stable error codes (docs/protocol.md, "Error codes").
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
NOT_ALLOWED = "not_allowed"
NOTICE_NOT_ACCEPTED = "notice_not_accepted"
NOTICE_OUTDATED = "notice_outdated"
SDP_FAILED = "sdp_failed"
ROOM_ENDED = "room_ended"
INTERNAL = "internal"
LOGGED_OUT = "logged_out"  # the login the socket was opened with ended (docs/protocol.md)
# The socket's room is on another node and the way there (Redis) failed: docs/cluster.md.
CLUSTER_UNAVAILABLE = "cluster_unavailable"
# The room has rooms.max_participants people already (docs/protocol.md, "Team").
ROOM_FULL = "room_full"
ERROR_CODES = frozenset(
    {BAD_JSON, BAD_MESSAGE, UNKNOWN_TYPE, TOO_LARGE, RATE_LIMITED, NOT_ALLOWED}
    | {NOTICE_NOT_ACCEPTED, NOTICE_OUTDATED, SDP_FAILED, ROOM_ENDED, INTERNAL, LOGGED_OUT}
    | {BAD_URL, NOT_FOUND, PEER_ABSENT, CLUSTER_UNAVAILABLE, ROOM_FULL}
)

# Which role may send which message type.
ALLOWED: dict[str, frozenset[str]] = {
    "caller": frozenset({"offer", "candidate", "accept", "media", "leave", "ping"})
    | {"snapshot_failed"}  # recording: server/recording/service.py
    | {"dismiss"}  # team: ask a joined supervisor/expert to leave
    | TK.CALLER_TYPES,
    "agent": frozenset({"offer", "candidate", "media", "end", "ping"}) | TK.AGENT_TYPES,
    # A supervisor or expert who joined visibly: receives both tracks, points, marks and
    # chats like the agent (its toolkit messages have the agent's shapes).
    "staff": frozenset({"offer", "candidate", "ping", "pointer", "mark", "clear", "chat"}),
}
# Which track a staff participant's peer connection receives (offer/candidate `track`):
# one peer connection per track, since a media leg receives one track.
STAFF_TRACKS = ("camera", "screen")
ALL_TYPES = frozenset().union(*ALLOWED.values())
MAX_SDP = 60_000


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def to_message(self) -> dict[str, Any]:
        return error(self.code, self.message, self.ref)


@dataclass(frozen=True)
class Message:
    type: str
    data: dict[str, Any]


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], ref: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ProtocolError(BAD_MESSAGE, f"field '{name}' must be {expected}", ref)
    return value


# Why a caller's page cannot share the camera (media "unavailable"): permission denied, no
# camera, no RTCPeerConnection, an in-app browser, not a secure page, anything else.
CAMERA_UNAVAILABLE = frozenset(
    {"denied", "missing", "no_webrtc", "in_app_browser", "insecure", "other"}
)


def parse(raw: str, role: str) -> Message:
    """Parse and validate one client frame for `role`; raise ProtocolError when invalid."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise ProtocolError(BAD_JSON, "the message is not valid JSON") from None
    except RecursionError:  # nesting deeper than the interpreter's stack: hostile
        raise ProtocolError(BAD_JSON, "the message is nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError(BAD_JSON, "the message must be a JSON object")
    mtype = data.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError(BAD_MESSAGE, "field 'type' must be a string")
    if mtype not in ALL_TYPES:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type '{mtype[:40]}'", mtype[:40])
    if mtype not in ALLOWED[role]:
        raise ProtocolError(NOT_ALLOWED, f"a {role} may not send '{mtype}'", mtype)

    if mtype in TK.TYPES:  # the visual-assist toolkit (server/toolkit/messages.py)
        tk_role = "agent" if role == "staff" else role  # the agent's shapes
        try:
            return Message(mtype, TK.validate(mtype, data, tk_role, len(raw.encode())))
        except TK.Invalid as exc:
            raise ProtocolError(exc.code, str(exc), mtype) from None
    if role == "staff" and mtype in ("offer", "candidate"):
        track = data.get("track", "camera")
        if track not in STAFF_TRACKS:
            raise ProtocolError(BAD_MESSAGE, "field 'track' must be 'camera' or 'screen'", mtype)
        data["track"] = track
    if mtype == "dismiss":
        pid = _field(data, "participant", str, mtype)
        if not pid.startswith("staff-") or len(pid) > 80:
            raise ProtocolError(BAD_MESSAGE, "field 'participant' must name a staff participant",
                                mtype)  # fmt: skip
    elif mtype == "offer":
        pc = _field(data, "pc", int, mtype)
        if not 0 < pc < 2**31:
            raise ProtocolError(BAD_MESSAGE, "field 'pc' must be a positive integer", mtype)
        sdp = _field(data, "sdp", str, mtype)
        if not sdp.startswith("v=0") or len(sdp) > MAX_SDP:
            raise ProtocolError(BAD_MESSAGE, "field 'sdp' must be an SDP offer", mtype)
        if not isinstance(data.get("warm", False), bool):
            raise ProtocolError(BAD_MESSAGE, "field 'warm' must be true or false", mtype)
    elif mtype == "candidate":
        _field(data, "pc", int, mtype)
        cand = data.get("candidate")
        if cand is not None:
            if not isinstance(cand, dict) or not isinstance(cand.get("candidate"), str):
                raise ProtocolError(
                    BAD_MESSAGE,
                    "field 'candidate' must be an ICE candidate object or null",
                    mtype,
                )
            if len(cand["candidate"]) > 1024:
                raise ProtocolError(BAD_MESSAGE, "candidate too long", mtype)
            problem = candidate_problem(cand["candidate"])
            if problem:
                raise ProtocolError(BAD_MESSAGE, f"bad ICE candidate: {problem}", mtype)
    elif mtype == "snapshot_failed":
        if len(_field(data, "id", str, mtype)) > 64:
            raise ProtocolError(BAD_MESSAGE, "field 'id' is too long", mtype)
        if len(_field(data, "reason", str, mtype)) > 64:
            raise ProtocolError(BAD_MESSAGE, "field 'reason' is too long", mtype)
    elif mtype == "accept":
        _field(data, "notice", str, mtype)
    elif mtype == "media":
        track = _field(data, "track", str, mtype)
        state = _field(data, "state", str, mtype)
        expected_track = "camera" if role == "caller" else "screen"
        if track != expected_track:
            raise ProtocolError(NOT_ALLOWED, f"a {role} publishes only '{expected_track}'", mtype)
        if state == "unavailable" and role == "caller":
            # The caller's page cannot share the camera; the agent's console says why.
            reason = data.get("reason")
            if not isinstance(reason, str) or reason not in CAMERA_UNAVAILABLE:
                raise ProtocolError(
                    BAD_MESSAGE,
                    "field 'reason' must be one of " + ", ".join(sorted(CAMERA_UNAVAILABLE)),
                    mtype,
                )
        elif state not in ("live", "paused", "stopped"):
            raise ProtocolError(
                BAD_MESSAGE, "field 'state' must be 'live', 'paused' or 'stopped'", mtype
            )
    return Message(mtype, data)


def candidate_problem(line: str) -> str | None:
    """Why an RFC 8839 candidate line cannot be used (None when it can, or is empty =
    end of candidates). Checked here so a junk candidate costs the sender a `bad_message`
    instead of failing deep in the media layer."""
    if line.startswith("candidate:"):
        line = line[len("candidate:") :]
    if not line:
        return None
    bits = line.split()
    if len(bits) < 8:
        return "too few fields"
    if not bits[1].isdigit() or not 1 <= int(bits[1]) <= 256:
        return "the component must be 1..256"
    if bits[2].lower() not in ("udp", "tcp"):
        return "the transport must be udp or tcp"
    if not bits[3].isdigit() or int(bits[3]) >= 2**32:
        return "the priority must be a 32-bit number"
    if not bits[5].isdigit() or not 0 <= int(bits[5]) <= 65535:
        return "the port must be 0..65535"
    if bits[6] != "typ" or bits[7] not in ("host", "srflx", "prflx", "relay"):
        return "the type must be host, srflx, prflx or relay"
    return None


def parse_candidate(cand: dict[str, Any]) -> dict[str, Any]:
    """Keep only the fields of a browser RTCIceCandidateInit the media layer uses."""
    return {
        "candidate": cand["candidate"],
        "sdpMid": cand.get("sdpMid") if isinstance(cand.get("sdpMid"), str) else None,
        "sdpMLineIndex": cand.get("sdpMLineIndex")
        if isinstance(cand.get("sdpMLineIndex"), int)
        else None,
    }


# --- server -> client ----------------------------------------------------------------------
# Toolkit messages relayed from one participant to the other (validated copies, with the
# fields the server adds: `src`, `id`, `from`, `by`, `n`, `at`; docs/protocol.md "Toolkit").
RELAYED = frozenset(
    {"pointer", "mark", "clear", "camera_request", "camera_result", "caps", "still"}
    | {"push", "push_state", "chat", "chat_receipt", "netq"}
)
SERVER_TYPES = (
    frozenset(
        {"welcome", "room", "answer", "ended", "error", "pong"}
        | {"frozen", "unfrozen", "freeze_request"}  # toolkit
        | {"snapshot", "snapshot_failed", "photo"}  # recording
        | {"moved", "reopened"}  # a cluster's drain and failover (docs/protocol.md)
        | {"participant_joined", "participant_left", "removed"}  # team
    )
    | RELAYED
)


def welcome(
    role: str,
    participant: str,
    room_message: dict[str, Any],
    ice_servers: list[dict[str, Any]],
    *,
    notice: dict[str, Any] | None = None,
    toolkit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "welcome",
        "v": VERSION,
        "role": role,
        "participant": participant,
        "room": room_message,
        "iceServers": ice_servers,
    }
    if notice is not None:
        msg["notice"] = notice
    if toolkit is not None:
        msg["toolkit"] = toolkit
    return msg


def room(state: Room) -> dict[str, Any]:
    return {"type": "room", "room": state.to_message()}


def answer(pc: int, sdp: str) -> dict[str, Any]:
    return {"type": "answer", "pc": pc, "sdp": sdp}


def ended(reason: str) -> dict[str, Any]:
    return {"type": "ended", "reason": reason}


def error(code: str, message: str, ref: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref:
        msg["ref"] = ref
    return msg


def moved() -> dict[str, Any]:
    """The room moves to another node (drain): reconnect now (docs/protocol.md)."""
    return {"type": "moved"}


def reopened(chat_kept: bool) -> dict[str, Any]:
    """To the agent after its room was re-opened on another node: which toolkit state
    came back (docs/protocol.md, "reopened")."""
    lost = "lost"
    return {
        "type": "reopened",
        "toolkit": {"chat": "kept" if chat_kept else lost, "marks": lost, "frozen": lost,
                    "images": lost},
    }  # fmt: skip


def chat_kept(text: str, n: int, at: str | None, sender: str) -> dict[str, Any]:
    """A chat message as it was relayed, rebuilt from the database (toolkit.keep_chat)."""
    return {"type": "chat", "text": text, "n": n, "at": at, "from": sender}


def pong() -> dict[str, Any]:
    return {"type": "pong"}


def frozen(frame: str, src: str, by: str, at: str | None) -> dict[str, Any]:
    return {"type": "frozen", "frame": frame, "src": src, "by": by, "at": at}


def unfrozen(by: str) -> dict[str, Any]:
    return {"type": "unfrozen", "by": by}


def freeze_request(sender: str) -> dict[str, Any]:
    return {"type": "freeze_request", "from": sender}


def chat_receipt(by: str, n: int, state: str) -> dict[str, Any]:
    return {"type": "chat_receipt", "by": by, "n": n, "state": state}


def snapshot(request_id: str) -> dict[str, Any]:
    return {"type": "snapshot", "id": request_id}


def snapshot_failed(request_id: str, reason: str) -> dict[str, Any]:
    return {"type": "snapshot_failed", "id": request_id, "reason": reason[:64]}


def photo(view: dict[str, Any]) -> dict[str, Any]:
    return {"type": "photo", "photo": view}


# --- team: staff who join visibly (docs/protocol.md, "Team") -----------------------------
def participant_joined(participant: dict[str, Any]) -> dict[str, Any]:
    """To everyone in the room (the caller first) before the joiner gets any media."""
    return {"type": "participant_joined", "participant": participant}


def participant_left(participant: dict[str, Any], reason: str) -> dict[str, Any]:
    """`reason`: `left` (its socket closed) or `caller_asked` (the caller dismissed it)."""
    return {"type": "participant_left", "participant": participant, "reason": reason}


def removed(reason: str) -> dict[str, Any]:
    """To a staff participant the caller asked to leave, before its socket closes."""
    return {"type": "removed", "reason": reason}
