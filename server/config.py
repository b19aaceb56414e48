"""Strict configuration loading.

The TOML file maps one-to-one onto the dataclasses below. Unknown keys are an error that
names the key (a typo must never silently fall back to a default), and so is a value of the
wrong type. Secrets never live here: see `server.secrets`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is wrong."""


@dataclass(frozen=True)
class HttpConfig:
    # Where links point to. Links are built from this, never from the request's Host.
    public_url: str = "http://127.0.0.1:8080"
    # Extra origins allowed to open WebSockets and send state-changing requests.
    allowed_origins: list[str] = field(default_factory=list)
    # Largest request body accepted (bytes).
    max_body_bytes: int = 1_048_576
    # Set when a TLS-terminating reverse proxy sits in front (trust X-Forwarded-For).
    behind_proxy: bool = False


@dataclass(frozen=True)
class SessionConfig:
    default_country_code: str = "+371"
    # A link that has not been opened within this many seconds stops working.
    link_ttl_s: int = 900
    # Link opens allowed per client address per minute.
    link_opens_per_minute: int = 20
    # The room ends when nothing happened (no media, no message) for this long.
    inactivity_timeout_s: int = 900
    # The room ends after this long, whatever happens.
    max_duration_s: int = 7200
    # Version of the service notice and privacy summary the caller accepts.
    notice_version: str = "2026-11-01"
    # Shown to callers in the privacy summary.
    privacy_contact: str = "privacy@example.eu"
    operator_name: str = "Example Telecom"


@dataclass(frozen=True)
class AuthConfig:
    # Agent login session lifetime.
    session_ttl_s: int = 43_200
    login_attempts_per_minute: int = 10


@dataclass(frozen=True)
class SignallingConfig:
    max_message_bytes: int = 65_536
    heartbeat_s: float = 15.0
    rate_per_s: float = 50.0
    burst: int = 100
    # Messages queued for one slow client before it is dropped.
    outbox_size: int = 256


@dataclass(frozen=True)
class MediaConfig:
    # "VP8" or "H264": one codec on every leg, so frames are forwarded without re-encoding.
    codec: str = "VP8"
    # Addresses offered as ICE host candidates; empty = every interface address.
    ice_host_addresses: list[str] = field(default_factory=list)
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    # TURN credential lifetime (coturn use-auth-secret); the secret comes from secrets.
    turn_ttl_s: int = 3600
    # Frames queued per subscriber before it is reset to the next keyframe.
    subscriber_queue_frames: int = 60
    # Minimum spacing of keyframe requests sent upstream to one source.
    keyframe_min_interval_s: float = 0.3


@dataclass(frozen=True)
class SmsConfig:
    # "console" logs (phone masked) that a message would be sent; "http" POSTs JSON.
    sender: str = "console"
    http_url: str = ""
    http_timeout_s: float = 5.0


@dataclass(frozen=True)
class StorageConfig:
    # "sqlite:///{data_dir}/callassist.db" by default; postgresql+asyncpg://... in production.
    database_url: str = ""


@dataclass(frozen=True)
class Config:
    # "embedded" generates missing secrets into the data directory; "production" refuses to
    # start without them.
    environment: str = "embedded"
    http: HttpConfig = field(default_factory=HttpConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    signalling: SignallingConfig = field(default_factory=SignallingConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    @property
    def secure_cookies(self) -> bool:
        return self.http.public_url.startswith("https://")

    @property
    def public_origin(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.http.public_url)
        return f"{parts.scheme}://{parts.netloc}"


def _check_type(path: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        return [_check_type(f"{path}[{i}]", v, item) for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: expected {hint.__name__}, got {type(value).__name__}")
        return value
    raise ConfigError(f"{path}: unsupported type {hint}")  # pragma: no cover


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            where = f"{prefix}{key}"
            raise ConfigError(f"unknown configuration key '{where}'")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        hint = hints[f.name]
        path = f"{prefix}{f.name}"
        value = data[f.name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a table [{path}]")
            kwargs[f.name] = _build(typing.cast(type, hint), value, f"{path}.")
        else:
            if isinstance(hint, types.UnionType):  # pragma: no cover - not used yet
                raise ConfigError(f"{path}: unsupported type")
            kwargs[f.name] = _check_type(path, value, hint)
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    if cfg.environment not in ("embedded", "production"):
        raise ConfigError("environment: must be 'embedded' or 'production'")
    if not cfg.http.public_url.startswith(("http://", "https://")):
        raise ConfigError("http.public_url: must start with http:// or https://")
    if cfg.media.codec not in ("VP8", "H264"):
        raise ConfigError("media.codec: must be 'VP8' or 'H264'")
    if cfg.sms.sender not in ("console", "http"):
        raise ConfigError("sms.sender: must be 'console' or 'http'")
    if cfg.sms.sender == "http" and not cfg.sms.http_url.startswith(("http://", "https://")):
        raise ConfigError("sms.http_url: required (http:// or https://) when sms.sender = 'http'")
    if not cfg.session.default_country_code.startswith("+"):
        raise ConfigError("session.default_country_code: must start with '+', e.g. '+371'")
    for name in ("link_ttl_s", "inactivity_timeout_s", "max_duration_s"):
        if getattr(cfg.session, name) <= 0:
            raise ConfigError(f"session.{name}: must be positive")


def from_dict(data: dict[str, Any]) -> Config:
    cfg = _build(Config, data, "")
    _validate(cfg)
    return cfg


def load(path: Path | None) -> Config:
    """Load `path` (TOML) or, with None, the built-in defaults."""
    if path is None:
        return from_dict({})
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data)


def replace(cfg: Config, **sections: Any) -> Config:
    """A copy of cfg with whole sections or top-level values replaced (used by tests)."""
    return dataclasses.replace(cfg, **sections)
