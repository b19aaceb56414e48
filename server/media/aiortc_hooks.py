"""The one place that touches aiortc / aioice private APIs (with `rtp_hooks`, its sibling
for RTP-level forwarding).

aiortc has no supported way to get *encoded* frames out of a remote track, to be told
about keyframe requests for a pre-encoded track, or to choose the ICE host addresses.
Everything that reaches behind its public API lives here, pinned to aiortc 1.16 /
aioice 0.13, and `check_compat()` (run by tests/test_media_hooks.py) fails loudly, naming
the symbol, when an upgrade moves any of it.

What is patched, process-wide, by `install()`:
- `aiortc.rtcrtpreceiver.decoder_worker` (the function each RTCRtpReceiver runs in its
  decoder thread): replaced by a dispatcher. Receivers whose remote track was registered
  with `mark_passthrough()` forward complete encoded frames to a callback on the event
  loop; every other receiver (test clients, anything else) runs the original decoder.
- `aioice.ice.get_host_addresses`: when host addresses are configured, aioice offers
  exactly those (it otherwise skips 127.0.0.1 and offers every interface).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import inspect
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice.ice
import av
from aiortc import rtcrtpreceiver
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from . import vcodec

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)

FrameCallback = Callable[[av.Packet, bool], None]

_lock = threading.Lock()
_original_decoder_worker: Callable[..., None] | None = None
_original_get_host_addresses: Callable[[bool, bool], list[str]] | None = None
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
    on_frame: FrameCallback
    on_end: Callable[[], None] | None
    active: bool = True
    started: bool = False

    def deliver(self, packet: av.Packet, keyframe: bool) -> None:
        # Runs on the event loop; `active` is only changed there, so no race.
        if not self.active:
            return
        try:
            self.on_frame(packet, keyframe)
        except Exception:
            logger.exception("passthrough frame callback failed")

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
    try:
        while True:
            task = input_q.get()
            if task is None:
                break
            if not entry.active:
                continue  # detached: keep draining so the receiver never blocks
            codec, frame = task
            data: bytes = frame.data
            packet = av.Packet(data)
            packet.pts = frame.timestamp
            packet.time_base = VIDEO_TIME_BASE
            keyframe = vcodec.is_keyframe(codec.name, data)
            try:
                # call_soon_threadsafe, not run_coroutine_threadsafe: no Task per frame.
                loop.call_soon_threadsafe(entry.deliver, packet, keyframe)
            except RuntimeError:  # event loop closed under us
                return
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


def install(ice_host_addresses: list[str]) -> None:
    """Install the hooks (idempotent). The host address list is process-wide: the last
    call wins, and an empty list restores aioice's own interface discovery."""
    global _original_decoder_worker, _original_get_host_addresses, _host_addresses
    if not installed():
        check_compat()  # once: it reads source files
    with _lock:
        if rtcrtpreceiver.decoder_worker is not _dispatch_worker:
            _original_decoder_worker = rtcrtpreceiver.decoder_worker
            rtcrtpreceiver.decoder_worker = _dispatch_worker
        if aioice.ice.get_host_addresses is not _patched_get_host_addresses:
            _original_get_host_addresses = aioice.ice.get_host_addresses
            aioice.ice.get_host_addresses = _patched_get_host_addresses
        _host_addresses = list(ice_host_addresses)


def installed() -> bool:
    return rtcrtpreceiver.decoder_worker is _dispatch_worker


# --- public helpers -----------------------------------------------------------------


def _remote_queue(track: MediaStreamTrack) -> asyncio.Queue[Any]:
    q = getattr(track, "_queue", None)
    if not isinstance(q, asyncio.Queue):
        raise TypeError("mark_passthrough needs a remote track (aiortc RemoteStreamTrack)")
    return q


def mark_passthrough(
    track: MediaStreamTrack,
    on_frame: FrameCallback,
    on_end: Callable[[], None] | None = None,
) -> None:
    """Send `track`'s encoded frames to `on_frame(packet, keyframe)` on the event loop
    instead of decoding them; `on_end()` runs once when the receiver stops.

    Call it before the receiver starts (right after setRemoteDescription, or in the
    "track" event). Marking an already-marked track re-points the callbacks."""
    if not installed():
        raise RuntimeError("server.media.aiortc_hooks.install() was not called")
    q = _remote_queue(track)
    with _lock:
        if id(q) in _decoding:
            raise RuntimeError("track's receiver already decodes: mark it before it starts")
        old = _passthrough.get(id(q))
        if old is not None and old.queue is q:
            # Same receiver, new owner: keep the running worker, swap the callbacks.
            old.on_frame, old.on_end, old.active = on_frame, on_end, True
            return
        _passthrough[id(q)] = _Entry(queue=q, on_frame=on_frame, on_end=on_end)


def unmark_passthrough(track: MediaStreamTrack) -> None:
    """Stop delivering `track`'s frames (its receiver keeps draining, decoding nothing)."""
    q = _remote_queue(track)
    with _lock:
        entry = _passthrough.get(id(q))
        if entry is not None and entry.queue is q:
            entry.active = False
            if not entry.started:
                del _passthrough[id(q)]


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send a PLI to the sender of the media `receiver` receives. False when no media
    has arrived yet (no SSRC to address it to)."""
    sources = receiver.getSynchronizationSources()
    if not sources:
        return False
    # The most recently active SSRC is the media stream (an RTX SSRC only shows up
    # during retransmissions).
    latest = max(sources, key=lambda s: s.timestamp)
    await receiver._send_rtcp_pli(latest.source)
    return True


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
    from aiortc.jitterbuffer import JitterFrame

    jf = JitterFrame(data=b"x", timestamp=1)
    _require(jf.data == b"x" and jf.timestamp == 1, "aiortc.jitterbuffer.JitterFrame", "changed")
    pli = getattr(RTCRtpReceiver, "_send_rtcp_pli", None)
    _require(
        pli is not None and inspect.iscoroutinefunction(pli),
        "aiortc.RTCRtpReceiver._send_rtcp_pli",
        "is missing or not a coroutine function",
    )
    _require(
        _params(pli) == ["self", "media_ssrc"],
        "aiortc.RTCRtpReceiver._send_rtcp_pli",
        f"has parameters {_params(pli)}",
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
