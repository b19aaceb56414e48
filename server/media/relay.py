"""Room-level track slots (no SDP, no aiortc internals).

A `RoomTrack` is the stable slot for one named stream ("camera", "screen"). Publishers
come and go (`attach_upstream` each time a caller reconnects on a new peer connection);
subscribers stay put and resume at the next keyframe. Packet subscribers (the legs'
`rtp_subscriber.RtpSubscriber`) get the publisher's RTP packets from its
`rtp_publisher.RtpPublisher`, never through this module; frame subscribers (`subscribe()`
-> `ForwardedTrack`: the recorder) get complete encoded frames (av.Packet, pts in 1/90000
s) that the forwarder assembles (`fan_out`), or that a frame-level publisher pushes
(`Upstream.push`: the tests' synthetic camera). Both kinds share upstream switches,
keyframe requests, the subscriber list and close().

Rules kept here:
- a subscriber starts at a keyframe, and asks the source for one when it starts;
- each frame subscriber's queue is bounded: on overflow it is emptied and the subscriber
  waits for the next keyframe (asking for one), so a slow subscriber costs bounded memory
  and never delays the others (pushing never awaits);
- keyframe requests to the source are coalesced and rate-limited;
- output timestamps are monotonic across upstream switches (each upstream's timestamps
  restart at 0, the output continues from where it was plus the wall-clock gap).

Slightly over 400 lines because those rules act on both kinds of subscribers at once
(upstream switches, keyframe requests): they stay in one class, with its frame subscriber.
"""

from __future__ import annotations

import asyncio
import fractions
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from . import vcodec

logger = logging.getLogger(__name__)

CLOCK_RATE = vcodec.CLOCK_RATE
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)  # of every frame's pts
# Asks the current source for a keyframe; may return an awaitable (sending RTCP is async).
KeyframeRequester = Callable[[], Awaitable[Any] | None]


class PacketSubscriber(Protocol):
    """A subscriber fed RTP packets by the upstream's forwarder (rtp_subscriber)."""

    started: bool
    readyState: str
    remb: int  # its receiver's latest bandwidth estimate (0: none)
    remb_at: float

    def forward(self, pkt: Any) -> None: ...  # one packet of the current upstream (sync)
    def restart(self) -> None: ...  # a new upstream: resume at its first keyframe
    def stop(self) -> None: ...


class Upstream:
    """One publisher attached to a RoomTrack (its packets go through `rtp`, an
    rtp_publisher.RtpPublisher; a frame-level publisher calls `push()` instead)."""

    def __init__(
        self,
        room_track: RoomTrack,
        request_keyframe: KeyframeRequester,
        on_first_frame: Callable[[], None] | None,
    ) -> None:
        self._room_track = room_track
        self.request_keyframe = request_keyframe
        self._on_first_frame = on_first_frame
        self.frames_in = 0
        self.first_pts: int | None = None
        self.pts_base = 0
        # Per-upstream state of the RTP-level forwarder (rtp_publisher.RtpPublisher), if any.
        self.rtp: Any = None

    @property
    def current(self) -> bool:
        return self._room_track._upstream is self

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        """A complete encoded frame from a frame-level publisher (on the event loop):
        counted, then offered to the frame subscribers."""
        self._room_track._push(self, packet, keyframe)

    def detach(self) -> bool:
        """Detach from the track if still current; returns whether it was."""
        return self._room_track.detach_upstream(self)

    def _counted(self) -> None:
        """One more complete frame from this publisher; the first one makes it live."""
        self.frames_in += 1
        if self.frames_in == 1 and self._on_first_frame is not None:
            try:
                self._on_first_frame()
            except Exception:
                logger.exception("on_first_frame callback failed")


# A frame subscriber's synchronous consumer: (frame bytes, pts in 1/90000 s, keyframe:
# known to the forwarder already, so the recorder does not parse the frame again).
FrameSink = Callable[[bytes, int, bool], None]


class ForwardedTrack(MediaStreamTrack):
    """A frame subscriber of a RoomTrack (the recorder): recv() returns av.Packet; or,
    after `deliver(sink)`, each frame goes straight to `sink` as it completes (no queue,
    no av.Packet, no task wake-up per frame: the recorder's path, issue 18) and recv()
    only waits for the end (MediaStreamError once stopped)."""

    def __init__(self, source: RoomTrack, max_frames: int) -> None:
        super().__init__()
        self.kind = source.kind
        self._source: RoomTrack | None = source
        self._max_frames = max_frames
        self._queue: deque[av.Packet] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.sink: FrameSink | None = None
        # Not started until the first recv() (its consumer is running): frames before
        # that would only pile up and come out late in a burst.
        self.started = False
        self.waiting_keyframe = True
        self.frames_forwarded = 0
        self.frames_dropped = 0
        self.resets = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def deliver(self, sink: FrameSink) -> None:
        """Start now, handing every frame to `sink` synchronously (on the event loop, from
        the packet that completes it). `sink` must not raise: it is the forwarder's call."""
        if self.started:
            raise RuntimeError("deliver() after recv() started the queue")
        self.sink = sink
        self.started = True
        if self._source is not None:
            self._source.request_keyframe()

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if not self.started:
            self.started = True
            if self._source is not None:
                self._source.request_keyframe()
        while not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            if self.readyState != "live":
                raise MediaStreamError
        packet = self._queue.popleft()
        self.frames_forwarded += 1
        if self._source is not None:
            self._source.frames_forwarded += 1
        return packet

    def stop(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            source.flush_frames()  # what was received before the stop is this track's
        super().stop()
        self._queue.clear()
        self._wake()
        if source is not None:
            source.unsubscribe(self)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _reset(self) -> None:
        """Forget queued frames and resume at the next keyframe."""
        self.frames_dropped += len(self._queue)
        self._queue.clear()
        self.waiting_keyframe = True
        self.resets += 1

    def _give(self, data: bytes, pts: int, keyframe: bool) -> tuple[int, bool]:
        """A frame for the sink (`deliver`); returns what `_offer` does."""
        if self.readyState != "live":
            return 0, False
        if self.waiting_keyframe and not keyframe:
            self.frames_dropped += 1
            return 1, True
        self.waiting_keyframe = False
        self.frames_forwarded += 1
        if self._source is not None:
            self._source.frames_forwarded += 1
        assert self.sink is not None
        self.sink(data, pts, keyframe)
        return 0, False

    def _offer(self, packet: av.Packet, keyframe: bool) -> tuple[int, bool]:
        """Queue a frame; returns (frames dropped, whether a keyframe is needed)."""
        if not self.started or self.readyState != "live":
            return 0, False
        if self.waiting_keyframe and not keyframe:
            self.frames_dropped += 1
            return 1, True
        dropped = 0
        if len(self._queue) >= self._max_frames:
            dropped = len(self._queue)
            self._reset()
            if not keyframe:
                self.frames_dropped += 1
                return dropped + 1, True
        self.waiting_keyframe = False
        self._queue.append(packet)
        self._wake()
        return dropped, False


class RoomTrack:
    """A room-level track slot that survives upstream changes."""

    def __init__(
        self,
        name: str,
        kind: str = "video",
        queue_frames: int = 60,
        keyframe_min_interval_s: float = 0.3,
    ) -> None:
        self.name = name
        self.kind = kind
        self.queue_frames = queue_frames
        self.keyframe_min_interval_s = keyframe_min_interval_s
        self._upstream: Upstream | None = None
        self._subscribers: list[ForwardedTrack] = []
        # Replaced, never changed in place: the forwarder iterates it per packet without
        # copying it (a subscriber's callback may unsubscribe during the loop).
        self.packet_subscribers: list[PacketSubscriber] = []
        self._last_out_pts: int | None = None
        self._last_out_time = 0.0
        self._kf_wanted = False
        self._kf_last_sent = float("-inf")
        self._kf_timer: asyncio.TimerHandle | None = None
        self._kf_tasks: set[asyncio.Future[Any]] = set()
        self._closed = False
        # counters
        self.frames_in = 0
        self.bytes_in = 0
        self.keyframes_in = 0
        self.frames_forwarded = 0
        self.frames_dropped = 0
        self.keyframe_requests_sent = 0
        self.upstreams_attached = 0

    # --- upstream -------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self._upstream is not None

    @property
    def upstream(self) -> Upstream | None:
        return self._upstream

    @property
    def codec(self) -> str | None:
        """The current publisher's codec ("VP8" / "H264"; None: none, or frame-level)."""
        upstream = self._upstream
        return getattr(upstream.rtp, "codec", None) if upstream is not None else None

    def attach_upstream(
        self,
        request_keyframe: KeyframeRequester,
        *,
        on_first_frame: Callable[[], None] | None = None,
    ) -> Upstream:
        """Make a new publisher current (replacing any previous one)."""
        if self._closed:
            raise RuntimeError(f"track {self.name} is closed")
        self.flush_frames()  # the previous publisher's last frames, before the switch
        upstream = Upstream(self, request_keyframe, on_first_frame)
        self._upstream = upstream
        self.upstreams_attached += 1
        # The new source has its own encoder: everyone restarts at its first keyframe,
        # and the rate limit applies per source.
        for sub in self._subscribers:
            sub.waiting_keyframe = True
        for psub in self.packet_subscribers:
            psub.restart()
        self._cancel_kf_timer()
        self._kf_last_sent = float("-inf")
        if any(s.started for s in self.subscribers):
            self.request_keyframe()
        return upstream

    def detach_upstream(self, upstream: Upstream | None = None) -> bool:
        """Detach `upstream` (or whichever is current); subscribers stay subscribed."""
        if self._upstream is None or (upstream is not None and upstream is not self._upstream):
            return False
        self.flush_frames()
        self._upstream = None
        self._cancel_kf_timer()
        return True

    def flush_frames(self) -> None:
        """The current publisher's packets not yet assembled (rtp_publisher assembles in
        batches, server/media/assembly_batch.py) become frames for the frame subscribers
        now: before one of them stops, and before the publisher changes."""
        upstream = self._upstream
        rtp = upstream.rtp if upstream is not None else None
        if rtp is not None:
            rtp.assemble_backlog()

    def _push(self, upstream: Upstream, packet: av.Packet, keyframe: bool) -> None:
        if upstream is not self._upstream:
            return  # a late frame from a replaced publisher
        self.frames_in += 1
        self.bytes_in += packet.size
        if keyframe:
            self.keyframe_arrived()
        self.fan_out(upstream, packet, keyframe)
        upstream._counted()

    def keyframe_arrived(self) -> None:
        """Counts a keyframe from the current source; a pending request is answered."""
        self.keyframes_in += 1
        self._kf_wanted = False
        self._cancel_kf_timer()

    def fan_out(self, upstream: Upstream, packet: av.Packet, keyframe: bool) -> None:
        """Offer a frame of the current upstream to the frame subscribers (counted by
        the caller: `Upstream.push`, or the RTP forwarder assembling frames)."""
        self.fan_out_frame(upstream, bytes(packet), packet.pts or 0, keyframe, packet)

    def fan_out_frame(
        self, upstream: Upstream, data: bytes, pts: int, keyframe: bool,
        packet: av.Packet | None = None,
    ) -> None:  # fmt: skip
        """`fan_out` of a frame's bytes: an av.Packet is made only for a subscriber that
        queues (`recv`), at most one, shared (`packet`, if given, is that one)."""
        now = time.monotonic()
        pts = self._rewrite_pts(upstream, pts, now)
        need_keyframe = False
        for sub in list(self._subscribers):
            if sub.sink is not None:
                dropped, need = sub._give(data, pts, keyframe)
            else:
                if packet is None:
                    packet = av.Packet(data)
                    packet.time_base = TIME_BASE
                packet.pts = pts
                dropped, need = sub._offer(packet, keyframe)
            self.frames_dropped += dropped
            need_keyframe = need_keyframe or need
        if need_keyframe:
            # Also a retry: a lost PLI would otherwise leave a subscriber waiting for the
            # encoder's own next keyframe (aiortc's VP8 GOP is 100 s). Rate-limited.
            self.request_keyframe()

    def frame_gap(self) -> None:
        """Frames were lost before reaching the frame subscribers: each resumes at the
        next keyframe (asked for, rate-limited)."""
        waiting = False
        for sub in self._subscribers:
            if sub.started and not sub.waiting_keyframe:
                sub.waiting_keyframe = True
                waiting = True
        if waiting:
            self.request_keyframe()

    @property
    def frame_subscribers(self) -> bool:
        """Whether anyone needs complete frames (the recorder)."""
        return bool(self._subscribers)

    def _rewrite_pts(self, upstream: Upstream, pts: int, now: float) -> int:
        if upstream.first_pts is None:
            upstream.first_pts = pts
            if self._last_out_pts is None:
                upstream.pts_base = 0
            else:
                gap = max(1, int((now - self._last_out_time) * CLOCK_RATE))
                upstream.pts_base = self._last_out_pts + gap
        out = upstream.pts_base + (pts - upstream.first_pts)
        if self._last_out_pts is not None and out <= self._last_out_pts:
            out = self._last_out_pts + 1  # never go backwards, whatever the source does
        self._last_out_pts = out
        self._last_out_time = now
        return out

    # --- subscribers ----------------------------------------------------------------

    def subscribe(self) -> ForwardedTrack:
        if self._closed:
            raise RuntimeError(f"track {self.name} is closed")
        track = ForwardedTrack(self, self.queue_frames)
        self._subscribers.append(track)
        return track

    def add_packet_subscriber(self, track: PacketSubscriber) -> None:
        if self._closed:
            raise RuntimeError(f"track {self.name} is closed")
        self.packet_subscribers = [*self.packet_subscribers, track]

    def unsubscribe(self, track: ForwardedTrack | PacketSubscriber) -> None:
        if track in self._subscribers:
            self._subscribers.remove(track)  # type: ignore[arg-type]
        if track in self.packet_subscribers:
            self.packet_subscribers = [s for s in self.packet_subscribers if s is not track]
        if track.readyState == "live":
            track.stop()

    @property
    def subscribers(self) -> list[ForwardedTrack | PacketSubscriber]:
        return [*self._subscribers, *self.packet_subscribers]

    # --- keyframe requests ----------------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the current source for a keyframe: coalesced, at most one per interval."""
        self._kf_wanted = True
        if self._upstream is None or self._kf_timer is not None:
            return  # attach_upstream asks; or one is already scheduled
        # The loop's clock, which its timers run on (uvloop's lags time.monotonic() by up
        # to the current iteration: a timer armed by time.monotonic() fires that early).
        loop = asyncio.get_running_loop()
        wait = self._kf_last_sent + self.keyframe_min_interval_s - loop.time()
        if wait <= 0:
            self._send_keyframe_request()
        else:
            self._kf_timer = loop.call_later(wait, self._kf_timer_fired)

    def _kf_timer_fired(self) -> None:
        self._kf_timer = None
        if self._kf_wanted and self._upstream is not None:
            self._send_keyframe_request()

    def _cancel_kf_timer(self) -> None:
        if self._kf_timer is not None:
            self._kf_timer.cancel()
            self._kf_timer = None

    def _send_keyframe_request(self) -> None:
        assert self._upstream is not None
        self._kf_last_sent = asyncio.get_running_loop().time()  # see request_keyframe
        self.keyframe_requests_sent += 1
        try:
            result = self._upstream.request_keyframe()
        except Exception:
            logger.exception("keyframe request to %s source failed", self.name)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._kf_tasks.add(task)
            task.add_done_callback(self._kf_task_done)

    def _kf_task_done(self, task: asyncio.Future[Any]) -> None:
        self._kf_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("keyframe request to %s source failed: %r", self.name, task.exception())

    # --- lifecycle / stats ----------------------------------------------------------

    def close(self) -> None:
        """Detach the source and end every subscriber (idempotent)."""
        self._closed = True
        self.detach_upstream()
        for sub in self.subscribers:
            sub.stop()
        self._subscribers.clear()
        self.packet_subscribers = []
        for task in list(self._kf_tasks):
            task.cancel()

    def stats(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "subscribers": len(self._subscribers) + len(self.packet_subscribers),
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "keyframes_in": self.keyframes_in,
            "frames_forwarded": self.frames_forwarded,
            "frames_dropped": self.frames_dropped,
            "keyframe_requests_sent": self.keyframe_requests_sent,
            "upstreams_attached": self.upstreams_attached,
        }
