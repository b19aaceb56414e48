"""Service secrets: never in the config file, never with a default value.

In the embedded environment a missing secret is generated once into `<data-dir>/secrets/`
(mode 0600) and reused. In production every secret must come from the environment, either
`CALLASSIST_<NAME>` or `CALLASSIST_<NAME>_FILE` (a path), and the service refuses to start
without it, naming the missing one.
"""

from __future__ import annotations

import logging
import os
import secrets as pysecrets
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class MissingSecret(RuntimeError):
    pass


# A server key shorter than this is guessable (it signs CSRF tokens and HMACs subjects);
# 32 characters of `openssl rand -base64 32` carry ~190 bits (docs/security.md, "Secrets").
MIN_SERVER_KEY_CHARS = 32


@dataclass(frozen=True)
class Secrets:
    # Signs CSRF tokens and other server-side HMACs.
    server_key: bytes
    # Signs SMS-gateway requests (sms.sender = "http"); None when not used.
    sms_hmac_key: bytes | None
    # coturn `static-auth-secret` for time-limited TURN credentials; None without TURN.
    turn_secret: str | None
    # Signs webhook deliveries (webhooks.urls set); None when not used.
    webhook_key: bytes | None = None
    # Bearer token Prometheus sends to GET /metrics; None (production without
    # CALLASSIST_METRICS_TOKEN): /metrics refuses everyone.
    metrics_token: str | None = None
    # The OpenID Connect client secret (auth.oidc.issuer set); None without single sign-on.
    # Never generated: it is the one the provider issued.
    oidc_client_secret: str | None = None


def _from_env(name: str) -> str | None:
    env = f"CALLASSIST_{name.upper()}"
    if env in os.environ:
        return os.environ[env]
    path = os.environ.get(env + "_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise MissingSecret(f"{env}_FILE={path}: cannot read ({exc.strerror})") from None
    return None


def _embedded(data_dir: Path, name: str) -> str:
    folder = data_dir / "secrets"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{name}.key"
    if path.exists():
        return path.read_text().strip()
    value = pysecrets.token_urlsafe(32)
    # O_EXCL + 0600: never world-readable, never overwritten by a second process.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    log.warning("generated secret '%s' into %s (embedded environment)", name, path)
    return value


def load_secrets(
    environment: str,
    data_dir: Path,
    *,
    need_sms: bool,
    need_turn: bool,
    need_webhook: bool = False,
    need_oidc: bool = False,
) -> Secrets:
    def get(name: str, needed: bool) -> str | None:
        value = _from_env(name)
        if value:
            return value
        if not needed:
            return None
        if environment == "production":
            raise MissingSecret(
                f"secret '{name}' is missing: set CALLASSIST_{name.upper()} or "
                f"CALLASSIST_{name.upper()}_FILE (environment = 'production' never generates "
                "secrets)"
            )
        return _embedded(data_dir, name)

    server_key = get("server_key", True)
    assert server_key is not None
    if environment == "production" and len(server_key) < MIN_SERVER_KEY_CHARS:
        raise MissingSecret(
            f"secret 'server_key' is too short ({len(server_key)} characters): production "
            f"needs at least {MIN_SERVER_KEY_CHARS}; set CALLASSIST_SERVER_KEY (or _FILE) to "
            "e.g. the output of `openssl rand -base64 32`"
        )
    sms = get("sms_hmac_key", need_sms)
    turn = get("turn_secret", need_turn)
    webhook = get("webhook_key", need_webhook)
    oidc = _from_env("oidc_client_secret") if need_oidc else None
    if need_oidc and not oidc:
        # Not generated even in embedded: only the provider's own value works.
        raise MissingSecret(
            "secret 'oidc_client_secret' is missing: auth.oidc.issuer is set; put the client "
            "secret the provider issued in CALLASSIST_OIDC_CLIENT_SECRET or "
            "CALLASSIST_OIDC_CLIENT_SECRET_FILE"
        )
    # Optional in production (metrics are then off), generated in embedded.
    metrics = get("metrics_token", environment != "production")
    return Secrets(
        server_key=server_key.encode(),
        sms_hmac_key=sms.encode() if sms else None,
        turn_secret=turn,
        webhook_key=webhook.encode() if webhook else None,
        metrics_token=metrics,
        oidc_client_secret=oidc,
    )
