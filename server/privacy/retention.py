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

Device cookies and links of sessions that ended more than a day ago go at once (nothing
needs them: the caller's privacy receipt is read when the session ends).

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
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from aiohttp import web

from recorder.storage import S3Storage, Storage
from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB
from server.core.audit import Audit
from server.core.config import Config
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
    audit: int = 0

    @property
    def anything(self) -> bool:
        return any(asdict(self).values())

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())


async def sweep(db: Database, audit: Audit, media: Media, cfg: Config, now: float) -> SweepResult:
    """Delete what is past its retention at `now`; returns what was deleted."""
    rc = cfg.retention
    result = SweepResult()
    for kinds, days, counter in (
        (("video",), rc.recordings_days, "recordings"),
        (("snapshot", "upload"), rc.media_days, "photos"),
    ):
        for row in await db.expired_recordings(kinds, now - days * DAY):
            result.objects += await delete_recording_objects(media, row["id"])
            await db.delete_recording_rows([row["id"]])
            setattr(result, counter, getattr(result, counter) + 1)
    expired = await db.expired_session_ids(now - rc.sessions_days * DAY)
    for session_id in expired:
        for row in await db.list_recordings(session_id):
            result.objects += await delete_recording_objects(media, row["id"])
            result.recordings += row["kind"] == "video"
            result.photos += row["kind"] != "video"
    result.sessions = await db.delete_sessions(expired)
    result.devices = await db.forget_devices(now - DAY)
    result.audit = await audit.prune(now - rc.audit_days * DAY)
    if result.anything:
        # No phone number, no session id: only how much went.
        await audit.record(actor="retention", role="system", action="retention.sweep",
                           reason=result.describe())  # fmt: skip
        log.info("retention sweep deleted %s", result.describe())
    return result


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
