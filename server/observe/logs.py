"""Logging: one JSON object per line (or plain text), with the request and room id of the
line when known, phone numbers masked and one-time link tokens removed.

`setup_logging("json")` configures the standard library's root logger (the CLI does it for
`callassist serve --log-format json`). `setup(app)` adds the middleware that gives every
request an id (`X-Request-Id`, echoed back) and puts it, and the room id of the URL, into
context variables that every log line of that request (and of tasks it starts) carries.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import IO, Any

from aiohttp import web

from server.core.appkeys import CONFIG
from server.core.phone import mask_text, region_for

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "callassist_request_id", default=None
)
room_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "callassist_room_id", default=None
)

# What must never reach a log line, whoever logs it (aiohttp's access log included).
_LINK = re.compile(r"/j/[A-Za-z0-9_-]{6,}")
# The region local numbers ("20000099") are read in: the deployment's
# session.default_country_code (set_phone_region, from setup(app)); Latvia until then, as the
# default configuration.
_phone_region: str | None = "LV"
_SECRET_PARAM = re.compile(
    r"(?i)\b(token|password|csrf|cookie|secret|key|credential)(\s*[=:]\s*)([^\s&;,\"']+)"
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Attributes of every LogRecord: anything else given in `extra=` goes into the JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def redact(text: str) -> str:
    """Remove link tokens and secrets and mask phone numbers in `text`."""
    text = _LINK.sub("/j/<token>", text)
    text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", text)
    return mask_text(text, _phone_region)


def set_phone_region(region: str | None) -> None:
    """Logging is process-wide, so is the region its masking reads local numbers in."""
    global _phone_region
    _phone_region = region


class ContextFilter(logging.Filter):
    """Adds request_id/room_id to each record and redacts its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        if getattr(record, "room_id", None) is None:
            record.room_id = room_id.get()
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "room_id"):
            value = getattr(record, key, None)
            if value:
                out[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                if key in ("request_id", "room_id"):
                    continue
                out[key] = value if isinstance(value, int | float | bool) else redact(str(value))
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


# Control characters (newlines above all) in a logged value would forge lines of the text
# log: they are written escaped (\\n, \\x1b, ...).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def escape_control(text: str) -> str:
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text)


# What the access log says of a client (http.access_log_clients, docs/ops.md "Logs"):
# "none" (default: no address, no User-Agent), "masked" (the address's network, /24 or
# /48, and the browser's product name only), "full" (aiohttp's own format).
ACCESS_LOG_CLIENTS = ("none", "masked", "full")
ACCESS_FORMAT_NONE = '%t "%r" %s %b %Tf'
ACCESS_FORMAT_CLIENT = '%a %t "%r" %s %b %Tf "%{User-Agent}i"'


def access_log_format(clients: str) -> str:
    return ACCESS_FORMAT_NONE if clients == "none" else ACCESS_FORMAT_CLIENT


def mask_address(address: str | None) -> str:
    import ipaddress

    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "-"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def user_agent_product(ua: str) -> str:
    # "Mozilla/5.0 (Linux; Android 14; ...) ..." -> "Mozilla": no version, no device.
    first = ua.split(" ", 1)[0].split("/", 1)[0]
    return escape_control(first[:32]) or "-"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ctx)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [
            v for v in (getattr(record, "request_id", None), getattr(record, "room_id", None)) if v
        ]
        record.ctx = escape_control(f" [{' '.join(ids)}]") if ids else ""
        # One record, one line: the message is escaped (a traceback after it stays
        # multi-line, each of its lines indented by Python, so it cannot pass for a record).
        saved = record.msg, record.args
        record.msg, record.args = escape_control(record.getMessage()), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = saved


def make_handler(fmt: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing `fmt` ("json" or "text") lines to `stream` (default stderr)."""
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be 'json' or 'text', not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


def setup_logging(fmt: str = "text", level: str | int = "INFO") -> None:
    """Configure the root logger for the whole process (replaces earlier handlers)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(fmt))
    root.setLevel(level)


# --- per-request context -------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Each request runs in its own task: these values last for this request (and the access
    # log line after it) only.
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
    request_id.set(rid)
    info = request.match_info
    room = info.get("room_id") or info.get("session_id")
    room_id.set(room[:40] if room else None)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = rid
        raise
    response.headers["X-Request-Id"] = rid
    return response


def setup(app: web.Application) -> None:
    if CONFIG in app:
        set_phone_region(region_for(app[CONFIG].session.default_country_code))
    app.middlewares.append(request_context)
