"""The caller's page says why it cannot share the camera (signalling `media` with state
"unavailable"); the room shows it to the agent until a camera goes live (pure logic), and
a busy camera in Chromium ("other") reaches the agent's console."""

from __future__ import annotations

import json

import pytest
from playwright.async_api import expect

from server.rooms.state import Room
from server.signalling import messages as M
from tests.test_browser_e2e import agent_page, caller_page, open_link, start_session


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


# A camera another app holds: Chromium's fake device is never busy, so getUserMedia is made
# to fail as a busy camera does (NotReadableError) — the one reason no real device here
# can produce.
BUSY_CAMERA = """(() => {
  const md = navigator.mediaDevices;
  md.getUserMedia = () => Promise.reject(new DOMException("Could not start video source",
                                                          "NotReadableError"));
})();"""


async def test_busy_camera_is_other_and_the_agent_is_told(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    ctx, page = await caller_page(browser)
    await ctx.add_init_script(BUSY_CAMERA)
    await open_link(page, link)
    await page.get_by_test_id("notice-accept").click()
    await page.get_by_test_id("start-camera").click()
    await expect(page.get_by_test_id("camera-error")).to_have_attribute("data-reason", "other")
    await expect(page.get_by_test_id("camera-retry")).to_be_visible()
    await expect(page.get_by_test_id("call-state")).to_have_attribute("data-state", "photos")
    camera = agent.get_by_test_id("caller-camera")
    await expect(camera).to_have_attribute("data-reason", "other")
    await expect(camera).to_contain_text("Photos and chat work.")  # the agent's English
    await ctx.close()
    await agent_ctx.close()
