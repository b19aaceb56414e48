"""Media layer: video forwarding between the caller and the agent through aiortc, RTP
packets in and out, never decoded or re-encoded (docs/media-performance.md).

- `peers`: per-room peer connections (`MediaRoom`), driven by the signalling layer.
- `relay`: room-level track slots, keyframe requests, frame subscribers (no SDP).
- `rtp_publisher`, `rtp_subscriber` (+ `rtp_packet`, what they share): RTP-level
  forwarding from one publishing receiver to every receiving leg; `rtp_assembly`:
  complete frames from the packets, for the recorder.
- `vcodec`: VP8/H264 keyframe detection and payload descriptors (pure; the recorder
  uses it too).
- `aiortc_hooks`, `rtp_hooks`: the only modules that touch aiortc/aioice private APIs.

Importing the package imports none of them (the names below load on first use), so the
recorder's `server.media.vcodec` stays cheap and cycle-free.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ForwardedTrack": "relay",
    "MediaError": "peers",
    "MediaEvent": "peers",
    "MediaRoom": "peers",
    "RoomTrack": "relay",
    "Upstream": "relay",
    "ice_servers_for_client": "peers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
