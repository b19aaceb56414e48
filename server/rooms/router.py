"""The router: which node holds a room, and how a message reaches a participant.

LiveKit's `routing.Router` is the model. The room manager claims a room when it opens it
and releases it when it ends; signalling asks the router where a room lives before it
serves a socket, and sends to a participant through the router, which delivers to the
node holding that participant's socket. `LocalRouter` (the embedded default) holds all of
it in this process; a cluster router (Redis) implements the same interface, chosen by
`cluster.router`, so no caller changes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, Protocol

# A message for a participant held on this node: (room id, participant id, message).
Deliver = Callable[[str, str, dict[str, Any]], bool]


class RoomTaken(Exception):
    """Another node holds this room."""


class Router(Protocol):
    node_id: str

    async def claim(self, room_id: str) -> None:
        """Place the room on this node; RoomTaken when another node holds it."""

    async def release(self, room_id: str) -> None:
        """The room ended here: forget where it lived."""

    async def node_for(self, room_id: str) -> str | None:
        """The node holding the room, None when no node does (ended, or never opened)."""

    def deliver_to(self, deliver: Deliver) -> None:
        """Where messages for participants held on this node go (the message source)."""

    async def send(self, room_id: str, participant_id: str, message: dict[str, Any]) -> bool:
        """Send to a participant wherever its socket is (the message sink); False when it
        is connected nowhere."""


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class LocalRouter:
    """One node: every room and every socket is in this process."""

    def __init__(self, node_id: str = "") -> None:
        self.node_id = node_id or default_node_id()
        self._rooms: set[str] = set()
        self._deliver: Deliver | None = None

    async def claim(self, room_id: str) -> None:
        self._rooms.add(room_id)

    async def release(self, room_id: str) -> None:
        self._rooms.discard(room_id)

    async def node_for(self, room_id: str) -> str | None:
        return self.node_id if room_id in self._rooms else None

    def deliver_to(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def send(self, room_id: str, participant_id: str, message: dict[str, Any]) -> bool:
        return self._deliver is not None and self._deliver(room_id, participant_id, message)
