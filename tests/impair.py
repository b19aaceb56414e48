"""A userspace UDP impairment relay: a test tool (issue 15, "Impairment"), since this
kernel has no netem. It sits between a UDP client and one upstream address and, per
direction, drops (loss), delays (+ uniform jitter, which also reorders), holds back a share
of packets (reorder), caps the rate (a token bucket with a bounded queue: tail drop, as a
congested link) or drops everything (blackout).

Used with TURN: the caller's page gets `turn:127.0.0.1:<relay port>?transport=udp` and is
relay only, so every packet of its peer connection (media, RTCP, ICE checks, TURN
allocations) goes caller → relay → coturn → server and back (tests/test_impairment.py,
bench/impairment.py, docs/testing.md "Simulating a bad network")."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Impairment:
    loss: float = 0.0  # share of packets dropped, 0..1
    delay_s: float = 0.0  # one way, added in each direction
    jitter_s: float = 0.0  # uniform 0..jitter_s on top of the delay (reorders, like netem)
    reorder: float = 0.0  # share of packets held back another `reorder_s`
    reorder_s: float = 0.03
    rate_kbps: float | None = None  # cap per direction; None = unlimited
    queue_s: float = 0.3  # what the capped link buffers before it drops
    blackout: bool = False  # nothing passes, either way

    def describe(self) -> str:
        parts = []
        if self.blackout:
            parts.append("blackout")
        if self.loss:
            parts.append(f"{self.loss * 100:g}% loss")
        if self.delay_s or self.jitter_s:
            parts.append(f"+{self.delay_s * 2000:g} ms RTT ±{self.jitter_s * 1000:g} ms jitter")
        if self.reorder:
            parts.append(f"{self.reorder * 100:g}% reordered")
        if self.rate_kbps:
            parts.append(f"{self.rate_kbps:g} kbps")
        return ", ".join(parts) or "clean"


CLEAN = Impairment()


@dataclass
class Direction:
    """Counters of one direction ("up": client → upstream, "down": back)."""

    packets: int = 0
    passed: int = 0
    dropped: int = 0
    bytes_passed: int = 0
    next_free: float = 0.0  # when the capped link is free again (token bucket)

    def view(self) -> dict[str, int]:
        return {
            "packets": self.packets,
            "passed": self.passed,
            "dropped": self.dropped,
            "bytes_passed": self.bytes_passed,
        }


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: ImpairRelay, client: tuple[str, int]) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        front = self.relay.front
        if front is not None:
            self.relay._forward("down", data, lambda d: front.sendto(d, self.client))


class _Front(asyncio.DatagramProtocol):
    def __init__(self, relay: ImpairRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._from_client(data, addr)


@dataclass(eq=False)
class ImpairRelay:
    upstream: tuple[str, int]
    host: str = "127.0.0.1"
    impairment: Impairment = CLEAN
    seed: int = 15
    up: Direction = field(default_factory=Direction)
    down: Direction = field(default_factory=Direction)
    front: asyncio.DatagramTransport | None = None
    port: int = 0
    _clients: dict[tuple[str, int], _Upstream] = field(default_factory=dict)
    _pending: dict[tuple[str, int], list[bytes]] = field(default_factory=dict)
    _timers: set[asyncio.TimerHandle] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # the same drops on every run

    async def start(self) -> ImpairRelay:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Front(self), local_addr=(self.host, 0)
        )
        self.front = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self

    def set(self, impairment: Impairment) -> None:
        self.impairment = impairment
        # A new condition starts with an idle link (no queue left from the last cap) and
        # counts its own packets.
        self.up, self.down = Direction(), Direction()

    def counters(self) -> dict[str, dict[str, int]]:
        return {"up": self.up.view(), "down": self.down.view()}

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for client in self._clients.values():
            if client.transport is not None:
                client.transport.close()
        self._clients.clear()
        if self.front is not None:
            self.front.close()
            self.front = None

    # --- internals ------------------------------------------------------------------
    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        client = self._clients.get(addr)
        if client is None:
            # A new client address (a new TURN allocation): its own upstream socket, so
            # coturn sees one 5-tuple per client as it would without the relay.
            client = self._clients[addr] = _Upstream(self, addr)
            self._pending[addr] = [data]
            asyncio.ensure_future(self._connect(client))
            return
        if client.transport is None:
            self._pending.setdefault(addr, []).append(data)
            return
        transport = client.transport
        self._forward("up", data, lambda d: transport.sendto(d))

    async def _connect(self, client: _Upstream) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: client, remote_addr=self.upstream)
        transport = client.transport
        assert transport is not None
        for data in self._pending.pop(client.client, []):
            self._forward("up", data, lambda d: transport.sendto(d))

    def _forward(self, way: str, data: bytes, send: Any) -> None:
        imp = self.impairment
        d = self.up if way == "up" else self.down
        d.packets += 1
        if imp.blackout or (imp.loss and self._rng.random() < imp.loss):
            d.dropped += 1
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        depart = now
        if imp.rate_kbps:
            depart = max(now, d.next_free)
            if depart - now > imp.queue_s:
                d.dropped += 1  # the link's buffer is full: tail drop
                return
            d.next_free = depart + len(data) * 8 / (imp.rate_kbps * 1000)
        at = depart + imp.delay_s
        if imp.jitter_s:
            at += self._rng.random() * imp.jitter_s
        if imp.reorder and self._rng.random() < imp.reorder:
            at += imp.reorder_s
        d.passed += 1
        d.bytes_passed += len(data)
        if at <= now:
            send(data)
            return
        timer: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(timer)
            with contextlib.suppress(OSError):  # the socket closed: lost, as on a link
                send(data)

        timer = loop.call_at(at, fire)
        self._timers.add(timer)
