"""One frame's RTP packets in one `sendmsg` (UDP GSO), for bench/lib/wire_sender.py.

On loopback the syscall per datagram was the largest cost left in the callers' process
(37% of its main thread after the wire publisher): the kernel delivers each datagram to
the server's socket inside that `sendto`. With UDP_SEGMENT the kernel cuts one buffer
into the same datagrams (every one `gso_size` bytes, the last may be shorter): a VP8
frame's packets are all ~1300-byte payloads but the last, so one frame is one or two
calls. The server receives exactly the datagrams it received before.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

import pylibsrtp
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpsender import RTCRtpSender
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h (Python 3.11 lacks it)
GSO_MAX_SEGMENTS = 64  # the kernel's limit is 64 (older) or 128
GSO_MAX_BYTES = 60000  # under the 64 KiB of one UDP datagram with its headers
_GSO_SIZE = struct.Struct("=H")


class FrameSocket:
    """Protects and sends one frame's RTP packets as `SenderPort.send` would each (the
    sender's DTLS transport's SRTP session, the nominated ICE pair's socket, the
    transport's counters), but in one buffer and one `sendmsg` with UDP_SEGMENT.

    SRTP in place in a buffer of its own: `_Srtp` of server/media/rtp_hooks.py does the
    same in the session's 1500-byte buffer, one packet at a time (copied here, not
    imported: server/media is changed in parallel and the bench must not depend on a
    private name of it)."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.dtls = sender.transport
        # what SenderPort reads: the nominated pair of component 1
        self._nominated: dict[int, Any] = self.dtls.transport._connection._nominated
        self._cdata = srtp_ffi.new("char[]", GSO_MAX_BYTES + 2 * 1500)
        self.buf = srtp_ffi.buffer(self._cdata)
        self.view = memoryview(self.buf)
        self._len = srtp_ffi.new("int *")
        # `cdata + pos` makes a pointer object per call: a frame's packets start at the
        # same few offsets (multiples of the full packet's size), so they are kept
        self._ptrs: dict[int, Any] = {}
        self._session: pylibsrtp.Session | None = None
        self._ctx: Any = None
        self._transport: Any = None  # the pair's asyncio/uvloop transport
        self._sock: socket.socket | None = None  # a dup of its socket, for sendmsg
        self.gso = True  # until the kernel refuses it
        self.sizes: list[int] = []
        self.batches = 0  # sendmsg calls that carried several datagrams

    def ready(self) -> tuple[Any, tuple[str, int]] | None:
        """The pair to send a frame on in one buffer, or None: one by one (not connected,
        GSO refused, or the socket's queue not empty: the frame must not overtake it)."""
        dtls = self.dtls
        pair = self._nominated.get(1)
        if not self.gso or dtls._state is not State.CONNECTED or pair is None:
            return None
        transport = pair.protocol.transport
        if transport is not self._transport:
            self.close()
            sock = transport.get_extra_info("socket")
            if sock is None:
                self.gso = False
                return None
            self._sock = socket.socket(fileno=os.dup(sock.fileno()))
            self._sock.setblocking(False)
            self._transport = transport
        if transport.get_write_buffer_size():
            return None
        session = dtls._tx_srtp
        if session is not self._session:
            self._session, self._ctx = session, session._srtp[0]
        return transport, pair.remote_addr

    def protect(self, pos: int, n: int) -> int:
        """SRTP-protect the packet of `n` bytes at `pos` of `buf`, in place: its length."""
        length = self._len
        length[0] = n
        ptr = self._ptrs.get(pos)
        if ptr is None:
            if len(self._ptrs) > 1024:
                self._ptrs.clear()
            ptr = self._ptrs[pos] = self._cdata + pos
        rc = srtp_lib.srtp_protect(self._ctx, ptr, length)
        if rc:
            raise pylibsrtp.Error(pylibsrtp.ERRORS[rc] if rc < len(pylibsrtp.ERRORS) else rc)
        return length[0]  # type: ignore[no-any-return]

    def send(self, transport: Any, addr: tuple[str, int]) -> None:
        """Send the protected packets of `sizes`, laid end to end in `buf`."""
        sizes, view, sock = self.sizes, self.view, self._sock
        assert sock is not None
        i = pos = 0
        total = len(sizes)
        while i < total:
            # a run of equal sizes, the last of it may be shorter (what GSO cuts)
            seg = sizes[i]
            j, end = i + 1, pos + seg
            while (j < total and j - i < GSO_MAX_SEGMENTS and sizes[j] <= seg
                   and end + sizes[j] <= GSO_MAX_BYTES):  # fmt: skip
                end += sizes[j]
                j += 1
                if sizes[j - 1] < seg:
                    break  # a shorter one ends the run: GSO cuts every gso_size bytes
            try:
                if j - i == 1:
                    sock.sendto(view[pos:end], addr)
                else:
                    cmsg = [(socket.SOL_UDP, UDP_SEGMENT, _GSO_SIZE.pack(seg))]
                    sock.sendmsg([view[pos:end]], cmsg, 0, addr)
                    self.batches += 1
            except BlockingIOError:
                self._queue(transport, addr, i, pos)  # socket full: the loop's queue
                break
            except OSError:
                self.gso = False  # refused (an old kernel, another device): one by one
                self._queue(transport, addr, i, pos)
                break
            i, pos = j, end
        n = sum(sizes)
        self.dtls._RTCDtlsTransport__tx_bytes += n  # type: ignore[attr-defined]
        self.dtls._RTCDtlsTransport__tx_packets += total  # type: ignore[attr-defined]

    def _queue(self, transport: Any, addr: tuple[str, int], i: int, pos: int) -> None:
        """The frame's packets from the i-th (at pos) through the transport, in order
        (copies: uvloop keeps the buffer it is given until it has sent it)."""
        for size in self.sizes[i:]:
            transport.sendto(bytes(self.view[pos : pos + size]), addr)
            pos += size

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()  # the dup only: the pair's socket stays aiortc's
        self._sock = self._transport = None
