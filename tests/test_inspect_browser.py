"""The agent console's "read" on a photo (web/inspect-agent.js) in real Chromium: a caller
uploads a router label, the agent clicks "read", sees the findings' boxes on the still and
copies the MAC with one click. With CALLASSIST_SHOTS=<dir> it saves the console then."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.signalling_client import Signalling
from tests.test_browser_e2e import agent_page, start_session
from tests.test_inspect import IMEI, MAC, label, png
from tests.test_snapshots import upload

SHOTS = os.environ.get("CALLASSIST_SHOTS")


async def test_agent_reads_a_photo_and_sees_the_findings_on_the_still(
    browser: Any, server: Any
) -> None:
    ctx, page = await agent_page(browser, server)
    await ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    link = await start_session(page)
    sig = await Signalling.caller(server.url, link)
    await sig.send({"type": "accept", "notice": sig.welcome["notice"]["version"]})
    await sig.wait_room(status="accepted")
    status, body = await upload(sig, server, png(label()), **{"Content-Type": "image/png"})
    assert status == 201, body

    photo = page.get_by_test_id("photo")
    await expect(photo).to_have_count(1, timeout=10_000)  # the `photo` message, at once
    await photo.get_by_test_id("inspect-read").click()
    view = page.get_by_test_id("inspect-view")
    await expect(view).to_be_visible(timeout=60_000)
    assert await view.get_attribute("data-photo-id") == body["photo"]["id"]
    rows = view.get_by_test_id("inspect-finding")
    mac = rows.filter(has_text=MAC)
    await expect(mac).to_have_attribute("data-label", "mac")
    await expect(rows.filter(has_text=IMEI)).to_have_attribute("data-label", "imei")
    await expect(rows.filter(has_text="HomeNet_5G")).to_have_attribute("data-label", "wifi")
    assert "s3cret" not in (await view.inner_text())

    # Each finding's box is drawn where it is on the still (the MAC line was drawn at
    # (60, 60) of 1280x720, ~420 px wide).
    img = await view.locator("img").bounding_box()
    boxes = view.get_by_test_id("inspect-box")
    assert await boxes.count() == await rows.count() >= 5
    mac_box = await boxes.and_(view.locator("[data-label=mac]")).bounding_box()
    assert img is not None and mac_box is not None
    sx = img["width"] / 1280
    assert abs((mac_box["x"] - img["x"]) - 60 * sx) < 15 * sx + 2
    assert abs(mac_box["width"] - 420 * sx) < 60 * sx + 4

    if SHOTS:  # a directory the caller of the test made
        await page.screenshot(path=str(Path(SHOTS) / "agent-inspect.png"), full_page=True)

    await boxes.and_(view.locator("[data-label=mac]")).click()  # a click on the box copies
    await expect(mac).to_have_attribute("data-copied", "yes")
    await expect(view.get_by_test_id("inspect-copied")).to_contain_text(MAC)
    assert await page.evaluate("navigator.clipboard.readText()") == MAC

    # "To reference": the IMEI goes into the session's reference, shown on the session card.
    await rows.filter(has_text=IMEI).get_by_test_id("inspect-reference").click()
    await expect(page.get_by_test_id("session-reference")).to_have_text(f"TICKET-7 · {IMEI}")
    await expect(rows.filter(has_text=IMEI)).to_have_attribute("data-referenced", "yes")

    await view.get_by_test_id("inspect-close").click()
    await expect(view).to_have_count(0)
    await sig.close()
    await ctx.close()
