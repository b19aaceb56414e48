"""aiortc / aioice private APIs around the peer connections (`rtp_hooks` is its sibling for
the RTP packets themselves).

aiortc has no supported way to keep a receiver from decoding, to be told about keyframe
requests for a pre-encoded track, or to choose the ICE host addresses. Everything here
that reaches behind its public API is pinned to aiortc 1.16 / aioice 0.13, and
`check_compat()` (run by tests/test_media_hooks.py) fails loudly, naming the symbol, when
an upgrade moves any of it.

What is patched, process-wide, by `install()`:
- `aiortc.rtcrtpreceiver.decoder_worker` (the function each RTCRtpReceiver runs in its
  decoder thread): replaced by a dispatcher. Receivers whose remote track was registered
  with `mark_passthrough()` (the server's publishing receivers, whose packets
  `rtp_hooks.tap_rtp` takes before the jitter buffer) decode nothing: their thread drains
  whatever still reaches it and reports the receiver's end to a callback on the event
  loop. Every other receiver (test clients, anything else) runs the original decoder.
- `aioice.ice.get_host_addresses`: when host addresses are configured, aioice offers
  exactly those (it otherwise skips 127.0.0.1 and offers every interface).
- the name `asyncio` inside `aioice.ice` and `aioice.turn`: a stand-in module whose
  `get_running_loop()`, inside `udp_port_scope()` and with `media.udp_ports` set, returns
  the loop behind a thin proxy whose `create_datagram_endpoint` binds a port of the range
  (host candidates: `local_addr=(address, 0)`; the TURN client socket: `remote_addr=`).
  Everything else goes to the real asyncio and the real loop; outside a scope (test
  clients, the benches' peers in the same process) nothing changes. aioice has no
  port-range option (aiortc's RTCConfiguration neither).

- `aioice.ice.Connection.query_consent` (RFC 7675 consent freshness, every ~5 s): aioice
  gives each check 0.5 s and no retransmission, and closes the ICE connection after 6
  failed checks in a row, so a peer whose answers take over 0.5 s (a congested uplink,
  or an event loop lagging under load) loses a live call after ~30 s: the capacity soak's
  media stopped after 1-3.5 minutes at load ~20 this way (#18). `_query_consent`
  retransmits each check (answered within 3.5 s) and expires consent as the RFC says:
  when no check was answered for 30 s (`CONSENT_INTERVAL * CONSENT_FAILURES`, aioice's
  own constants, read at each check).

Over 400 lines because every reach behind aiortc's and aioice's public API is kept in
this one module, each with its check in `check_compat()`.

Not patched, per sender: `on_keyframe_request()` (for a client sending pre-encoded frames,
as the capacity bench's clients do).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import inspect
import logging
import queue
import random
import socket
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import aioice.stun
import aioice.turn
from aiortc import rtcrtpreceiver
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_original_decoder_worker: Callable[..., None] | None = None
_original_get_host_addresses: Callable[[bool, bool], list[str]] | None = None
_original_query_consent: Callable[..., Any] | None = None
_host_addresses: list[str] = []
# id(remote track's output queue) -> entry. Keyed by the queue because that is what
# RTCRtpReceiver.receive() hands to the decoder thread; the entry keeps the queue alive,
# so an id is never reused while registered. Entries are removed when the worker ends
# or by unmark_passthrough().
_passthrough: dict[int, _Entry] = {}
# Queues whose receiver already started a normal decoder: marking them is a bug.
_decoding: dict[int, Any] = {}


@dataclass(eq=False)
class _Entry:
    queue: asyncio.Queue[Any]
    on_end: Callable[[], None] | None
    active: bool = True
    started: bool = False

    def finish(self) -> None:
        # The receiver stopped (pc closed, RTCP BYE, DTLS gone). End the remote track the
        # way aiortc does, so anyone awaiting recv() on it is released.
        self.queue.put_nowait(None)
        if self.active and self.on_end is not None:
            self.active = False
            try:
                self.on_end()
            except Exception:
                logger.exception("passthrough end callback failed")
        self.active = False


# --- the decoder-thread dispatcher --------------------------------------------------


def _dispatch_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue[Any],
    output_q: asyncio.Queue[Any],
    decode_error: threading.Event,
) -> None:
    """Replacement for aiortc.rtcrtpreceiver.decoder_worker (same signature)."""
    with _lock:
        entry = _passthrough.get(id(output_q))
        if entry is not None and entry.queue is output_q:
            entry.started = True
        else:
            entry = None
            _decoding[id(output_q)] = output_q
    if entry is None:
        try:
            assert _original_decoder_worker is not None
            _original_decoder_worker(loop, input_q, output_q, decode_error)
        finally:
            with _lock:
                _decoding.pop(id(output_q), None)
        return
    _forward_worker(loop, input_q, entry)


def _forward_worker(
    loop: asyncio.AbstractEventLoop, input_q: queue.Queue[Any], entry: _Entry
) -> None:
    """A passthrough receiver's thread: drain (the receiver never blocks), decode nothing."""
    try:
        while input_q.get() is not None:
            pass
    finally:
        with _lock:
            if _passthrough.get(id(entry.queue)) is entry:
                del _passthrough[id(entry.queue)]
    with contextlib.suppress(RuntimeError):  # event loop already closed
        loop.call_soon_threadsafe(entry.finish)


def _patched_get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = list(_host_addresses)
    if not addresses:
        assert _original_get_host_addresses is not None
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


# --- UDP port range -----------------------------------------------------------------


class UdpPortsExhausted(RuntimeError):
    """Every port of media.udp_ports is bound. Not an OSError on purpose: aioice skips a
    host address whose bind fails with OSError and would answer with no candidates."""


_udp_ports: tuple[int, int] | None = None
_port_cursor = 0  # where the next search starts: spreads use, keeps a search short


@dataclass(eq=False)
class _Scope:
    """The sockets bound for one negotiation (closed together if the range runs out)."""

    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    exhausted: bool = False

    def close_all(self) -> None:
        for transport in self.transports:
            transport.close()


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "callassist_udp_port_scope", default=None
)


@contextlib.contextmanager
def udp_port_scope() -> Iterator[None]:
    """Sockets aioice binds inside (this task and the tasks it starts) take a port of
    media.udp_ports. The server's peer connections negotiate inside one."""
    token = _scope.set(_Scope())
    try:
        yield
    finally:
        _scope.reset(token)


def _bind_in_range(family: int, host: str, scope: _Scope) -> socket.socket:
    global _port_cursor
    assert _udp_ports is not None
    lo, hi = _udp_ports
    size = hi - lo + 1
    if not scope.exhausted:
        for i in range(size):
            port = lo + (_port_cursor + i) % size
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                # No SO_REUSEADDR: on Linux it would let two sockets share a UDP port.
                sock.bind((host, port))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            _port_cursor = (port - lo + 1) % size
            sock.setblocking(False)
            return sock
    scope.exhausted = True  # the negotiation fails: bind nothing more for it
    scope.close_all()
    logger.warning(
        "media.udp_ports %d-%d: every port is in use; the offer fails (sdp_failed). "
        "Widen the range or add nodes.",
        lo,
        hi,
    )
    raise UdpPortsExhausted(
        f"no free UDP port in media.udp_ports {lo}-{hi}: the node is out of media ports"
    )


class _PinnedLoop:
    """The running loop, but datagram endpoints get a port of the range."""

    def __init__(self, loop: asyncio.AbstractEventLoop, scope: _Scope) -> None:
        self._loop = loop
        self._scope = scope

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self, protocol_factory: Callable[[], Any], local_addr: Any = None,
        remote_addr: Any = None, **kwargs: Any,
    ) -> tuple[asyncio.DatagramTransport, Any]:  # fmt: skip
        loop, scope = self._loop, self._scope
        explicit = kwargs.get("sock") is not None or (local_addr is not None and local_addr[1] != 0)
        if explicit or (local_addr is None and remote_addr is None):  # nothing to choose
            return await loop.create_datagram_endpoint(
                protocol_factory, local_addr=local_addr, remote_addr=remote_addr, **kwargs
            )
        target = local_addr or remote_addr
        infos = await loop.getaddrinfo(target[0], target[1], type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        # The TURN client socket: "" = any address, as the socket the system would make
        # for remote_addr= (the range is about the port, for the firewall).
        host = sockaddr[0] if local_addr is not None else ""
        sock = _bind_in_range(family, host, scope)
        try:
            if remote_addr is not None:
                sock.connect(sockaddr)  # the TURN client socket: aioice sends without address
            transport, protocol = await loop.create_datagram_endpoint(
                protocol_factory, sock=sock, **kwargs
            )
        except BaseException:
            sock.close()
            raise
        scope.transports.append(transport)
        return transport, protocol


class _AsyncioForAioice(types.ModuleType):
    """`asyncio` as aioice.ice / aioice.turn see it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    def get_running_loop() -> Any:
        loop = asyncio.get_running_loop()
        scope = _scope.get()
        if scope is None or _udp_ports is None:
            return loop
        return _PinnedLoop(loop, scope)


_asyncio_for_aioice = _AsyncioForAioice("asyncio")

# A consent check is sent up to 3 times (0.5 s, 1 s, 2 s apart: STUN's RTO doubling), so an
# answer within 3.5 s counts; the next check starts ~5 s after the last one ended.
CONSENT_RETRANSMISSIONS = 2


async def _query_consent(self: aioice.ice.Connection) -> None:
    """Installed as `aioice.ice.Connection.query_consent`: aioice's loop (same requests,
    same pairs, same close) with retransmitted checks and a 30 s expiry measured in time
    since the last answered check, not in consecutive failures."""
    assert self.remote_password is not None
    loop = asyncio.get_running_loop()
    last_answer = loop.time()
    while True:
        interval = aioice.ice.CONSENT_INTERVAL
        await asyncio.sleep(interval * (0.8 + 0.4 * random.random()))
        for pair in list(self._nominated.values()):
            request = self.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request,
                    pair.remote_addr,
                    integrity_key=self.remote_password.encode("utf8"),
                    retransmissions=CONSENT_RETRANSMISSIONS,
                )
                last_answer = loop.time()
            except aioice.stun.TransactionError:
                pass
        if loop.time() - last_answer >= interval * aioice.ice.CONSENT_FAILURES:
            # aioice's wording, which bench/lib/ice_watch.py counts
            logger.info("Connection(%s) Consent to send expired", getattr(self, "_id", "?"))
            self._query_consent_task = None
            await self.close()
            return


def install(ice_host_addresses: list[str], udp_ports: tuple[int, int] | None = None) -> None:
    """Install the hooks (idempotent). The host address list and the UDP port range are
    process-wide: the last call wins; an empty list restores aioice's own interface
    discovery, None any port."""
    global _original_decoder_worker, _original_get_host_addresses, _host_addresses
    global _original_query_consent
    global _udp_ports, _port_cursor
    if not installed():
        check_compat()  # once: it reads source files
    with _lock:
        if rtcrtpreceiver.decoder_worker is not _dispatch_worker:
            _original_decoder_worker = rtcrtpreceiver.decoder_worker
            rtcrtpreceiver.decoder_worker = _dispatch_worker
        if aioice.ice.get_host_addresses is not _patched_get_host_addresses:
            _original_get_host_addresses = aioice.ice.get_host_addresses
            aioice.ice.get_host_addresses = _patched_get_host_addresses
        if aioice.ice.Connection.query_consent is not _query_consent:
            _original_query_consent = aioice.ice.Connection.query_consent
            aioice.ice.Connection.query_consent = _query_consent  # type: ignore[method-assign]
        aioice.ice.asyncio = _asyncio_for_aioice  # type: ignore[attr-defined]
        aioice.turn.asyncio = _asyncio_for_aioice  # type: ignore[attr-defined]
        _host_addresses = list(ice_host_addresses)
        if udp_ports != _udp_ports:
            _udp_ports, _port_cursor = udp_ports, 0


def installed() -> bool:
    return rtcrtpreceiver.decoder_worker is _dispatch_worker


# --- public helpers -----------------------------------------------------------------


def _remote_queue(track: MediaStreamTrack) -> asyncio.Queue[Any]:
    q = getattr(track, "_queue", None)
    if not isinstance(q, asyncio.Queue):
        raise TypeError("mark_passthrough needs a remote track (aiortc RemoteStreamTrack)")
    return q


def mark_passthrough(track: MediaStreamTrack, on_end: Callable[[], None] | None = None) -> None:
    """Keep `track`'s receiver from decoding (its packets are taken before the jitter
    buffer, by rtp_hooks.tap_rtp; anything that still reaches its decoder thread is
    dropped) and run `on_end()` on the event loop once when the receiver stops.

    Call it before the receiver starts (right after setRemoteDescription, or in the
    "track" event). Marking an already-marked track re-points the callback."""
    if not installed():
        raise RuntimeError("server.media.aiortc_hooks.install() was not called")
    q = _remote_queue(track)
    with _lock:
        if id(q) in _decoding:
            raise RuntimeError("track's receiver already decodes: mark it before it starts")
        old = _passthrough.get(id(q))
        if old is not None and old.queue is q:
            # Same receiver, new owner: keep the running worker, swap the callback.
            old.on_end, old.active = on_end, True
            return
        _passthrough[id(q)] = _Entry(queue=q, on_end=on_end)


def unmark_passthrough(track: MediaStreamTrack) -> None:
    """Forget `track`'s end callback (its receiver keeps draining, decoding nothing)."""
    q = _remote_queue(track)
    with _lock:
        entry = _passthrough.get(id(q))
        if entry is not None and entry.queue is q:
            entry.active = False
            if not entry.started:
                del _passthrough[id(q)]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Make a PLI/FIR arriving for `sender` call `callback()`.

    RTCRtpSender._handle_rtcp_packet calls self._send_keyframe(), which only sets a flag
    for its own encoder; for a track of pre-encoded packets that flag does nothing, so the
    request has to go to whoever produces the frames."""
    original = sender._send_keyframe

    def _send_keyframe() -> None:
        original()
        try:
            callback()
        except Exception:
            logger.exception("keyframe request callback failed")

    sender._send_keyframe = _send_keyframe  # type: ignore[method-assign]


# --- compatibility check ------------------------------------------------------------


def _require(cond: bool, symbol: str, what: str) -> None:
    if not cond:
        raise RuntimeError(
            f"aiortc/aioice compatibility: {symbol} {what}; server/media/aiortc_hooks.py "
            "must be updated for this version"
        )


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def check_compat() -> None:
    """Assert every private symbol the hooks rely on exists as expected."""
    worker = _original_decoder_worker if installed() else rtcrtpreceiver.decoder_worker
    _require(callable(worker), "aiortc.rtcrtpreceiver.decoder_worker", "is missing")
    _require(
        _params(worker) == ["loop", "input_q", "output_q", "decode_error"],
        "aiortc.rtcrtpreceiver.decoder_worker",
        f"has parameters {_params(worker)}",
    )
    receive_src = inspect.getsource(RTCRtpReceiver.receive)
    _require(
        "target=decoder_worker" in receive_src and "self._track._queue" in receive_src,
        "aiortc.RTCRtpReceiver.receive",
        "no longer starts decoder_worker with the remote track's _queue",
    )
    track = rtcrtpreceiver.RemoteStreamTrack(kind="video")
    _require(
        isinstance(getattr(track, "_queue", None), asyncio.Queue),
        "aiortc.rtcrtpreceiver.RemoteStreamTrack._queue",
        "is not an asyncio.Queue",
    )
    kf = getattr(RTCRtpSender, "_send_keyframe", None)
    _require(
        kf is not None and _params(kf) == ["self"],
        "aiortc.RTCRtpSender._send_keyframe",
        "is missing or takes arguments",
    )
    _require(
        "self._send_keyframe()" in inspect.getsource(RTCRtpSender._handle_rtcp_packet),
        "aiortc.RTCRtpSender._handle_rtcp_packet",
        "no longer calls self._send_keyframe() on PLI/FIR",
    )
    ghost = (
        _original_get_host_addresses
        if aioice.ice.get_host_addresses is _patched_get_host_addresses
        else aioice.ice.get_host_addresses
    )
    _require(
        callable(ghost) and _params(ghost) == ["use_ipv4", "use_ipv6"],
        "aioice.ice.get_host_addresses",
        "is missing or has other parameters",
    )
    _require(
        "get_host_addresses(" in inspect.getsource(aioice.ice.Connection.gather_candidates),
        "aioice.ice.Connection.gather_candidates",
        "no longer calls the module-level get_host_addresses",
    )
    # The UDP port range: both places aioice makes its sockets, through the module-level
    # name `asyncio` (replaced by _AsyncioForAioice).
    for module in (aioice.ice, aioice.turn):
        _require(
            getattr(module, "asyncio", None) in (asyncio, _asyncio_for_aioice),
            f"{module.__name__}.asyncio",
            "is not the asyncio module",
        )
    gcc = inspect.getsource(aioice.ice.Connection.get_component_candidates)
    _require(
        "loop = asyncio.get_running_loop()" in gcc
        and "create_datagram_endpoint(" in gcc
        and "local_addr=(address, 0)" in gcc,
        "aioice.ice.Connection.get_component_candidates",
        "no longer binds host sockets through asyncio.get_running_loop()."
        "create_datagram_endpoint(local_addr=(address, 0))",
    )
    _check_consent_compat()
    cte = inspect.getsource(aioice.turn.create_turn_endpoint)
    _require(
        "loop = asyncio.get_running_loop()" in cte and "remote_addr=server_addr" in cte,
        "aioice.turn.create_turn_endpoint",
        "no longer makes its UDP socket with loop.create_datagram_endpoint(remote_addr=)",
    )


def _check_consent_compat() -> None:
    """check_compat's part for `_query_consent` (aioice's consent loop, replaced)."""
    consent = (
        _original_query_consent
        if aioice.ice.Connection.query_consent is _query_consent
        else aioice.ice.Connection.query_consent
    )
    qc = inspect.getsource(consent) if consent is not None else ""
    _require(
        "self._nominated.values()" in qc
        and "self.build_request(pair, nominate=False)" in qc
        and "pair.protocol.request(" in qc
        and "self._query_consent_task = None" in qc
        and "await self.close()" in qc
        and isinstance(getattr(aioice.ice, "CONSENT_INTERVAL", None), (int, float))
        and isinstance(getattr(aioice.ice, "CONSENT_FAILURES", None), int),
        "aioice.ice.Connection.query_consent",
        "no longer checks the nominated pairs with build_request/protocol.request and "
        "CONSENT_INTERVAL/CONSENT_FAILURES",
    )
    _require(
        "self.query_consent()" in inspect.getsource(aioice.ice.Connection.connect),
        "aioice.ice.Connection.connect",
        "no longer starts self.query_consent()",
    )
