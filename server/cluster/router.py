"""RedisRouter: the room -> node map in Redis (`room:<id>` = node id), LiveKit-style.

`claim` is `SET room:<id> <node> NX` with the node TTL (re-claiming one's own room is
fine); the heartbeat refreshes every held room's key, so a dead node's rooms vanish with
it and a restarted (empty) Redis gets the map back within one beat. Messages for
participants held on this node are delivered here; those whose socket is on another node
go through the signal bridge's sink (server/cluster/bridge.py), so `send` stays local.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from server.cluster.redis import CLUSTER_ERRORS, ClusterUnavailable, room_key
from server.rooms.router import Deliver, RoomTaken

log = logging.getLogger(__name__)

# Compare and delete in one step: a node that re-opened the room meanwhile keeps it.
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisRouter:
    def __init__(self, redis: Redis, node_id: str, ttl_s: float) -> None:
        self.redis = redis
        self.node_id = node_id
        self.ttl_ms = int(ttl_s * 1000)
        self._rooms: set[str] = set()
        self._deliver: Deliver | None = None
        # The registry rewrites this node's row right away (set by ClusterNode): placement
        # on other nodes sees the new room count without waiting for the next heartbeat.
        self.after_change: Callable[[], Awaitable[None]] | None = None

    async def _changed(self) -> None:
        if self.after_change is not None:
            try:
                await self.after_change()
            except CLUSTER_ERRORS as exc:
                log.info("cluster: could not update this node's row now: %s", exc)

    def held(self) -> list[str]:
        return sorted(self._rooms)

    async def claim(self, room_id: str) -> None:
        try:
            key = room_key(room_id)
            if not await self.redis.set(key, self.node_id, nx=True, px=self.ttl_ms):
                owner = await self.redis.get(key)
                if owner != self.node_id:
                    raise RoomTaken(f"room {room_id} is held by node {owner}")
                await self.redis.pexpire(key, self.ttl_ms)
        except CLUSTER_ERRORS as exc:
            raise ClusterUnavailable(str(exc)) from None
        self._rooms.add(room_id)
        await self._changed()

    async def reclaim(self, room_ids: list[str]) -> None:
        """The heartbeat's part: (re)write every held room's key, refreshing its TTL."""
        if not room_ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.set(room_key(room_id), self.node_id, nx=True, px=self.ttl_ms)
            created = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.get(room_key(room_id))
            owners = await pipe.execute()
        refresh = []
        for room_id, new, owner in zip(room_ids, created, owners, strict=True):
            if owner == self.node_id and not new:
                refresh.append(room_id)
            elif owner != self.node_id:
                log.warning("cluster: room %s is claimed by node %s too", room_id, owner)
        if refresh:
            async with self.redis.pipeline(transaction=False) as pipe:
                for room_id in refresh:
                    pipe.pexpire(room_key(room_id), self.ttl_ms)
                await pipe.execute()

    async def forget_dead_owner(self, room_id: str, owner: str) -> bool:
        """Delete `room:<id>` if it still names `owner`, a node found dead (the bridge's
        `gone`): the room is re-opened now instead of when the key's TTL runs out."""
        try:
            return bool(await self.redis.eval(_DELETE_IF, 1, room_key(room_id), owner))
        except CLUSTER_ERRORS as exc:
            raise ClusterUnavailable(str(exc)) from None

    async def release(self, room_id: str) -> None:
        self._rooms.discard(room_id)
        try:
            key = room_key(room_id)
            if await self.redis.get(key) == self.node_id:
                await self.redis.delete(key)
        except CLUSTER_ERRORS as exc:
            # The key expires by itself (TTL); the room has ended here either way.
            log.warning("cluster: could not release room %s in Redis: %s", room_id, exc)
        await self._changed()

    async def node_for(self, room_id: str) -> str | None:
        if room_id in self._rooms:
            return self.node_id
        try:
            owner = await self.redis.get(room_key(room_id))
        except CLUSTER_ERRORS as exc:
            raise ClusterUnavailable(str(exc)) from None
        return str(owner) if owner else None

    def deliver_to(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def send(self, room_id: str, participant_id: str, message: dict[str, Any]) -> bool:
        return self._deliver is not None and self._deliver(room_id, participant_id, message)
