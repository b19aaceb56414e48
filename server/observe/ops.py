"""The ops console: `/ops` (supervisors), a live view of every room on this node.

An `OpsMonitor` samples every live room once a second: the media layer's counters and
aiortc's getStats() of each participant's peer connection become bitrates, frame rates,
packet loss and round-trip times; a short history of each room feeds its sparkline;
warnings flag what an operator should look at. Snapshots go to the page as server-sent
events (`GET /api/ops/stream`); `GET /api/ops/snapshot` gives one. Operators can end a
room (with a reason) and a supervisor can watch one silently (`/ws/watch/{room_id}`,
server/signalling/endpoints.py). docs/ops.md describes the page, the API and the fields.
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
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric

from server.core.appkeys import AUDIT, CLOCK, DB
from server.core.db import User, sessions
from server.core.phone import mask
from server.http.auth import error
from server.http.web_auth import TOKEN_KEY, USER_KEY, require_user
from server.observe.metrics import METRICS
from server.observe.webhooks import WEBHOOKS
from server.paths import WEB_DIR
from server.rooms.manager import ROOMS, LiveRoom, RoomEvent
from server.rooms.state import iso
from server.signalling import endpoints as signalling

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0
HISTORY_POINTS = 180  # three minutes of sparkline at one sample a second
NO_FRAMES_WARN_S = 5.0
HIGH_LOSS = 0.05  # share of packets lost over one sample
MIN_PACKETS_FOR_LOSS = 20
TODAY_REFRESH_S = 10.0
STREAM_KEEPALIVE_S = 15.0
STREAM_RECHECK_LOGIN_S = 60.0
# Live rooms show masked numbers, references and devices: supervisors only (admins manage
# accounts and configuration, server/http/admin.py; docs/security.md).
OPS_ROLES = ("supervisor",)
# Steps at which a caller who never connected dropped out (see _today()).
DROP_STEPS = ("link", "notice", "camera", "connection")


def recording_off(room_id: str) -> dict[str, Any]:
    """HOOK(recorder): the recorder replaces `app[OPS].recording_status` with its own
    function returning {"state": "off"|"recording"|"uploading"|..., "spool_bytes": int}."""
    return {"state": "off", "spool_bytes": 0}


@dataclass
class _PartPrev:
    pc_id: int | None
    bytes_received: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    packets_lost: int = 0
    frames_forwarded: int = 0


@dataclass
class _RoomState:
    info: dict[str, Any] | None = None
    prev_at: float | None = None
    parts: dict[str, _PartPrev] = field(default_factory=dict)
    tracks: dict[str, tuple[int, int]] = field(default_factory=dict)
    last_frame_at: dict[str, float] = field(default_factory=dict)
    history: deque[tuple[float, float, float]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_POINTS)
    )


def _kbps(delta_bytes: int, seconds: float) -> float:
    return round(max(delta_bytes, 0) * 8 / seconds / 1000, 1) if seconds > 0 else 0.0


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
        self.recording_status: Callable[[str], dict[str, Any]] = recording_off
        self.latest: dict[str, Any] | None = None
        self.bytes_sent_total = 0
        self.bytes_received_total = 0
        self._rooms: dict[str, _RoomState] = {}
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
            except Exception:  # the console must keep going whatever one sample did
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
            "recording": {"state": "off"},  # HOOK(recorder): node-wide recorder state
            "warnings": warnings,
            "rooms": rooms_out,
        }

    async def _room(self, live: LiveRoom, now: float, mono: float) -> dict[str, Any]:
        room = live.room
        st = self._rooms.setdefault(room.id, _RoomState())
        if st.info is None:
            row = await self.app[DB].get_session(room.id)
            st.info = {
                "phone": mask(row["phone"]) if row else "",
                "reference": row["reference"] if row else "",
            }
        seconds = mono - st.prev_at if st.prev_at is not None else 0.0
        media = live.media
        rtp = await media.rtp_stats()

        # Tracks: frames and payload bytes the server received, and when the last came.
        tracks = {}
        warnings: list[dict[str, Any]] = []
        for name, track in media.tracks.items():
            frames, size = track.frames_in, track.bytes_in
            prev_frames, prev_size = st.tracks.get(name, (frames, size))
            if frames > prev_frames or name not in st.last_frame_at:
                st.last_frame_at[name] = mono
            st.tracks[name] = (frames, size)
            silent = mono - st.last_frame_at[name]
            tracks[name] = {
                "live": bool(room.tracks.get(name)),
                "publisher": track.live,
                "subscribers": len(track.subscribers),
                "fps": round((frames - prev_frames) / seconds, 1) if seconds else 0.0,
                "kbps": _kbps(size - prev_size, seconds),
                "frames": frames,
                "seconds_since_frame": round(silent, 1),
            }
            paused = name == "camera" and room.caller_status == "paused"
            if room.tracks.get(name) and not paused and silent >= NO_FRAMES_WARN_S:
                warnings.append({"code": "no_frames", "track": name, "seconds": int(silent)})

        participants = []
        in_kbps = out_kbps = 0.0
        for pid in sorted(set(rtp) | set(live.conns)):
            r = rtp.get(pid)
            conn = live.conns.get(pid)
            role = r["role"] if r else conn.role if conn else "?"
            prev = st.parts.get(pid)
            if r is None or prev is None or prev.pc_id != r["pc_id"]:
                prev = None  # a new peer connection: its counters start again
            cur = _PartPrev(r["pc_id"] if r else None)
            entry: dict[str, Any] = {
                "id": pid,
                "role": role,
                "signalling": conn is not None,
                "connection": r["connection_state"] if r else "none",
                "ice": r["ice_state"] if r else "none",
                "in": None,
                "out": None,
                "rtt_ms": None,
            }
            if r is not None:
                transport = r["transport"] or {}
                cur.bytes_received = transport.get("bytes_received", 0)
                pub, rec = r["publish"], r["receive"]
                if pub is not None:
                    cur.packets_received = pub["packets_received"]
                    cur.packets_lost = pub["packets_lost"]
                    loss = 0.0
                    kbps = 0.0
                    if prev is not None and seconds:
                        got = cur.packets_received - prev.packets_received
                        lost = cur.packets_lost - prev.packets_lost
                        if got + lost >= MIN_PACKETS_FOR_LOSS and lost > 0:
                            loss = round(lost / (got + lost), 3)
                        kbps = _kbps(cur.bytes_received - prev.bytes_received, seconds)
                        self.bytes_received_total += max(
                            cur.bytes_received - prev.bytes_received, 0
                        )
                    fps = tracks[pub["track"]]["fps"] if pub["current"] else 0.0
                    if room.tracks.get(pub["track"]) or kbps >= 50:  # shown while it flows
                        entry["in"] = {
                            "track": pub["track"],
                            "kbps": kbps,
                            "fps": fps,
                            "loss": loss,
                        }
                    in_kbps += kbps
                    if loss >= HIGH_LOSS:
                        warnings.append({"code": "high_loss", "participant": pid, "loss": loss})
                if rec is not None:
                    cur.bytes_sent = rec["bytes_sent"]
                    cur.frames_forwarded = rec["frames_forwarded"]
                    kbps = fps = 0.0
                    if prev is not None and seconds:
                        sent = cur.bytes_sent - prev.bytes_sent
                        kbps = _kbps(sent, seconds)
                        self.bytes_sent_total += max(sent, 0)
                        fps = round((cur.frames_forwarded - prev.frames_forwarded) / seconds, 1)
                    loss = round(rec["fraction_lost"], 3)
                    if room.tracks.get(rec["track"]) or kbps >= 50:
                        entry["out"] = {
                            "track": rec["track"],
                            "kbps": kbps,
                            "fps": fps,
                            "loss": loss,
                        }
                    out_kbps += kbps
                    if rec["rtt_s"] is not None:
                        entry["rtt_ms"] = round(rec["rtt_s"] * 1000, 1)
                    if loss >= HIGH_LOSS and kbps > 0:
                        warnings.append({"code": "high_loss", "participant": pid, "loss": loss})
                st.parts[pid] = cur
            participants.append(entry)
        for gone in set(st.parts) - set(rtp):
            st.parts.pop(gone, None)
        if room.caller_status == "reconnecting":
            warnings.append({"code": "caller_reconnecting"})
        if seconds:
            st.history.append((round(in_kbps, 1), tracks["camera"]["fps"], round(out_kbps, 1)))
        st.prev_at = mono

        return {
            "id": room.id,
            "agent": room.agent_name,
            "agent_status": "connected" if room.agent_connected else "away",
            "phone": st.info["phone"],
            "reference": st.info["reference"],
            "state": room.state,
            "caller_status": room.caller_status,
            "device": room.caller_device,
            "created_at": iso(room.created_at),
            "started_at": iso(room.started_at),
            "age_s": round(now - room.created_at, 1),
            "tracks": tracks,
            "participants": participants,
            "in_kbps": round(in_kbps, 1),
            "out_kbps": round(out_kbps, 1),
            "history": {
                "in_kbps": [h[0] for h in st.history],
                "fps": [h[1] for h in st.history],
                "out_kbps": [h[2] for h in st.history],
                "interval_s": self.interval_s,
            },
            "warnings": warnings,
            "recording": self.recording_status(room.id),
            "watchers": sum(1 for p in participants if p["role"] == "supervisor"),
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
        s = sessions.c
        query = sa.select(
            s.id, s.created_at, s.opened_at, s.accepted_at, s.media_started_at, s.state
        ).where(s.created_at >= midnight)
        async with self.app[DB].engine.connect() as conn:
            rows = [r._mapping for r in (await conn.execute(query)).all()]
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


# --- HTTP ----------------------------------------------------------------------------------


async def ops_page(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(WEB_DIR / "ops.html")
    response.headers["Cache-Control"] = "no-store"
    return response


@require_user(*OPS_ROLES)
async def snapshot_handler(request: web.Request) -> web.StreamResponse:
    return web.json_response(_public(await request.app[OPS].snapshot()))


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
            await _send(response, monitor.latest)
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
            await _send(response, snap)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        monitor.unsubscribe(queue)
    return response


async def _send(response: web.StreamResponse, snap: dict[str, Any]) -> None:
    data = json.dumps(_public(snap), separators=(",", ":"), ensure_ascii=False)
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
    room_id = request.match_info["room_id"]
    rooms = request.app[ROOMS]
    if rooms.get(room_id) is None:
        return error(404, "not_found", "no such live room")
    reason = reason.strip()
    ended = await rooms.end(room_id, "ops")
    await request.app[AUDIT].record(
        actor=user.username,
        role=user.role,
        action="ops.room_end",
        object=room_id,
        reason=reason,
        result="ok" if ended else "already_ended",
    )
    log.info("ops: %s ended room %s, reason: %s", user.username, room_id, reason)
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
    app.on_shutdown.append(_on_shutdown)
    r = app.router
    r.add_get("/ops", ops_page)
    r.add_get("/api/ops/snapshot", snapshot_handler)
    r.add_get("/api/ops/stream", stream_handler)
    r.add_post("/api/ops/rooms/{room_id}/end", end_room_handler)
    r.add_get("/ws/watch/{room_id}", signalling.watch_ws)


# This feature's application key (docs/architecture.md).
OPS = web.AppKey("ops", OpsMonitor)
