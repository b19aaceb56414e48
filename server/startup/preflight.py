"""The start checks of `serve`, runnable on their own: `callassist config check` and
`callassist serve` both call `preflight()`, so the check cannot say "OK" to a configuration
the server then refuses.

Each problem names the key (or environment variable) and what to change. Nothing is
started and nothing is written to the data directory: secrets that the embedded
environment would generate are resolved in a throwaway directory, recording master keys
are only read, and an S3 bucket is only asked where it is (HeadBucket; the lifecycle rule
`serve` may add is not touched).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import NoRegionError

from recorder import KeyringError, RegionNotAllowed, StorageError
from recorder.keys import ENV_VAR
from recorder.storage import S3Storage
from server.core.config import Config
from server.core.db import Database
from server.core.secrets import MissingSecret, load_secrets
from server.recording.building import build_keyring, build_storage, keys_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    key: str  # configuration key or environment variable
    message: str  # what is wrong, and what to change

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def _named(text: str, fallback: str) -> str:
    # Secret problems name their environment variable; that is the key to change.
    found = re.search(r"CALLASSIST_[A-Z_]+", text)
    return found.group(0) if found else fallback


def _secrets(cfg: Config, data_dir: Path) -> list[Problem]:
    need = {
        "need_sms": cfg.sms.sender == "http",
        "need_turn": bool(cfg.media.turn_urls or cfg.media.server_turn_url),
        "need_webhook": bool(cfg.webhooks.urls),
        "need_oidc": bool(cfg.auth.oidc.issuer),
    }
    try:
        if cfg.environment == "production":
            load_secrets(cfg.environment, data_dir, **need)  # never generates in production
        else:
            # Embedded would generate what is missing: do it where it is thrown away, which
            # still reads every CALLASSIST_*_FILE the server would read.
            quiet = logging.getLogger("server.core.secrets")
            level = quiet.level
            quiet.setLevel(logging.ERROR)  # "generated" would mislead
            try:
                with tempfile.TemporaryDirectory() as scratch:
                    load_secrets(cfg.environment, Path(scratch), **need)
            finally:
                quiet.setLevel(level)
    except MissingSecret as exc:
        return [Problem(_named(str(exc), "secrets"), str(exc))]
    return []


def _has_keys(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("mk-*.key"))


def _keyring(cfg: Config, data_dir: Path) -> list[Problem]:
    rc = cfg.recording
    from_env = bool(os.environ.get(ENV_VAR) or os.environ.get(f"{ENV_VAR}_FILE"))
    embedded = cfg.environment != "production"
    if (
        rc.keyring == "local"
        and embedded
        and not from_env
        and not _has_keys(keys_dir(cfg, data_dir))
    ):
        return []  # the embedded environment makes the first key on first use
    key = "recording.kms" if rc.keyring == "kms" else ENV_VAR if from_env else "recording.keys_dir"
    try:
        build_keyring(cfg, data_dir, create=False)
    except MissingSecret as exc:
        return [Problem(ENV_VAR, str(exc))]
    except KeyringError as exc:
        return [Problem(key, f"recording master keys: {exc}")]
    except NoRegionError:
        return [Problem("recording.kms.region", "set the KMS key's region (or AWS_REGION)")]
    return []


async def _database(cfg: Config) -> list[Problem]:
    # SQLite in the data directory is made by serve; a database server must answer.
    url = cfg.storage.database_url
    if not url or url.startswith("sqlite"):
        return []
    db = Database(url)
    try:
        await db.revision()
    except Exception as exc:
        return [
            Problem(
                "storage.database_url",
                f"cannot use the database ({type(exc).__name__}: {exc}); check host, port, "
                "name and credentials",
            )
        ]
    finally:
        await db.close()
    return []


async def _storage(cfg: Config, data_dir: Path) -> list[Problem]:
    rc = cfg.recording
    if rc.storage != "s3":
        return []
    from botocore.exceptions import ClientError

    storage = build_storage(cfg, data_dir)
    assert isinstance(storage, S3Storage)
    try:
        await storage.check()
    except RegionNotAllowed as exc:
        return [
            Problem(
                "recording.s3.bucket",
                f"{exc}; use a bucket in one of {', '.join(rc.s3.allowed_regions)} "
                "(recording.s3.allowed_regions)",
            )
        ]
    except StorageError as exc:
        if isinstance(exc.__cause__, ClientError):  # missing bucket, no access: serve refuses
            return [
                Problem(
                    "recording.s3.bucket",
                    f"{exc}; check the bucket name, recording.s3.endpoint_url and the "
                    "credentials (AWS_* environment)",
                )
            ]
        log.warning("recording storage not reachable now (%s); serve would spool", exc)
    except Exception as exc:  # an endpoint that is down: serve starts and spools
        log.warning("recording storage not reachable now (%s); serve would spool", exc)
    return []


def _production(cfg: Config) -> list[Problem]:
    # Over http:// no cookie is Secure and no HSTS is sent: a login or caller cookie
    # would cross the network in clear (docs/security.md, "Transport").
    if cfg.environment == "production" and not cfg.http.public_url.startswith("https://"):
        return [
            Problem(
                "http.public_url",
                f"production needs an https:// public URL (got {cfg.http.public_url!r}); "
                "terminate TLS in a reverse proxy (http.behind_proxy) or serve --tls-self-signed",
            )
        ]
    return []


async def preflight(cfg: Config, data_dir: Path) -> list[Problem]:
    """Every problem that would stop `serve` with this configuration and environment.

    The configuration file itself (unknown keys, types, values) is checked by
    `server.core.config.load` before this runs."""
    problems = _secrets(cfg, data_dir)
    problems += _keyring(cfg, data_dir)
    problems += await _database(cfg)
    problems += await _storage(cfg, data_dir)
    problems += _production(cfg)
    return problems
