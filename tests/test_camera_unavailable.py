"""The caller's page says why it cannot share the camera (signalling `media` with state
"unavailable"); the room shows it to the agent until a camera goes live (pure logic)."""

from __future__ import annotations

import json

import pytest

from server.rooms.state import Room
from server.signalling import messages as M


def media(**fields: object) -> str:
    return json.dumps({"type": "media", "track": "camera", **fields})


@pytest.mark.parametrize("reason", sorted(M.CAMERA_UNAVAILABLE))
def test_each_reason_parses(reason: str) -> None:
    msg = M.parse(media(state="unavailable", reason=reason), "caller")
    assert msg.data["reason"] == reason


@pytest.mark.parametrize(
    ("raw", "role"),
    [
        (media(state="unavailable"), "caller"),  # no reason
        (media(state="unavailable", reason="broken"), "caller"),  # not a known reason
        (media(state="unavailable", reason=["denied"]), "caller"),
        (json.dumps({"type": "media", "track": "screen", "state": "unavailable",
                     "reason": "denied"}), "agent"),  # only a caller says it
    ],
)  # fmt: skip
def test_bad_unavailable_is_refused(raw: str, role: str) -> None:
    with pytest.raises(M.ProtocolError) as err:
        M.parse(raw, role)
    assert err.value.code in (M.BAD_MESSAGE, M.NOT_ALLOWED)


def test_room_shows_the_reason_until_the_camera_is_live() -> None:
    room = Room(id="r1", agent_id=1, agent_name="anna", created_at=0.0, last_activity=0.0)
    assert room.to_message()["caller"]["camera_unavailable"] is None
    events = room.set_camera_unavailable("no_webrtc")
    assert [e.kind for e in events] == ["camera"]
    assert room.to_message()["caller"]["camera_unavailable"] == "no_webrtc"
    assert room.set_camera_unavailable("no_webrtc") == []  # nothing changed
    events = room.set_track("camera", True, 1.0)
    assert "camera" in [e.kind for e in events]
    assert room.to_message()["caller"]["camera_unavailable"] is None
