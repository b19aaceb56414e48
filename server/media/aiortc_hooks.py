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

Not patched, per sender: `on_keyframe_request()` (for a client sending pre-encoded frames,
as the capacity bench's clients do).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import rtcrtpreceiver
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

logger = logging.getLogger(__name__)

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
