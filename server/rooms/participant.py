"""A participant as the node holding its room sees it.

`Participant` = its state in the room (`ParticipantState`: id, kind, name) + where its
messages go (a `MessageSink`: the signalling socket, or nothing for the recorder) + its
media leg, which the room's `MediaRoom` keeps under the same participant id (a peer
connection for agents, callers and supervisors; a subscription to the camera for the
recorder). A sink is an interface so a socket held by another node can stand in for a
local one (the cluster's signal bridge) without the room knowing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from server.rooms.state import ParticipantState

# Fixed participant ids of the room's two parties; supervisors are "supervisor-<user>-<n>",
# the recorder "recorder-<recording id>".
AGENT = "agent"
CALLER = "caller"


class MessageSink(Protocol):
    """Where one participant's signalling messages go. `send` never blocks."""

    role: str
    participant: str

    def send(self, message: dict[str, Any]) -> None: ...
    def close_soon(self, code: int, reason: str) -> None: ...


@dataclass(eq=False)
class Participant:
    state: ParticipantState
    sink: MessageSink | None = None

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def kind(self) -> str:
        return self.state.kind

    def send(self, message: dict[str, Any]) -> bool:
        if self.sink is None:
            return False
        self.sink.send(message)
        return True
