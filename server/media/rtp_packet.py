"""What the RTP forwarder's publisher and subscriber sides share: the per-packet record
handed from one to the other, the fixed RTP header, and fire-and-forget RTCP sends."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable
from typing import Any

logger = logging.getLogger(__name__)

HDR = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC


class Packet:
    """One media packet of the publisher, as the subscribers need it (one per packet,
    shared by every subscriber; the VP8 fields are filled in by vcodec.parse_vp8)."""

    __slots__ = (
        "arrival",
        "body",
        "ext",
        "key",
        "late",
        "marker",
        "pad",
        "payload",
        "pid_pos",
        "start",
        "timestamp",
        "tl0_pos",
    )

    def __init__(
        self,
        ext: int,
        timestamp: int,
        marker: int,
        pad: int,
        late: bool,
        payload: bytes,
        arrival: float,
    ) -> None:
        self.ext = ext  # extended (32-bit and more) sequence number upstream
        self.timestamp = timestamp
        self.marker = marker
        self.pad = pad  # the P bit (0x20) as it came
        self.late = late  # a retransmission or reordered packet, behind the newest
        self.payload = payload  # from the payload header to the end (padding included)
        self.arrival = arrival  # time.monotonic() when it arrived
        self.key = False  # the first packet of a keyframe
        self.start = False  # VP8: the first packet of a frame
        self.pid_pos = -1  # VP8: offset in payload of a 15-bit picture id, or -1
        self.tl0_pos = -1  # VP8: offset in payload of the TL0PICIDX, or -1
        self.body = 0  # VP8: offset in payload of the VP8 data


def spawn(coro: Awaitable[Any]) -> None:
    """Run an RTCP send in the background; a failure is logged, a closed transport not."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, ConnectionError):
            logger.warning("RTCP feedback failed: %r", exc)
