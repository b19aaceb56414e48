"""Debian's Firefox ESR, a real second engine (tests/firefox_driver.py, WebDriver BiDi):
the caller in Firefox with the agent in Chromium, and the agent console in Firefox with
the caller in Chromium. Media both ways, checked on the pixels."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.conftest import PASSWORD, free_port
from tests.firefox_driver import Firefox
from tests.test_browser_e2e import SAMPLE, agent_page, caller_page, open_link, start_session

pytestmark = pytest.mark.timeout(240)

CENTRE = [(0.5, 0.5), (0.25, 0.25)]


@pytest.fixture(scope="module")
async def ff_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """One server for the module: starting Firefox is the slow part, not the server."""
    from tests.engine_helpers import module_server

    async with module_server(tmp_path_factory.mktemp("ff")) as server:
        yield server


@pytest.fixture
async def firefox() -> AsyncIterator[Firefox]:
    ff = Firefox()
    await ff.start(free_port())
    yield ff
    await ff.close()


async def ff_sample(ff: Firefox, testid: str) -> list[list[int]] | None:
    return await ff.js(f"return ({SAMPLE})(JSON.parse(arguments[0]));", [testid, CENTRE])  # type: ignore[no-any-return]


def lit(rgb: list[int]) -> bool:
    return sum(rgb) > 60


async def moving_picture(sample: Any, what: str, timeout: float = 20) -> None:
    """Frames arrive and change: two samples a moment apart differ, neither is black.
    (Firefox's fake camera is a solid colour that keeps changing.)"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: list[Any] = []
    while loop.time() < deadline:
        got = await sample()
        if got and all(lit(p) for p in got):
            seen.append(got)
            if len({json.dumps(s) for s in seen}) >= 2:
                return
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what}: no changing non-black picture in {timeout}s: {seen[-3:]}")


async def test_caller_in_firefox(browser, ff_server, firefox: Firefox) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, ff_server)
    link = await start_session(agent)
    ff = firefox
    await ff.goto(link)
    await ff.click("link-open")
    await ff.wait("location.pathname === '/c'")
    await ff.click("notice-accept")
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "accepted"
    )
    await ff.click("start-camera")
    await ff.wait_attr("call-state", "data-state", "live", timeout=30)
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "live", timeout=15_000
    )
    # What Firefox's fake camera shows reaches the agent's <video>, and keeps moving.
    await moving_picture(
        lambda: agent.evaluate(SAMPLE, ["camera-video", CENTRE]), "agent's camera-video"
    )

    # The agent's screen (this tab, painted magenta) reaches the caller in Firefox.
    await agent.evaluate(
        """() => { const d = document.createElement('div');
        d.id = 'paint'; d.style.position = 'fixed'; d.style.inset = '0';
        d.style.background = 'rgb(255, 0, 255)'; d.style.zIndex = '99999';
        d.style.pointerEvents = 'none'; document.body.appendChild(d); }"""
    )
    await agent.get_by_test_id("share-screen").click()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 25
    got = None
    while loop.time() < deadline:
        got = await ff_sample(ff, "screen-video")
        if got and all(abs(a - b) <= 60 for a, b in zip(got[0], (255, 0, 255), strict=True)):
            break
        await asyncio.sleep(0.3)
    else:
        raise AssertionError(f"Firefox never showed the agent's magenta screen: {got}")
    await agent.evaluate("() => document.getElementById('paint').remove()")

    await agent.get_by_test_id("end-session").click()
    await agent.get_by_test_id("end-session-confirm").click()
    await ff.wait_attr("call-state", "data-state", "ended", timeout=15)
    await agent_ctx.close()


async def ff_login(ff: Firefox, server: Any, name: str) -> None:
    if await server.db.user_by_name(name) is None:
        await server.add_user(name)
    await ff.goto(server.url + "/agent")
    await ff.fill("login-username", name)
    await ff.fill("login-password", PASSWORD)
    await ff.click("login-submit")
    await ff.wait(
        "(e => !!(e && e.offsetParent))(document.querySelector('[data-testid=new-session-phone]'))",
        what="the console after login",
    )


@pytest.fixture
async def firefox_on_screen() -> AsyncIterator[Firefox]:
    """Firefox full screen on a private Xvfb (the agent console's size): headless Firefox
    has no screen, so getDisplayMedia fails there with NotFoundError (docs/compatibility.md)."""
    ff = Firefox()
    await ff.start(free_port(), viewport=(1280, 800), xvfb=True)
    yield ff
    await ff.close()


def magenta(rgb: list[int]) -> bool:
    # Loose: Firefox's X11 capture of rgb(255, 0, 255) arrives as about (193, 53, 168).
    r, g, b = rgb
    return r - g > 80 and b - g > 60


async def test_agent_console_in_firefox(  # type: ignore[no-untyped-def]
    browser, ff_server, firefox_on_screen: Firefox
) -> None:
    ff = firefox_on_screen
    await ff_login(ff, ff_server, "fiona")
    await ff.fill("new-session-phone", "20000013")
    await ff.fill("new-session-reference", "FF-1")
    await ff.click("new-session-submit")
    link = await ff.wait(
        """(() => { const e = document.querySelector('[data-testid=session-link]');
        const text = e ? e.value || e.textContent || '' : '';
        const m = text.match(/https?:\\/\\/\\S+\\/j\\/[A-Za-z0-9_-]+/);
        return m && m[0]; })()""",
        what="the session link",
    )
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await ff.wait_attr("caller-progress", "data-status", "opened")
    await caller.get_by_test_id("notice-accept").click()
    await caller.get_by_test_id("start-camera").click()
    await ff.wait_attr("caller-progress", "data-status", "live", timeout=30)
    # Chromium's fake camera file: red, green / blue, white quadrants, decoded by Firefox.
    await wait_ff_quadrants(ff)

    # The agent shares its screen from Firefox (no picker: media.navigator.permission.
    # disabled takes the primary monitor); the console is painted magenta, full screen, so
    # the caller in Chromium must see magenta, not black.
    await ff.js(
        """const d = document.createElement('div');
        d.id = 'paint'; d.style.position = 'fixed'; d.style.inset = '0';
        d.style.background = 'rgb(255, 0, 255)'; d.style.zIndex = '99999';
        d.style.pointerEvents = 'none'; document.body.appendChild(d); return true;"""
    )
    # Firefox has neither Element nor Region Capture: no share-area option (issue #16).
    assert await ff.js(
        "return document.querySelector('[data-testid=share-area-open]').hidden"
        " && typeof CropTarget === 'undefined';"
    )
    await ff.click("share-screen")
    await expect(caller.get_by_test_id("call-stage")).to_have_attribute(
        "data-screen", "on", timeout=15_000
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 25
    got = None
    while loop.time() < deadline:
        got = await caller.evaluate(SAMPLE, ["screen-video", CENTRE])
        if got and all(magenta(p) for p in got):
            break
        await asyncio.sleep(0.3)
    else:
        raise AssertionError(f"the caller never saw the Firefox agent's magenta screen: {got}")
    await ff.js("document.getElementById('paint').remove(); return true;")
    await end_from_ff(ff, caller)
    await caller_ctx.close()


async def wait_ff_quadrants(ff: Firefox, timeout: float = 20) -> None:
    points = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
    want = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got = None
    while loop.time() < deadline:
        got = await ff.js(f"return ({SAMPLE})(JSON.parse(arguments[0]));", ["camera-video", points])
        if got and all(
            all(abs(a - b) <= 60 for a, b in zip(g, w, strict=True))
            for g, w in zip(got, want, strict=True)
        ):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"Firefox agent: wanted the quadrants, last sampled {got}")


async def end_from_ff(ff: Firefox, caller: Page) -> None:
    await ff.click("end-session")
    await ff.click("end-session-confirm")
    await expect(caller.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "ended", timeout=10_000
    )


async def test_firefox_without_a_camera(browser, ff_server) -> None:  # type: ignore[no-untyped-def]
    # No fake camera and no real one on this machine: getUserMedia finds no device.
    ff = Firefox(**{"media.navigator.streams.fake": False})
    await ff.start(free_port())
    try:
        agent_ctx, agent = await agent_page(browser, ff_server)
        link = await start_session(agent)
        await ff.goto(link)
        await ff.click("link-open")
        await ff.wait("location.pathname === '/c'")
        await ff.click("notice-accept")
        await ff.click("start-camera")
        await ff.wait_attr("camera-error", "data-reason", "missing")
        await ff.wait_attr("call-state", "data-state", "photos")
        await ff.wait("!!document.querySelector('[data-testid=upload-photo]').offsetParent")
        await expect(agent.get_by_test_id("caller-camera")).to_have_attribute(
            "data-reason", "missing"
        )
        await agent_ctx.close()
    finally:
        await ff.close()
