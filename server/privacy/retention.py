"""Retention: every category of personal data is deleted by itself when its time is up.

`[retention]` in the configuration gives days per category, counted from the END of the
session the data belongs to:
- recordings (`recordings_days`): video recordings, every object (storage and spool) and
  the row;
- snapshots and uploads (`media_days`): photos, every object and the row;
- session records (`sessions_days`): the session row with its links, device cookies, chat,
  and any recording or photo still attached (media never outlive their session record);
- audit log (`audit_days`): the oldest audit records; the chain goes on from a checkpoint
  (server/core/audit.py).

- staff logins (`logins_days`): counted from the login's expiry.

Device cookies and links of sessions that ended more than a day ago go at once (nothing
needs them: the caller's privacy receipt is read when the session ends).

A storage failure midway never crashes the sweep or orphans anything: the media part stops,
what could not be deleted keeps its row and its session record (`SweepResult.failed`), the
rest goes on, and the next sweep finishes the job. Empty folders named by a recording id that
is gone are removed afterwards, also after a failure. docs/security.md has the table of
categories and `callassist retention run`'s exit codes.

The sweeper runs in the server every `sweep_interval_s` (and once at start), and as
`callassist retention run`. Media objects are deleted header first, exactly like an erasure
(server/privacy/subjects.py). With S3 storage the service also adds bucket lifecycle rules as a
second net (objects expire a couple of days after the longest media retention; noncurrent
versions after one day); the sweeper is what is relied on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from recorder.storage import LocalStorage, S3Storage, Storage
from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB
from server.core.audit import Audit
from server.core.config import Config, RetentionConfig
from server.core.db import Database
from server.privacy.subjects import Media, delete_recording_objects
from server.recording.service import RECORDING

log = logging.getLogger(__name__)

DAY = 86_400.0
EXPIRY_RULE_ID = "callassist-retention-expiry"


@dataclass
class SweepResult:
    recordings: int = 0
    photos: int = 0
    sessions: int = 0
    objects: int = 0
    devices: int = 0
    logins: int = 0
    audit: int = 0
    folders: int = 0  # empty folders named by a recording id that is gone
    # What could not be deleted (the storage failed): recording ids, and the first error.
    # They stay, with their session records, for the next sweep (safe to run again).
    failed: list[str] = field(default_factory=list)
    error: str = ""

    COUNTS = ("recordings", "photos", "sessions", "objects", "devices", "logins", "audit",
              "folders")  # fmt: skip

    @property
    def anything(self) -> bool:
        return any(getattr(self, k) for k in self.COUNTS) or bool(self.failed)

    @property
    def complete(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        done = ", ".join(f"{k}={getattr(self, k)}" for k in self.COUNTS)
        return done + (f", not_deleted={len(self.failed)}" if self.failed else "")


async def _drop_media(media: Media, row: dict[str, Any], result: SweepResult) -> bool:
    """Delete one recording's or photo's objects; False (and noted) when the storage failed.
    After the first failure the rest is left alone: the storage is most likely down, and
    every try would only wait for its timeouts."""
    if result.failed:
        result.failed.append(row["id"])
        return False
    try:
        result.objects += await delete_recording_objects(media, row["id"])
    except Exception as exc:  # StorageError, OSError, botocore's: all mean "try again later"
        result.failed.append(row["id"])
        result.error = f"{type(exc).__name__}: {exc}"[:200]
        log.warning("retention: could not delete recording %s (%s); left for the next sweep",
                    row["id"], result.error)  # fmt: skip
        return False
    return True


async def sweep(db: Database, audit: Audit, media: Media, cfg: Config, now: float) -> SweepResult:
    """Delete what is past its retention at `now`; returns what was deleted and what could
    not be (a storage failure stops the media part, never the rest, and loses nothing: a
    session record goes only with all of its media)."""
    rc = cfg.retention
    result = SweepResult()
    touched: set[str] = set()
    try:
        for kinds, days, counter in (
            (("video",), effective_days(rc.recordings_days, rc), "recordings"),
            (("snapshot", "upload"), effective_days(rc.media_days, rc), "photos"),
        ):
            for row in await db.expired_recordings(kinds, now - days * DAY):
                touched.add(row["id"])
                if await _drop_media(media, row, result):
                    await db.delete_recording_rows([row["id"]])
                    setattr(result, counter, getattr(result, counter) + 1)
        expired = await db.expired_session_ids(now - rc.sessions_days * DAY)
        # Device cookies and links first: when they go with their sessions they are counted.
        result.devices = await db.forget_devices(now - DAY)
        whole: list[str] = []
        for session_id in expired:
            rows = await db.list_recordings(session_id)
            left = False
            for row in rows:
                touched.add(row["id"])
                if await _drop_media(media, row, result):
                    await db.delete_recording_rows([row["id"]])
                    result.recordings += row["kind"] == "video"
                    result.photos += row["kind"] != "video"
                else:
                    left = True
            if not left:
                whole.append(session_id)
        result.sessions = await db.delete_sessions(whole)
        result.logins = await db.delete_expired_logins(now - rc.logins_days * DAY)
        result.audit = await audit.prune(now - rc.audit_days * DAY)
    finally:
        # Also after a failure: what an interrupted run (or upload) left must not stay.
        try:
            result.folders = await remove_empty_folders(db, media, touched)
        except Exception as exc:  # never hides the error that stopped the sweep
            log.warning("retention: could not look for empty recording folders (%s)", exc)
    if result.anything:
        # No phone number, no session id: only how much went.
        await audit.record(actor="retention", role="system", action="retention.sweep",
                           reason=result.describe(),
                           result="ok" if result.complete else "partial")  # fmt: skip
        log.info("retention sweep deleted %s", result.describe())
    return result


def effective_days(days: int, rc: RetentionConfig) -> int:
    """Media never outlive their session record: the period really applied to them."""
    return min(days, rc.sessions_days)


# Folders younger than this may be a write that is just starting (the spool makes the folder,
# then the file): never touched.
FOLDER_GRACE_S = 60.0


async def remove_empty_folders(db: Database, media: Media, touched: set[str]) -> int:
    """Remove the empty folders named by a recording id (in the spool and a local storage)
    whose recording has no row any more, or that this sweep worked on; returns how many."""
    roots = [Path(media.spool_dir)] if media.spool_dir is not None else []
    if isinstance(media.storage, LocalStorage):
        roots.append(media.storage.directory)

    def empty_candidates() -> list[Path]:
        found = []
        for root in roots:
            base = root / "recordings"
            if not base.is_dir():
                continue
            for folder in base.iterdir():
                if folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
                    found.append(folder)
        return found

    def remove(folder: Path) -> bool:
        try:
            if time.time() - folder.stat().st_mtime < FOLDER_GRACE_S and folder.name not in touched:
                return False
            for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                sub.rmdir()  # only directories are left: fails (and stops) if a file appeared
            folder.rmdir()
        except OSError:
            return False
        return True

    removed = 0
    for folder in await asyncio.to_thread(empty_candidates):
        if folder.name not in touched and await db.get_recording(folder.name) is not None:
            continue  # a live recording's folder (e.g. all its segments uploaded)
        removed += await asyncio.to_thread(remove, folder)
    return removed


# --- S3: lifecycle rules as a second net ------------------------------------------------------


def expiry_days(cfg: Config) -> int:
    """Days after which no media object can still be needed: the longest media retention
    (a session's media never outlive its record), plus two days for the session itself and
    a sweep that ran late."""
    rc = cfg.retention
    longest = max(min(rc.recordings_days, rc.sessions_days), min(rc.media_days, rc.sessions_days))
    return longest + 2


def _ensure_expiry_rule(storage: S3Storage, days: int) -> bool:
    from botocore.exceptions import ClientError

    client = storage._client  # recorder.storage keeps one client per bucket
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=storage.bucket)["Rules"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    ours = {
        "ID": EXPIRY_RULE_ID,
        "Filter": {"Prefix": "recordings/"},
        "Status": "Enabled",
        "Expiration": {"Days": days},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
    }
    if any(all(r.get(k) == v for k, v in ours.items()) for r in rules):
        return False
    rules = [r for r in rules if r.get("ID") != EXPIRY_RULE_ID] + [ours]
    client.put_bucket_lifecycle_configuration(
        Bucket=storage.bucket, LifecycleConfiguration={"Rules": rules}
    )
    return True


async def ensure_lifecycle(storage: Storage, cfg: Config) -> None:
    if not isinstance(storage, S3Storage) or not cfg.recording.s3.abort_incomplete_multipart_days:
        return  # 0 there means: leave the bucket's lifecycle alone
    days = expiry_days(cfg)
    try:
        await storage.check()
        if await asyncio.to_thread(_ensure_expiry_rule, storage, days):
            log.info("added lifecycle rule: recording objects expire after %d days", days)
    except Exception as exc:
        log.warning("could not set the bucket's expiry lifecycle rule (%s); the retention "
                    "sweeper still deletes on time", exc)  # fmt: skip


# --- the background sweeper ----------------------------------------------------------------


def server_media(app: web.Application) -> Media:
    """The running service's storage, spool and keyring (server/recording/service.py)."""
    service = app[RECORDING]
    assert service.storage is not None, "the recording service has not started"
    spool = service.spool
    return Media(service.storage, spool.directory if spool else None, service.keyring, spool)


class Sweeper:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.last: SweepResult | None = None
        self.started = 0  # sweeps begun
        self.runs = 0  # sweeps finished (they run one at a time)
        self._lock = asyncio.Lock()
        self._kick: asyncio.Event | None = None

    def kick(self) -> None:
        """Sweep now rather than at the next interval (tests move the clock, then kick)."""
        if self._kick is not None:
            self._kick.set()

    def media(self) -> Media:
        return server_media(self.app)

    async def run_once(self) -> SweepResult:
        app = self.app
        async with self._lock:
            self.started += 1
            try:
                result = await sweep(app[DB], app[AUDIT], self.media(), app[CONFIG], app[CLOCK]())
            finally:
                self.runs += 1
        self.last = result
        return result

    async def loop(self, interval: float) -> None:
        self._kick = asyncio.Event()
        while True:
            self._kick.clear()
            try:
                await self.run_once()
            except Exception:  # a storage outage must not stop the next sweeps
                log.exception("retention sweep failed; retried in %.0f s", interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), interval)


RETENTION: web.AppKey[Sweeper] = web.AppKey("retention", Sweeper)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    sweeper = app[RETENTION]
    cfg = app[CONFIG]
    await ensure_lifecycle(sweeper.media().storage, cfg)
    task = asyncio.create_task(sweeper.loop(cfg.retention.sweep_interval_s), name="retention")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup(app: web.Application) -> None:
    """After recording.setup(): the sweeper uses the recording service's storage and spool."""
    app[RETENTION] = Sweeper(app)
    app.cleanup_ctx.append(_lifecycle)
