"""The vocabulary of the route table (server/http/openapi_routes*.py): `Route`, who may call
it (the columns of the role matrix in docs/security.md), JSON schema helpers and the
schemas several routes share. Pure data, no aiohttp: server/http/openapi.py turns the
table into the OpenAPI document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]

# --- who may call a route ----------------------------------------------------------------
# The columns of docs/security.md's matrix; a route lists the ones that succeed ("yes"),
# or succeed on their own sessions/rooms only ("own"). tests/test_openapi.py compares.
MATRIX_ROLES = ("anonymous", "caller", "agent", "supervisor", "dpo", "admin")
STAFF_ROLES = ("agent", "supervisor", "dpo", "admin")
Roles = dict[str, str]

ANYONE: Roles = {r: "yes" for r in MATRIX_ROLES}
STAFF: Roles = {r: "yes" for r in STAFF_ROLES}
CALLER: Roles = {"caller": "yes"}
AGENT: Roles = {"agent": "yes"}
AGENT_OWN: Roles = {"agent": "own"}
SUPERVISOR: Roles = {"supervisor": "yes"}
DPO: Roles = {"dpo": "yes"}
ADMIN: Roles = {"admin": "yes"}


# --- schema helpers ------------------------------------------------------------------------
STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
ANY_OBJ: Schema = {"type": "object"}


def opt(schema: Schema) -> Schema:
    """The schema, or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


def obj(required: tuple[str, ...] | str = "all", /, **props: Schema | str) -> Schema:
    """A JSON object. A property given as a string is a string with that description.
    `required` names the fields always there ("all": every one)."""
    properties = {k: ({"type": "string", "description": v} if isinstance(v, str) else v)
                  for k, v in props.items()}  # fmt: skip
    out: Schema = {"type": "object", "properties": properties}
    names = list(properties) if required == "all" else list(required)
    if names:
        out["required"] = names
    return out


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# --- responses and bodies ------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    status: int
    description: str
    schema: Schema | None = None  # a JSON body
    media: str | None = None  # another body (text/html, image/jpeg, ...)


def ok(description: str, schema: Schema | None = None, status: int = 200) -> Reply:
    return Reply(status, description, schema)


def page(description: str) -> Reply:
    return Reply(200, description, media="text/html")


def redirect(status: int, description: str) -> Reply:
    return Reply(status, description)


def binary(description: str, media: str) -> Reply:
    return Reply(200, description, media=media)


WEBSOCKET = Reply(101, "WebSocket upgrade (subprotocol `callassist.v1`; docs/protocol.md)")


@dataclass(frozen=True)
class Body:
    """A request body that is not JSON (an image, for instance)."""

    media: str
    description: str


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    schema: Schema = field(default_factory=lambda: STR)
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    roles: Roles
    reply: Reply
    tag: str
    body: Schema | Body | None = None  # a Schema: a JSON object
    query: tuple[Query, ...] = ()
    # Error answers beyond those the roles imply (401 without a login, 403 for another
    # role or a missing CSRF token, 404 for another agent's session): status, or
    # (status, what it means here), or a Reply (an answer that is not the JSON error).
    errors: tuple[int | tuple[int, str] | Reply, ...] = ()
    description: str = ""


# --- schemas several routes share (components/schemas) ------------------------------------
ERROR = obj(error=obj(code="machine-readable, e.g. `bad_phone`", message="for people"))
CALLER_STATUS = enum("link_sent", "opened", "accepted", "connecting", "live", "paused",
                     "reconnecting", "left", "ended")  # fmt: skip
SESSION = obj(
    id="session id (also the room id)",
    phone="E.164",
    phone_masked=STR,
    reference="ticket or reference id (may be empty)",
    state=enum("waiting", "active", "ended"),
    caller_status=CALLER_STATUS,
    device_type=opt(STR),
    created_at=TIME,
    ended_at=opt(TIME),
    end_reason=opt(STR),
)
LINK = obj(
    link={"type": "string", "format": "uri", "description": "the one-time link"},
    qr_svg="SVG document of the link's QR code",
    expires_at=TIME,
    sms={
        "type": "object",
        "description": "per language (lv, en, ru): encoding (GSM-7 or "
        "UCS-2), characters, segments and per_segment of the SMS that would carry this link",
    },
)
USER = obj(name=STR, role=enum(*STAFF_ROLES), disabled=BOOL)
RECORDING_STATE = obj(
    active=BOOL,
    id=opt(STR),
    mode=enum("off", "on_demand", "always"),
    started_at=opt(TIME),
    warning=opt({"type": "string", "description": "`spool_over_limit` while S3 lags"}),
)
RECORDING = obj(
    id=STR, kind=enum("video", "snapshot", "upload"),
    status=enum("recording", "complete", "incomplete", "failed"),
    started_at=TIME, ended_at=opt(TIME), storage_key=STR, bytes=INT, segments=INT,
    frames=INT, container=opt(STR), error=opt(STR),
)  # fmt: skip
PHOTO = obj(
    ("id", "kind", "taken_at", "url"),
    id=STR, kind=enum("snapshot", "upload"), taken_at=TIME, width=opt(INT),
    height=opt(INT), bytes=INT, snapshot_id=opt(STR),
    url="where the agent fetches it (`/api/sessions/{id}/photos/{photo_id}`)",
)  # fmt: skip
BLOB = obj(id=STR, kind=enum("frame", "image", "still"), src="its URL, for the room only")
SESSION_SUMMARY = obj(
    id=STR, phone=STR, reference=STR, state=STR, agent=opt(STR), device_type=opt(STR),
    notice_version=opt(STR), created_at=TIME, ended_at=opt(TIME), recordings=INT,
    snapshots=INT, uploads=INT,
)  # fmt: skip

COMPONENTS: dict[str, Schema] = {
    "Error": ERROR,
    "Session": SESSION,
    "Link": LINK,
    "User": USER,
    "RecordingState": RECORDING_STATE,
    "Recording": RECORDING,
    "Photo": PHOTO,
    "Blob": BLOB,
    "SubjectSession": SESSION_SUMMARY,
}
