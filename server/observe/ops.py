"""The ops console: `/ops` (supervisors), a live view of every room on this node.

An `OpsMonitor` samples every live room once a second: the media layer's counters and
aiortc's getStats() of each participant's peer connection become bitrates, frame rates,
packet loss and round-trip times; a short history of each room feeds its sparkline;
warnings flag what an operator should look at. Snapshots go to the page as server-sent
events (`GET /api/ops/stream`); `GET /api/ops/snapshot` gives one. Operators can end a
room (with a reason) and a supervisor can watch one silently (`/ws/watch/{room_id}`,
server/signalling/endpoints.py). docs/ops.md describes the page, the API and the fields.

Over 400 lines because the monitor, its today's numbers and the HTTP handlers (snapshot,
stream, end) are one feature; the per-room sampling is in room_sample.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric
from redis.exceptions import RedisError

from server.cluster import ops_feed, redis_client
from server.cluster.forward import owned_room
from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB
from server.core.db import User, unavailable
from server.core.phone import mask, mask_text, region_for
from server.http.auth import error
from server.http.web_auth import TOKEN_KEY, USER_KEY, require_user
from server.observe.metrics import METRICS
from server.observe.room_sample import RoomSampler
from server.observe.webhooks import WEBHOOKS
from server.paths import WEB_DIR
from server.recording.service import RECORDING
from server.rooms.manager import ROOMS, LiveRoom
from server.rooms.state import RoomEvent, iso
from server.signalling import team

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0
TODAY_REFRESH_S = 10.0
STREAM_KEEPALIVE_S = 15.0
STREAM_RECHECK_LOGIN_S = 60.0
# Live rooms show masked numbers, references and devices: supervisors only (admins manage
# accounts and configuration, server/http/admin.py; docs/security.md).
OPS_ROLES = ("supervisor",)
# Why ops ended a room, as the audit log records it (fixed codes: free text stays out of the
# hash chain, docs/security.md "Audit"); the typed reason is the session's end_note.
END_CODES = ("caller_request", "abuse", "technical", "duplicate", "other")
# Steps at which a caller who never connected dropped out (see _today()).
DROP_STEPS = ("link", "notice", "camera", "connection")


class OpsMonitor:
    def collect_metrics(self) -> Iterator[Metric]:
        """The ops monitor's families for /metrics (server.observe.metrics)."""
        sent = CounterMetricFamily(
            "callassist_media_bytes_sent",
            "RTP bytes sent to participants (sampled from aiortc's stats every second).",
        )
        sent.add_metric([], self.bytes_sent_total)
        yield sent

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.interval_s = SAMPLE_INTERVAL_S
        self.latest: dict[str, Any] | None = None
        self.bytes_sent_total = 0
        self.bytes_received_total = 0
        self._rooms: dict[str, RoomSampler] = {}
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._kick: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._connecting_seen: dict[str, float] = {}
        self._today: dict[str, Any] | None = None
        self._today_at = float("-inf")
        self._cpu_prev = (time.monotonic(), time.process_time())

    # --- room events (synchronous, must not block) -------------------------------------
    def on_room_event(self, event: RoomEvent) -> None:
        if event.kind == "caller_status" and event.data.get("status") == "connecting":
            # The caller's page sent an offer: it got past the camera permission.
            self._connecting_seen[event.room.id] = time.time()
        if event.kind == "ended":
            self._rooms.pop(event.room.id, None)
        if event.kind in ("created", "active", "ended"):
            self._today_at = float("-inf")  # today's numbers changed
            self.kick()

    def kick(self) -> None:
        """Sample now rather than at the next tick (a room came or went)."""
        if self._kick is not None:
            self._kick.set()

    # --- subscribers -------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)

    def _publish(self, item: dict[str, Any] | None) -> None:
        for queue in list(self._subscribers):
            # Snapshots are whole states: a slow page skips to the newest one.
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(item)

    def close_streams(self) -> None:
        self._publish(None)

    # --- sampling ----------------------------------------------------------------------
    async def run(self) -> None:
        self._kick = asyncio.Event()
        self._lock = asyncio.Lock()
        while True:
            try:
                await self.sample()
            except Exception as exc:  # the console must keep going whatever one sample did
                if unavailable(exc):  # said once a second, no traceback: nothing to debug
                    log.warning("ops sample: database unavailable (%s)", type(exc).__name__)
                else:
                    log.exception("ops sample failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval_s)
            self._kick.clear()

    async def snapshot(self) -> dict[str, Any]:
        """The newest snapshot (sampled now if there is none yet)."""
        if self.latest is None or time.monotonic() - self.latest["_mono"] > 3 * self.interval_s:
            return await self.sample()
        return self.latest

    async def sample(self) -> dict[str, Any]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            snap = await self._sample()
        self.latest = snap
        self._publish(snap)
        return snap

    async def _sample(self) -> dict[str, Any]:
        app = self.app
        now = app[CLOCK]()
        mono = time.monotonic()
        rooms_out = []
        live_ids = set()
        for live in app[ROOMS].rooms():
            if live.room.ended:
                continue
            live_ids.add(live.room.id)
            try:
                rooms_out.append(await self._room(live, now, mono))
            except Exception:
                log.exception("ops: sampling room %s failed", live.room.id)
        for gone in set(self._rooms) - live_ids:
            self._rooms.pop(gone, None)
        rooms_out.sort(key=lambda r: r["created_at"] or "")

        totals = {
            "rooms": len(rooms_out),
            "rooms_active": sum(1 for r in rooms_out if r["state"] == "active"),
            "rooms_waiting": sum(1 for r in rooms_out if r["state"] == "waiting"),
            "participants": sum(
                1
                for r in rooms_out
                for p in r["participants"]
                if p["connection"] != "none" or p["signalling"]
            ),
            "in_kbps": round(sum(r["in_kbps"] for r in rooms_out), 1),
            "out_kbps": round(sum(r["out_kbps"] for r in rooms_out), 1),
            "cpu_percent": self._cpu_percent(mono),
            "memory_bytes": _rss_bytes(),
        }
        metrics = app.get(METRICS)
        if metrics is not None:
            totals["event_loop_lag_ms"] = round(metrics.loop_lag._value.get() * 1000, 1)
        hooks = app.get(WEBHOOKS)
        webhooks = hooks.snapshot() if hooks is not None else {"enabled": False}
        warnings = []
        if webhooks.get("enabled") and (webhooks["given_up"] or webhooks["dropped"]):
            warnings.append(
                {"code": "webhooks_lost", "count": webhooks["given_up"] + webhooks["dropped"]}
            )
        if webhooks.get("enabled") and webhooks["queued"] and webhooks["last_error"]:
            warnings.append({"code": "webhooks_failing", "queued": webhooks["queued"]})
        if totals.get("event_loop_lag_ms", 0) > 250:
            warnings.append({"code": "event_loop_lag", "ms": totals["event_loop_lag_ms"]})
        return {
            "type": "snapshot",
            "at": iso(now),
            "_mono": mono,
            "totals": totals,
            "today": await self._today_stats(now),
            "webhooks": webhooks,
            "recording": self._node_recording(rooms_out),
            "warnings": warnings,
            "rooms": rooms_out,
        }

    async def _room(self, live: LiveRoom, now: float, mono: float) -> dict[str, Any]:
        room = live.room
        sampler = self._rooms.setdefault(room.id, RoomSampler())
        if sampler.info is None:
            row = await self.app[DB].get_session(room.id)
            sampler.info = {
                "phone": mask(row["phone"]) if row else "",
                "reference": row["reference"] if row else "",
            }
        view, totals = sampler.sample(
            live, await live.media.rtp_stats(), now, mono, self.interval_s
        )
        self.bytes_received_total += totals.bytes_received
        self.bytes_sent_total += totals.bytes_sent
        view["recording"] = self._recording(live)
        return view

    def _recording(self, live: LiveRoom) -> dict[str, Any]:
        """The room's recording, as its recorder participant says (docs/ops.md)."""
        rec = live.room.recorder
        if rec is None:
            return {"state": "off", "spool_bytes": 0}
        service = self.app.get(RECORDING)
        spool = service.spool if service is not None else None
        return {
            "state": "recording",
            "id": rec.recording_id,
            "started_at": iso(rec.joined_at),
            "warning": rec.warning,
            "spool_bytes": spool.pending_bytes(f"recordings/{rec.recording_id}/") if spool else 0,
        }

    def _node_recording(self, rooms_out: list[dict[str, Any]]) -> dict[str, Any]:
        service = self.app.get(RECORDING)
        active = sum(1 for r in rooms_out if r["recording"]["state"] == "recording")
        spool = service.spool if service is not None else None
        return {
            "state": "recording" if active else "off",
            "rooms": active,
            "mode": service.mode if service is not None else "off",
            "spool_bytes": spool.size_bytes if spool else 0,
            "spool_over_limit": bool(service and service.spool_over_limit),
        }

    def _cpu_percent(self, mono: float) -> float:
        cpu = time.process_time()
        wall0, cpu0 = self._cpu_prev
        self._cpu_prev = (mono, cpu)
        if mono - wall0 <= 0:
            return 0.0
        return round(100 * (cpu - cpu0) / (mono - wall0), 1)

    # --- today's sessions --------------------------------------------------------------
    async def _today_stats(self, now: float) -> dict[str, Any]:
        if self._today is not None and time.monotonic() - self._today_at < TODAY_REFRESH_S:
            return self._today
        midnight = (
            dt.datetime.fromtimestamp(now)
            .astimezone()
            .replace(hour=0, minute=0, second=0, microsecond=0)
        ).timestamp()
        rows = await self.app[DB].sessions_created_since(midnight)
        connect_times = [
            r["media_started_at"] - r["created_at"] for r in rows if r["media_started_at"]
        ]
        dropped = dict.fromkeys(DROP_STEPS, 0)
        finished = [r for r in rows if r["state"] == "ended"]
        for r in finished:
            if r["media_started_at"] is not None:
                continue
            if r["opened_at"] is None:
                dropped["link"] += 1  # never opened the link
            elif r["accepted_at"] is None:
                dropped["notice"] += 1  # opened, did not accept the notice
            elif r["id"] in self._connecting_seen:
                dropped["connection"] += 1  # sent an offer: ICE/DTLS never connected
            else:
                dropped["camera"] += 1  # accepted, never offered: camera denied or not started
        never = sum(dropped.values())
        cutoff = time.time() - 2 * 86400
        self._connecting_seen = {k: v for k, v in self._connecting_seen.items() if v > cutoff}
        self._today = {
            "since": iso(midnight),
            "sessions": len(rows),
            "connected": len(connect_times),
            "finished": len(finished),
            "median_connect_s": round(statistics.median(connect_times), 1)
            if connect_times
            else None,
            "never_connected": never,
            "never_connected_share": round(never / len(finished), 3) if finished else None,
            "dropped_at": dropped,
        }
        self._today_at = time.monotonic()
        return self._today


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _public(snap: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snap.items() if not k.startswith("_")}


async def _view(app: web.Application, snap: dict[str, Any]) -> dict[str, Any]:
    """This node's snapshot, or with cluster.router = "redis" every node's, merged
    (server/cluster/ops_feed.py); this node's alone, flagged, when Redis does not answer."""
    feed = app.get(ops_feed.OPS_FEED)
    if feed is None:
        return _public(snap)
    try:
        return await feed.cached_view()
    except (RedisError, OSError):
        local = _public(snap)
        return {**local, "warnings": [*local["warnings"], {"code": "cluster_unavailable"}]}


# --- HTTP ----------------------------------------------------------------------------------


async def ops_page(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(WEB_DIR / "ops.html")
    response.headers["Cache-Control"] = "no-store"
    return response


@require_user(*OPS_ROLES)
async def snapshot_handler(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _view(request.app, await request.app[OPS].snapshot()))


@require_user(*OPS_ROLES)
async def stream_handler(request: web.Request) -> web.StreamResponse:
    monitor = request.app[OPS]
    db = request.app[DB]
    user: User = request[USER_KEY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await response.prepare(request)
    queue = monitor.subscribe()
    checked = time.monotonic()
    try:
        await response.write(b"retry: 2000\n\n")
        if monitor.latest is not None:
            await _send(response, await _view(request.app, monitor.latest))
        while True:
            try:
                snap = await asyncio.wait_for(queue.get(), STREAM_KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if snap is None:
                break  # server shutdown
            if time.monotonic() - checked > STREAM_RECHECK_LOGIN_S:
                # A login that ended (logout, disabled account) ends the stream too.
                token = request[TOKEN_KEY]
                if not token or await db.login_user(token, request.app[CLOCK]()) is None:
                    log.info("ops stream of %s closed: login ended", user.username)
                    break
                checked = time.monotonic()
            await _send(response, await _view(request.app, snap))
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        monitor.unsubscribe(queue)
    return response


async def _send(response: web.StreamResponse, snap: dict[str, Any]) -> None:
    data = json.dumps(snap, separators=(",", ":"), ensure_ascii=False)
    await response.write(b"event: snapshot\ndata: " + data.encode() + b"\n\n")


@require_user(*OPS_ROLES)
async def end_room_handler(request: web.Request) -> web.StreamResponse:
    user: User = request[USER_KEY]
    try:
        body = await request.json()
    except ValueError:
        body = None
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        return error(400, "bad_reason", "give a reason (at most 500 characters)")
    code = body.get("code", "other") if isinstance(body, dict) else "other"
    if code not in END_CODES:
        return error(400, "bad_reason", "code must be one of " + ", ".join(END_CODES))
    room_id = request.match_info["room_id"]
    rooms = request.app[ROOMS]
    if await owned_room(request, room_id) is None:  # another node's: it ends the room
        return error(404, "not_found", "no such live room")
    ended = await rooms.end(room_id, "ops")
    # The free text may name the caller ("caller +371 2000 0111 asked to stop"): it goes
    # with the session (erased with the subject, deleted by retention), masked; the
    # hash-chained audit log and the server log get the fixed code only.
    region = region_for(request.app[CONFIG].session.default_country_code)
    await request.app[DB].update_session(room_id, end_note=mask_text(reason.strip(), region))
    await request.app[AUDIT].record(
        actor=user.username,
        role=user.role,
        action="ops.room_end",
        object=room_id,
        reason=code,
        result="ok" if ended else "already_ended",
    )
    log.info("ops: %s ended room %s (%s)", user.username, room_id, code)
    request.app[OPS].kick()
    return web.json_response({"ended": ended, "room": room_id})


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    monitor = app[OPS]
    task = asyncio.create_task(monitor.run(), name="ops-monitor")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _on_shutdown(app: web.Application) -> None:
    app[OPS].close_streams()


def setup(app: web.Application) -> None:
    monitor = OpsMonitor(app)
    app[OPS] = monitor
    app[ROOMS].listen(monitor.on_room_event)
    if METRICS in app:
        app[METRICS].add_collector(monitor.collect_metrics)
    app.cleanup_ctx.append(_lifecycle)
    if app[CONFIG].cluster.router == "redis":  # every node's rooms in one console
        node_id = app[ROOMS].router.node_id
        ops_feed.setup(app, redis_client.for_app(app), node_id, monitor)
    app.on_shutdown.append(_on_shutdown)
    r = app.router
    r.add_get("/ops", ops_page)
    r.add_get("/api/ops/snapshot", snapshot_handler)
    r.add_get("/api/ops/stream", stream_handler)
    r.add_post("/api/ops/rooms/{room_id}/end", end_room_handler)
    r.add_get("/ws/watch/{room_id}", team.watch_ws)
    team.setup(app)  # join visibly, experts' links, hand-over (docs/protocol.md, "Team")


# This feature's application key (docs/architecture.md).
OPS = web.AppKey("ops", OpsMonitor)
