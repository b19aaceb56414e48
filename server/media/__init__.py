"""Media layer: video forwarding between the caller and the agent through aiortc.

- `aiortc_hooks`, `rtp_hooks`: the only modules that touch aiortc/aioice private APIs
  (encoded frames, and RTP packets, respectively).
- `relay`: room-level track slots and bounded per-subscriber forwarding (no SDP).
- `rtp_forward`: RTP-level forwarding, media.forwarding = "rtp" (the default).
- `peers`: per-room peer connections, driven by the signalling layer.
"""

from .peers import MediaError, MediaEvent, MediaRoom, ice_servers_for_client
from .relay import ForwardedTrack, RoomTrack, Upstream

__all__ = [
    "ForwardedTrack",
    "MediaError",
    "MediaEvent",
    "MediaRoom",
    "RoomTrack",
    "Upstream",
    "ice_servers_for_client",
]
