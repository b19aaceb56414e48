"""The signal bridge: a signalling socket held by one node for a room held by another.

LiveKit's signal relay is the model. Node B holds the WebSocket; node A holds the room.
B did the origin/login/role checks as for a local socket, then publishes to A's channel
`bridge:<A>`: `open` {conn, room, role, participant, name}, every text frame in order
(`msg`), and `close`. A runs the same `serve` as for a local socket, with a sink that
publishes to `bridge:<B>` (`out` messages, `end` with the close code); B writes those to
the WebSocket. Each bridged socket has one bounded, ordered publisher per direction (one
task publishing in turn: order is kept, what queued meanwhile goes in one pipelined round
trip, and a full buffer closes the socket with a clear error instead of growing).

Envelopes: the two per-frame kinds are `m<conn>\n<frame text>` (socket -> room) and
`o<conn>\n<message JSON>` (room -> socket): the frame or message text travels as it is,
encoded once on the room's node and written to the socket as it arrives, never wrapped
in, escaped for or parsed out of another JSON document (that was a dumps and a loads more
per hop). Everything else (open, close, end, adopt) is a JSON object.

Liveness: the heartbeat lists the live nodes; each side closes its bridged sockets whose
other node is gone, and all of them while Redis is unreachable (the pages reconnect by
themselves).

A killed node is noticed faster than its registry row expires (`node_ttl_s`): Redis drops
a dead process's connections at once, so nobody is subscribed to its channel any more
(`PUBSUB NUMSUB`). A live node is always subscribed, except for the ~0.5 s in which it
subscribes again after a Redis failure: `gone` asks twice, `CONFIRM_GONE_S` apart, and
only then is the node taken for dead (its bridged sockets closed, its rooms re-opened).

Over 400 lines because both ends of a bridged socket (the node holding it and the node
holding the room), their envelope format and the liveness checks are one protocol: split
over files, a change to one end would no longer sit beside the other end it must match.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from redis.asyncio import Redis

from server.cluster.redis import CLUSTER_ERRORS, bridge_channel
from server.rooms.connection import Connection
from server.rooms.manager import ROOMS, LiveRoom
from server.signalling import messages as P

log = logging.getLogger(__name__)

# The socket is closed because the way to its room's node failed (docs/protocol.md).
CLOSE_BRIDGE = WSCloseCode.INTERNAL_ERROR
# Longer than `run`'s pause before subscribing again after a Redis failure (0.5 s) plus a
# subscribe: a live node's channel has a subscriber again by then.
CONFIRM_GONE_S = 1.0
# A node confirmed gone stays so, without a new wait, while nobody listens on its channel
# (for this long; then it is confirmed again).
DEAD_REMEMBERED_S = 30.0
Serve = Callable[..., Awaitable[None]]


def _unavailable(why: str) -> dict[str, Any]:
    return P.error(P.CLUSTER_UNAVAILABLE, f"the connection to this call's server failed ({why}); "
                   "reconnecting")  # fmt: skip


class Outbound:
    """One bridged socket's envelopes to one channel: bounded, published in order."""

    def __init__(
        self, redis: Redis, channel: str, size: int, on_fail: Callable[[str], None]
    ) -> None:
        self.redis = redis
        self.channel = channel
        self._q: asyncio.Queue[str | None] = asyncio.Queue(maxsize=size)
        self._on_fail = on_fail
        self._finished = False
        self.task = asyncio.create_task(self._run(), name=f"bridge-out-{channel}")

    def put(self, envelope: dict[str, Any] | str) -> bool:
        """Queue a JSON envelope (a dict) or a framed one (`frame()`)."""
        if self._finished:
            return False
        if not isinstance(envelope, str):
            envelope = json.dumps(envelope, separators=(",", ":"))
        try:
            self._q.put_nowait(envelope)
            return True
        except asyncio.QueueFull:
            self._on_fail("bridge buffer full")
            return False

    def finish(self) -> None:
        """Publish what is queued, then stop."""
        if self._finished:
            return
        self._finished = True
        try:
            self._q.put_nowait(None)
        except asyncio.QueueFull:
            self.task.cancel()

    async def _run(self) -> None:
        while True:
            items = [await self._q.get()]
            while items[-1] is not None and not self._q.empty():
                items.append(self._q.get_nowait())  # a burst: one round trip for all
            last = items[-1] is None
            batch = [i for i in items if i is not None]
            try:
                if len(batch) == 1:
                    await self.redis.publish(self.channel, batch[0])
                elif batch:
                    pipe = self.redis.pipeline(transaction=False)
                    for item in batch:
                        pipe.publish(self.channel, item)
                    await pipe.execute()
            except CLUSTER_ERRORS as exc:
                self._finished = True
                self._on_fail(f"Redis: {exc}")
                return
            if last:
                return

    async def drained(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(self.task), timeout)


def frame(kind: str, conn_id: str, text: str) -> str:
    """A per-frame envelope: kind "m" (socket -> room) or "o" (room -> socket)."""
    return f"{kind}{conn_id}\n{text}"


class RemoteIncoming:
    """A bridged socket's frames on the room's node, as `serve` reads a WebSocket."""

    def __init__(self, size: int) -> None:
        self._q: asyncio.Queue[str | None] = asyncio.Queue(maxsize=size)
        self._ended = False

    def put(self, text: str) -> bool:
        if self._ended:
            return True
        try:
            self._q.put_nowait(text)
            return True
        except asyncio.QueueFull:
            return False

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        # A full queue still ends: drop one frame to make room for the end mark.
        if self._q.full():
            self._q.get_nowait()
        self._q.put_nowait(None)

    def exception(self) -> BaseException | None:
        return None

    async def __aiter__(self) -> AsyncIterator[WSMessage]:
        while True:
            text = await self._q.get()
            if text is None:
                return
            yield WSMessage(WSMsgType.TEXT, text, None)


class RemoteSink:
    """A participant's messages on the room's node, published to the node holding its
    socket (the `MessageSink` the room manager sends to)."""

    def __init__(self, bridge: Bridge, conn_id: str, peer: str, role: str, participant: str):
        self.role = role
        self.participant = participant
        self.conn_id = conn_id
        self.peer = peer
        self.closing = False
        self.incoming = RemoteIncoming(bridge.size)
        self.out = Outbound(bridge.redis, bridge_channel(peer), bridge.size, self._failed)

    def _failed(self, why: str) -> None:
        log.warning("bridge: %s socket %s from node %s closed: %s", self.role, self.conn_id,
                    self.peer, why)  # fmt: skip
        self.closing = True
        self.incoming.end()

    def send(self, message: dict[str, Any]) -> None:
        if not self.closing:
            text = json.dumps(message, separators=(",", ":"))
            self.out.put(frame("o", self.conn_id, text))

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.out.put({"k": "end", "c": self.conn_id, "code": int(code), "reason": reason})
        self.out.finish()
        self.incoming.end()

    async def wait_closed(self) -> None:
        self.close_soon(WSCloseCode.GOING_AWAY, "closing")
        await self.out.drained()


class Held:
    """A socket this node holds for a room on another node."""

    def __init__(self, bridge: Bridge, conn: Connection, owner: str) -> None:
        self.conn = conn
        self.owner = owner
        self.conn_id = f"{bridge.node_id}/{secrets.token_hex(8)}"
        self.out = Outbound(bridge.redis, bridge_channel(owner), bridge.size, self.fail)

    def fail(self, why: str) -> None:
        log.warning("bridge: %s socket to node %s closed: %s", self.conn.role, self.owner, why)
        self.conn.send(_unavailable(why))
        self.conn.close_soon(CLOSE_BRIDGE, "cluster unavailable")


class Bridge:
    def __init__(self, app: web.Application, redis: Redis, node_id: str, size: int) -> None:
        self.app = app
        self.redis = redis
        self.node_id = node_id
        self.size = size
        self.serve: Serve | None = None  # server.signalling.endpoints.serve (set up by setup)
        self.held: dict[str, Held] = {}
        self.served: dict[str, RemoteSink] = {}
        self.subscribed = asyncio.Event()
        # A draining node handed a room to this one (server/cluster/failover.py).
        self.on_adopt: Callable[[str], Awaitable[None]] | None = None
        self._checking: asyncio.Task[None] | None = None
        self._dead: dict[str, float] = {}  # node id -> when `gone` confirmed it
        # This node takes no rooms (set by ClusterNode: the failover's `draining`).
        self.draining: Callable[[], bool] = lambda: False

    # --- liveness of the other nodes ---------------------------------------------------
    async def listening(self, node_id: str) -> bool:
        """Someone is subscribed to the node's bridge channel (raises CLUSTER_ERRORS)."""
        counts = await self.redis.pubsub_numsub(bridge_channel(node_id))
        return bool(counts and int(counts[0][1]) > 0)

    async def gone(self, node_id: str) -> bool:
        """The node's process is gone (nobody on its channel, twice, CONFIRM_GONE_S
        apart): seconds before its registry row expires. A node found gone a moment ago
        (the heartbeat's check, another page) is not waited for again; one that listens
        again (restarted under its id) is not gone. False when Redis cannot say."""
        if node_id == self.node_id:
            return False
        try:
            if await self.listening(node_id):
                self._dead.pop(node_id, None)
                return False
            if time.monotonic() - self._dead.get(node_id, -1e9) < DEAD_REMEMBERED_S:
                return True
            await asyncio.sleep(CONFIRM_GONE_S)
            if await self.listening(node_id):
                return False
        except CLUSTER_ERRORS:
            return False
        self._dead[node_id] = time.monotonic()
        return True

    async def _close_gone_peers(self, peers: set[str]) -> None:
        found = await asyncio.gather(*(self.gone(p) for p in sorted(peers)))
        dead = {p for p, is_gone in zip(sorted(peers), found, strict=True) if is_gone}
        if dead:
            log.warning("bridge: node(s) %s gone (not subscribed to the bridge)",
                        ", ".join(sorted(dead)))  # fmt: skip
            self.close_all("the other node is gone", dead)

    # --- the node holding the socket ---------------------------------------------------
    async def hold(
        self, ws: web.WebSocketResponse, conn: Connection, owner: str, room_id: str,
        name: str | None,
    ) -> None:  # fmt: skip
        """Bridge `ws` (already prepared, checks done) to the room on node `owner` until
        either side closes."""
        held = Held(self, conn, owner)
        self.held[held.conn_id] = held
        try:
            opening = {"k": "open", "c": held.conn_id, "from": self.node_id, "room": room_id}
            opening.update(role=conn.role, participant=conn.participant, name=name)
            held.out.put(opening)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if not held.out.put(frame("m", held.conn_id, msg.data)):
                        break
                elif msg.type == WSMsgType.BINARY:
                    binary = P.ProtocolError(P.BAD_JSON, "binary frames are not used")
                    conn.send(binary.to_message())
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.held.pop(held.conn_id, None)
            held.out.put({"k": "close", "c": held.conn_id})
            held.out.finish()
            await held.out.drained()
            await conn.wait_closed()

    # --- the node holding the room -----------------------------------------------------
    def _open(self, env: dict[str, Any]) -> None:
        conn_id, peer = str(env["c"]), str(env["from"])
        sink = RemoteSink(self, conn_id, peer, str(env["role"]), str(env["participant"]))
        live = self.app[ROOMS].get(str(env["room"]))
        if live is None and self.draining():
            # Handed over a moment ago (the key still named this node): not ended, the
            # page retries and finds the room's new node.
            sink.send(_unavailable("this server is handing the call over"))
            sink.close_soon(CLOSE_BRIDGE, "draining")
            return
        if live is None or self.serve is None:
            sink.send(P.error(P.ROOM_ENDED, "this session has ended"))
            sink.close_soon(4000, "room ended")
            return
        self.served[conn_id] = sink
        asyncio.create_task(self._serve(live, sink, env.get("name")), name=f"bridged-{conn_id}")

    async def _serve(self, live: LiveRoom, sink: RemoteSink, name: str | None) -> None:
        assert self.serve is not None
        try:
            await self.serve(self.app, live, sink.role, sink.participant, sink, sink.incoming, name)
        except Exception:
            log.exception("bridge: serving %s socket %s failed", sink.role, sink.conn_id)
        finally:
            self.served.pop(sink.conn_id, None)
            sink.close_soon(WSCloseCode.GOING_AWAY, "closing")

    # --- both ---------------------------------------------------------------------------
    def _handle(self, raw: str) -> None:
        if raw[:1] in ("m", "o"):
            conn_id, sep, text = raw[1:].partition("\n")
            if sep:
                self._frame(raw[0], conn_id, text)
                return
        try:
            env = json.loads(raw)
            kind, conn_id = env["k"], str(env["c"])
        except (ValueError, KeyError, TypeError):
            log.warning("bridge: ignored a malformed envelope")
            return
        if kind == "open":
            self._open(env)
        elif kind == "adopt":
            if self.on_adopt is not None:
                asyncio.ensure_future(self.on_adopt(str(env["room"])))
        elif kind == "close":
            sink = self.served.get(conn_id)
            if sink is not None:
                sink.incoming.end()
        elif kind == "end":
            held = self.held.get(conn_id)
            if held is not None:
                held.conn.close_soon(int(env["code"]), str(env.get("reason", "")))

    def _frame(self, kind: str, conn_id: str, text: str) -> None:
        """A socket's frame for its room ("m") or a message for its socket ("o")."""
        if kind == "o":
            held = self.held.get(conn_id)
            if held is not None:
                held.conn.send_text(text)
            return
        sink = self.served.get(conn_id)
        if sink is None:
            return
        if not sink.incoming.put(text):
            log.warning("bridge: %s socket %s sends faster than its room takes it",
                        sink.role, conn_id)  # fmt: skip
            sink.send(_unavailable("bridge buffer full"))
            sink.close_soon(CLOSE_BRIDGE, "bridge buffer full")

    def close_all(self, why: str, nodes: set[str] | None = None) -> None:
        """Close every bridged socket (or those to/from `nodes`), both sides."""
        for held in list(self.held.values()):
            if nodes is None or held.owner in nodes:
                held.fail(why)
        for sink in list(self.served.values()):
            if nodes is None or sink.peer in nodes:
                sink._failed(why)

    async def move_held(self) -> int:
        """This node stops (SIGTERM, after its own rooms were handed over): every socket
        it holds for a room elsewhere gets `moved` and 1012, so the page reconnects at once
        (through the load balancer, to a node that stays) instead of after its backoff."""
        held = list(self.held.values())
        for h in held:
            h.conn.send(P.moved())
            h.conn.close_soon(WSCloseCode.SERVICE_RESTART, "moved")
        # Written and closed before the app closes what is left with 1001 (at most 2 s).
        await asyncio.gather(*(h.conn.wait_closed() for h in held))
        return len(held)

    def on_heartbeat(self, healthy: bool, alive: set[str]) -> None:
        """The registry's beat: Redis down closes everything that crosses nodes; a node
        gone from the registry closes what goes to or comes from it."""
        if not healthy:
            self.close_all("Redis unreachable")
            return
        peers = {h.owner for h in self.held.values()} | {s.peer for s in self.served.values()}
        gone = peers - alive
        if gone:
            self.close_all("the other node is gone", gone)
        # The rest may be dead already with their row not yet expired: ask Redis who
        # listens (one check at a time; it takes CONFIRM_GONE_S when one looks dead).
        if peers - gone and (self._checking is None or self._checking.done()):
            self._checking = asyncio.ensure_future(self._close_gone_peers(peers - gone))

    async def run(self) -> None:
        """Listen on this node's channel; after a Redis failure, subscribe again."""
        channel = bridge_channel(self.node_id)
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                self.subscribed.set()
                # listen() waits on the socket (get_message with a timeout polls, which
                # added ~15 ms to every bridged message).
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        self._handle(msg["data"])
                raise ConnectionError("the subscription ended")
            except CLUSTER_ERRORS as exc:
                self.subscribed.clear()
                log.warning("bridge: lost the subscription (%s); retrying", exc)
                self.close_all("Redis unreachable")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(0.5)
