"""aiortc private APIs that RTP-level forwarding needs, in one place (aiortc 1.16,
aioice 0.13, pylibsrtp 1.0).

`server.media.aiortc_hooks` reaches behind aiortc's receivers and ICE; this module goes
one level lower, to RTP packets, so that the forwarder (`rtp_publisher`, `rtp_subscriber`)
can forward a packet from one peer connection to another without aiortc's jitter buffer,
depacketizer, decoder-thread hand-off and re-packetizer. What is relied on, and pinned by
`check_compat()` (run on first use and by tests/test_rtp_hooks.py, failing loudly and
naming the symbol on an aiortc upgrade):

Receiving
- `RTCDtlsTransport._recv_next` hands every unprotected SRTP packet to
  `self._handle_rtp_data(data, arrival_time_ms)`: `tap_rtp()` shadows that method on one
  transport instance. Packets that aiortc's router (`_rtp_router.route_rtp`, which reads
  only `.ssrc` and `.payload_type`) would give to a tapped receiver go to the tap as raw
  bytes; everything else takes aiortc's own path.
- The fast path (`_FastPath`, for sync handlers: the forwarder's): aioice's
  `StunProtocol.datagram_received` and `Connection.data_received` are shadowed per
  instance, so an SRTP datagram of a tapped receiver is unprotected with the DTLS
  transport's `_rx_srtp` (while `_state` is CONNECTED, counting its `__rx_bytes` /
  `__rx_packets`) and handed over in the same call, without aioice's queue and the DTLS
  transport's task (`_recv_next`). STUN, DTLS and SRTCP keep aiortc's path.
- pylibsrtp's `Session` internals (`_srtp`, `_cdata`, `_buffer`: what `Session.__process`
  uses) to run libsrtp in place (`_Srtp`), both ways.
- `RTCRtpReceiver.__remote_streams` (`StreamStatistics.add(packet)` reads
  `.sequence_number` and `.timestamp`): fed by `ReceiveStats`, so aiortc's receiver reports
  (RTCP RR to the publisher) and `getStats()` keep working for tapped packets.
- `RTCRtpReceiver._send_rtcp(packet)` and `__rtcp_ssrc`: feedback to the publisher
  (PLI, NACK, REMB).

Sending
- `RTCRtpTransceiver._codecs` / `_headerExtensions` (what was negotiated), the sender's
  `_ssrc` / `_rtx_ssrc`; `SenderPort.send` does what `RTCDtlsTransport._send_rtp(data)`
  does (protect with `_tx_srtp`, count `__tx_bytes` / `__tx_packets`) and sends on the aioice
  connection's nominated pair (`_nominated[1].protocol.transport`, `remote_addr`), as
  `Connection.sendto` would, without its chain of coroutines.
- The sender's counters that its RTCP sender reports and `getStats()` read:
  `__packet_count`, `__octet_count`, `__ntp_timestamp`, `__rtp_timestamp`.
- `RTCRtpSender._handle_rtcp_packet(packet)`: the dispatch target of RTCP addressed to the
  sender (`RtpRouter.route_rtcp`), shadowed per instance by `on_sender_rtcp()` so NACK,
  PLI/FIR and REMB go to the forwarder; reports still reach aiortc.

Over 400 lines because every aiortc/aioice/pylibsrtp private API the RTP path relies on
is in this one module, next to the `check_compat()` that pins it (a third of the file): an
upgrade is reviewed here and nowhere else. Per packet only `_FastPath.rtp`, `_Srtp`,
`ReceiveStats.add` and `SenderPort` run.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pylibsrtp
from aioice.ice import Connection, StunProtocol
from aiortc import rtp as aiortc_rtp
from aiortc.codecs import h264 as aiortc_h264
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter, State
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
)
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from server.core.eventloop import copies_on_wait
from server.media.send_batch import Outbox

logger = logging.getLogger(__name__)

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

# A sync handler (returns None) also gets the fast path (see _FastPath); an async one only
# aiortc's own path (the DTLS task), as every handler did before.
RtpHandler = Callable[[bytes, int], Awaitable[None] | None]

_checked = False


def ensure_compat() -> None:
    """check_compat() once per process."""
    global _checked
    if not _checked:
        check_compat()
        _checked = True


# --- receiving ----------------------------------------------------------------------


class _RouteKey:
    """What RtpRouter.route_rtp reads of a packet."""

    __slots__ = ("payload_type", "ssrc")

    def __init__(self) -> None:
        self.payload_type = 0
        self.ssrc = 0


class _TransportTap:
    """Installed as `transport._handle_rtp_data` on one RTCDtlsTransport instance: the
    packets that still take aiortc's path (before the fast path is in place, or an async
    handler's)."""

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self.transport = transport
        self.original: Callable[[bytes, int], Awaitable[None]] = transport._handle_rtp_data
        self.router: RtpRouter = transport._rtp_router
        self.handlers: dict[RTCRtpReceiver, RtpHandler] = {}
        # the sync handlers among them: the fast path's (_FastPath.rtp)
        self.sync: dict[RTCRtpReceiver, Callable[[bytes, int], None]] = {}
        self.key = _RouteKey()
        self.fast: _FastPath | None = None

    async def __call__(self, data: bytes, arrival_time_ms: int) -> None:
        if self.handlers and len(data) >= 12:
            key = self.key
            key.payload_type = data[1] & 0x7F
            key.ssrc = int.from_bytes(data[8:12], "big")
            # The router also learns an SSRC the SDP did not announce, as aiortc does.
            receiver = self.router.route_rtp(key)
            if receiver is not None:
                handler = self.handlers.get(receiver)  # type: ignore[call-overload]
                if handler is not None:
                    result = handler(data, arrival_time_ms)
                    if result is not None:
                        await result
                    return
        await self.original(data, arrival_time_ms)


class _Srtp:
    """One pylibsrtp Session's protect or unprotect, called the way `Session.__process`
    calls libsrtp but in place in the session's own 1500-byte buffer: no `ffi.new` per
    packet, and the caller can read the result from `view` without a copy (the send
    side hands `view[:n]` to `sendto`). Only one packet is in the buffer at a time: each
    call is done with it before the next (one thread, no await in between)."""

    __slots__ = ("_ctx", "_func", "_len", "_max", "buf", "session", "view")

    def __init__(self, session: pylibsrtp.Session, protect: bool) -> None:
        self.session = session  # keeps the context alive
        self._ctx = session._srtp[0]
        self._func = srtp_lib.srtp_protect if protect else srtp_lib.srtp_unprotect
        self.buf = session._buffer
        self.view = memoryview(session._buffer)
        self._len = srtp_ffi.new("int *")
        # room for the authentication tag (and MKI) protect appends, as pylibsrtp keeps
        self._max = len(session._buffer) - (pylibsrtp.SRTP_MAX_TRAILER_LEN if protect else 0)

    def __call__(self, data: bytes | memoryview) -> int:
        """Process `data` into `buf`/`view`; the length of the result."""
        n = len(data)
        if n > self._max:
            raise pylibsrtp.Error("packet is too long")
        self.buf[0:n] = data
        length = self._len
        length[0] = n
        rc = self._func(self._ctx, self.session._cdata, length)
        if rc:
            raise pylibsrtp.Error(pylibsrtp.ERRORS[rc] if rc < len(pylibsrtp.ERRORS) else rc)
        return length[0]


class _FastPath:
    """SRTP packets of tapped receivers straight from the socket to unprotect and the
    handler, in aioice's `datagram_received` (issue 18, part 3).

    aiortc's own path puts every datagram on the ICE connection's asyncio.Queue, wakes the
    DTLS transport's task (`_recv_next`: `Connection.recvfrom`, `current_ms()`, the
    unprotect, two awaits), and aioice first tries to parse each one as STUN. Here an RTP
    datagram (first byte 128-191: never STUN, never DTLS) whose SSRC and payload type
    (in the clear in SRTP) route to a tapped receiver with a sync handler is unprotected
    and handed over at once. Everything else (STUN, DTLS, SRTCP, other receivers' RTP)
    takes the old path unchanged. Installed on the ICE `Connection` instance
    (`data_received`, which every datagram that is not STUN reaches) and, once known, on
    its `StunProtocol`s (`datagram_received`, before the STUN parse)."""

    def __init__(self, tap: _TransportTap, connection: Connection) -> None:
        self.tap = tap
        self.dtls = tap.transport
        self.connection = connection
        self._unprotect: _Srtp | None = None
        self.hooked: set[int] = set()  # id() of the StunProtocols hooked
        original = connection.data_received

        def data_received(data: bytes, component: int) -> None:
            if not data:
                return  # see _hook
            if not (127 < data[0] < 192 and self.rtp(data)):
                original(data, component)
            if len(self.hooked) != len(connection._protocols):
                self._hook_protocols()

        connection.data_received = data_received  # type: ignore[method-assign]
        self._hook_protocols()

    def _hook_protocols(self) -> None:
        for protocol in self.connection._protocols:
            if id(protocol) not in self.hooked:
                self.hooked.add(id(protocol))
                self._hook(protocol)

    def _hook(self, protocol: StunProtocol) -> None:
        original = protocol.datagram_received
        rtp = self.rtp

        def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
            if not data:
                # Nothing (STUN, DTLS and RTP are longer), and aiortc's DTLS task would end
                # the connection on it (`data[0]` of b"": IndexError in `_recv_next`).
                return
            if not (127 < data[0] < 192 and rtp(data)):  # type: ignore[operator, arg-type]
                original(data, addr)

        protocol.datagram_received = datagram_received  # type: ignore[method-assign]

    def rtp(self, data: bytes) -> bool:
        """True: the packet was this path's (handed over, or dropped as aiortc would)."""
        dtls = self.dtls
        srtp = dtls._rx_srtp
        if srtp is None or dtls._state is not State.CONNECTED or len(data) < 12:
            return False
        b1 = data[1]
        if 192 <= b1 <= 208:
            return False  # SRTCP: aiortc's path (a few per second)
        # RtpRouter.route_rtp's choice, read before the packet is known to be authentic:
        # an SSRC it has not seen is learned (as route_rtp would) only after unprotect, so
        # forged datagrams cannot fill its table.
        router = self.tap.router
        ssrc = int.from_bytes(data[8:12], "big")
        pts = router.payload_type_table.get(b1 & 0x7F)
        if not pts:
            return False
        receiver = router.ssrc_table.get(ssrc)
        new = receiver is None
        if new:
            if len(pts) != 1:
                return False
            receiver = next(iter(pts))
        elif receiver not in pts:
            return False
        handler = self.tap.sync.get(receiver)  # type: ignore[call-overload]
        if handler is None:
            return False
        unprotect = self._unprotect
        if unprotect is None or unprotect.session is not srtp:
            unprotect = self._unprotect = _Srtp(srtp, protect=False)
        try:
            plain = unprotect.buf[0 : unprotect(data)]
        except pylibsrtp.Error:
            return True  # aiortc drops it too (replayed, or not authentic)
        if new:
            router.ssrc_table[ssrc] = receiver
        dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        try:
            result = handler(plain, 0)
            if result is not None:
                # an async handler _is_async did not recognise: run this one, and give it
                # aiortc's path (where it is awaited) from now on
                asyncio.ensure_future(result)
                self.tap.sync.pop(receiver, None)  # type: ignore[call-overload]
        except Exception:
            # On aiortc's path an exception ends the DTLS task (and the connection); here
            # it would reach the event loop's handler once per packet: log it, go on.
            logger.exception("RTP tap handler failed")
        return True


# The tap lives ON its transport (an attribute), never in a module-level map: a
# WeakKeyDictionary whose value (the tap) refers back to its key (the transport) keeps the
# key alive for ever, and with it the whole RTCPeerConnection (#14 item 15: ~265 KB per
# publishing offer never given back). transport <-> tap is a plain cycle the GC collects.
_TAP = "_callassist_rtp_tap"


def _tap_of(transport: RTCDtlsTransport) -> _TransportTap | None:
    tap = getattr(transport, _TAP, None)
    return tap if isinstance(tap, _TransportTap) else None


def tap_rtp(receiver: RTCRtpReceiver, handler: RtpHandler) -> None:
    """Send the RTP packets (unprotected bytes, RTX included) that aiortc would hand to
    `receiver` to `handler(data, arrival_time_ms)` instead. A sync handler gets them
    straight from the socket (`_FastPath`; arrival_time_ms is 0 there: read the clock if
    needed), an async one (awaited) from aiortc's DTLS task. The receiver's RTCP (sender
    reports, BYE) and its receiver reports keep running in aiortc."""
    ensure_compat()
    transport = receiver.transport
    tap = _tap_of(transport)
    if tap is None:
        tap = _TransportTap(transport)
        setattr(transport, _TAP, tap)
        transport._handle_rtp_data = tap  # type: ignore[method-assign]
    tap.handlers[receiver] = handler
    if _is_async(handler):
        tap.sync.pop(receiver, None)
        return
    tap.sync[receiver] = handler  # type: ignore[assignment]
    if tap.fast is None:
        tap.fast = _FastPath(tap, transport.transport._connection)


def _is_async(handler: RtpHandler) -> bool:
    """An `async def` function or method, or an object with an `async def __call__`."""
    call = type(handler).__call__  # noqa: B004 (not a callable() test: its coroutine-ness)
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def untap_rtp(receiver: RTCRtpReceiver) -> None:
    tap = _tap_of(receiver.transport)
    if tap is not None:
        tap.handlers.pop(receiver, None)
        tap.sync.pop(receiver, None)


def tapped(receiver: RTCRtpReceiver) -> bool:
    tap = _tap_of(receiver.transport)
    return tap is not None and receiver in tap.handlers


class _StatsPacket:
    """What StreamStatistics.add reads of a packet."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self) -> None:
        self.sequence_number = 0
        self.timestamp = 0


class ReceiveStats:
    """Feeds aiortc's per-SSRC receive statistics of a tapped receiver, so its RTCP
    receiver reports (loss, jitter, LSR/DLSR for the publisher's RTT) and getStats() see
    the packets the tap took."""

    def __init__(self, receiver: RTCRtpReceiver, clock_rate: int = 90000) -> None:
        self._streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        self._active: dict[int, Any] = receiver._RTCRtpReceiver__active_ssrc  # type: ignore[attr-defined]
        self._clock_rate = clock_rate
        self._packet = _StatsPacket()

    def add(self, ssrc: int, sequence_number: int, timestamp: int) -> None:
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = StreamStatistics(self._clock_rate)
            from aiortc import clock  # noqa: PLC0415 (rare)

            self._active[ssrc] = clock.current_datetime()
        p = self._packet
        p.sequence_number = sequence_number
        p.timestamp = timestamp
        stream.add(p)  # type: ignore[arg-type]


async def _send_receiver_rtcp(receiver: RTCRtpReceiver, build: Callable[[int], Any]) -> bool:
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
    if rtcp_ssrc is None:
        return False
    await receiver._send_rtcp(build(rtcp_ssrc))
    return True


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> bool:
    """Picture loss indication to the publisher of `media_ssrc`."""
    return await _send_receiver_rtcp(
        receiver, lambda s: RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=s, media_ssrc=media_ssrc)
    )


async def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> bool:
    """Generic NACK for 16-bit sequence numbers `lost` of `media_ssrc`."""

    def build(s: int) -> RtcpRtpfbPacket:
        packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=s, media_ssrc=media_ssrc)
        packet.lost = sorted(lost)
        return packet

    return await _send_receiver_rtcp(receiver, build)


async def send_remb(receiver: RTCRtpReceiver, bitrate: int, ssrcs: list[int]) -> bool:
    """Receiver estimated maximum bitrate for `ssrcs` (what aiortc and Chrome senders obey)."""
    fci = aiortc_rtp.pack_remb_fci(int(bitrate), ssrcs)
    return await _send_receiver_rtcp(
        receiver, lambda s: RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=s, media_ssrc=0, fci=fci)
    )


# --- negotiated parameters --------------------------------------------------------------


@dataclass(frozen=True)
class Negotiated:
    """What one transceiver negotiated, for building or reading packets by hand."""

    codec: str  # "VP8" | "H264" (the first, preferred, codec)
    payload_type: int
    rtx_payload_type: int | None
    # every payload type of the m-section: media pt -> codec name, rtx pt -> apt
    media_types: dict[int, str]
    rtx_types: dict[int, int]
    mid: str | None
    mid_ext_id: int | None
    abs_send_time_ext_id: int | None


def negotiated(transceiver: RTCRtpTransceiver) -> Negotiated:
    """Read after setRemoteDescription: before it nothing is negotiated (ValueError)."""
    codecs = list(transceiver._codecs)
    if not codecs:
        raise ValueError("the transceiver has not negotiated any codec yet")
    media: dict[int, str] = {}
    rtx: dict[int, int] = {}
    for c in codecs:
        name = c.mimeType.split("/")[-1].upper()
        if name == "RTX":
            apt = c.parameters.get("apt")
            if isinstance(apt, int):
                rtx[c.payloadType] = apt
        else:
            media[c.payloadType] = name
    first = codecs[0]
    rtx_pt = next((pt for pt, apt in rtx.items() if apt == first.payloadType), None)
    ids = {e.uri: e.id for e in transceiver._headerExtensions}
    return Negotiated(
        codec=first.mimeType.split("/")[-1].upper(),
        payload_type=first.payloadType,
        rtx_payload_type=rtx_pt,
        media_types=media,
        rtx_types=rtx,
        mid=transceiver.mid,
        mid_ext_id=ids.get(URI_MID),
        abs_send_time_ext_id=ids.get(URI_ABS_SEND_TIME),
    )


# --- sending ------------------------------------------------------------------------


class SenderPort:
    """Sends hand-made RTP packets as one RTCRtpSender (its SSRCs, its transport), and
    keeps the sender's own counters right so its RTCP sender reports and getStats() do."""

    def __init__(
        self, sender: RTCRtpSender, batch: bool = True, counts: dict[str, int] | None = None
    ) -> None:
        """batch: packets forwarded in one pass of the loop go out together
        (server/media/send_batch.py; `counts`: where its outbox counts them); False: each
        at once, through the transport."""
        ensure_compat()
        self.sender = sender
        self.outbox: Outbox | None = Outbox(counts) if batch else None
        self.ssrc: int = sender._ssrc
        self.rtx_ssrc: int = sender._rtx_ssrc
        self._transport: RTCDtlsTransport = sender.transport
        self._nominated: dict[int, Any] = sender.transport.transport._connection._nominated
        self._protect: _Srtp | None = None
        self._copy: bool | None = None  # copies_on_wait of the pair's transport, once seen
        # The nominated pair and its remote address (aioice's property builds a new tuple
        # per call; a pair's remote candidate never changes, an ICE restart is a new pair).
        self._pair: Any = None
        self._addr: tuple[str, int] = ("", 0)

    def send(self, data: bytes | memoryview, last: bool = False) -> None:
        """Protect and send one RTP packet (any bytes-like object: it is copied), at once or
        with the packets forwarded after it in this pass of the loop (`outbox`; `last`: the
        frame's last packet, which sends what is held); ConnectionError when the transport
        is down. What `RTCDtlsTransport._send_rtp` does, without its four coroutine frames
        (`_send_rtp` -> `Connection.send` -> `sendto` ->
        `StunProtocol.send_data`, none of which ever waits) and without a bytes object per
        packet: protected in the SRTP session's buffer, which goes to the nominated pair's
        socket as it is where the transport copies it if the socket is full and it must
        wait (asyncio's); uvloop's keeps the buffer it was given until it is sent, so it
        gets a bytes copy (server/core/eventloop.copies_on_wait)."""
        t = self._transport
        pair = self._nominated.get(1)
        if t._state is not State.CONNECTED or pair is None:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        protect = self._protect
        if protect is None or protect.session is not t._tx_srtp:
            protect = self._protect = _Srtp(t._tx_srtp, protect=True)
        n = protect(data)
        transport = pair.protocol.transport
        if pair is not self._pair:
            self._pair, self._addr = pair, pair.remote_addr
        addr = self._addr
        view, out = protect.view[:n], self.outbox
        if out is None or not out.send(transport, addr, view, last):
            self._send_now(transport, addr, view)
        t._RTCDtlsTransport__tx_bytes += n  # type: ignore[attr-defined]
        t._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]

    def _send_now(self, transport: Any, addr: tuple[str, int], view: memoryview) -> None:
        copy = self._copy
        if copy is None:
            copy = self._copy = not copies_on_wait(transport)
        if copy:
            transport.sendto(bytes(view), addr)
        else:
            transport.sendto(view, addr)

    def close(self) -> None:
        """Sends what the outbox holds and closes its duplicate socket."""
        if self.outbox is not None:
            self.outbox.close()

    def sent(self, packets: int, payload_bytes: int) -> None:
        s = self.sender
        s._RTCRtpSender__packet_count += packets  # type: ignore[attr-defined]
        s._RTCRtpSender__octet_count += payload_bytes  # type: ignore[attr-defined]

    def sent_frame(self, rtp_timestamp: int, wallclock: float) -> None:
        """The (NTP, RTP) pair of the latest packet, for the next sender report."""
        s = self.sender
        s._RTCRtpSender__ntp_timestamp = ntp_time(wallclock)  # type: ignore[attr-defined]
        s._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]

    @property
    def connected(self) -> bool:
        return self._transport.state == "connected"


def ntp_time(wallclock: float) -> int:
    return int((wallclock + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def abs_send_time(wallclock: float | None = None) -> int:
    """24-bit 6.18 fixed-point seconds (the NTP and Unix epochs are 64 s-aligned)."""
    return int((time.time() if wallclock is None else wallclock) * 262144) & 0xFFFFFF


class SenderFeedback:
    """What a forwarder wants to be told about RTCP arriving for one of its senders."""

    def on_nack(self, lost: list[int]) -> Awaitable[None] | None:  # 16-bit seqs
        return None

    def on_keyframe_request(self) -> None:  # PLI or FIR
        return None

    def on_remb(self, bitrate: int) -> None:
        return None


# On the sender itself, for the reason given at _TAP (a feedback refers to its sender).
_FEEDBACK = "_callassist_feedback"


def _feedback_of(sender: RTCRtpSender) -> SenderFeedback | None:
    fb = getattr(sender, _FEEDBACK, None)
    return fb if isinstance(fb, SenderFeedback) else None


def on_sender_rtcp(
    sender: RTCRtpSender, feedback: SenderFeedback | None, *, only: SenderFeedback | None = None
) -> None:
    """Give NACK, PLI/FIR and REMB arriving for `sender` to `feedback` (None: back to
    aiortc; with `only`, only if that one is still the registered feedback). Receiver and
    sender reports still reach aiortc (RTT, remote stats)."""
    ensure_compat()
    if feedback is None:
        if only is None or _feedback_of(sender) is only:
            setattr(sender, _FEEDBACK, None)
        return
    setattr(sender, _FEEDBACK, feedback)
    if "_handle_rtcp_packet" in vars(sender):
        return  # already wrapped: it looks the feedback up on every packet
    original = sender._handle_rtcp_packet
    ssrc = sender._ssrc

    async def handle(packet: Any) -> None:
        fb = _feedback_of(sender)
        if fb is None:
            await original(packet)
            return
        try:
            if isinstance(packet, RtcpRtpfbPacket):
                if packet.fmt == RTCP_RTPFB_NACK:
                    result = fb.on_nack(list(packet.lost))
                    if result is not None:
                        await result
                return
            if isinstance(packet, RtcpPsfbPacket):
                if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                    fb.on_keyframe_request()
                elif packet.fmt == RTCP_PSFB_APP:
                    try:
                        bitrate, ssrcs = aiortc_rtp.unpack_remb_fci(packet.fci)
                    except ValueError:
                        return
                    if ssrc in ssrcs:
                        fb.on_remb(bitrate)
                return
        except Exception:
            logger.exception("RTCP feedback handler failed")
            return
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


# --- payloads -----------------------------------------------------------------------


def h264_depayload(payload: bytes) -> bytes:
    """One RTP payload (single NAL, STAP-A, FU-A) as Annex-B bytes (aiortc's parser)."""
    return aiortc_h264.H264PayloadDescriptor.parse(payload)[1]


# --- compatibility check ------------------------------------------------------------


def _require(cond: bool, symbol: str, what: str) -> None:
    if not cond:
        raise RuntimeError(
            f"aiortc compatibility: {symbol} {what}; server/media/rtp_hooks.py must be "
            "updated for this version"
        )


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _src(fn: Any) -> str:
    return inspect.getsource(fn)


def check_compat() -> None:
    """Assert every private symbol this module relies on exists as expected."""
    _check_receiving()
    _check_fast_path()
    _check_sending()


def _check_fast_path() -> None:
    """What _FastPath and SenderPort.send take from aioice and aiortc's DTLS transport."""
    received = _src(StunProtocol.datagram_received)
    _require(
        _params(StunProtocol.datagram_received) == ["self", "data", "addr"]
        and "self.receiver.data_received(data, self.local_candidate.component)" in received,
        "aioice.ice.StunProtocol.datagram_received",
        "no longer hands datagrams that are not STUN to receiver.data_received",
    )
    _require(
        _params(Connection.data_received) == ["self", "data", "component"]
        and "self._queue.put_nowait((data, component))" in _src(Connection.data_received),
        "aioice.ice.Connection.data_received",
        "no longer queues a datagram for recv()",
    )
    cinit = _src(Connection.__init__)
    _require(
        "self._protocols" in cinit and "self._nominated" in cinit,
        "aioice.ice.Connection._protocols/_nominated",
        "are missing",
    )
    _require(
        "active_pair.protocol.send_data(data, active_pair.remote_addr)"
        in _src(Connection.sendto)
        and "self.transport.sendto(data, addr)" in _src(StunProtocol.send_data),
        "aioice.ice.Connection.sendto",
        "no longer sends on the nominated pair's protocol.transport",
    )
    _require(
        "self._connection = gatherer._connection" in _src(RTCIceTransport.__init__)
        and "self._send = self._connection.send" in _src(RTCIceTransport.__init__),
        "aiortc.RTCIceTransport._connection",
        "is no longer the aioice Connection it sends and receives on",
    )
    recv_next = _src(RTCDtlsTransport._recv_next)
    _require(
        "first_byte > 127 and first_byte < 192 and self._rx_srtp" in recv_next
        and "self.__rx_bytes += len(data)" in recv_next
        and "self.__rx_packets += 1" in recv_next,
        "aiortc.RTCDtlsTransport._recv_next",
        "no longer takes SRTP as first bytes 128-191 with _rx_srtp, counting __rx_bytes",
    )
    send_rtp = _src(RTCDtlsTransport._send_rtp)
    _require(
        "self._state != State.CONNECTED" in send_rtp
        and "await self.transport._send(data)" in send_rtp
        and "self.__tx_bytes += len(data)" in send_rtp
        and "self.__tx_packets += 1" in send_rtp,
        "aiortc.RTCDtlsTransport._send_rtp",
        "no longer checks _state, sends on transport._send and counts __tx_bytes",
    )
    dinit = _src(RTCDtlsTransport.__init__)
    for name in ("_state", "__rx_bytes", "__rx_packets", "__tx_bytes", "__tx_packets"):
        _require(f"self.{name} =" in dinit, f"aiortc.RTCDtlsTransport.{name}", "is missing")
    _require(
        "self._rx_srtp = Session(" in _src(RTCDtlsTransport._setup_srtp)
        and hasattr(State, "CONNECTED")
        and isinstance(getattr(pylibsrtp, "Error", None), type),
        "aiortc.RTCDtlsTransport._rx_srtp",
        "is no longer a pylibsrtp Session set up after the handshake",
    )
    process = _src(pylibsrtp.Session._Session__process)  # type: ignore[attr-defined]
    _require(
        "self._buffer[0 : len(data)] = data" in process
        and "func(self._srtp[0], self._cdata, len_p)" in process
        and "return self._buffer[0 : len_p[0]]" in process
        and "self._cdata = ffi.new(\"char[]\", 1500)" in _src(pylibsrtp.Session.__init__)
        and callable(getattr(srtp_lib, "srtp_protect", None))
        and callable(getattr(srtp_lib, "srtp_unprotect", None))
        and isinstance(getattr(pylibsrtp, "SRTP_MAX_TRAILER_LEN", None), int)
        and isinstance(getattr(pylibsrtp, "ERRORS", None), list),
        "pylibsrtp.Session.__process",
        "no longer runs libsrtp in place in self._cdata/_buffer (see _Srtp)",
    )


def _check_receiving() -> None:
    recv_next = _src(RTCDtlsTransport._recv_next)
    _require(
        "self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in recv_next
        and "self._rx_srtp.unprotect(data)" in recv_next,
        "aiortc.RTCDtlsTransport._recv_next",
        "no longer hands unprotected RTP to self._handle_rtp_data(data, arrival_time_ms)",
    )
    _require(
        _params(RTCDtlsTransport._handle_rtp_data) == ["self", "data", "arrival_time_ms"],
        "aiortc.RTCDtlsTransport._handle_rtp_data",
        "has other parameters",
    )
    route = _src(RtpRouter.route_rtp)
    _require(
        set(_attr_reads(route, "packet")) == {"ssrc", "payload_type"},
        "aiortc.rtcdtlstransport.RtpRouter.route_rtp",
        "reads more of a packet than .ssrc and .payload_type",
    )
    _require(  # what _FastPath.rtp repeats of it
        "self.ssrc_table.get(packet.ssrc)" in route
        and "self.payload_type_table.get(packet.payload_type, set())" in route
        and "ssrc_receiver in pt_receivers" in route
        and "ssrc_receiver is None and len(pt_receivers) == 1" in route
        and "self.ssrc_table[packet.ssrc] = pt_receiver" in route,
        "aiortc.rtcdtlstransport.RtpRouter.route_rtp",
        "no longer routes by ssrc_table, else a single payload_type_table match (learned)",
    )
    _require(
        "self._rtp_router = RtpRouter()" in _src(RTCDtlsTransport.__init__),
        "aiortc.RTCDtlsTransport._rtp_router",
        "is missing",
    )
    send_rtp = _src(RTCDtlsTransport._send_rtp)
    _require(
        _params(RTCDtlsTransport._send_rtp) == ["self", "data"]
        and "self._tx_srtp.protect(data)" in send_rtp,
        "aiortc.RTCDtlsTransport._send_rtp",
        "no longer protects and sends one RTP packet",
    )
    stats_add = _src(StreamStatistics.add)
    _require(
        _params(StreamStatistics.add) == ["self", "packet"]
        and set(_attr_reads(stats_add, "packet")) <= {"sequence_number", "timestamp"},
        "aiortc.rtcrtpreceiver.StreamStatistics.add",
        "reads more of a packet than .sequence_number and .timestamp",
    )
    init = _src(RTCRtpReceiver.__init__)
    for name in ("self.__remote_streams", "self.__rtcp_ssrc", "self.__active_ssrc"):
        _require(name in init, f"aiortc.RTCRtpReceiver.{name[5:]}", "is missing")
    _require(
        "self.__remote_streams.items()" in _src(RTCRtpReceiver._run_rtcp),
        "aiortc.RTCRtpReceiver._run_rtcp",
        "no longer reports from __remote_streams",
    )
    _require(
        _params(RTCRtpReceiver._send_rtcp) == ["self", "packet"]
        and inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp),
        "aiortc.RTCRtpReceiver._send_rtcp",
        "is missing or changed",
    )


def _check_sending() -> None:
    sinit = _src(RTCRtpSender.__init__)
    for name in (
        "self._ssrc",
        "self._rtx_ssrc",
        "self.__packet_count",
        "self.__octet_count",
        "self.__ntp_timestamp",
        "self.__rtp_timestamp",
    ):
        _require(name + " =" in sinit, f"aiortc.RTCRtpSender.{name[5:]}", "is missing")
    run_rtcp = _src(RTCRtpSender._run_rtcp)
    _require(
        "ntp_timestamp=self.__ntp_timestamp" in run_rtcp
        and "rtp_timestamp=self.__rtp_timestamp" in run_rtcp,
        "aiortc.RTCRtpSender._run_rtcp",
        "no longer reports __ntp_timestamp/__rtp_timestamp",
    )
    _require(
        _params(RTCRtpSender._handle_rtcp_packet) == ["self", "packet"],
        "aiortc.RTCRtpSender._handle_rtcp_packet",
        "has other parameters",
    )
    _require(
        "recipient._handle_rtcp_packet(packet)" in _src(RTCDtlsTransport._handle_rtcp_data),
        "aiortc.RTCDtlsTransport._handle_rtcp_data",
        "no longer dispatches RTCP to recipient._handle_rtcp_packet",
    )
    tinit = _src(RTCRtpTransceiver.__init__)
    _require(
        "self._codecs" in tinit and "self._headerExtensions" in tinit,
        "aiortc.RTCRtpTransceiver._codecs/_headerExtensions",
        "are missing",
    )
    _require(
        callable(getattr(aiortc_h264.H264PayloadDescriptor, "parse", None)),
        "aiortc.codecs.h264.H264PayloadDescriptor.parse",
        "is missing",
    )


def _attr_reads(source: str, name: str) -> list[str]:
    import re  # noqa: PLC0415

    return re.findall(rf"\b{name}\.(\w+)", source)
