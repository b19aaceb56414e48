"""Signalling protocol v1: message parsing and validation (pure, no I/O).

docs/protocol.md is the specification; this module and that page change together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from server.toolkit import messages as TK
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

# Which role may send which message type.
ALLOWED: dict[str, frozenset[str]] = {
    "caller": frozenset({"offer", "candidate", "accept", "media", "leave", "ping"})
    | {"snapshot_failed"}  # recording: server/recording/service.py
    | TK.CALLER_TYPES,
    "agent": frozenset({"offer", "candidate", "media", "end", "ping"}) | TK.AGENT_TYPES,
}
ALL_TYPES = frozenset().union(*ALLOWED.values())
MAX_SDP = 60_000


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def to_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.ref:
            msg["ref"] = self.ref
        return msg


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


def parse(raw: str, role: str) -> Message:
    """Parse and validate one client frame for `role`; raise ProtocolError when invalid."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise ProtocolError(BAD_JSON, "the message is not valid JSON") from None
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
        try:
            return Message(mtype, TK.validate(mtype, data, role, len(raw.encode())))
        except TK.Invalid as exc:
            raise ProtocolError(exc.code, str(exc), mtype) from None
    if mtype == "offer":
        pc = _field(data, "pc", int, mtype)
        if not 0 < pc < 2**31:
            raise ProtocolError(BAD_MESSAGE, "field 'pc' must be a positive integer", mtype)
        sdp = _field(data, "sdp", str, mtype)
        if not sdp.startswith("v=0") or len(sdp) > MAX_SDP:
            raise ProtocolError(BAD_MESSAGE, "field 'sdp' must be an SDP offer", mtype)
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
        if state not in ("live", "paused", "stopped"):
            raise ProtocolError(
                BAD_MESSAGE, "field 'state' must be 'live', 'paused' or 'stopped'", mtype
            )
    return Message(mtype, data)


def parse_candidate(cand: dict[str, Any]) -> dict[str, Any]:
    """Keep only the fields of a browser RTCIceCandidateInit the media layer uses."""
    return {
        "candidate": cand["candidate"],
        "sdpMid": cand.get("sdpMid") if isinstance(cand.get("sdpMid"), str) else None,
        "sdpMLineIndex": cand.get("sdpMLineIndex")
        if isinstance(cand.get("sdpMLineIndex"), int)
        else None,
    }
