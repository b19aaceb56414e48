"""Webhooks: signed JSON events for a CRM or ticketing system (docs/webhooks.md, docs/ops.md).

Durable: an event is a row of the database outbox (server/core/repositories/outbox.py),
written in the same transaction as the session change that is the event (created,
connected, ended), so nothing is lost when a node dies or the receiver is down for a day.
Rooms never wait for a receiver.

One node at a time delivers: the one holding the `webhooks` lease (a row with an expiry,
renewed every `poll_s`); when it dies, another node takes the lease over once it expired
(`lease_s`). The holder sends, per receiver and session, only the oldest pending event,
so a session's events arrive in order; sessions do not hold each other up. A failed
attempt is retried with exponential backoff; after `give_up_after_s` the event is dead
(a dead letter: `callassist webhooks dead|replay`). Delivery is at least once: an event
whose answer was lost, or that was in flight when its node died, is sent again with the
same event id (`X-Callassist-Event-Id`, the body's `id`), which is the receiver's
idempotency key.

Every request is signed: `X-Callassist-Signature: sha256=<hex HMAC-SHA256(key,
timestamp + "." + body)>` with `X-Callassist-Timestamp` (Unix seconds, new on every
attempt).

Over 400 lines because signing, the lease, per-session ordering and retries change
together.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from server.core.appkeys import CLOCK, CONFIG, DB, SECRETS
from server.core.config import WebhooksConfig
from server.core.db import Database, unavailable
from server.core.phone import mask
from server.core.repositories.outbox import DEAD, PENDING, OutboxHook
from server.observe.metrics import METRICS
from server.observe.report import session_report
from server.rooms.state import iso

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "session.created",
    "session.connected",
    "session.ended",
    # Declared for the recorder and the snapshot/upload features (not emitted yet).
    "recording.ready",
    "snapshot.created",
    "upload.created",
)
USER_AGENT = "callassist-webhooks/1"


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (Unix seconds, text)."""
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def verify(
    key: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = 300,
) -> bool:
    """What a receiver does (docs/webhooks.md): signature matches and timestamp is fresh."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(key, timestamp, body), signature)


@dataclass
class WebhookStats:
    """What this node did (counters since it started); the outbox itself is shared."""

    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_delivered_at: float | None = None


LEASE = "webhooks"


def event_data(event_type: str, row: dict[str, Any]) -> dict[str, Any]:
    """An event's `data` from its session row (read inside the writing transaction)."""
    if event_type == "session.created":
        return {
            "agent": row.get("agent"),
            "session_created_at": iso(row["created_at"]),
            "reference": row["reference"],
            "phone_masked": mask(row["phone"]),
        }
    if event_type == "session.connected":
        return {"connected_at": iso(row["media_started_at"]), "device": row["device_type"] or None}
    if event_type == "session.ended":
        return {"reason": row["end_reason"], "ended_at": iso(row["ended_at"])}
    return {}


class WebhookSender:
    def __init__(
        self,
        config: WebhooksConfig,
        key: bytes | None,
        db: Database,
        clock: Callable[[], float] = time.time,
        node_id: str = "node",
    ) -> None:
        self.config = config
        self.key = key
        self.db = db
        self.clock = clock
        # Unique per process: two nodes configured with the same node id still differ.
        self.holder = f"{node_id}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.stats = WebhookStats()
        self.counts = {PENDING: 0, DEAD: 0}  # the whole outbox, refreshed every poll
        self._leader_until = 0.0
        self._inflight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._db_down = False

    @property
    def enabled(self) -> bool:
        return bool(self.config.urls)

    @property
    def queued(self) -> int:
        return self.counts[PENDING]

    @property
    def is_leader(self) -> bool:
        return time.time() < self._leader_until

    def hook(self) -> OutboxHook:
        return OutboxHook(self.config.urls, event_data, self.wake, self.clock)

    def wake(self) -> None:
        self._wake.set()

    def collect_metrics(self) -> Iterator[Metric]:
        """Delivery counters and the outbox for /metrics (server.observe.metrics)."""
        s = self.stats
        deliveries = CounterMetricFamily(
            "callassist_webhook_deliveries",
            "Webhook delivery attempts of this node by result (delivered, failed = an "
            "attempt that will be retried, given_up = the event became a dead letter).",
            labels=["result"],
        )
        for result, n in (
            ("delivered", s.delivered),
            ("failed", s.failed_attempts),
            ("given_up", s.given_up),
        ):
            deliveries.add_metric([result], n)
        yield deliveries
        queued = GaugeMetricFamily(
            "callassist_webhook_queue",
            "Webhook events waiting in the outbox (all nodes, one per event and receiver).",
        )
        queued.add_metric([], self.counts[PENDING])
        yield queued
        dead = GaugeMetricFamily(
            "callassist_webhook_dead_letters",
            "Webhook events given up on, waiting for `callassist webhooks replay`.",
        )
        dead.add_metric([], self.counts[DEAD])
        yield dead
        leader = GaugeMetricFamily(
            "callassist_webhook_leader", "1 while this node holds the webhook delivery lease."
        )
        leader.add_metric([], 1 if self.is_leader else 0)
        yield leader

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "enabled": self.enabled,
            "receivers": len(self.config.urls),
            "queued": self.counts[PENDING],
            "dead": self.counts[DEAD],
            "leader": self.is_leader,
            "delivered": s.delivered,
            "failed_attempts": s.failed_attempts,
            "given_up": s.given_up,
            "dropped": 0,  # nothing is dropped any more: the outbox is in the database
            "last_error": s.last_error,
            "last_error_at": iso(s.last_error_at),
            "last_delivered_at": iso(s.last_delivered_at),
        }

    # --- producing ---------------------------------------------------------------------
    async def emit(
        self, event_type: str, session_id: str, data: dict[str, Any] | None = None
    ) -> str:
        """An event without a database change of its own (e.g. `recording.ready`): its
        outbox rows are written at once, in their own transaction. Returns the event id."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown webhook event type {event_type!r}")
        return await self.db.outbox_add(event_type, session_id, data or {})

    # --- delivering --------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._closed:
            self._wake.clear()
            try:
                await self._tick()
                if self._db_down:
                    log.info("webhooks: the database is back")
                    self._db_down = False
            except Exception as exc:  # keep going whatever one round did
                if unavailable(exc):
                    if not self._db_down:
                        log.warning("webhooks: database unavailable (%s); retrying", exc)
                    self._db_down = True
                else:
                    log.exception("webhooks: delivery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_s)

    async def _tick(self) -> None:
        cfg = self.config
        now = time.time()
        was = self.is_leader
        if await self.db.lease_acquire(LEASE, self.holder, now, cfg.lease_s):
            # Stop a little before the lease expires in the database: by the time another
            # node may take it, this one has stopped starting deliveries.
            self._leader_until = now + cfg.lease_s * 0.8
            if not was:
                log.info("webhooks: this node (%s) delivers now", self.holder)
        else:
            if was:
                log.warning("webhooks: another node took the delivery lease")
            self._leader_until = 0.0
        self.counts = await self.db.outbox_counts()
        if not self.is_leader:
            return
        for row in await self.db.outbox_heads(now):
            key = (row["url"], row["session_id"])
            if key in self._inflight or len(self._inflight) >= cfg.max_in_flight:
                continue
            self._inflight[key] = asyncio.ensure_future(self._attempt(key, row))

    async def _attempt(self, key: tuple[str, str], row: dict[str, Any]) -> None:
        cfg = self.config
        try:
            if not self.is_leader:
                return
            body = row["body"] or await self._freeze(row)
            error = await self._post(row["url"], row["id"], row["type"], body.encode())
            if error is None:
                await self.db.outbox_delivered(row["seq"])
                self.stats.delivered += 1
                self.stats.last_delivered_at = self.clock()
                return
            self.stats.failed_attempts += 1
            self.stats.last_error = f"{row['url']}: {error}"
            self.stats.last_error_at = self.clock()
            attempts = row["attempts"] + 1
            delay = min(cfg.retry_initial_s * 2 ** (attempts - 1), cfg.retry_max_s)
            delay *= random.uniform(0.8, 1.2)
            dead = time.time() - row["queued_at"] >= cfg.give_up_after_s
            await self.db.outbox_failed(row["seq"], attempts=attempts, error=error, dead=dead,
                                        next_attempt_at=time.time() + delay)  # fmt: skip
            if dead:
                self.stats.given_up += 1
                log.error("webhook %s (%s of %s) to %s given up after %d attempts: %s; "
                          "`callassist webhooks replay` sends it again", row["id"],
                          row["type"], row["session_id"], row["url"], attempts, error)  # fmt: skip
            else:
                log.info("webhook %s to %s failed (%s); retry in %.1f s",
                         row["id"], row["url"], error, delay)  # fmt: skip
        except Exception as exc:  # the row stays pending: tried again next round
            if not unavailable(exc):
                log.exception("webhook %s: delivery failed", row["id"])
        finally:
            self._inflight.pop(key, None)
            self.wake()  # on to the session's next event

    async def _freeze(self, row: dict[str, Any]) -> str:
        """The body, built at the first attempt and stored: every attempt, by whichever
        node, sends the same bytes. `session.ended` carries the session report."""
        data = json.loads(row["data"])
        if row["type"] == "session.ended":
            try:
                data["report"] = await session_report(self.db, row["session_id"])
            except Exception as exc:
                if unavailable(exc):
                    raise  # build it when the database is back
                log.exception("webhook %s: the session report failed", row["id"])
        payload = {
            "id": row["id"],
            "type": row["type"],
            "created_at": iso(row["created_at"]),
            "session_id": row["session_id"],
            "data": data,
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        await self.db.outbox_freeze_body(row["seq"], body)
        return body

    async def _post(self, url: str, event_id: str, event_type: str, body: bytes) -> str | None:
        """One attempt; None when the receiver took it (2xx), else why not."""
        assert self.key is not None and self._session is not None
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Callassist-Event": event_type,
            "X-Callassist-Event-Id": event_id,
            "X-Callassist-Timestamp": ts,
            "X-Callassist-Signature": sign(self.key, ts, body),
        }
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status}"
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError as exc:
            return type(exc).__name__

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        if self.enabled:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
            self._task = asyncio.ensure_future(self._run())

    async def close(self, grace_s: float = 2.0) -> None:
        """Stop delivering: what is in flight gets a moment, the rest stays in the outbox
        (another node, or this one after a restart, sends it); the lease is handed back
        so another node takes over at once."""
        self._closed = True
        self.wake()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, grace_s)
        tasks = list(self._inflight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._leader_until:
            self._leader_until = 0.0
            try:
                await self.db.lease_release(LEASE, self.holder)
            except Exception as exc:  # it expires by itself
                log.warning("webhooks: could not hand back the lease: %s", exc)
        if self._session is not None:
            await self._session.close()


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    sender = app[WEBHOOKS]
    if sender.enabled:
        # First in cleanup_ctx, so this starts before the app's services migrate the
        # schema: on a new data directory the poller would query tables not made yet.
        await app[DB].create_schema()
    await sender.start()
    yield
    await sender.close()
    # Deliveries at shutdown may have read the database after the app closed it: close the
    # connections they opened.
    await app[DB].close()


def setup(app: web.Application) -> None:
    cfg = app[CONFIG]
    sender = WebhookSender(cfg.webhooks, app[SECRETS].webhook_key, app[DB], app[CLOCK],
                           cfg.cluster.node_id)  # fmt: skip
    if sender.enabled and sender.key is None:  # load_secrets(need_webhook=...) prevents it
        raise RuntimeError("webhooks.urls is set but the secret webhook_key is missing")
    app[WEBHOOKS] = sender
    # From now on the session writes that are events add their outbox rows.
    app[DB].outbox_hook = sender.hook()
    if METRICS in app:
        app[METRICS].add_collector(sender.collect_metrics)
    # First in cleanup_ctx, so left last: the rooms the server ends at shutdown write
    # their session.ended first, which then gets a moment (WebhookSender.close) to go out.
    app.cleanup_ctx.insert(0, _lifecycle)


# This feature's application key (docs/architecture.md).
WEBHOOKS = web.AppKey("webhooks", WebhookSender)
