"""Debian's WebKitGTK (tests/webkit_driver.py): a browser with getUserMedia but no
RTCPeerConnection. The caller page must see that and offer the photo path (photos, chat,
pushed tutorials) with an explanation, never a dead "connecting"; the agent's console
(Chromium) says why there is no camera."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.async_api import expect

from tests.conftest import free_port
from tests.test_browser_e2e import agent_page, start_session
from tests.webkit_driver import WebKit

pytestmark = pytest.mark.timeout(240)

# Screenshots to look at (docs/testing.md): kept where CALLASSIST_SHOTS says, else in tmp.
SHOTS = os.environ.get("CALLASSIST_SHOTS")

NO_HSCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


@pytest.fixture(scope="module")
async def wk_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    from tests.engine_helpers import module_server

    async with module_server(tmp_path_factory.mktemp("wk")) as server:
        yield server


@pytest.fixture
async def webkit() -> AsyncIterator[WebKit]:
    wk = WebKit()
    try:
        await wk.start(free_port())
        yield wk
    finally:
        await wk.close()


async def shot(wk: WebKit, tmp_path: Path, name: str) -> Path:
    folder = Path(SHOTS) if SHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"webkit-{name}.png"
    await wk.screenshot(path)
    with Image.open(path) as img:
        assert img.size == (390, 844), img.size  # the phone-sized viewport it claims
    return path


def jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (20, 160, 90)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())
    return path


async def test_webkit_caller_gets_the_photo_path(  # type: ignore[no-untyped-def]
    browser, wk_server, webkit: WebKit, tmp_path
) -> None:
    wk = webkit
    agent_ctx, agent = await agent_page(browser, wk_server)
    link = await start_session(agent)
    await wk.goto(link)
    await wk.click("link-open")
    await wk.wait("location.pathname === '/c'")
    assert await wk.eval("typeof RTCPeerConnection") == "undefined"  # the case under test
    assert await wk.eval("window.innerWidth") == 390

    # The notice, in each language, with no horizontal scroll at 390x844.
    await wk.wait("!!document.querySelector('[data-testid=notice-accept]:not([disabled])')")
    await wk.click("lang-en")
    await wk.wait("document.documentElement.lang === 'en'")
    accept = "document.querySelector('[data-testid=notice-accept]').textContent"
    await wk.wait(f"{accept} === 'I agree, continue'", what="the English notice button")
    await wk.click("lang-ru")
    await wk.wait("document.documentElement.lang === 'ru'")
    await wk.wait(f"{accept} === 'Принимаю и продолжаю'", what="the Russian notice button")
    assert await wk.eval(NO_HSCROLL)
    await wk.click("lang-en")
    await wk.wait("document.documentElement.lang === 'en'")
    await shot(wk, tmp_path, "notice")

    # Accepting leads straight to the photo path: no camera button, no "connecting".
    await wk.click("notice-accept")
    await wk.wait_attr("call-state", "data-state", "photos")
    await wk.wait_attr("camera-error", "data-reason", "no_webrtc")
    assert await wk.eval("document.body.dataset.media") == "photos"
    assert "WebRTC" in await wk.eval(
        "document.querySelector('[data-testid=camera-error]').textContent"
    )
    assert await wk.eval("!document.querySelector('[data-testid=start-camera]').offsetParent")
    assert await wk.eval("!document.querySelector('[data-testid=camera-retry]').offsetParent")
    # The agent's console says which case it is.
    camera = agent.get_by_test_id("caller-camera")
    await expect(camera).to_have_attribute("data-reason", "no_webrtc")
    await expect(camera).to_contain_text("WebRTC")
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "accepted"
    )
    assert await wk.eval(NO_HSCROLL)

    # A photo, after the reminder, reaches the agent.
    await wk.click("upload-photo")
    await wk.wait("!!document.querySelector('[data-testid=photo-reminder]').offsetParent")
    await wk.set_file("photo-file", jpeg(tmp_path / "meter.jpg"))
    await wk.wait_attr("photo-status", "data-state", "sent", timeout=20)
    uploaded = agent.locator('[data-testid="photo"][data-kind="upload"]')
    await expect(uploaded).to_have_count(1, timeout=10_000)
    # The "Before you send" box closes once a file was chosen (it stayed open in WebKit).
    assert await wk.eval("!document.querySelector('[data-testid=photo-reminder]').offsetParent")
    await shot(wk, tmp_path, "photo-sent")

    # Chat both ways.
    await agent.get_by_test_id("chat-input").fill("Labdien! Nofotografējiet skaitītāju.")
    await agent.get_by_test_id("chat-send").click()
    await wk.wait("!document.querySelector('[data-testid=chat-badge]').hidden", what="chat badge")
    await wk.click("chat-open")
    await wk.wait(
        "document.querySelector('[data-testid=chat-list]').textContent.includes('skaitītāju')"
    )
    await wk.type_into("chat-input", "Photo sent, see it?")
    await wk.click("chat-send")
    await expect(agent.get_by_test_id("chat-msg")).to_have_count(2)
    await expect(agent.get_by_test_id("chat-msg").last).to_contain_text("Photo sent, see it?")
    await wk.wait(
        "document.querySelector('[data-testid=chat-list]').textContent.includes('see it?')"
    )
    assert await wk.eval(NO_HSCROLL)
    await shot(wk, tmp_path, "chat")
    await wk.click("chat-close")

    # A tutorial the agent pushes is shown, in the caller's language.
    await agent.get_by_test_id("push-tutorial-select").select_option("router-restart")
    await agent.get_by_test_id("push-tutorial").click()
    await wk.wait_attr("push-card", "data-kind", "tutorial")
    await wk.wait(
        "document.querySelector('[data-testid=push-image]').naturalWidth > 0",
        what="the tutorial's picture",
    )
    await asyncio.sleep(0.5)  # painted, for the screenshot
    assert await wk.eval(NO_HSCROLL)
    await shot(wk, tmp_path, "tutorial")

    await agent.get_by_test_id("end-session").click()
    await agent.get_by_test_id("end-session-confirm").click()
    await wk.wait_attr("call-state", "data-state", "ended", timeout=15)
    await agent_ctx.close()
