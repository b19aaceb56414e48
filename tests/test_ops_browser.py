"""The ops page in real Chromium: two live rooms with real media, a silent watch, ending a
room. With CALLASSIST_SHOTS=<dir> it also saves the page at 1280 and 360 px wide."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

import tests.test_ops as ops_t
from tests.conftest import PASSWORD

SHOTS = os.environ.get("CALLASSIST_SHOTS")


async def login(browser: Any, server: Any, name: str, width: int = 1280) -> tuple[Any, Page]:
    # A media grant makes Chromium offer loopback ICE candidates (see test_browser_e2e).
    ctx = await browser.new_context(
        viewport={"width": width, "height": 900}, permissions=["camera"], locale="en-GB"
    )
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.callassist_errors = errors  # type: ignore[attr-defined]
    await page.goto(server.url + "/ops")
    await page.get_by_test_id("login-username").fill(name)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    return ctx, page


async def wait_attr_number(page: Page, selector: str, attr: str, timeout: float = 15) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = 0.0
    while loop.time() < deadline:
        raw = await page.locator(selector).first.get_attribute(attr)
        value = float(raw or 0)
        if value > 0:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"{selector} {attr} stayed {value}")


async def test_ops_page_live_rooms_watch_and_end(browser, server) -> None:  # type: ignore[no-untyped-def]
    await server.add_user("sue", role="supervisor")
    await server.add_user("anna")
    room1 = await ops_t.live_room(server, "anna", "20000012")
    room2 = await ops_t.live_room(server, "boris", "29000034")
    ctx, page = await login(browser, server, "sue")
    try:
        card1 = f'[data-testid="room-card"][data-room-id="{room1["id"]}"]'
        card2 = f'[data-testid="room-card"][data-room-id="{room2["id"]}"]'
        await expect(page.locator(card1)).to_be_visible(timeout=10_000)
        await expect(page.locator(card2)).to_be_visible()
        stream = page.get_by_test_id("ops-stream-state")
        await expect(stream).to_have_attribute("data-state", "live")
        kbps = await wait_attr_number(page, f'{card1} [data-testid="room-bitrate"]', "data-kbps")
        assert kbps > 0
        await wait_attr_number(
            page, f'{card1} [data-testid="room-participant"][data-role="caller"] '
            '[data-testid="participant-in"]', "data-fps",
        )  # fmt: skip
        c1 = page.locator(card1)
        await expect(c1.get_by_test_id("room-phone")).to_have_text("+371 ••••••12")
        await expect(c1.get_by_test_id("room-agent")).to_have_text("anna")
        await expect(c1.get_by_test_id("room-state")).to_have_attribute("data-state", "active")
        await expect(c1.get_by_test_id("room-recording")).to_have_attribute("data-state", "off")
        await expect(
            c1.locator('[data-testid="room-participant"][data-role="caller"]')
        ).to_have_attribute("data-connection", "connected")
        await expect(page.get_by_test_id("total-rooms").locator(".stat-value")).to_have_text("2")
        text = await page.content()
        assert "20000012" not in text and "29000034" not in text
        # The sparkline fills up, one point a second.
        await expect(c1.get_by_test_id("room-sparkline")).to_have_attribute(
            "data-points", re.compile(r"^([3-9]|\d{2,})$"), timeout=10_000
        )

        # A silent watch: the camera plays in the panel.
        await c1.get_by_test_id("room-watch").click()
        await expect(page.get_by_test_id("watch-panel")).to_be_visible()
        await expect(page.get_by_test_id("watch-state")).to_have_attribute(
            "data-state", "connected", timeout=15_000
        )
        for _ in range(75):
            if await page.evaluate(
                "document.querySelector('[data-testid=watch-video]').videoWidth"
            ):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the watched video never played")
        await expect(c1.get_by_test_id("room-bitrate")).to_contain_text("1 watching")

        if SHOTS:
            out = Path(SHOTS)
            os.makedirs(out, exist_ok=True)  # noqa: ASYNC230 - once, before screenshots
            await asyncio.sleep(2)  # a few more sparkline points
            await page.screenshot(path=str(out / "ops-1280.png"), full_page=True)
            await page.set_viewport_size({"width": 360, "height": 780})
            await asyncio.sleep(1.2)
            await page.screenshot(path=str(out / "ops-360.png"), full_page=True)
            await page.get_by_test_id("lang-lv").click()
            await page.screenshot(path=str(out / "ops-360-lv.png"), full_page=True)
            await page.set_viewport_size({"width": 1280, "height": 900})
            await page.get_by_test_id("lang-ru").click()
            await page.screenshot(path=str(out / "ops-1280-ru.png"), full_page=True)
            await page.get_by_test_id("lang-en").click()

        await page.get_by_test_id("watch-stop").click()
        await expect(page.get_by_test_id("watch-panel")).to_be_hidden()

        # End room 2 with a reason: its people get `ended` (ops), its card goes away.
        c2 = page.locator(card2)
        await c2.get_by_test_id("room-end").click()
        await c2.get_by_test_id("room-end-confirm").click()
        await expect(c2.get_by_test_id("room-end-error")).to_be_visible()  # no reason yet
        await c2.get_by_test_id("room-end-reason").fill("test: caller asked to stop")
        await c2.get_by_test_id("room-end-confirm").click()
        ended = await room2["caller"].sig.expect("ended")
        assert ended["reason"] == "ops"
        await expect(page.locator(card2)).to_have_count(0, timeout=5_000)
        await expect(page.locator(card1)).to_be_visible()
        await expect(page.get_by_test_id("total-rooms").locator(".stat-value")).to_have_text("1")
        # No script error and no CSP violation ("Refused to ..."); the 401 of the login probe
        # before logging in is expected.
        errors = page.callassist_errors  # type: ignore[attr-defined]
        assert [e for e in errors if not e.startswith("Failed to load resource")] == []
    finally:
        await ctx.close()
        await ops_t.close_room(room1)
        await ops_t.close_room(room2)

    # An agent logs in to /ops: no access, no data.
    ctx, page = await login(browser, server, "anna")
    try:
        await expect(page.get_by_test_id("ops-forbidden")).to_be_visible()
        await expect(page.get_by_test_id("room-list")).to_be_hidden()
    finally:
        await ctx.close()
