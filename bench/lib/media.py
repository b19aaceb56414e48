"""The project's media internals the benches use: imported here and nowhere else in
bench/, so a change to server/media/ is adapted in this file alone.

Importing it changes nothing in aiortc (the hooks patch only when called), so a baseline
process that imports it for `FORWARDINGS` still runs aiortc as shipped.
"""

from __future__ import annotations

from typing import Any

from server.core.config import MediaConfig
from server.media import aiortc_hooks, rtp_hooks
from server.media.peers import MediaRoom

__all__ = [
    "FORWARDINGS",
    "MediaConfig",
    "MediaRoom",
    "aiortc_hooks",
    "camera_source",
    "loopback",
    "loopback_ice",
    "rtp_hooks",
]

# The `media.forwarding` values a bench can ask for (server/core/config.py accepts these).
FORWARDINGS = ("rtp",)


def loopback(**overrides: Any) -> MediaConfig:
    """The media config as shipped, with ICE on loopback only: a bench's clients are
    aiortc peers on the same machine."""
    # Loopback candidates are refused by default (a real deployment): the bench runs on lo.
    overrides.setdefault("allow_loopback_candidates", True)
    return MediaConfig(ice_host_addresses=["127.0.0.1"], **overrides)


def loopback_ice() -> None:
    """ICE candidates on 127.0.0.1 only for every peer connection of this process (a
    bench's clients: the server they talk to is on loopback)."""
    aiortc_hooks.install(["127.0.0.1"])


def camera_source(room: MediaRoom) -> Any:
    """What a recorder participant subscribes to in a room: the caller's camera slot."""
    return room.tracks["camera"]
