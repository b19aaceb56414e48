"""Failover and drain (docs/cluster.md, "Failover and drain").

- **Re-opening.** A request or socket for a room that no live node holds (its node was
  killed, or handed it over while draining) finds the session record still live: this
  node rebuilds the Room from the record (`room_from_record`: accepted notice, device,
  agent, times), claims `room:<id>` with `SET NX` (one node wins a race; the losers ask
  where it went) and serves it. The dead node's recording of the room is sealed as
  incomplete over its last good segment (the recording service's crash recovery), the
  kept chat (`toolkit.keep_chat`) comes back from the database, the rest of the toolkit
  state (marks, a frozen still, uploads) does not: the agent is told (`reopened`).
- **Orphans.** In a cluster a starting node ends nobody's session. Sessions that stay
  open with no node holding their room are ended `inactive` by one node at a time (a
  lease in Redis) once they have been orphaned for `session.inactivity_timeout_s`, or
  `max_duration` once that has passed since they were created.
- **Drain.** `callassist node drain` (the flag, read by the heartbeat) or SIGTERM: the node
  takes no new rooms, and for each room finishes its recording, tells the pages `moved`,
  closes their sockets (1012), releases the room and asks the node placement picks to
  re-open it at once (a bridge envelope `adopt`); the pages reconnect, through the load
  balancer, to wherever it lives now. SIGTERM (and `node drain --stop`, which sends this
  process a SIGTERM) then exits, within `cluster.drain_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from typing import Any

from aiohttp import WSCloseCode, web

from server.cluster.redis import (
    CLUSTER_ERRORS,
    ClusterUnavailable,
    bridge_channel,
    drain_key,
    room_key,
)
from server.cluster.registry import Registry, placement
from server.core.appkeys import AUDIT, CLOCK, DB
from server.rooms.manager import ROOMS, LiveRoom
from server.rooms.state import Room, iso
from server.signalling import messages as P

log = logging.getLogger(__name__)

# The socket is closed because its room moves to another node (the WebSocket "service
# restart" code): the pages reconnect at once (docs/protocol.md, "moved").
CLOSE_MOVED = WSCloseCode.SERVICE_RESTART
# Caller statuses that mean the caller's page was connected to the node that went: it
# reconnects by itself, and says so with its next messages.
_WAS_CONNECTED = ("connecting", "live", "paused")
LEASE_KEY = "callassist:lease:orphans"


def orphan_key(room_id: str) -> str:
    return f"callassist:orphan:{room_id}"


def room_from_record(row: dict[str, Any], agent_name: str, now: float) -> Room:
    """The live part of a session rebuilt from its record (pure). No track is live: the
    pages make new peer connections to this node and say so."""
    status = row["caller_status"]
    if status in _WAS_CONNECTED:
        status = "reconnecting"
    return Room(
        id=row["id"],
        agent_id=row["agent_id"],
        agent_name=agent_name,
        created_at=row["created_at"],
        last_activity=now,  # the reconnect is activity: the inactivity timeout restarts
        state="active" if row["state"] == "active" else "waiting",
        caller_status=status,
        caller_device=row["device_type"] or None,
        notice_accepted=row["accepted_at"] is not None,
        started_at=row["media_started_at"],
        reopened_at=now,
    )


class Failover:
    def __init__(self, app: web.Application, registry: Registry, node_id: str) -> None:
        self.app = app
        self.registry = registry
        self.node_id = node_id
        self.stopping = False  # SIGTERM: draining until the process exits
        self._moving: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.reopened = 0  # rooms this node re-opened (metrics)
        self.handed_off = 0  # rooms this node handed over while draining
        self.orphans_ended = 0
        self._sealing: set[asyncio.Task[None]] = set()

    @property
    def redis(self) -> Any:
        return self.registry.redis

    @property
    def draining(self) -> bool:
        return self.stopping or self.registry.draining

    # --- re-opening ----------------------------------------------------------------------
    async def reopen(self, room_id: str) -> LiveRoom | None:
        """The room re-opened here from its live session record; None when the session has
        ended (or never was) or another node won the claim. Raises ClusterUnavailable on
        a draining node (the page retries and lands elsewhere)."""
        if self.draining:
            raise ClusterUnavailable("this node is draining")
        app = self.app
        db = app[DB]
        async with self._lock:  # one re-open at a time here: no double rebuild
            live = app[ROOMS].get(room_id)
            if live is not None:
                return live
            row = await db.get_session(room_id)
            if row is None or row["state"] == "ended":
                return None
            user = await db.user_by_id(row["agent_id"])
            room = room_from_record(row, user.username if user else "", app[CLOCK]())
            live = await app[ROOMS].reopen(room)
            if live is None:
                return None
            self.reopened += 1
        await self._restore(live)
        return live

    async def _restore(self, live: LiveRoom) -> None:
        from server.toolkit.service import TOOLKIT

        app, room_id = self.app, live.room.id
        with contextlib.suppress(*CLUSTER_ERRORS):
            await self.redis.delete(orphan_key(room_id))
        if TOOLKIT in app and app[TOOLKIT].config.keep_chat:
            kit = app[TOOLKIT].kit(room_id)
            for m in await app[DB].chat_messages(room_id):
                kit.chat.append(P.chat_kept(m["text"], m["n"], iso(m["at"]), m["sender"]))
                kit.chat_n = max(kit.chat_n, m["n"])
        # Sealing reads the dead node's segments from storage: the pages' welcome (and so
        # the media) does not wait for it.
        task = asyncio.ensure_future(self._seal_quietly(room_id))
        self._sealing.add(task)
        task.add_done_callback(self._sealing.discard)

    async def _seal_quietly(self, session_id: str) -> None:
        try:
            await self._seal_recordings(session_id)
        except Exception:  # logged; the re-opened room goes on
            log.exception("room %s: sealing the dead node's recording failed", session_id)

    async def _seal_recordings(self, session_id: str) -> None:
        """The dead node's recording: sealed as incomplete over what it had uploaded, as
        after a crash (a stopping node finishes its own before it lets the room go)."""
        from server.recording.service import RECORDING

        app = self.app
        if RECORDING not in app or app[RECORDING].source is None:
            return
        for row in await app[DB].list_recordings(session_id, status="recording"):
            if row["kind"] == "video":
                await app[RECORDING].recover_one(row)

    # --- drain ---------------------------------------------------------------------------
    def on_heartbeat(self, healthy: bool, alive: set[str]) -> None:
        """The registry's beat: a drain flag seen starts moving this node's rooms."""
        idle = self._moving is None or self._moving.done()
        if healthy and self.registry.stop_asked and not self.stopping:
            self.stopping = True
            self._moving = asyncio.ensure_future(self._stop_self())
        elif healthy and self.draining and idle and self.app[ROOMS].rooms():
            self._moving = asyncio.ensure_future(self.move_all())

    async def _stop_self(self) -> None:
        """`callassist node drain --stop`: the flag is taken away (a node started again
        under this id must not stop at once), then this process gets the SIGTERM a
        deployer would send: the same drain, rooms handed over, exit within
        `cluster.drain_timeout_s`."""
        with contextlib.suppress(*CLUSTER_ERRORS):
            await self.redis.delete(drain_key(self.node_id))
        log.info("drain: asked to stop; handing the rooms over, then exiting")
        os.kill(os.getpid(), signal.SIGTERM)

    async def move_all(self) -> None:
        for live in self.app[ROOMS].rooms():
            try:
                await self.hand_off(live.room.id)
            except Exception:  # one room's failure must not keep the others here
                log.exception("drain: handing over room %s failed", live.room.id)

    async def hand_off(self, room_id: str) -> None:
        from server.recording.service import RECORDING
        from server.toolkit.service import TOOLKIT

        app = self.app
        if RECORDING in app:
            await app[RECORDING].finish_room(room_id)  # complete, uploaded by the spool
        target = None
        with contextlib.suppress(*CLUSTER_ERRORS):
            rows = [r for r in await self.registry.rows() if r.node_id != self.node_id]
            target = placement(rows)

        async def adopt_elsewhere() -> None:
            # Before the pages hear `moved`: the room is usually open again when they come.
            if target is not None:
                envelope = json.dumps({"k": "adopt", "c": "-", "room": room_id})
                with contextlib.suppress(*CLUSTER_ERRORS):
                    await self.redis.publish(bridge_channel(target), envelope)

        if not await app[ROOMS].hand_off(room_id, P.moved(), CLOSE_MOVED, adopt_elsewhere):
            return
        if TOOLKIT in app:
            app[TOOLKIT].rooms.pop(room_id, None)
        if RECORDING in app:
            app[RECORDING].forget(room_id)  # the room lives elsewhere now
        self.handed_off += 1
        log.info("drain: room %s handed over (to node %s)", room_id, target or "any")

    async def adopt(self, room_id: str) -> None:
        """Another node handed this room over: re-open it now, before the pages come."""
        try:
            await self.reopen(room_id)
        except Exception as exc:  # the pages' reconnect re-opens it elsewhere
            log.warning("adopting room %s failed: %s", room_id, exc)

    async def drain(self, timeout_s: float) -> None:
        """SIGTERM: no new rooms, every room handed over, within `timeout_s`."""
        self.stopping = self.registry.stopping = True
        self.registry.draining = True
        with contextlib.suppress(*CLUSTER_ERRORS):
            await self.registry.write_row()  # placement skips this node from now on
        rooms = len(self.app[ROOMS].rooms())
        try:
            await asyncio.wait_for(self.move_all(), timeout_s)
        except TimeoutError:
            log.warning("drain: cluster.drain_timeout_s (%.0f s) passed with %d room(s) "
                        "left", timeout_s, len(self.app[ROOMS].rooms()))  # fmt: skip
        log.info("drain: %d room(s) handed over; stopping", rooms)

    # --- orphans -------------------------------------------------------------------------
    async def run(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                if await self.redis.set(LEASE_KEY, self.node_id, nx=True,
                                        px=int(every_s * 2000)) or (
                    await self.redis.get(LEASE_KEY) == self.node_id
                ):  # fmt: skip
                    await self.redis.pexpire(LEASE_KEY, int(every_s * 2000))
                    await self.sweep()
            except CLUSTER_ERRORS as exc:
                log.info("orphan sweep skipped: Redis unreachable (%s)", exc)
            except Exception:
                log.exception("orphan sweep failed")

    async def sweep(self) -> None:
        """End sessions no node has held for the inactivity timeout (or too old)."""
        app = self.app
        cfg = app[ROOMS].config.session
        now = app[CLOCK]()
        ids = await app[DB].open_session_ids()
        if not ids:
            return
        owners = await self.redis.mget([room_key(i) for i in ids])
        for session_id, owner in zip(ids, owners, strict=True):
            okey = orphan_key(session_id)
            if owner:
                continue
            await self.redis.set(okey, str(now), nx=True, ex=int(cfg.max_duration_s) + 60)
            since = float(await self.redis.get(okey) or now)
            row = await app[DB].get_session(session_id)
            if row is None:
                continue
            reason = None
            if now - row["created_at"] >= cfg.max_duration_s:
                reason = "max_duration"
            elif now - since >= cfg.inactivity_timeout_s:
                reason = "inactive"
            if reason is None:
                continue
            # Held for the write: a page re-opening it meanwhile finds it taken, then ended.
            if not await self.redis.set(room_key(session_id), self.node_id, nx=True, px=10_000):
                continue
            try:
                await app[DB].update_session(session_id, state="ended", caller_status="ended",
                                             ended_at=now, end_reason=reason)  # fmt: skip
                await app[AUDIT].record(actor="server", role="system", action="session.end",
                                        object=session_id, reason=reason)  # fmt: skip
                self.orphans_ended += 1
                await self._seal_recordings(session_id)
                log.info("session %s ended (%s): no node held its room", session_id, reason)
            finally:
                await self.redis.delete(room_key(session_id), okey)


FAILOVER = web.AppKey("failover", Failover)
