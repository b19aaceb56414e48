"""Visual-assist toolkit messages (docs/protocol.md, "Toolkit"): validation only, no I/O.

`server.protocol` calls `validate` for these types; what comes back is a clean copy with
only the known fields, so the server never relays a client's arbitrary JSON. Coordinates
are fractions (0..1) of the video's intrinsic frame (videoWidth x videoHeight), so a mark
lands on the same spot of the picture whatever the size, letterboxing or zoom of the
<video> that shows it.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit

# Error codes (also exported by server.protocol, listed in docs/protocol.md).
BAD_URL = "bad_url"
NOT_FOUND = "not_found"
PEER_ABSENT = "peer_absent"

CALLER_TYPES = frozenset(
    {"freeze", "unfreeze", "camera_result", "caps", "still", "push_state", "chat"}
    | {"chat_receipt", "netq"}
)
AGENT_TYPES = frozenset(
    {"pointer", "mark", "clear", "freeze", "unfreeze", "camera_request", "push", "chat"}
    | {"chat_receipt", "netq"}
)
TYPES = CALLER_TYPES | AGENT_TYPES

# Largest frame (bytes of JSON) per type: every toolkit message stays small.
MAX_BYTES = {"mark": 8_000, "chat": 6_000, "caps": 1_000}
DEFAULT_MAX_BYTES = 600

COLORS = ("red", "yellow", "green", "blue", "white", "black")
SHAPES = ("path", "arrow", "circle", "text")
SURFACES = ("camera", "freeze")
CAMERA_ACTIONS = ("torch", "zoom", "facing", "mode")
MODES = ("normal", "low", "photo")
FACINGS = ("user", "environment")
RESULTS = ("applied", "refused", "unsupported", "failed")
PUSH_KINDS = ("link", "image", "tutorial")
PUSH_STATES = ("shown", "opened", "closed")
RECEIPTS = ("delivered", "read")
MAX_PATH_POINTS = 300
MAX_MARK_TEXT = 140
MAX_CHAT_TEXT = 1000
MAX_URL = 2000

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
TUTORIAL_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")


class Invalid(Exception):
    """A toolkit message is not acceptable; `code` is a protocol error code."""

    def __init__(self, message: str, code: str = "bad_message") -> None:
        super().__init__(message)
        self.code = code


def _num(data: dict[str, Any], name: str, lo: float, hi: float) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"field '{name}' must be a number")
    if not lo <= value <= hi:
        raise Invalid(f"field '{name}' must be between {lo:g} and {hi:g}")
    return value


def _int(data: dict[str, Any], name: str, lo: int, hi: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Invalid(f"field '{name}' must be an integer from {lo} to {hi}")
    return value


def _enum(data: dict[str, Any], name: str, allowed: tuple[str, ...], default: str | None = None):
    value = data.get(name, default)
    if value not in allowed:
        raise Invalid(f"field '{name}' must be one of: {', '.join(allowed)}")
    return value


def _bool(data: dict[str, Any], name: str, default: bool | None = None) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise Invalid(f"field '{name}' must be true or false")
    return value


def _text(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"field '{name}' must be a non-empty string")
    if len(value) > limit:
        raise Invalid(f"field '{name}' may have at most {limit} characters")
    return value


def _id(data: dict[str, Any], name: str, pattern: re.Pattern[str] = ID_RE) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not pattern.match(value):
        raise Invalid(f"field '{name}' must be a short id ({pattern.pattern})")
    return value


def _point(value: Any) -> list[float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in value
        )
    ):
        raise Invalid("every point must be [x, y] with 0 <= x, y <= 1")
    return [round(float(value[0]), 4), round(float(value[1]), 4)]


def check_link(url: Any) -> tuple[str, str]:
    """(url, host) of a link that may be shown to a caller: http(s) only, with a host, no
    user:password@ part (it can make 'https://bank.example@evil.example' look like the
    bank), no spaces or control characters. Raise Invalid(code=bad_url) otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise Invalid(f"field 'url' must be a link of at most {MAX_URL} characters", BAD_URL)
    if _CONTROL.search(url):
        raise Invalid("the link contains spaces or control characters", BAD_URL)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise Invalid("the link is not a valid URL", BAD_URL) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise Invalid("only http:// and https:// links can be sent", BAD_URL)
    if not host:
        raise Invalid("the link has no host", BAD_URL)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise Invalid("links with a user name or password are refused", BAD_URL)
    try:
        host_ascii = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise Invalid("the link's host name is not valid", BAD_URL) from None
    shown = host_ascii if port is None else f"{host_ascii}:{port}"
    return url, shown


def validate(mtype: str, data: dict[str, Any], role: str, raw_bytes: int) -> dict[str, Any]:
    """Check one toolkit message from `role`; return the fields that may be relayed."""
    limit = MAX_BYTES.get(mtype, DEFAULT_MAX_BYTES)
    if raw_bytes > limit:
        raise Invalid(f"a '{mtype}' message may have at most {limit} bytes")
    out: dict[str, Any] = {"type": mtype}
    if mtype == "pointer":
        out["on"] = _enum(data, "on", SURFACES, "camera")
        if data.get("x") is None and data.get("y") is None:
            out["x"] = out["y"] = None  # hide the pointer
        else:
            out["x"] = round(_num(data, "x", 0, 1), 4)
            out["y"] = round(_num(data, "y", 0, 1), 4)
    elif mtype == "mark":
        out["id"] = _id(data, "id")
        shape = out["shape"] = _enum(data, "shape", SHAPES)
        out["on"] = _enum(data, "on", SURFACES, "camera")
        out["color"] = _enum(data, "color", COLORS, "red")
        out["pin"] = _bool(data, "pin", False)
        pts = data.get("pts")
        want = {"arrow": (2, 2), "circle": (2, 2), "text": (1, 1)}.get(shape, (1, MAX_PATH_POINTS))
        if not isinstance(pts, list) or not want[0] <= len(pts) <= want[1]:
            raise Invalid(f"a '{shape}' mark needs {want[0]} to {want[1]} points in 'pts'")
        out["pts"] = [_point(p) for p in pts]
        if shape == "text":
            out["text"] = _text(data, "text", MAX_MARK_TEXT)
        if "ar" in data:  # aspect ratio of the frame the agent drew on
            out["ar"] = round(_num(data, "ar", 0.1, 10), 4)
    elif mtype == "clear":
        out["on"] = _enum(data, "on", SURFACES, "camera")
        if data.get("id") is not None:
            out["id"] = _id(data, "id")
    elif mtype == "freeze":
        if role == "agent":
            out["frame"] = _id(data, "frame")
    elif mtype == "unfreeze":
        pass
    elif mtype == "camera_request":
        out["id"] = _int(data, "id", 1, 2**31 - 1)
        action = out["action"] = _enum(data, "action", CAMERA_ACTIONS)
        if action == "torch":
            out["value"] = _bool(data, "value")
        elif action == "zoom":
            out["value"] = _num(data, "value", 0.1, 100)
        elif action == "facing":
            out["value"] = _enum(data, "value", FACINGS)
        else:
            out["value"] = _enum(data, "value", MODES)
    elif mtype == "camera_result":
        out["id"] = _int(data, "id", 1, 2**31 - 1)
        out["action"] = _enum(data, "action", CAMERA_ACTIONS)
        out["result"] = _enum(data, "result", RESULTS)
    elif mtype == "caps":
        out["torch"] = _bool(data, "torch", False)
        out["torch_on"] = _bool(data, "torch_on", False)
        out["can_switch"] = _bool(data, "can_switch", False)
        out["mode"] = _enum(data, "mode", MODES, "normal")
        facing = data.get("facing")
        out["facing"] = None if facing is None else _enum(data, "facing", FACINGS)
        zoom = data.get("zoom")
        if zoom is None:
            out["zoom"] = None
        elif isinstance(zoom, dict):
            z = {k: _num(zoom, k, 0, 1000) for k in ("min", "max", "step", "value")}
            if not z["min"] <= z["value"] <= z["max"]:
                raise Invalid("field 'zoom' must have min <= value <= max")
            out["zoom"] = z
        else:
            raise Invalid("field 'zoom' must be an object or null")
    elif mtype == "still":
        out["image"] = _id(data, "image")
    elif mtype == "push":
        kind = out["kind"] = _enum(data, "kind", PUSH_KINDS)
        if kind == "link":
            out["url"], out["host"] = check_link(data.get("url"))
        elif kind == "image":
            out["image"] = _id(data, "image")
        else:
            out["tutorial"] = _id(data, "tutorial", TUTORIAL_ID_RE)
        if data.get("title") is not None:
            out["title"] = _text(data, "title", 80)
    elif mtype == "push_state":
        out["id"] = _id(data, "id")
        out["state"] = _enum(data, "state", PUSH_STATES)
        if data.get("step") is not None:
            out["step"] = _int(data, "step", 0, 100)
    elif mtype == "chat":
        out["text"] = _text(data, "text", MAX_CHAT_TEXT)
        if data.get("cid") is not None:
            out["cid"] = _id(data, "cid")
    elif mtype == "chat_receipt":
        out["n"] = _int(data, "n", 1, 2**31 - 1)
        out["state"] = _enum(data, "state", RECEIPTS)
    elif mtype == "netq":
        out["score"] = _int(data, "score", 0, 5)
        for name, hi in (("rtt", 60_000), ("loss", 100), ("fps", 240), ("kbps", 1_000_000)):
            if data.get(name) is not None:
                out[name] = round(_num(data, name, 0, hi), 1)
    else:  # pragma: no cover - TYPES and this function change together
        raise Invalid(f"unknown toolkit message '{mtype}'")
    return out
