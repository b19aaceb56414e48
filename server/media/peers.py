"""Per-room media orchestration: one server-side RTCPeerConnection per participant.

The signalling layer hands offers and candidates in; this module maps the offer's video
m-sections onto the room's tracks (docs/protocol.md, "offer"), forwards the publishers'
RTP packets to the receivers through `relay.RoomTrack` (`rtp_publisher.RtpPublisher` on a
publishing transceiver, `rtp_subscriber.RtpSubscriber` on a receiving one) and reports
what happens through `MediaEvent`s.

Over 400 lines because `MediaRoom` is one state machine (participants, their legs, each
leg's publish and receive transceivers, all changed under the participant's lock); the
ICE and stats helpers around it are small.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp

from server.core.config import MediaConfig, parse_port_range

from . import aiortc_hooks, send_batch
from .relay import RoomTrack, Upstream
from .rtp_publisher import RtpPublisher
from .rtp_subscriber import RtpSubscriber

logger = logging.getLogger(__name__)

PUBLISHES = {"caller": "camera", "agent": "screen"}
# A supervisor silently watches: it receives the camera and publishes nothing.
# Staff who joined visibly (server/rooms) receive both: one leg per track ("staff_screen").
RECEIVES = {"caller": "screen", "agent": "camera", "supervisor": "camera", "staff": "camera",
            "staff_screen": "screen"}  # fmt: skip
ROLES = frozenset(PUBLISHES) | frozenset(RECEIVES)
_DIRECTION = {
    (True, True): "sendrecv",
    (True, False): "recvonly",  # the client publishes: the server only receives
    (False, True): "sendonly",
    (False, False): "inactive",
}


@dataclass(frozen=True)
class MediaEvent:
    participant_id: str
    kind: str  # "pc_state" | "track_live" | "track_ended" | "codec_mismatch"
    value: str  # the connection state, the track name, or "<track>=<codec or empty>"


class MediaError(Exception):
    """An offer or candidate could not be applied; the message says why (sdp_failed)."""


@dataclass(eq=False)
class _Leg:
    """One peer connection of a participant (a new `pc` number = a new leg)."""

    pc_id: int
    pc: RTCPeerConnection
    publish_t: RTCRtpTransceiver | None = None
    receive_t: RTCRtpTransceiver | None = None
    upstream: Upstream | None = None
    upstream_live: bool = False
    subscription: RtpSubscriber | None = None
    rtp: RtpPublisher | None = None
    retired: bool = False
    watchdog: asyncio.Task[Any] | None = None
    remote_ufrag: str | None = None


@dataclass(eq=False)
class _Participant:
    participant_id: str
    role: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    leg: _Leg | None = None


def _codec_preferences(codec: str) -> list[RTCRtpCodecCapability]:
    """media.codec first, then the other codec (VP8 / H264): a browser without media.codec
    (Safari without VP8) still negotiates and publishes the other, and every other leg
    negotiated both, so its packets are forwarded as they are (no transcoding: the
    subscriber uses its leg's payload type for that codec)."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    chosen = [c for c in caps if c.mimeType.lower() == f"video/{codec.lower()}"]
    if not chosen:
        raise ValueError(f"codec {codec!r} is not supported by aiortc")
    pair = ("video/vp8", "video/h264")
    others = [c for c in caps if c.mimeType.lower() in pair and c not in chosen]
    # RTX keeps NACK retransmissions working on both legs.
    return chosen + others + [c for c in caps if c.mimeType.lower() == "video/rtx"]


def turn_credentials(turn_secret: str, ttl_s: int, now: float) -> tuple[str, str]:
    """coturn's use-auth-secret scheme: username "<expiry>:callassist", credential
    base64(HMAC-SHA1(secret, username))."""
    username = f"{int(now) + ttl_s}:callassist"
    digest = hmac.new(turn_secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers_for_client(
    config: MediaConfig, turn_secret: str | None, now: float
) -> list[dict[str, Any]]:
    """RTCIceServer dicts for a browser, TURN with time-limited credentials."""
    servers: list[dict[str, Any]] = []
    if config.stun_urls:
        servers.append({"urls": list(config.stun_urls)})
    if config.turn_urls:
        if not turn_secret:
            logger.warning("media.turn_urls configured without a TURN secret: not offered")
        else:
            username, credential = turn_credentials(turn_secret, config.turn_ttl_s, now)
            servers.append(
                {"urls": list(config.turn_urls), "username": username, "credential": credential}
            )
    return servers


def ice_servers_for_server(
    config: MediaConfig, turn_secret: str | None, now: float
) -> list[RTCIceServer]:
    # iceServers=[] when nothing is configured: aiortc's default adds a public STUN server.
    servers = [RTCIceServer(urls=list(config.stun_urls))] if config.stun_urls else []
    if config.server_turn_url:
        if not turn_secret:
            logger.warning("media.server_turn_url configured without a TURN secret: not used")
        else:
            username, credential = turn_credentials(turn_secret, config.turn_ttl_s, now)
            servers.append(
                RTCIceServer(urls=config.server_turn_url, username=username, credential=credential)
            )
    return servers


class MediaRoom:
    def __init__(
        self,
        room_id: str,
        config: MediaConfig,
        *,
        on_event: Callable[[MediaEvent], None],
        connect_timeout_s: float = 30.0,
        turn_secret: str | None = None,
    ) -> None:
        aiortc_hooks.install(config.ice_host_addresses, parse_port_range(config.udp_ports))
        self.room_id = room_id
        self.config = config
        self._on_event = on_event
        self._turn_secret = turn_secret
        # A pc that is not connected this long after its offer counts as failed: aiortc
        # can sit in "connecting" indefinitely when the client vanished after its offer.
        self.connect_timeout_s = connect_timeout_s
        self._codec_prefs = _codec_preferences(config.codec)
        self.tracks: dict[str, RoomTrack] = {
            name: RoomTrack(
                name,
                queue_frames=config.subscriber_queue_frames,
                keyframe_min_interval_s=config.keyframe_min_interval_s,
            )
            for name in ("camera", "screen")
        }
        self._participants: dict[str, _Participant] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        # Peer connections that failed, by cause (for metrics): ICE, DTLS, or no
        # `connected` within connect_timeout_s.
        self.failures: dict[str, int] = {"ice": 0, "dtls": 0, "timeout": 0}
        # How the forwarded packets left (send_batch.COUNTS), every subscriber's outbox.
        self.send_batches: dict[str, int] = send_batch.new_counts()

    # --- signalling entry points ----------------------------------------------------

    async def handle_offer(self, participant_id: str, role: str, pc_id: int, sdp: str) -> str:
        """Apply a client's offer and return the answer SDP (with all candidates)."""
        if self._closed:
            raise MediaError("the room's media is closed")
        if role not in ROLES:
            raise MediaError(f"unknown role {role!r}")
        try:
            offer = aiortc_sdp.SessionDescription.parse(sdp)
        except Exception as exc:
            raise MediaError(f"the offer could not be parsed: {exc}") from None
        if not any(m.kind == "video" for m in offer.media):
            raise MediaError("the offer has no video m-section")
        problem = _offer_problem(offer)
        if problem:
            # Refused here: aiortc would answer and then fail in a background task
            # (an assertion in its DTLS/ICE start, "Task exception was never retrieved").
            raise MediaError(problem)
        part = self._participants.get(participant_id)
        if part is None:
            part = self._participants[participant_id] = _Participant(participant_id, role)
        elif part.role != role:
            raise MediaError("a participant cannot change role")

        async with part.lock:
            if self._closed or self._participants.get(participant_id) is not part:
                raise MediaError("the room's media is closed or the participant was dropped")
            leg = part.leg
            ufrag = _ice_ufrag(offer)
            # A new pc number is a recovery (no ICE restart in aiortc): the old connection
            # goes, the room's tracks and their subscribers stay. So is the same number
            # with other ICE credentials: a reloaded page counting from 1 again.
            if leg is None or leg.pc_id != pc_id or leg.remote_ufrag != ufrag:
                if leg is not None:
                    self._retire(part, leg)
                leg = self._new_leg(part, pc_id)
                leg.remote_ufrag = ufrag
            sdp, dropped = _filter_sdp_candidates(sdp, self._candidate_allowed)
            if dropped:
                logger.info("room %s: %d candidate(s) of %s outside the allowed addresses "
                            "dropped", self.room_id, dropped, participant_id)  # fmt: skip
            try:
                # The sockets of this pc take ports of media.udp_ports (aiortc_hooks).
                with aiortc_hooks.udp_port_scope():
                    return await self._negotiate(part, leg, offer, sdp)
            except Exception as exc:
                # Whatever aiortc applied is now unknown: drop that pc; the client makes
                # a new one (protocol: sdp_failed).
                self._retire(part, leg)
                logger.info("room %s: offer from %s failed: %r", self.room_id, participant_id, exc)
                raise MediaError(f"{type(exc).__name__}: {exc}") from exc

    async def add_candidate(
        self, participant_id: str, pc_id: int, candidate: dict[str, Any] | None
    ) -> None:
        """A trickled browser candidate ({candidate, sdpMid, sdpMLineIndex}) or None."""
        part = self._participants.get(participant_id)
        if part is None:
            return
        async with part.lock:  # after an offer that is still being applied
            leg = part.leg
            if leg is None or leg.pc_id != pc_id or leg.retired:
                return  # not the current pc: stale, ignored by contract
            ice = _parse_candidate(candidate)
            if ice is not None and not self._candidate_allowed(ice.ip):
                logger.debug("room %s: candidate at %s dropped", self.room_id, ice.ip)
                return  # not an error: the address is just not one this server talks to
            try:
                await leg.pc.addIceCandidate(ice)
            except Exception as exc:
                logger.debug("room %s: candidate ignored: %r", self.room_id, exc)

    async def drop(self, participant_id: str) -> None:
        """Close that participant's pc and detach what it published."""
        part = self._participants.pop(participant_id, None)
        if part is None:
            return
        async with part.lock:
            if part.leg is not None:
                await self._retire(part, part.leg)

    async def close(self) -> None:
        """Close every pc and end every track (idempotent)."""
        self._closed = True
        for part in list(self._participants.values()):
            if part.leg is not None:
                self._retire(part, part.leg)
        self._participants.clear()
        for track in self.tracks.values():
            track.close()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        participants: dict[str, Any] = {}
        for pid, part in self._participants.items():
            leg = part.leg
            participants[pid] = {
                "role": part.role,
                "pc_id": leg.pc_id if leg else None,
                "connection_state": leg.pc.connectionState if leg else "none",
                "publishing": bool(leg and leg.upstream and leg.upstream.current),
                "receiving": bool(leg and leg.subscription),
            }
        return {
            "room": self.room_id,
            "tracks": {name: track.stats() for name, track in self.tracks.items()},
            "participants": participants,
            "failures": dict(self.failures),
        }

    async def rtp_stats(self) -> dict[str, dict[str, Any]]:
        """Per participant, the RTP counters of its current peer connection, from aiortc's
        getStats(): what the server receives from it (`publish`) and sends to it
        (`receive`, with the RTT and loss its receiver reports say)."""
        out: dict[str, dict[str, Any]] = {}
        for pid, part in list(self._participants.items()):
            leg = part.leg
            entry: dict[str, Any] = {
                "role": part.role,
                "pc_id": leg.pc_id if leg else None,
                "connection_state": leg.pc.connectionState if leg else "none",
                "ice_state": leg.pc.iceConnectionState if leg else "none",
                "publish": None,
                "receive": None,
                "transport": None,
            }
            out[pid] = entry
            if leg is None or leg.retired:
                continue
            try:
                if leg.publish_t is not None:
                    report = await leg.publish_t.receiver.getStats()
                    entry["transport"] = _transport(report)
                    inbound = _first(report, "inbound-rtp")
                    entry["publish"] = {
                        "track": PUBLISHES[part.role],
                        "current": bool(leg.upstream and leg.upstream.current),
                        "packets_received": getattr(inbound, "packetsReceived", 0),
                        "packets_lost": max(getattr(inbound, "packetsLost", 0), 0),
                        "jitter": getattr(inbound, "jitter", 0),
                    }
                if leg.receive_t is not None:
                    report = await leg.receive_t.sender.getStats()
                    entry["transport"] = entry["transport"] or _transport(report)
                    outbound = _first(report, "outbound-rtp")
                    remote = _first(report, "remote-inbound-rtp")
                    sub = leg.subscription
                    entry["receive"] = {
                        "track": RECEIVES[part.role],
                        "packets_sent": getattr(outbound, "packetsSent", 0),
                        "bytes_sent": getattr(outbound, "bytesSent", 0),
                        "rtt_s": getattr(remote, "roundTripTime", None),
                        "fraction_lost": getattr(remote, "fractionLost", 0) / 256.0,
                        "frames_forwarded": sub.frames_forwarded if sub else 0,
                        "frames_dropped": sub.frames_dropped if sub else 0,
                    }
            except Exception as exc:  # a pc closing under us: report what we have
                logger.debug("room %s: stats of %s failed: %r", self.room_id, pid, exc)
        return out

    # --- internals ------------------------------------------------------------------

    def _candidate_allowed(self, host: str) -> bool:
        return candidate_address_allowed(
            host,
            private=self.config.allow_private_candidates,
            loopback=self.config.allow_loopback_candidates,
        )

    def _new_leg(self, part: _Participant, pc_id: int) -> _Leg:
        # STUN, and TURN only with media.server_turn_url (the browsers' turn_urls are theirs).
        servers = ice_servers_for_server(self.config, self._turn_secret, time.time())
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        leg = _Leg(pc_id=pc_id, pc=pc)
        part.leg = leg

        def on_state() -> None:
            if part.leg is not leg or leg.retired:
                return  # events of a replaced or closed pc
            state = pc.connectionState
            if state == "failed":
                self.failures["ice" if pc.iceConnectionState == "failed" else "dtls"] += 1
            self._emit(part.participant_id, "pc_state", state)
            if state in ("failed", "closed"):
                # As aiortc's examples/server does: a failed pc is closed and forgotten;
                # the client recovers with a new pc number.
                self._retire(part, leg)

        pc.on("connectionstatechange", on_state)
        leg.watchdog = self._spawn(self._watch_connect(part, leg))
        return leg

    async def _watch_connect(self, part: _Participant, leg: _Leg) -> None:
        await asyncio.sleep(self.connect_timeout_s)
        if part.leg is leg and not leg.retired and leg.pc.connectionState != "connected":
            logger.info(
                "room %s: pc %d of %s did not connect in %.0f s",
                self.room_id,
                leg.pc_id,
                part.participant_id,
                self.connect_timeout_s,
            )
            self.failures["timeout"] += 1
            self._emit(part.participant_id, "pc_state", "failed")
            self._retire(part, leg)

    async def _negotiate(
        self, part: _Participant, leg: _Leg, offer: aiortc_sdp.SessionDescription, sdp: str
    ) -> str:
        pc = leg.pc
        receive_track = self.tracks[RECEIVES[part.role]]
        by_mid = {t.mid: t for t in pc.getTransceivers() if t.mid is not None}
        # Port 0 is a rejected m-section, except one in the BUNDLE group: Firefox offers
        # every m-section after the first as port 0 + a=bundle-only (JSEP max-bundle).
        bundled = {mid for g in offer.group if g.semantic == "BUNDLE" for mid in g.items}
        starts_publishing: RTCRtpTransceiver | None = None
        # Transceivers for new m-sections are created BEFORE setRemoteDescription, in
        # m-section order: aiortc binds unassigned transceivers to new m-sections in
        # order, and codec preferences only count if set before it negotiates codecs.
        for media in offer.media:
            if media.kind not in ("audio", "video"):
                continue
            t = by_mid.get(media.rtp.muxId)
            if media.kind == "audio":
                if t is None:
                    pc.addTransceiver("audio", direction="inactive")  # video only
                continue
            direction = media.direction or "sendrecv"
            # Receive-only roles (supervisor) never publish, whatever their offer says.
            live = media.port != 0 or media.rtp.muxId in bundled
            client_sends = (
                live
                and direction in ("sendonly", "sendrecv")
                and part.role in PUBLISHES
            )
            client_recvs = live and direction in ("recvonly", "sendrecv")
            if t is None:
                t = pc.addTransceiver("video", direction="inactive")
                t.setCodecPreferences(self._prefs_for(media, client_sends and not client_recvs))
            if t is leg.publish_t and not client_sends:
                self._stop_publishing(part, leg)
            elif client_sends and leg.publish_t is None:
                leg.publish_t = starts_publishing = t
            if t is leg.receive_t and not client_recvs:
                self._stop_receiving(leg)
            elif client_recvs and leg.receive_t is None:
                leg.receive_t = t
                leg.subscription = RtpSubscriber(
                    receive_track, t, on_codec=self._codec_reporter(part, receive_track.name),
                    send_batching=self.config.send_batching, send_counts=self.send_batches,
                )
                t.sender.replaceTrack(leg.subscription)
            t.direction = _DIRECTION[(t is leg.publish_t, t is leg.receive_t)]

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if starts_publishing is not None:
            # Must happen before the receiver starts (after the answer, once DTLS is up).
            self._start_publishing(part, leg, starts_publishing)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    def _prefs_for(
        self, media: aiortc_sdp.MediaDescription, publishes: bool
    ) -> list[RTCRtpCodecCapability]:
        """A receiving m-section gets both codecs (whatever the publisher sends can be
        forwarded to it). A publishing one gets media.codec alone when it is offered, so a
        browser's encoder sees the same answer as with one codec; the other codec only
        when media.codec is not offered (Safari without VP8)."""
        if not publishes:
            return self._codec_prefs
        preferred = f"video/{self.config.codec.lower()}"
        if not any(c.mimeType.lower() == preferred for c in media.rtp.codecs):
            return self._codec_prefs
        return [c for c in self._codec_prefs if c.mimeType.lower() in (preferred, "video/rtx")]

    def _start_publishing(self, part: _Participant, leg: _Leg, t: RTCRtpTransceiver) -> None:
        name = PUBLISHES[part.role]
        receiver = t.receiver
        upstream: Upstream | None = None

        def first_frame() -> None:
            if not leg.retired and upstream is leg.upstream:
                leg.upstream_live = True
                self._emit(part.participant_id, "track_live", name)

        def ended() -> None:
            if upstream is leg.upstream:
                self._stop_publishing(part, leg)

        def request_keyframe() -> Any:
            # None before the publisher's forwarder exists (attach_upstream asks at once):
            # the subscribers waiting for a keyframe ask again, rate-limited.
            return leg.rtp.request_keyframe() if leg.rtp is not None else None

        upstream = self.tracks[name].attach_upstream(request_keyframe, on_first_frame=first_frame)
        leg.upstream = upstream
        # Packets are tapped before aiortc's jitter buffer; the passthrough mark keeps the
        # receiver from decoding and reports its end.
        leg.rtp = RtpPublisher(self.tracks[name], upstream, t)
        aiortc_hooks.mark_passthrough(receiver.track, on_end=ended)

    def _stop_publishing(self, part: _Participant, leg: _Leg) -> None:
        upstream, leg.upstream = leg.upstream, None
        if leg.rtp is not None:
            leg.rtp.close()
            leg.rtp = None
        if upstream is not None and upstream.detach() and leg.upstream_live:
            self._emit(part.participant_id, "track_ended", PUBLISHES[part.role])
        leg.upstream_live = False
        if leg.publish_t is not None and leg.publish_t.receiver.track is not None:
            aiortc_hooks.unmark_passthrough(leg.publish_t.receiver.track)
        leg.publish_t = None

    def _stop_receiving(self, leg: _Leg) -> None:
        if leg.subscription is not None:
            leg.subscription.stop()  # also unsubscribes from the room track
            leg.subscription = None
        if leg.receive_t is not None:
            leg.receive_t.sender.replaceTrack(None)
            leg.receive_t = None

    def _retire(self, part: _Participant, leg: _Leg) -> asyncio.Task[Any]:
        """Detach a leg from the room now and close its pc in the background."""
        if part.leg is leg:
            part.leg = None
        if not leg.retired:
            leg.retired = True
            if leg.watchdog is not None and leg.watchdog is not asyncio.current_task():
                leg.watchdog.cancel()
            self._stop_publishing(part, leg)
            if leg.subscription is not None:
                leg.subscription.stop()
                leg.subscription = None
        return self._spawn(leg.pc.close())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _codec_reporter(self, part: _Participant, track: str) -> Callable[[str | None], None]:
        """A leg that cannot take the track's codec (e.g. the agent's screen in VP8 to a
        caller with H264 only): a `codec_mismatch` event "<track>=<codec>", "<track>=" once
        it matches again."""

        def report(codec: str | None) -> None:
            if codec:
                logger.info(
                    "room %s: %s cannot receive the %s in %s (no transcoding)",
                    self.room_id, part.participant_id, track, codec,
                )  # fmt: skip
            self._emit(part.participant_id, "codec_mismatch", f"{track}={codec or ''}")

        return report

    def _emit(self, participant_id: str, kind: str, value: str) -> None:
        try:
            self._on_event(MediaEvent(participant_id, kind, value))
        except Exception:
            logger.exception("room %s: media event handler failed", self.room_id)


def _first(report: dict[str, Any], kind: str) -> Any:
    return next((s for s in report.values() if getattr(s, "type", None) == kind), None)


def _transport(report: dict[str, Any]) -> dict[str, int] | None:
    t = _first(report, "transport")
    if t is None:
        return None
    return {"bytes_sent": t.bytesSent, "bytes_received": t.bytesReceived}


# Not global, but reached over a LAN/VPN/carrier NAT: allowed with allow_private.
_SHARED = ipaddress.ip_network("100.64.0.0/10")


def candidate_address_allowed(host: str, *, private: bool, loopback: bool) -> bool:
    """May the server send ICE checks to a remote candidate at `host`? Public unicast
    addresses always; private ones (and mDNS names, which stand for them) only when
    `private`; loopback only when `loopback`; anything else (unspecified, multicast,
    reserved, other names) never."""
    if host.lower().endswith(".local"):
        return private
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return loopback
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return False
    if ip.is_global:
        return True
    return private and (ip.is_private or ip.is_link_local or ip in _SHARED)


def _filter_sdp_candidates(sdp: str, allowed: Callable[[str], bool]) -> tuple[str, int]:
    """The SDP without its a=candidate lines at addresses that are not allowed."""
    kept: list[str] = []
    dropped = 0
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            bits = line.split()
            if len(bits) < 8 or not allowed(bits[4]):
                dropped += 1
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n", dropped


_DIGESTS = frozenset({"sha-1", "sha-224", "sha-256", "sha-384", "sha-512"})


def _offer_problem(offer: aiortc_sdp.SessionDescription) -> str | None:
    """What an offer lacks that aiortc only notices after answering (None: nothing)."""
    for media in offer.media:
        if media.kind not in ("audio", "video") or media.port == 0:
            continue
        dtls = media.dtls
        if dtls is None or not any(f.algorithm.lower() in _DIGESTS for f in dtls.fingerprints):
            return f"m-section {media.rtp.muxId or '?'} has no a=fingerprint (DTLS)"
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            return f"m-section {media.rtp.muxId or '?'} has no a=ice-ufrag/a=ice-pwd"
    return None


def _ice_ufrag(offer: aiortc_sdp.SessionDescription) -> str | None:
    for media in offer.media:
        if media.ice is not None and media.ice.usernameFragment:
            return media.ice.usernameFragment
    return None


def _parse_candidate(candidate: dict[str, Any] | None) -> Any:
    """Browser RTCIceCandidateInit -> aiortc RTCIceCandidate (None = end of candidates)."""
    if candidate is None or not candidate.get("candidate"):
        return None  # null or "" both mean end-of-candidates in browsers
    line = str(candidate["candidate"])
    if line.startswith("candidate:"):
        line = line[len("candidate:") :]
    try:
        if len(line.split()) < 8:
            raise ValueError("too few fields")
        ice = aiortc_sdp.candidate_from_sdp(line)
    except (ValueError, IndexError) as exc:
        raise MediaError(f"bad ICE candidate: {exc}") from None
    ice.sdpMid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    ice.sdpMLineIndex = int(index) if index is not None else None
    if ice.sdpMid is None and ice.sdpMLineIndex is None:
        ice.sdpMLineIndex = 0
    return ice
