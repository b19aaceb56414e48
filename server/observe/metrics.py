"""Prometheus metrics (`GET /metrics`) and the readiness probe (`GET /readyz`).

Every app has its own `CollectorRegistry` (no module-level global registry), so several
apps in one process, as in the tests, never clash. Counters that follow events are
ordinary prometheus-client objects; everything that is state (rooms, participants, media
counters of live rooms) is read from the app when Prometheus scrapes. Each metric has one
owner: this module serves the room, link, media and event-loop metrics; other features
(ops, webhooks, recording) own theirs and hand them in with `Metrics.add_collector`.
docs/ops.md lists every metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import tempfile
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.core.appkeys import CLOCK, DATA_DIR, DB, SECRETS
from server.media.peers import MediaRoom
from server.media.send_batch import COUNTS
from server.observe import send_metrics
from server.rooms.manager import ROOMS
from server.rooms.state import END_REASONS, RoomEvent

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 0.25
MEDIA_COUNTERS = (
    "frames_in",
    "bytes_in",
    "keyframes_in",
    "frames_forwarded",
    "frames_dropped",
    "keyframe_requests_sent",
)


class Metrics:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.link_opens = Counter(
            "callassist_link_opens",
            "One-time link opens by outcome (opened, expired, reused, revoked, invalid).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("opened", "expired", "reused", "revoked", "invalid"):
            self.link_opens.labels(outcome)
        self.sessions_created = Counter(
            "callassist_sessions_created", "Support sessions created.", registry=r
        )
        self.sessions_connected = Counter(
            "callassist_sessions_connected",
            "Sessions whose media started (the caller's camera reached the server).",
            registry=r,
        )
        self.sessions_ended = Counter(
            "callassist_sessions_ended", "Sessions ended, by end reason.", ["reason"], registry=r
        )
        for reason in END_REASONS:
            self.sessions_ended.labels(reason)
        self.loop_lag = Gauge(
            "callassist_event_loop_lag_seconds",
            f"How late a {LAG_INTERVAL_S} s timer fired, last measurement.",
            registry=r,
        )
        self.loop_lag_hist = Histogram(
            "callassist_event_loop_lag",
            "How late the event loop ran timers (seconds).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        ProcessCollector(registry=r)
        # Media counters of ended rooms (a live room's are read from its MediaRoom).
        self.media_done: dict[tuple[str, str], int] = Tally()
        self.failures_done: dict[str, int] = Tally()
        self.send_batches_done: dict[str, int] = Tally()
        self._media: dict[str, MediaRoom] = {}
        self._connected: set[str] = set()
        r.register(_StateCollector(self))

    def add_collector(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Serve what another feature measures (ops, webhooks, recording): each feature owns
        its own families and registers them here, so this module imports none of them.

        `collect` runs once right here (the registry's auto-describe): a family name that
        another collector already serves raises `ValueError` now, at `create_app`, instead
        of a second `# TYPE` line for one name that breaks the exposition format. So
        `collect` must yield every family it will ever yield, with zero values before
        the feature runs."""
        self.registry.register(_Collector(collect))

    # --- room events ---------------------------------------------------------------------
    def on_room_event(self, event: RoomEvent) -> None:
        if event.kind == "created":
            self.sessions_created.inc()
            live = self.app[ROOMS].get(event.room.id)
            if live is not None:
                self._media[event.room.id] = live.media
        elif (
            event.kind == "track"
            and event.data.get("track") == "camera"
            and event.data.get("live")
            and event.room.id not in self._connected
        ):
            self._connected.add(event.room.id)
            self.sessions_connected.inc()
        elif event.kind == "ended":
            self.sessions_ended.labels(str(event.data.get("reason"))).inc()
            self._connected.discard(event.room.id)
            media = self._media.pop(event.room.id, None)
            if media is not None:
                for name, track in media.tracks.items():
                    for counter in MEDIA_COUNTERS:
                        self.media_done[(name, counter)] += getattr(track, counter)
                for kind, n in media.failures.items():
                    self.failures_done[kind] += n
                for kind, n in media.send_batches.items():
                    self.send_batches_done[kind] += n

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self.collect = collect


class _StateCollector(Collector):
    """Gauges and counters read from the live app at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    # No describe(): the registry's auto-describe calls collect() at registration (the app's
    # rooms exist, empty), so every name is checked against the other collectors.

    def collect(self) -> Iterator[Any]:
        app = self.m.app
        rooms = app[ROOMS].rooms()

        # Which node answered this scrape (one per `serve --workers N` worker).
        node = GaugeMetricFamily("callassist_node_info", "This node.", labels=["node"])
        node.add_metric([app[ROOMS].router.node_id], 1)
        yield node

        by_state = GaugeMetricFamily("callassist_rooms", "Live rooms by state.", labels=["state"])
        states = Tally(live.room.state for live in rooms)
        for state in ("waiting", "active"):
            by_state.add_metric([state], states[state])
        yield by_state

        callers = GaugeMetricFamily(
            "callassist_callers", "Callers of live rooms by status.", labels=["status"]
        )
        for status, n in sorted(Tally(live.room.caller_status for live in rooms).items()):
            callers.add_metric([status], n)
        yield callers

        parts = GaugeMetricFamily(
            "callassist_participants",
            "Participants' peer connections by role and connection state.",
            labels=["role", "state"],
        )
        sockets = GaugeMetricFamily(
            "callassist_signalling_connections",
            "Open signalling WebSockets by role.",
            labels=["role"],
        )
        part_tally: Tally[tuple[str, str]] = Tally()
        sock_tally: Tally[str] = Tally()
        media_live: Tally[tuple[str, str]] = Tally()
        failures_live: Tally[str] = Tally()
        batches_live: Tally[str] = Tally()
        for live in rooms:
            stats = live.media.stats()
            for p in stats["participants"].values():
                part_tally[(p["role"], p["connection_state"])] += 1
            for conn in list(live.conns.values()):
                sock_tally[conn.role] += 1
            for name, track in live.media.tracks.items():
                for counter in MEDIA_COUNTERS:
                    media_live[(name, counter)] += getattr(track, counter)
            for kind, n in live.media.failures.items():
                failures_live[kind] += n
            for kind, n in live.media.send_batches.items():
                batches_live[kind] += n
        for (role, state), n in sorted(part_tally.items()):
            parts.add_metric([role, state], n)
        for role, n in sorted(sock_tally.items()):
            sockets.add_metric([role], n)
        yield parts
        yield sockets

        described = {
            "frames_in": ("callassist_media_frames_received", "Video frames received."),
            "bytes_in": ("callassist_media_bytes_received", "Video payload bytes received."),
            "keyframes_in": ("callassist_media_keyframes_received", "Keyframes received."),
            "frames_forwarded": (
                "callassist_media_frames_forwarded",
                "Video frames forwarded to subscribers.",
            ),
            "frames_dropped": (
                "callassist_media_frames_dropped",
                "Frames dropped for slow subscribers or while waiting for a keyframe.",
            ),
            "keyframe_requests_sent": (
                "callassist_keyframe_requests",
                "Keyframe requests (PLI) sent to publishers.",
            ),
        }
        for counter, (name, doc) in described.items():
            fam = CounterMetricFamily(name, doc, labels=["track"])
            for track in ("camera", "screen"):
                key = (track, counter)
                fam.add_metric([track], self.m.media_done[key] + media_live[key])
            yield fam

        failures = CounterMetricFamily(
            "callassist_peer_connection_failures",
            "Peer connections that failed: ICE, DTLS, or not connected in time.",
            labels=["kind"],
        )
        for kind in ("ice", "dtls", "timeout"):
            failures.add_metric([kind], self.m.failures_done[kind] + failures_live[kind])
        yield failures

        done = self.m.send_batches_done
        yield from send_metrics.families({k: done[k] + batches_live[k] for k in COUNTS})


# --- link outcomes -------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _link_outcome(request: web.Request, status: int) -> str:
    if status in (302, 303):
        return "opened"
    token = request.match_info.get("token", "")
    m = await request.app[DB].link_row(token)
    if m is None:
        return "invalid"
    if m["consumed_at"] is not None:
        return "reused"
    if m["revoked"]:
        return "revoked"
    if m["expires_at"] <= request.app[CLOCK]():
        return "expired"
    return "invalid"  # a valid link of an ended session, or rate-limited


@web.middleware
async def _count_link_opens(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    if route is None or route.canonical != "/j/{token}":
        return await handler(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        try:
            # 200 is the link page shown (GET/HEAD, e.g. a preview): not an open.
            if status != 200:
                outcome = await _link_outcome(request, status)
                request.app[METRICS].link_opens.labels(outcome).inc()
        except Exception:
            log.exception("counting a link open failed")


# --- handlers ------------------------------------------------------------------------------


def _scraper(request: web.Request) -> bool:
    # Not anonymous: counters tick on link opens and would tell a prober whether a link
    # existed (docs/ops.md, "Metrics"). Constant-time compare of the bearer token.
    token = request.app[SECRETS].metrics_token
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    if not _scraper(request):
        return web.json_response(
            {"error": {"code": "not_authenticated",
                       "message": "send Authorization: Bearer <metrics token>"}},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )  # fmt: skip
    body = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response


async def _check_database(app: web.Application) -> None:
    await app[DB].ping()


def _check_storage(app: web.Application) -> None:
    # The data directory (SQLite, generated secrets, later the recording spool) must be
    # writable. (Later also: Redis and the S3 bucket.)
    with tempfile.NamedTemporaryFile(dir=app[DATA_DIR], prefix=".readyz-"):
        pass


async def readyz_handler(request: web.Request) -> web.StreamResponse:
    app = request.app
    checks: dict[str, str] = {}
    reason = None
    try:
        await asyncio.wait_for(_check_database(app), 3.0)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = "failed"
        reason = f"database: {type(exc).__name__}"
        log.warning("readyz: database not reachable: %r", exc)
    try:
        _check_storage(app)
        checks["storage"] = "ok"
    except OSError as exc:
        checks["storage"] = "failed"
        reason = reason or f"storage: {exc.strerror or type(exc).__name__}"
    if reason:
        return web.json_response(
            {"status": "not_ready", "reason": reason, "checks": checks}, status=503
        )
    return web.json_response({"status": "ready", "checks": checks})


# --- event-loop lag ------------------------------------------------------------------------


async def _measure_lag(metrics: Metrics) -> None:
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(LAG_INTERVAL_S)
        lag = max(loop.time() - start - LAG_INTERVAL_S, 0.0)
        metrics.loop_lag.set(lag)
        metrics.loop_lag_hist.observe(lag)
        if lag > 1.0:
            log.warning("event loop lagged %.2f s", lag)


async def _lag_task(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_measure_lag(app[METRICS]), name="event-loop-lag")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup(app: web.Application) -> None:
    metrics = Metrics(app)
    app[METRICS] = metrics
    app[ROOMS].listen(metrics.on_room_event)
    app.middlewares.append(_count_link_opens)
    app.cleanup_ctx.append(_lag_task)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/readyz", readyz_handler)


# This feature's application key (docs/architecture.md).
METRICS = web.AppKey("metrics", Metrics)
