"""The effective configuration for the admin page (`GET /api/admin/config`), read-only and
with every secret-bearing value masked.

The config file holds no secrets by design (server/core/secrets.py), but some of its
values can still carry one: a database or Redis URL with a password in it, a receiver URL
whose path or query is its token (hook URLs often are), a TURN URL with credentials. Every
string field of `Config` is classified below; one that is not (a field added later) is
masked whole, so a new key is never shown in clear by accident — tests/test_admin_page.py
fails until it is classified. The secrets themselves (`Secrets`) are reported only as set
or not set. Pure: the config and secrets in, JSON-ready data out.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from server.core.config import Config
from server.core.secrets import Secrets

MASK = "•••"

# Shown as they are: names, modes, paths, regions, public addresses.
PLAIN = frozenset({
    "environment", "http.allowed_origins", "http.access_log_clients",
    "session.default_country_code", "session.notice_version", "session.privacy_contact",
    "session.operator_name", "media.codec", "media.event_loop", "media.ice_host_addresses",
    "media.udp_ports",
    "sms.sender", "sms.allowed_countries", "sms.allowed_types", "recording.mode",
    "recording.storage", "recording.local_dir", "recording.spool_dir", "recording.keyring",
    "recording.keys_dir", "recording.s3.bucket", "recording.s3.region",
    "recording.s3.allowed_regions", "recording.kms.key_id", "recording.kms.region",
    "toolkit.tutorials_dir", "inspect.tesseract", "cluster.router", "cluster.node_id",
    "auth.oidc.client_id", "auth.oidc.scopes", "auth.oidc.role_claim",
    "auth.oidc.username_claim", "auth.oidc.privileged_roles",
})  # fmt: skip
# URLs that may hold a user name and password or a query with a token: those are masked,
# the scheme, host, port and path are shown (a database name, a file path).
URLS = frozenset({
    "http.public_url", "media.stun_urls", "media.turn_urls", "media.server_turn_url",
    "storage.database_url", "recording.s3.endpoint_url", "recording.kms.endpoint_url",
    "cluster.redis_url", "cluster.internal_url", "auth.oidc.issuer",
})  # fmt: skip
# Receivers that authenticate us by their URL alone: only their origin is shown.
RECEIVERS = frozenset({"webhooks.urls", "sms.http_url"})


def mask_url(value: str) -> str:
    """The URL without its password (and user name) and without its query's values."""
    if not value:
        return value
    if "://" not in value:
        # turn:user:pass@host:3478?transport=udp and the like: no authority part.
        scheme, sep, rest = value.partition(":")
        if "@" in rest:
            rest = MASK + "@" + rest.rsplit("@", 1)[1]
        head, q, query = rest.partition("?")
        return scheme + sep + head + (q + _mask_query(query) if q else "")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK  # not a URL we can take apart: nothing of it is shown
    if parts.username is None and parts.password is None and not parts.query:
        return value.split("#", 1)[0]  # nothing to hide (rebuilding would alter sqlite:///)
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, _mask_query(parts.query), ""))


def _mask_query(query: str) -> str:
    if not query:
        return ""
    return "&".join(f"{p.partition('=')[0]}={MASK}" if "=" in p else MASK
                    for p in query.split("&"))  # fmt: skip


def origin_only(value: str) -> str:
    """A receiver URL as its scheme, host and port; the rest (its token) masked."""
    if not value:
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    netloc = (host if ":" not in host else f"[{host}]") + (f":{port}" if port else "")
    rest = "/" + MASK if parts.path.strip("/") or parts.query or parts.username else ""
    return f"{parts.scheme}://{netloc}{rest}"


def string_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of a string or list-of-strings field (for the classification test)."""
    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out += string_keys(typing.cast(type, hint), f"{prefix}{f.name}.")
        elif hint is str or typing.get_origin(hint) is list:
            out.append(prefix + f.name)
    return out


def _shown(key: str, value: Any) -> tuple[Any, bool]:
    """The value as shown, and whether any of it was masked."""
    if not isinstance(value, str | list):
        return value, False  # numbers and switches carry no secret
    if key in PLAIN:
        return value, False
    fn = mask_url if key in URLS else origin_only if key in RECEIVERS else None
    if fn is None:  # not classified: masked whole
        return (MASK if value else value) if isinstance(value, str) else [MASK for _ in value], True
    if isinstance(value, list):
        shown = [fn(v) for v in value]
        return shown, shown != value
    out = fn(value)
    return out, out != value


def effective_config(cfg: Config, secrets: Secrets | None) -> dict[str, Any]:
    """Sections of `{key, value, masked}` rows, and which secrets are set."""
    sections: dict[str, list[dict[str, Any]]] = {}

    def walk(obj: Any, prefix: str, section: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = prefix + f.name
            if dataclasses.is_dataclass(value):
                walk(value, key + ".", section or f.name)
                continue
            shown, masked = _shown(key, value)
            sections.setdefault(section or "general", []).append(
                {"key": key, "value": shown, "masked": masked}
            )

    walk(cfg, "", "")
    names = [f.name for f in dataclasses.fields(Secrets)]
    secret_rows = [{"name": n, "set": bool(secrets and getattr(secrets, n))} for n in names]
    return {
        "sections": [{"name": n, "keys": rows} for n, rows in sections.items()],
        "secrets": secret_rows,
    }
