"""server/media/send_batch.Outbox on real loopback sockets, on both event loops: the
datagrams a peer receives are exactly the ones sent one by one, in order, whatever path
they took (one GSO sendmsg, single sends, the transport's own queue)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from server.core.eventloop import new_event_loop
from server.media.send_batch import Outbox

LOOPS = ("uvloop", "asyncio")
SO_NO_CHECK = 11  # asm-generic/socket.h: UDP without checksums, where GSO is refused


def _packets(sizes: list[int]) -> list[bytes]:
    return [bytes([i % 251]) * 2 + i.to_bytes(2, "big") + bytes(n - 4) for i, n in enumerate(sizes)]


def _run(loop_name: str, body: Callable[[Any, socket.socket], Awaitable[None]]) -> None:
    """body(transport, receiver) on `loop_name`: a datagram endpoint (the server's side,
    made as aioice makes it) and a plain socket that receives what it sends."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2)
        try:
            await body(transport, receiver)
        finally:
            transport.close()
            receiver.close()

    loop = new_event_loop(loop_name)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def _received(receiver: socket.socket, count: int) -> list[bytes]:
    return [receiver.recv(65536) for _ in range(count)]


async def _a_pass() -> None:
    for _ in range(3):  # the outbox flushes at the loop's next pass
        await asyncio.sleep(0)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_burst_goes_out_in_sendmsg_runs_as_the_same_datagrams(loop_name: str) -> None:
    # runs GSO can cut: equal sizes, the last of a run shorter; a longer one starts a run
    sizes = [1200, 1200, 1200, 700, 300, 1200, 1200, 90]
    sent = _packets(sizes)

    async def body(transport: Any, receiver: socket.socket) -> None:
        out = Outbox()
        addr = receiver.getsockname()
        for p in sent:
            assert out.send(transport, addr, memoryview(p))
        assert out.counts["gso"] == 0  # held until the loop's next pass
        await _a_pass()
        assert _received(receiver, len(sent)) == sent
        # [1200 1200 1200 700] [300] [1200 1200 90]
        c = out.counts
        assert (c["gso"], c["gso_calls"], c["single"], c["to_transport"]) == (7, 2, 1, 0)
        out.close()

    _run(loop_name, body)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_frames_last_packet_sends_what_is_held_at_once(loop_name: str) -> None:
    frame = _packets([1100, 1100, 800])

    async def body(transport: Any, receiver: socket.socket) -> None:
        out = Outbox()
        addr = receiver.getsockname()
        for i, p in enumerate(frame):
            assert out.send(transport, addr, memoryview(p), last=i == len(frame) - 1)
        assert (out.counts["gso"], out.counts["gso_calls"]) == (3, 1)  # not waiting for the pass
        assert _received(receiver, 3) == frame
        # a frame of one packet: nothing to join, the caller sends it at once
        assert not out.send(transport, addr, memoryview(frame[0]), last=True)
        out.close()

    _run(loop_name, body)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_kernel_refusing_gso_gets_the_same_datagrams_one_at_a_time(loop_name: str) -> None:
    sent = _packets([1000, 1000, 1000, 400])

    async def body(transport: Any, receiver: socket.socket) -> None:
        # A socket without UDP checksums: the kernel refuses UDP_SEGMENT (EINVAL)
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        out = Outbox()
        addr = receiver.getsockname()
        for p in sent:
            assert out.send(transport, addr, memoryview(p))
        await _a_pass()
        assert _received(receiver, len(sent)) == sent
        assert not out.gso and out.counts["to_transport"] == len(sent)
        assert out.counts["gso_refused"] == 1
        # from now on the caller sends through the transport itself
        assert not out.send(transport, addr, memoryview(sent[0]))
        out.close()

    _run(loop_name, body)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_transport_closed_before_the_flush_loses_only_its_own_packets(loop_name: str) -> None:
    async def body(transport: Any, receiver: socket.socket) -> None:
        out = Outbox()
        for p in _packets([500, 500]):
            assert out.send(transport, receiver.getsockname(), memoryview(p))
        transport.close()
        await _a_pass()  # no error: the peer connection is gone
        assert (out.counts["dropped"], out.counts["gso"]) == (2, 0)
        out.close()

    _run(loop_name, body)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_the_duplicate_socket_does_not_keep_a_closed_port_bound(loop_name: str) -> None:
    async def body(transport: Any, receiver: socket.socket) -> None:
        out = Outbox()
        port = transport.get_extra_info("sockname")[1]
        assert out.send(transport, receiver.getsockname(), memoryview(b"x" * 100))
        await _a_pass()
        transport.close()
        await _a_pass()
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with pytest.raises(OSError):  # the outbox's duplicate still holds it
                probe.bind(("127.0.0.1", port))
            out.close()
            probe.bind(("127.0.0.1", port))
        finally:
            probe.close()

    _run(loop_name, body)


class RelayTransport(asyncio.DatagramTransport):
    """What aioice's TurnTransport is to the outbox: not a UDP socket of the loop's (each
    packet is wrapped for the TURN server)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent.append(bytes(data))


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_relay_transport_is_left_to_send_each_packet_itself(loop_name: str) -> None:
    async def body(transport: Any, receiver: socket.socket) -> None:
        out, relay = Outbox(), RelayTransport()
        p1, p2 = _packets([600, 600])
        assert out.send(transport, receiver.getsockname(), memoryview(p1))
        # another transport (an ICE restart onto a relayed pair): what was held goes first
        assert not out.send(relay, ("127.0.0.1", 9), memoryview(p2))
        assert _received(receiver, 1) == [p1]
        assert relay.sent == []  # the caller sends p2 itself
        out.close()

    _run(loop_name, body)
