"""Links and recovery in the real world (issue 15), in real Chromium: the same browser taps
the SMS link again and is back in the call, the agent's "new link" after the link was
opened, the camera restarting by itself after a reload, the agent's placeholder at once
when the caller's tab closed, and the "camera live but no frame here" hint."""

from __future__ import annotations

import asyncio

import aiohttp
from playwright.async_api import expect

from tests.signalling_client import open_link as http_open_link
from tests.test_browser_e2e import (
    agent_page,
    caller_page,
    frames,
    open_link,
    start_session,
    wait_colours,
    wait_frames,
)

QUADRANTS = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]


async def go_live(caller, agent) -> None:  # type: ignore[no-untyped-def]
    await caller.get_by_test_id("notice-accept").click()
    await caller.get_by_test_id("start-camera").click()
    await expect(caller.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=20_000
    )
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS, timeout=20)


async def test_same_browser_taps_the_link_again(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await go_live(caller, agent)

    # The caller closes the tab by accident: the agent's placeholder comes at once (the
    # server's track would end only ~12 s later), not the frozen last frame.
    await caller.close()
    await expect(agent.get_by_test_id("camera-placeholder")).to_be_visible(timeout=4_000)
    await expect(agent.get_by_test_id("camera-placeholder")).to_have_attribute(
        "data-reason", "reconnecting"
    )

    # ... and taps the SMS link again in the same browser: back in the call, the camera
    # restarts by itself (permission granted, notice accepted), no 410 page.
    again = await caller_ctx.new_page()
    response = await again.goto(link)
    assert response is not None and response.status == 200
    assert again.url.endswith("/c")
    await expect(again.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=20_000
    )
    assert await again.evaluate("window.callassist.cameraAutoStarted") is True
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS, timeout=20)
    await expect(agent.get_by_test_id("camera-placeholder")).to_be_hidden()

    # Another browser with the same link still gets the neutral 410 page.
    other_ctx, other = await caller_page(browser)
    response = await other.goto(link)
    assert response is not None and response.status == 410
    await other_ctx.close()
    await agent_ctx.close()
    await caller_ctx.close()


async def test_new_link_after_the_link_was_opened(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    first = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, first)
    await go_live(caller, agent)
    await expect(agent.get_by_test_id("session-link")).to_be_hidden()

    # The caller lost the page in some other browser: the agent issues a new link.
    await agent.get_by_test_id("new-link").click()
    await expect(agent.get_by_test_id("new-link-status")).not_to_be_empty()
    await expect(agent.get_by_test_id("session-link")).to_be_visible()
    second = (await agent.get_by_test_id("session-link").text_content() or "").strip()
    assert "/j/" in second and second != first
    await agent.get_by_test_id("send-sms").click()
    await expect(agent.get_by_test_id("sms-status")).to_have_attribute("data-state", "sent")

    # The old link is revoked, for a fresh browser and for the one that opened it.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as fresh:
        assert await http_open_link(fresh, first) == 410
    response = await caller.goto(first)
    assert response is not None and response.status == 410

    # The new link opens the same session in another browser; the camera comes back.
    new_ctx, new = await caller_page(browser)
    await open_link(new, second)
    await expect(new.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=20_000
    )
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS, timeout=20)
    await expect(agent.get_by_test_id("session-state")).not_to_have_attribute(
        "data-state", "ended"
    )
    await new_ctx.close()
    await agent_ctx.close()
    await caller_ctx.close()


async def test_reload_restarts_the_camera_by_itself(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await go_live(caller, agent)
    before = await frames(agent)

    await caller.reload()
    await expect(caller.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=20_000
    )
    assert await caller.evaluate("window.callassist.cameraAutoStarted") is True
    assert await caller.evaluate("window.__gumCalls") >= 1  # by itself, no tap
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS, timeout=20)
    await wait_frames(agent, min(before, 1), timeout=20)
    await agent_ctx.close()
    await caller_ctx.close()


async def test_reload_without_permission_waits_for_the_tap(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    devices = browser.callassist_devices
    caller_ctx = await browser.new_context(**devices["Pixel 7"])  # no camera grant
    caller = await caller_ctx.new_page()
    await open_link(caller, link)
    await caller.get_by_test_id("notice-accept").click()
    await caller.reload()
    await expect(caller.get_by_test_id("start-camera")).to_be_visible()
    assert await caller.evaluate("window.callassist.gumCalls") == 0
    assert not await caller.evaluate("window.callassist.cameraAutoStarted")
    await agent_ctx.close()
    await caller_ctx.close()


async def test_camera_live_but_no_frame_here_says_so(browser, server) -> None:  # type: ignore[no-untyped-def]
    # The agent's ICE can never succeed (relay only, no TURN server configured): the
    # server receives the caller's camera ("live"), this page gets no frame.
    agent_ctx, agent = await agent_page(browser, server)
    await agent.evaluate("window.callassistIceTransportPolicy = 'relay'")
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await caller.get_by_test_id("notice-accept").click()
    await caller.get_by_test_id("start-camera").click()
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "live", timeout=20_000
    )
    hint = agent.get_by_test_id("camera-noframes")
    await expect(hint).to_be_visible(timeout=20_000)
    await expect(hint).to_contain_text("TURN")
    await expect(agent.get_by_test_id("camera-placeholder")).to_be_hidden()
    await agent_ctx.close()
    await caller_ctx.close()


async def test_set_offline_keeps_media_but_closing_the_pc_is_a_drop(browser, server) -> None:  # type: ignore[no-untyped-def]
    # docs/testing.md, "Simulating a bad network": what outside testers can rely on.
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await go_live(caller, agent)

    # Playwright's offline mode cuts HTTP and WebSockets, not the peer connection.
    await caller_ctx.set_offline(True)
    before = await frames(agent)
    await wait_frames(agent, before + 30, timeout=20)
    await caller_ctx.set_offline(False)

    # Closing the pc in the page is a drop: the page makes a new one by itself.
    pc_before = await caller.evaluate("window.callassist.pcNum")
    await caller.evaluate("window.callassist.pc.close()")
    # (Polled from here: the page's CSP forbids wait_for_function's string evaluation.)
    for _ in range(200):
        now = await caller.evaluate("[window.callassist.pcNum, window.callassist.pcState]")
        if now[0] > pc_before and now[1] == "connected":
            break
        await asyncio.sleep(0.1)
    assert now[0] > pc_before and now[1] == "connected", now
    before = await frames(agent)
    await wait_frames(agent, before + 30, timeout=20)
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS, timeout=20)
    await agent_ctx.close()
    await caller_ctx.close()
