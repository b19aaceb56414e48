"""The packets for one peer that the loop forwards in one pass, sent in one `sendmsg`.

Why: at 10 recorded rooms the server's main thread spent 35% of its CPU inside `sendmsg`
(py-spy --native, bench/capacity.py), one call per forwarded packet. A publisher's
packets come in bursts (a video frame is several packets sent back to back), the loop
reads a burst in one poll and forwards each packet as it reads it, so a subscriber gets
several packets in one pass of the loop. An `Outbox` holds those packets, already
protected, end to end in one buffer, and sends them with the frame's last packet (the
marker bit) or else when the loop has run this pass's callbacks (one `call_soon`), with
UDP_SEGMENT (UDP GSO): the kernel cuts the buffer into the same datagrams, every one
`gso_size` bytes but the last of a run, which may be shorter. The peer receives exactly
the datagrams it would have, in the same order; what is saved is the walk through the
kernel's UDP/IP stack per packet (and on loopback the receiver's side of it, which runs
inside the sender's call).

A packet waits at most for the rest of its frame or the loop's next pass (microseconds;
a loop that is behind delays every packet anyway). The transport's own path
(`transport.sendto`, one packet at a time) is taken when batching cannot keep the order
or is not possible:
- the transport is not a plain UDP socket of asyncio's or uvloop's (a TURN relay: aioice's
  TurnTransport wraps each packet for the TURN server), or gives no socket;
- the transport has bytes queued (its socket was full): a packet must not overtake them;
- the socket is full in the middle of a batch: the rest of the batch goes to the
  transport's queue, in order;
- the kernel refuses UDP_SEGMENT (an old kernel, a device without checksum offload):
  from then on this outbox sends one packet at a time.

The outbox sends on a duplicate of the transport's socket (`sendmsg` with ancillary data
is not in the transport API), which it closes when the transport changes, is closing, or
`close()` is called: the duplicate must not keep a closed peer connection's port bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from typing import Any

log = logging.getLogger(__name__)

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h (Python 3.11 lacks it)
# The kernel's limit is 64 segments (UDP_MAX_SEGMENTS; 128 since Linux 6.2) and one UDP
# datagram's 65,507 bytes of payload for the whole buffer.
MAX_SEGMENTS = 64
MAX_BYTES = 60000
_GSO_SIZE = struct.Struct("=H")
_PLAIN = ("uvloop", "asyncio.")  # modules of the transports that are a UDP socket
# What an outbox counts: datagrams that left in a sendmsg carrying several (`gso`) and the
# number of those calls (`gso_calls`), datagrams it sent alone (`single`), datagrams that
# took the transport's own path from a batch (`to_transport`: the socket was full or GSO
# was refused), datagrams held when their transport closed (`dropped`), and the outboxes
# whose kernel refused UDP_SEGMENT (`gso_refused`).
COUNTS = ("gso", "gso_calls", "single", "to_transport", "dropped", "gso_refused")


def new_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


def _plain_socket(transport: asyncio.BaseTransport) -> Any:
    if not type(transport).__module__.startswith(_PLAIN):
        return None
    return transport.get_extra_info("socket")


class Outbox:
    """Protected packets for one destination, sent together at the end of the loop's pass.

    `send(transport, addr, data, last)` takes a packet (copies it) or returns False: the
    caller sends it through the transport itself (see the module's docstring for when)."""

    __slots__ = (
        "_addr", "_buf", "_dup", "_dup_of", "_pos", "_scheduled", "_sizes", "_transport",
        "_view", "counts", "gso",
    )  # fmt: skip

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        """counts: where the outbox counts what it sends (COUNTS' keys), e.g. one dict
        for every outbox of a room (its metrics); by default its own."""
        self._buf = bytearray(MAX_BYTES)
        self._view = memoryview(self._buf)
        self._sizes: list[int] = []
        self._pos = 0
        self._transport: Any = None  # what the packets held now go out on
        self._addr: tuple[str, int] | None = None
        self._dup: socket.socket | None = None  # a duplicate of _dup_of's socket
        self._dup_of: Any = None  # the transport _dup belongs to (None: not a plain one)
        self._scheduled = False
        self.gso = True  # until the kernel refuses it
        self.counts = counts if counts is not None else new_counts()

    def send(
        self, transport: Any, addr: tuple[str, int], data: memoryview, last: bool = False
    ) -> bool:
        """last: the last packet of a frame (the forwarder knows it by the marker bit):
        what is held goes out now with it, not at the end of the loop's pass."""
        if last and not self._sizes:
            return False  # nothing to join: a frame of one packet goes at once
        if self._sizes and (transport is not self._transport or addr != self._addr):
            self.flush()  # another pair (an ICE restart): what was for the old one first
        if not self.gso or transport.get_write_buffer_size() or transport.is_closing():
            if self._sizes:
                self.flush()
            if transport is self._dup_of and transport.is_closing():
                self._close_dup()
            return False
        if transport is not self._dup_of:
            self._bind(transport)
        if self._dup is None:
            return False  # not a plain UDP socket (a TURN relay)
        n = len(data)
        if self._pos + n > MAX_BYTES or len(self._sizes) >= MAX_SEGMENTS:
            self.flush()
        pos = self._pos
        self._view[pos : pos + n] = data
        self._pos = pos + n
        self._sizes.append(n)
        self._transport, self._addr = transport, addr
        if last:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_soon)
        return True

    def _bind(self, transport: Any) -> None:
        self._close_dup()
        self._dup_of = transport
        sock = _plain_socket(transport)
        if sock is None:
            return
        try:
            dup = socket.socket(fileno=os.dup(sock.fileno()))
            dup.setblocking(False)
        except OSError as exc:
            log.warning("send batching off for a transport: cannot duplicate its socket: %s", exc)
            return
        self._dup = dup

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Send what is held now, in order."""
        sizes, transport, addr = self._sizes, self._transport, self._addr
        if not sizes:
            return
        try:
            self._send_held(sizes, transport, addr)
        finally:
            sizes.clear()  # one list for the outbox's life: nothing allocated per frame
            self._pos = 0

    def _send_held(self, sizes: list[int], transport: Any, addr: Any) -> None:
        dup, view = self._dup, self._view
        counts = self.counts
        if transport.is_closing():
            counts["dropped"] += len(sizes)  # closed in this pass: the peer connection is gone
            self._close_dup()
            return
        if dup is None or transport is not self._dup_of or transport.get_write_buffer_size():
            self._to_transport(transport, addr, sizes, 0, 0)
            return
        total, i, pos = len(sizes), 0, 0
        while i < total:
            # a run of equal sizes whose last may be shorter: what GSO cuts
            seg = sizes[i]
            j, end = i + 1, pos + seg
            while j < total and sizes[j] <= seg:
                end += sizes[j]
                j += 1
                if sizes[j - 1] < seg:
                    break
            try:
                if j - i == 1:
                    dup.sendto(view[pos:end], addr)
                    counts["single"] += 1
                else:
                    dup.sendmsg([view[pos:end]], [(socket.SOL_UDP, UDP_SEGMENT,
                                                   _GSO_SIZE.pack(seg))], 0, addr)  # fmt: skip
                    counts["gso"] += j - i
                    counts["gso_calls"] += 1
            except BlockingIOError:
                self._to_transport(transport, addr, sizes, i, pos)  # the socket is full
                return
            except OSError as exc:
                if j - i > 1:
                    self.gso = False
                    counts["gso_refused"] += 1
                    log.warning("send batching off: the kernel refused UDP_SEGMENT: %s", exc)
                self._to_transport(transport, addr, sizes, i, pos)
                return
            i, pos = j, end

    def _to_transport(self, transport: Any, addr: Any, sizes: list[int], i: int, pos: int) -> None:
        """Packets i.. (from pos) through the transport's own path, in order; as copies:
        uvloop keeps the buffer it is given until it has sent it."""
        view = self._view
        for n in sizes[i:]:
            transport.sendto(bytes(view[pos : pos + n]), addr)
            pos += n
        self.counts["to_transport"] += len(sizes) - i

    def _close_dup(self) -> None:
        dup, self._dup, self._dup_of = self._dup, None, None
        if dup is not None:
            dup.close()  # the duplicate only: the transport's socket stays open

    def close(self) -> None:
        """Send what is held, then let go of the duplicate socket."""
        if self._sizes and self._transport is not None:
            self.flush()
        self._close_dup()
