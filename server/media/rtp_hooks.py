"""aiortc private APIs that RTP-level forwarding needs, in one place (aiortc 1.16).

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
- `RTCRtpReceiver.__remote_streams` (`StreamStatistics.add(packet)` reads
  `.sequence_number` and `.timestamp`): fed by `ReceiveStats`, so aiortc's receiver reports
  (RTCP RR to the publisher) and `getStats()` keep working for tapped packets.
- `RTCRtpReceiver._send_rtcp(packet)` and `__rtcp_ssrc`: feedback to the publisher
  (PLI, NACK, REMB).

Sending
- `RTCRtpTransceiver._codecs` / `_headerExtensions` (what was negotiated), the sender's
  `_ssrc` / `_rtx_ssrc`, and `RTCDtlsTransport._send_rtp(data)` (protect + send).
- The sender's counters that its RTCP sender reports and `getStats()` read:
  `__packet_count`, `__octet_count`, `__ntp_timestamp`, `__rtp_timestamp`.
- `RTCRtpSender._handle_rtcp_packet(packet)`: the dispatch target of RTCP addressed to the
  sender (`RtpRouter.route_rtcp`), shadowed per instance by `on_sender_rtcp()` so NACK,
  PLI/FIR and REMB go to the forwarder; reports still reach aiortc.

Over 400 lines because every aiortc private API the RTP path relies on is in this one
module, next to the `check_compat()` that pins it (a third of the file): an aiortc upgrade
is reviewed here and nowhere else. Per packet only the tap's dispatch, `ReceiveStats.add`
and `SenderPort` run.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import rtp as aiortc_rtp
from aiortc.codecs import h264 as aiortc_h264
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
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

logger = logging.getLogger(__name__)

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

RtpHandler = Callable[[bytes, int], Awaitable[None]]

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
    """Installed as `transport._handle_rtp_data` on one RTCDtlsTransport instance."""

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self.transport = transport
        self.original: Callable[[bytes, int], Awaitable[None]] = transport._handle_rtp_data
        self.router: RtpRouter = transport._rtp_router
        self.handlers: dict[RTCRtpReceiver, RtpHandler] = {}
        self.key = _RouteKey()

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
                    await handler(data, arrival_time_ms)
                    return
        await self.original(data, arrival_time_ms)


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
    `receiver` to `await handler(data, arrival_time_ms)` instead. The receiver's RTCP
    (sender reports, BYE) and its receiver reports keep running in aiortc."""
    ensure_compat()
    transport = receiver.transport
    tap = _tap_of(transport)
    if tap is None:
        tap = _TransportTap(transport)
        setattr(transport, _TAP, tap)
        transport._handle_rtp_data = tap  # type: ignore[method-assign]
    tap.handlers[receiver] = handler


def untap_rtp(receiver: RTCRtpReceiver) -> None:
    tap = _tap_of(receiver.transport)
    if tap is not None:
        tap.handlers.pop(receiver, None)


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

    def __init__(self, sender: RTCRtpSender) -> None:
        ensure_compat()
        self.sender = sender
        self.ssrc: int = sender._ssrc
        self.rtx_ssrc: int = sender._rtx_ssrc
        self._transport: RTCDtlsTransport = sender.transport

    async def send(self, data: bytes) -> None:
        """Protect and send one RTP packet; ConnectionError when the transport is down."""
        await self._transport._send_rtp(data)

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
    _check_sending()


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
