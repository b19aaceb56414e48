"""Rooms: the pure state and its events, the router seam, and the recorder as an ordinary
participant whose presence is the room's recording state (what pages and ops show)."""

from __future__ import annotations

import asyncio
from typing import Any

from server.cluster.setup import build_router
from server.core import config as config_mod
from server.recording.service import RECORDING
from server.rooms.manager import ROOMS
from server.rooms.router import LocalRouter
from server.rooms.state import ParticipantState, Room
from tests.media_helpers import wait_for
from tests.test_recorder import caller_with_camera, wait_recording


def _room() -> Room:
    return Room(id="r-1", agent_id=1, agent_name="anna", created_at=0, last_activity=0)


def test_changes_return_their_events() -> None:
    room = _room()
    assert [e.kind for e in room.set_caller_status("opened")] == ["caller_status"]
    assert room.set_caller_status("opened") == []
    kinds = [e.kind for e in room.accept_notice("2026-11-01")]
    assert kinds == ["notice", "caller_status"] and room.caller_status == "accepted"
    assert room.accept_notice("2026-11-01") == []
    events = room.set_track("camera", True, now=3)
    assert [e.kind for e in events] == ["track", "active"] and room.started_at == 3
    assert events[0].data == {"track": "camera", "live": True} and events[0].room is room
    assert [e.kind for e in room.set_track("screen", True, now=4)] == ["track"]
    assert [e.kind for e in room.end("ops", now=5)] == ["ended"]
    assert room.set_track("camera", False, now=6) == [] and room.end("ops", now=7) == []


def test_codec_mismatch_is_in_the_room_message() -> None:
    room = _room()
    assert room.to_message()["codec_mismatch"] == {"camera": None, "screen": None}
    (event,) = room.set_codec_mismatch("screen", "VP8")
    assert event.kind == "codec" and event.data == {"track": "screen", "mismatch": "VP8"}
    assert room.to_message()["codec_mismatch"] == {"camera": None, "screen": "VP8"}
    assert room.set_codec_mismatch("screen", "VP8") == []  # no change, no event
    assert room.set_codec_mismatch("audio", "OPUS") == []  # not a track of a room
    assert [e.kind for e in room.set_codec_mismatch("screen", None)] == ["codec"]
    room.end("ops", now=1)
    assert room.set_codec_mismatch("camera", "H264") == []


def test_participants_and_the_recorder() -> None:
    room = _room()
    assert not room.agent_connected
    (joined,) = room.join(ParticipantState("agent", "agent", 1.0, "anna"))
    assert joined.data == {"id": "agent", "kind": "agent", "joined": True}
    assert room.agent_connected
    assert room.join(ParticipantState("agent", "agent", 2.0, "anna")) == []  # a reconnect
    assert room.recording() == {"active": False, "started_at": None, "warning": None}
    events = room.join(ParticipantState("recorder-x", "recorder", 10.0, recording_id="x"))
    assert [e.kind for e in events] == ["participant", "recording"]
    assert room.recording()["active"] and room.recording()["started_at"] == "1970-01-01T00:00:10Z"
    assert [e.kind for e in room.set_warning("recorder-x", "spool_over_limit")] == ["recording"]
    assert room.to_message()["recording"]["warning"] == "spool_over_limit"
    assert room.set_warning("recorder-x", "spool_over_limit") == []
    assert [e.kind for e in room.leave("recorder-x")] == ["participant", "recording"]
    assert not room.recording()["active"] and room.leave("recorder-x") == []
    room.join(ParticipantState("recorder-y", "recorder", 11.0))
    room.end("agent_ended", 12.0)
    assert room.recorder is None and room.agent_connected  # sockets are closed by the manager


async def test_local_router_places_rooms_here_and_delivers() -> None:
    router = LocalRouter("node-a")
    assert await router.node_for("r-1") is None
    await router.claim("r-1")
    assert await router.node_for("r-1") == "node-a"
    got: list[Any] = []
    router.deliver_to(lambda room, pid, msg: got.append((room, pid, msg)) or True)
    assert await router.send("r-1", "agent", {"type": "pong"})
    assert got == [("r-1", "agent", {"type": "pong"})]
    await router.release("r-1")
    assert await router.node_for("r-1") is None
    cfg = config_mod.from_dict({"cluster": {"node_id": "n1"}})
    assert build_router(cfg).node_id == "n1"


async def test_recorder_is_a_participant_and_ops_shows_the_recording(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(recording={"segment_s": 1.0})
    agent = await server.agent()
    caller, sid = await caller_with_camera(server, agent)
    await server.add_user("sam", "supervisor")
    ops = await server.agent("sam")

    async def ops_snapshot(state: str) -> dict[str, Any]:
        """The ops snapshot once it shows the room's recording in `state` (it is sampled
        once a second)."""
        for _ in range(100):
            status, snap = await ops.get("/api/ops/snapshot")
            assert status == 200, snap
            room = next(r for r in snap["rooms"] if r["id"] == sid)
            if room["recording"]["state"] == state:
                return snap
            await asyncio.sleep(0.1)
        raise AssertionError(f"ops never showed recording {state}: {room['recording']}")

    async def ops_room(state: str) -> dict[str, Any]:
        return next(r for r in (await ops_snapshot(state))["rooms"] if r["id"] == sid)

    assert (await ops_room("off"))["recording"] == {"state": "off", "spool_bytes": 0}
    status, body = await agent.post(f"/api/sessions/{sid}/recording", {"action": "start"})
    assert status == 200 and body["recording"]["active"], body
    await wait_recording(caller.sig, True)
    rec_id = server.app[RECORDING].active[sid].recorder.id
    live = server.app[ROOMS].get(sid)
    assert f"recorder-{rec_id}" in live.participants
    room = await ops_room("recording")
    assert room["recording"]["state"] == "recording" and room["recording"]["id"] == rec_id
    assert {"id": f"recorder-{rec_id}", "role": "recorder"}.items() <= next(
        p for p in room["participants"] if p["role"] == "recorder"
    ).items()
    snap = await ops_snapshot("recording")
    assert snap["recording"]["state"] == "recording" and snap["recording"]["rooms"] == 1

    await agent.post(f"/api/sessions/{sid}/recording", {"action": "stop"})
    await wait_recording(caller.sig, False)
    await wait_for(lambda: f"recorder-{rec_id}" not in live.participants, 5, "recorder left")
    assert (await ops_room("off"))["recording"] == {"state": "off", "spool_bytes": 0}
    await caller.close()
