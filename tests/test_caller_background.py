"""The caller's page back from the background (Chromium): iOS ends the camera track while
the page is hidden, often without an "ended" event. Coming back, the page gets the camera
again by itself (no tap) and frames reach the agent again; if the browser now refuses
without a gesture, the "camera-stopped" note and its button are there, not an error."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page, expect

from tests.test_browser_e2e import (
    agent_page,
    caller_page,
    frames,
    open_link,
    start_session,
    wait_colours,
    wait_frames,
)
from tests.test_relink import COLOURS, QUADRANTS, go_live

# Headless Chromium is always "visible": override what the page reads and fire the event,
# as a phone does when the caller switches apps and back.
VISIBILITY = """(state) => {
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
  Object.defineProperty(document, "hidden", {configurable: true, get: () => state === "hidden"});
  document.dispatchEvent(new Event("visibilitychange"));
}"""

# What iOS does in the background: the track ends. stop() fires no "ended" event, which is
# the harder case (the page must look at readyState when it is visible again). Taking the
# grant away (clear_permissions) may already have ended it, with an event.
KILL_CAMERA = "() => { const t = window.callassist.cameraTrack; if (t) t.stop(); }"


async def until(page: Page, js: str, timeout: float = 10) -> None:
    """Poll a predicate (wait_for_function evaluates a string: the page's CSP forbids it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await page.evaluate(f"() => !!({js})"):
        assert loop.time() < deadline, f"not true in {timeout}s: {js}"
        await asyncio.sleep(0.1)


async def background_and_back(caller: Page, agent: Page) -> int:
    """Hide the page, end its camera, check the agent gets no more frames; show it again.
    Returns the agent's decoded frame count before it came back."""
    await caller.evaluate(VISIBILITY, "hidden")
    await caller.evaluate(KILL_CAMERA)
    await asyncio.sleep(1.0)  # frames already in flight arrive
    stalled = await frames(agent)
    await asyncio.sleep(1.5)
    assert await frames(agent) - stalled < 5, "frames kept coming with the camera ended"
    await caller.evaluate(VISIBILITY, "visible")
    return stalled


async def test_camera_restarts_after_background(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await go_live(caller, agent)
    taps = await caller.evaluate("window.__gumCalls")

    # Back from the background: a new camera, by itself, onto the same connection.
    stalled = await background_and_back(caller, agent)
    await until(
        caller,
        "window.callassist.cameraRestarts === 1 && window.callassist.cameraTrack"
        " && window.callassist.cameraTrack.readyState === 'live'",
    )
    assert await caller.evaluate("window.__gumCalls") == taps + 1
    await expect(caller.get_by_test_id("camera-stopped")).to_be_hidden()
    await expect(caller.get_by_test_id("call-state")).to_have_attribute("data-state", "live")
    await wait_frames(agent, stalled + 20, timeout=15)
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS)

    # The browser refuses a camera without a gesture now (modelled by taking the grant
    # away): the page tried once, quietly; the note and the button are shown, no error.
    await caller_ctx.clear_permissions()
    await background_and_back(caller, agent)
    await until(caller, "window.callassist.cameraRestarts === 2")
    await expect(caller.get_by_test_id("camera-stopped")).to_be_visible(timeout=10_000)
    await expect(caller.get_by_test_id("camera-error")).to_be_hidden()
    await expect(caller.get_by_test_id("start-camera")).to_be_enabled()

    # The caller's tap (permission back) brings the camera back to the agent.
    await caller_ctx.grant_permissions(["camera"])
    before = await frames(agent)
    await caller.get_by_test_id("start-camera").click()
    await wait_frames(agent, before + 20, timeout=15)
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS)
    await agent_ctx.close()
    await caller_ctx.close()
