"""Building the recording pieces from the configuration: keyring, storage, spool and keys
directories, and the storage check (EU/EEA region) — shared by the server, the CLI and
`config check` (server/startup/preflight.py), so each refuses the same things."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from recorder import RegionNotAllowed, StorageError
from recorder.keys import ENV_VAR, Keyring, KmsKeyring, MasterKeyring
from recorder.storage import LocalStorage, S3Storage, Storage
from server.core.config import Config
from server.core.secrets import MissingSecret

log = logging.getLogger(__name__)


# --- building the pieces from the configuration (the server and the CLI share these)


def spool_dir(cfg: Config, data_dir: Path) -> Path:
    return Path(cfg.recording.spool_dir) if cfg.recording.spool_dir else data_dir / "spool"


def keys_dir(cfg: Config, data_dir: Path) -> Path:
    rc = cfg.recording
    return Path(rc.keys_dir) if rc.keys_dir else data_dir / "recording-keys"


def build_keyring(cfg: Config, data_dir: Path, *, create: bool = True) -> Keyring:
    rc = cfg.recording
    if rc.keyring == "kms":
        return KmsKeyring(
            rc.kms.key_id,
            region_name=rc.kms.region or None,
            endpoint_url=rc.kms.endpoint_url or None,
        )
    if os.environ.get(ENV_VAR) or os.environ.get(f"{ENV_VAR}_FILE"):
        return MasterKeyring.from_env()
    if cfg.environment == "production" and not rc.keys_dir:
        # Master keys are secrets: production never makes them up in the data directory.
        raise MissingSecret(
            f"recording master keys are missing: set {ENV_VAR} or {ENV_VAR}_FILE, or "
            "recording.keys_dir, or use recording.keyring = 'kms' (environment = "
            "'production' never generates keys)"
        )
    return MasterKeyring.from_directory(
        keys_dir(cfg, data_dir), create=create and cfg.environment != "production"
    )


def build_storage(cfg: Config, data_dir: Path) -> Storage:
    rc = cfg.recording
    if rc.storage == "s3":
        return S3Storage(
            rc.s3.bucket,
            tuple(rc.s3.allowed_regions),
            rc.s3.endpoint_url or None,
            region_name=rc.s3.region or None,
            max_attempts=rc.s3.max_attempts,
        )
    return LocalStorage(Path(rc.local_dir) if rc.local_dir else data_dir / "store")


async def check_storage(storage: Storage, cfg: Config) -> None:
    """Startup check of an S3 bucket: a region outside the allow-list or a bucket that
    cannot be used (missing, no access) stops the start; an unreachable endpoint does
    not (the spool keeps the ciphertext, and nothing is uploaded before the region check
    has passed)."""
    if not isinstance(storage, S3Storage):
        return
    from botocore.exceptions import ClientError

    try:
        region = await storage.check()
    except RegionNotAllowed:
        raise
    except StorageError as exc:
        if isinstance(exc.__cause__, ClientError):
            raise
        log.error("recording storage not reachable at start (%s); recordings are spooled "
                  "until it is", exc)  # fmt: skip
        return
    except Exception as exc:  # botocore connection errors: the endpoint is down
        log.error("recording storage not reachable at start (%s: %s); recordings are "
                  "spooled until it is", type(exc).__name__, exc)  # fmt: skip
        return
    log.info("recordings go to S3 bucket %s in %s", storage.bucket, region)
    days = cfg.recording.s3.abort_incomplete_multipart_days
    if days:
        try:
            if await storage.ensure_abort_multipart_rule(days):
                log.info("added lifecycle rule: abort incomplete multipart uploads after %d "
                         "day(s)", days)  # fmt: skip
        except Exception as exc:
            log.warning("could not set the bucket's AbortIncompleteMultipartUpload lifecycle "
                        "rule (%s); set it by hand", exc)  # fmt: skip
