"""The caller's pre-warm in real Chromium (docs/media-performance.md, "First frame"): the
peer connection is up before "start camera" is tapped, the camera is not (no
getUserMedia, the agent still sees "accepted"), and the tap puts the camera on that same
connection. `window.callassistPrewarm = false` is the old order: the tap connects."""

from __future__ import annotations

from playwright.async_api import expect

from tests.impair_call import COLOURS, QUADRANTS
from tests.test_browser_e2e import agent_page, caller_page, open_link, start_session, wait_colours

# A function, not an expression: the page's CSP has no 'unsafe-eval'.
CONNECTED = "() => window.callassist.pcState === 'connected'"


async def test_caller_connects_before_the_tap(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await caller.get_by_test_id("notice-accept").click()
    await caller.wait_for_function(CONNECTED, timeout=20_000)
    # Connected, but no camera: not asked for, not shown as live or "connecting" anywhere.
    assert await caller.evaluate("window.callassist.gumCalls") == 0
    assert await caller.evaluate("window.callassist.pcNum") == 1
    await expect(caller.get_by_test_id("call-state")).to_have_attribute("data-state", "ready")
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "accepted"
    )

    await caller.get_by_test_id("start-camera").click()
    await expect(caller.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=20_000
    )
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS, timeout=20)
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute("data-status", "live")
    assert await caller.evaluate("window.callassist.pcNum") == 1  # the same connection
    await caller_ctx.close()
    await agent_ctx.close()


async def test_without_prewarm_the_tap_connects(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await caller_ctx.add_init_script("window.callassistPrewarm = false;")
    await open_link(caller, link)
    await caller.get_by_test_id("notice-accept").click()
    await expect(caller.get_by_test_id("start-camera")).to_be_visible()
    await caller.wait_for_timeout(1000)
    assert await caller.evaluate("window.callassist.pcNum") == 0  # no connection yet
    await caller.get_by_test_id("start-camera").click()
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS, timeout=20)
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute("data-status", "live")
    await caller_ctx.close()
    await agent_ctx.close()
