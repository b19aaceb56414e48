"""media.udp_ports: the server's peer connections bind only ports of the range (real aiortc
peers through MediaRoom); a full range fails the offer clearly and leaks nothing."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest
from media_helpers import BLUE, RED, Client, loopback_config

from server.core import config as config_mod
from server.core.config import ConfigError
from server.media import aiortc_hooks
from server.media.peers import MediaError, MediaRoom


def free_udp_range(size: int) -> tuple[int, int]:
    """`size` consecutive UDP ports nobody holds right now (127.0.0.1)."""
    for base in range(42000, 60000, size + 7):
        socks = []
        try:
            for port in range(base, base + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base, base + size - 1
    raise AssertionError("no free UDP range")


def bound(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        return True
    finally:
        s.close()
    return False


def candidate_ports(sdp: str) -> set[int]:
    return {int(m.group(1)) for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+)", sdp)}


def test_config_parses_and_refuses() -> None:
    assert config_mod.parse_port_range("40000-40999") == (40000, 40999)
    assert config_mod.parse_port_range("") is None
    assert config_mod.from_dict({"media": {"udp_ports": "40000-40009"}}).media.udp_ports
    for bad in ("40000", "4o000-40010", "40010-40000", "80-90", "60000-70000"):
        if bad == "40000":
            assert config_mod.parse_port_range(bad) == (40000, 40000)  # one port is a range
            continue
        with pytest.raises(ConfigError, match="media.udp_ports"):
            config_mod.from_dict({"media": {"udp_ports": bad}})


def test_check_compat_knows_the_socket_hooks() -> None:
    aiortc_hooks.install(["127.0.0.1"])
    aiortc_hooks.check_compat()


async def test_candidates_and_sockets_in_range_then_exhaustion() -> None:
    lo, hi = free_udp_range(2)
    room = MediaRoom("r-ports", loopback_config(udp_ports=f"{lo}-{hi}"), on_event=lambda e: None)
    caller, agent, third = Client("caller", RED), Client("agent", BLUE), Client("agent", None)
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        answers = [caller.pc.remoteDescription.sdp, agent.pc.remoteDescription.sdp]
        ports = set().union(*(candidate_ports(a) for a in answers))
        assert ports == {lo, hi}, answers  # one host candidate each, both in the range
        assert all(bound(p) for p in ports)  # the server's sockets really hold them
        # The clients (outside the server's scope) bound wherever the system chose.
        client_ports = candidate_ports(caller.pc.localDescription.sdp)
        assert client_ports and not client_ports & set(range(lo, hi + 1))
        await agent.wait_frames(3, 20)  # media flows through the pinned sockets

        # A third peer connection: no port left. The offer fails (sdp_failed), says why.
        with pytest.raises(MediaError, match=f"no free UDP port in media.udp_ports {lo}-{hi}"):
            await third.connect(room, "a2", 1)

        # The caller leaves: its port comes back, and the next offer gets it.
        await room.drop("c")
        await caller.close()
        for _ in range(100):
            if not bound(lo) or not bound(hi):
                break
            await asyncio.sleep(0.05)
        third2 = Client("agent", None)
        try:
            await third2.connect(room, "a3", 1)
            assert candidate_ports(third2.pc.remoteDescription.sdp) <= {lo, hi}
        finally:
            await third2.close()
    finally:
        await room.close()
        for c in (caller, agent, third):
            await c.close()
    for _ in range(100):  # nothing leaked: every port of the range is free again
        if not any(bound(p) for p in (lo, hi)):
            break
        await asyncio.sleep(0.05)
    assert not any(bound(p) for p in (lo, hi))


async def test_exhaustion_with_two_addresses_leaks_nothing() -> None:
    # Two host addresses, one port, already taken on the second: the first binds, the
    # second finds none; the first socket (not yet registered with aioice) must be
    # closed, not leaked.
    lo, _ = free_udp_range(1)
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.2", lo))
    cfg = loopback_config(udp_ports=f"{lo}-{lo}")
    cfg = type(cfg)(**{**cfg.__dict__, "ice_host_addresses": ["127.0.0.1", "127.0.0.2"]})
    room = MediaRoom("r-ports2", cfg, on_event=lambda e: None)
    client = Client("caller", RED)
    try:
        with pytest.raises(MediaError, match="no free UDP port"):
            await client.connect(room, "c", 1)
        assert not bound(lo)
    finally:
        holder.close()
        await room.close()
        await client.close()


async def test_turn_client_socket_takes_a_port_of_the_range() -> None:
    # aioice.turn makes its UDP socket with create_datagram_endpoint(remote_addr=...):
    # through the same stand-in, inside a scope, it gets a port of the range, connected.
    import aioice.turn

    lo, hi = free_udp_range(2)
    aioice_hooks_range = (lo, hi)
    aiortc_hooks.install(["127.0.0.1"], aioice_hooks_range)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    try:
        with aiortc_hooks.udp_port_scope():
            loop = aioice.turn.asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=server.getsockname()
            )
        try:
            assert lo <= transport.get_extra_info("sockname")[1] <= hi
            transport.sendto(b"hello")
            server.settimeout(5)
            data, addr = server.recvfrom(16)
            assert data == b"hello" and lo <= addr[1] <= hi
        finally:
            transport.close()
        # Outside a scope: the real loop, any port.
        assert aioice.turn.asyncio.get_running_loop() is asyncio.get_running_loop()
    finally:
        server.close()
        aiortc_hooks.install(["127.0.0.1"])
