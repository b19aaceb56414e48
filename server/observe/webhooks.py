"""Webhooks: signed JSON events for a CRM or ticketing system (docs/webhooks.md).

Rooms never wait for a receiver: `emit` only appends to a bounded in-memory queue and
returns. Each receiver URL has its own queues, one per session, drained by one task per
session, so a session's events arrive in the order they happened (an event is retried,
with exponential backoff, until it is delivered or given up before the next one of that
session is sent) while sessions do not hold each other up.

Every request is signed: `X-Callassist-Signature: sha256=<hex HMAC-SHA256(key,
timestamp + "." + body)>` with `X-Callassist-Timestamp` (Unix seconds, new on every
attempt); the body carries a unique event `id` so a receiver can drop a replay or a
duplicate (a delivery whose answer was lost is sent again).

Over 400 lines because signing, per-session ordering, retries and the listener that
turns room events into webhook events change together.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from server.core.appkeys import CLOCK, CONFIG, DB, SECRETS
from server.core.config import WebhooksConfig
from server.core.phone import mask
from server.observe.metrics import METRICS
from server.observe.report import session_report
from server.rooms.manager import ROOMS
from server.rooms.state import RoomEvent, iso

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

Enricher = Callable[[], Awaitable[dict[str, Any]]]


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


@dataclass(eq=False)
class _Event:
    id: str
    type: str
    session_id: str
    created_at: float
    data: dict[str, Any]
    enrich: Enricher | None = None
    _body: bytes | None = None
    _building: asyncio.Future[bytes] | None = None

    async def body(self) -> bytes:
        """The JSON body, built once (the same bytes for every attempt and receiver)."""
        if self._body is not None:
            return self._body
        if self._building is None:
            self._building = asyncio.ensure_future(self._build())
        self._body = await asyncio.shield(self._building)
        return self._body

    async def _build(self) -> bytes:
        data = dict(self.data)
        if self.enrich is not None:
            try:
                data.update(await self.enrich())
            except Exception:  # deliver what we know rather than nothing
                log.exception("webhook %s: enriching %s failed", self.id, self.type)
        payload = {
            "id": self.id,
            "type": self.type,
            "created_at": iso(self.created_at),
            "session_id": self.session_id,
            "data": data,
        }
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(eq=False)
class _Target:
    url: str
    queues: dict[str, deque[_Event]] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    queued: int = 0


@dataclass
class WebhookStats:
    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_delivered_at: float | None = None


class WebhookSender:
    def collect_metrics(self) -> Iterator[Metric]:
        """Delivery counters for /metrics (server.observe.metrics)."""
        s = self.stats
        deliveries = CounterMetricFamily(
            "callassist_webhook_deliveries",
            "Webhook delivery attempts by result (delivered, failed = an attempt that "
            "will be retried, given_up, dropped = queue full).",
            labels=["result"],
        )
        for result, n in (
            ("delivered", s.delivered),
            ("failed", s.failed_attempts),
            ("given_up", s.given_up),
            ("dropped", s.dropped),
        ):
            deliveries.add_metric([result], n)
        yield deliveries
        queued = GaugeMetricFamily(
            "callassist_webhook_queue", "Webhook events waiting for delivery."
        )
        queued.add_metric([], self.queued)
        yield queued

    def __init__(
        self, config: WebhooksConfig, key: bytes | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.key = key
        self.clock = clock
        self.targets = [_Target(url) for url in config.urls]
        self.stats = WebhookStats()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    @property
    def queued(self) -> int:
        return sum(t.queued for t in self.targets)

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "enabled": self.enabled,
            "receivers": len(self.targets),
            "queued": self.queued,
            "delivered": s.delivered,
            "failed_attempts": s.failed_attempts,
            "given_up": s.given_up,
            "dropped": s.dropped,
            "last_error": s.last_error,
            "last_error_at": iso(s.last_error_at),
            "last_delivered_at": iso(s.last_delivered_at),
        }

    # --- producing ---------------------------------------------------------------------
    def emit(
        self,
        event_type: str,
        session_id: str,
        data: dict[str, Any] | None = None,
        *,
        enrich: Enricher | None = None,
    ) -> str | None:
        """Queue an event for every receiver; never waits. Returns the event id (None when
        webhooks are off). `enrich` (async, run once just before the first delivery)
        adds fields that need the database."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown webhook event type {event_type!r}")
        if not self.targets or self._closed:
            return None
        event = _Event(
            id="evt_" + secrets.token_hex(12),
            type=event_type,
            session_id=session_id,
            created_at=self.clock(),
            data=dict(data or {}),
            enrich=enrich,
        )
        for target in self.targets:
            if target.queued >= self.config.max_queue:
                self.stats.dropped += 1
                log.warning(
                    "webhook queue for %s full (%d): %s of %s dropped",
                    target.url,
                    target.queued,
                    event_type,
                    session_id,
                )
                continue
            queue = target.queues.setdefault(session_id, deque())
            queue.append(event)
            target.queued += 1
            if session_id not in target.tasks:
                target.tasks[session_id] = asyncio.ensure_future(self._drain(target, session_id))
        return event.id

    # --- delivering --------------------------------------------------------------------
    async def _drain(self, target: _Target, session_id: str) -> None:
        queue = target.queues[session_id]
        try:
            while queue:
                await self._deliver(target, queue[0])
                queue.popleft()
                target.queued -= 1
        finally:
            # No await between the last `while queue` check and here: an event emitted
            # meanwhile would have found this task and been taken by the loop above.
            if not queue:
                target.queues.pop(session_id, None)
            target.tasks.pop(session_id, None)

    async def _deliver(self, target: _Target, event: _Event) -> None:
        cfg = self.config
        delay = cfg.retry_initial_s
        body = await event.body()
        while True:
            error = await self._post(target.url, event, body)
            if error is None:
                self.stats.delivered += 1
                self.stats.last_delivered_at = self.clock()
                return
            self.stats.failed_attempts += 1
            self.stats.last_error = f"{target.url}: {error}"
            self.stats.last_error_at = self.clock()
            if self.clock() - event.created_at >= cfg.give_up_after_s:
                self.stats.given_up += 1
                log.error(
                    "webhook %s (%s of %s) to %s given up: %s",
                    event.id,
                    event.type,
                    event.session_id,
                    target.url,
                    error,
                )
                return
            log.info(
                "webhook %s to %s failed (%s); retry in %.1f s", event.id, target.url, error, delay
            )
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, cfg.retry_max_s)

    async def _post(self, url: str, event: _Event, body: bytes) -> str | None:
        """One attempt; None when the receiver took it (2xx), else why not."""
        assert self.key is not None and self._session is not None
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Callassist-Event": event.type,
            "X-Callassist-Event-Id": event.id,
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
        if self.targets:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self, grace_s: float = 2.0) -> None:
        """Give queued events a moment, then stop (what is left is lost, and logged)."""
        self._closed = True
        tasks = [t for target in self.targets for t in target.tasks.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if self.queued:
                log.warning("webhooks: %d undelivered events dropped at shutdown", self.queued)
        if self._session is not None:
            await self._session.close()


# --- room events -> webhook events -----------------------------------------------------


def _listener(app: web.Application, sender: WebhookSender) -> Callable[[RoomEvent], None]:
    async def created(session_id: str) -> dict[str, Any]:
        row = await app[DB].get_session(session_id)
        if row is None:
            return {}
        return {"reference": row["reference"], "phone_masked": mask(row["phone"])}

    async def report(session_id: str) -> dict[str, Any]:
        return {"report": await session_report(app[DB], session_id)}

    connected: set[str] = set()  # sessions whose session.connected went out

    def on_event(event: RoomEvent) -> None:
        room = event.room
        if event.kind == "created":
            sender.emit(
                "session.created",
                room.id,
                {"agent": room.agent_name, "session_created_at": iso(room.created_at)},
                enrich=lambda: created(room.id),
            )
        elif (
            event.kind == "track"
            and event.data.get("track") == "camera"
            and event.data.get("live")
            and room.id not in connected
        ):
            # The caller's camera reached the server for the first time (the agent's
            # screen alone does not count).
            connected.add(room.id)
            sender.emit(
                "session.connected",
                room.id,
                {"connected_at": iso(sender.clock()), "device": room.caller_device},
            )
        elif event.kind == "ended":
            connected.discard(room.id)
            sender.emit(
                "session.ended",
                room.id,
                {"reason": event.data.get("reason"), "ended_at": iso(room.ended_at)},
                enrich=lambda: report(room.id),
            )

    return on_event


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    sender = app[WEBHOOKS]
    await sender.start()
    yield
    await sender.close()
    # Deliveries at shutdown may have read the database after the app closed it: close the
    # connections they opened.
    await app[DB].close()


def setup(app: web.Application) -> None:
    cfg = app[CONFIG].webhooks
    sender = WebhookSender(cfg, app[SECRETS].webhook_key, app[CLOCK])
    if sender.enabled and sender.key is None:  # load_secrets(need_webhook=...) prevents it
        raise RuntimeError("webhooks.urls is set but the secret webhook_key is missing")
    app[WEBHOOKS] = sender
    if METRICS in app:
        app[METRICS].add_collector(sender.collect_metrics)
    app[ROOMS].listen(_listener(app, sender))
    # First in cleanup_ctx, so left last: the rooms the server ends at shutdown still
    # queue their session.ended, which then gets a moment (WebhookSender.close) to go out.
    app.cleanup_ctx.insert(0, _lifecycle)


# This feature's application key (docs/architecture.md).
WEBHOOKS = web.AppKey("webhooks", WebhookSender)
