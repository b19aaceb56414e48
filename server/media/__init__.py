"""Media layer: encoded-frame forwarding between the caller and the agent through aiortc.

- `aiortc_hooks`: the only module that touches aiortc/aioice private APIs.
- `relay`: room-level track slots and bounded per-subscriber forwarding (no SDP).
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
