"""The design pass's second round (issue #16, items 1, 4, 6), in real Chromium: the
tutorial card fits a 360x800 and a 390x844 phone in lv/en/ru with a toolkit note shown,
a pushed image carries the agent's title (or the generic one, never a file name), and the
console shares a phone-sized "share area" of itself by Region Capture, so the caller
receives frames of the panel's shape. Screenshots of every caller view at 390x844 in
lv/en/ru go to /tmp/design2/ (look at them after a layout change).

This module launches its own Chromium WITHOUT --disable-gpu: headless Chromium crops a
self-capture (`track.cropTo`) only with a compositor (SwiftShader here); with
--disable-gpu cropTo resolves but the frames stay the whole tab. One live session is
shared by the tests, which run in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Page, expect

from server.http.app import create_app
from tests import conftest
from tests.test_browser_e2e import COUNT_GUM, agent_page, open_link, start_session
from tests.test_design import inside_viewport
from tests.test_toolkit_browser import TUTORIAL_PNG

SHOTS = Path("/tmp/design2")
PHONES = ((360, 800), (390, 844))
LANGS = ("lv", "en", "ru")
TUTORIAL_TITLE = {"lv": "Maršrutētāja restartēšana", "en": "Restart the router",
                  "ru": "Перезагрузка роутера"}
CARD_PARTS = ("push-title", "push-image", "push-text", "step-back", "step-label", "step-next",
              "push-close")


@dataclass
class Call:
    server: conftest.Server
    agent: Page
    caller: Page


async def shot(page: Page, name: str) -> None:
    await asyncio.sleep(0.3)  # let a transition or a video frame settle
    await page.screenshot(path=str(SHOTS / f"{name}.png"))


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


async def box(page: Page, testid: str) -> dict[str, float]:
    b = await page.get_by_test_id(testid).bounding_box()
    assert b is not None, f"{testid} is not shown"
    return b


@pytest.fixture(scope="module")
async def gpu_browser(fake_camera: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    args = [a for a in conftest.chromium_args(fake_camera) if a != "--disable-gpu"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=conftest.CHROMIUM, headless=True, args=args
        )
        browser.callassist_devices = pw.devices  # type: ignore[attr-defined]
        yield browser
        await browser.close()


@pytest.fixture(scope="module")
async def call(gpu_browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    port = conftest.free_port()
    cfg = conftest.test_config(port)
    data_dir = tmp_path_factory.mktemp("design2")
    clock = conftest.FakeClock()
    app = create_app(cfg, data_dir, clock=clock)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server = conftest.Server(f"http://127.0.0.1:{port}", port, app, data_dir, cfg, clock)
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    agent_ctx, agent = await agent_page(gpu_browser, server)
    await agent.get_by_test_id("lang-lv").click()
    link = await start_session(agent)
    devices = gpu_browser.callassist_devices
    phone = {**devices["Pixel 7"], "viewport": {"width": 390, "height": 844}}
    caller_ctx = await gpu_browser.new_context(**phone, permissions=["camera"])
    await caller_ctx.add_init_script(COUNT_GUM)
    caller = await caller_ctx.new_page()
    await open_link(caller, link)
    yield Call(server, agent, caller)
    await agent_ctx.close()
    await caller_ctx.close()
    await runner.cleanup()


async def each_lang(page: Page, name: str) -> None:
    for lang in LANGS:
        await page.get_by_test_id(f"lang-{lang}").click()
        await shot(page, f"{name}-{lang}-390x844")
    await page.get_by_test_id("lang-lv").click()


async def test_notice_ready_live_shots(call: Call) -> None:
    caller = call.caller
    await expect(caller.get_by_test_id("notice-accept")).to_be_enabled()
    await each_lang(caller, "caller-notice")
    await caller.get_by_test_id("notice-accept").click()
    await expect(caller.get_by_test_id("start-camera")).to_be_visible()
    await each_lang(caller, "caller-ready")
    await caller.get_by_test_id("start-camera").click()
    state = caller.get_by_test_id("call-state")
    await expect(state).to_have_attribute("data-state", "live", timeout=15_000)
    await caller.wait_for_function("() => !!window.callassistToolkit", timeout=10_000)
    await expect(call.agent.get_by_test_id("video-caller-state")).to_have_attribute(
        "data-state", "live", timeout=15_000
    )
    await each_lang(caller, "caller-live")
    for testid in ("pause-camera", "leave", "chat-open", "freeze"):
        await inside_viewport(caller, testid)


async def card_fits(caller: Page, where: Any) -> None:
    """Every part of the card is on screen and inside the card, nothing scrolled away."""
    c = await box(caller, "push-card")
    for testid in CARD_PARTS:
        await inside_viewport(caller, testid)
        p = await box(caller, testid)
        assert c["y"] - 1 <= p["y"] and p["y"] + p["height"] <= c["y"] + c["height"] + 1, (
            where, testid, p, c)
    clipped = await caller.get_by_test_id("push-card").evaluate(
        "c => c.scrollHeight - c.clientHeight")
    assert clipped <= 1, (where, clipped)


async def test_tutorial_card_fits_the_phone(call: Call) -> None:
    agent, caller = call.agent, call.caller
    await agent.get_by_test_id("push-tutorial-select").select_option("router-restart")
    await agent.get_by_test_id("push-tutorial").click()
    card = caller.get_by_test_id("push-card")
    await expect(card).to_have_attribute("data-kind", "tutorial")
    await caller.wait_for_function(
        "() => document.querySelector('[data-testid=push-image]').naturalWidth === 480"
    )
    for width, height in PHONES:
        await caller.set_viewport_size({"width": width, "height": height})
        for lang in LANGS:
            await caller.get_by_test_id(f"lang-{lang}").click()
            await expect(caller.get_by_test_id("push-title")).to_have_text(TUTORIAL_TITLE[lang])
            await asyncio.sleep(0.2)
            name = f"caller-tutorial-{lang}-{width}x{height}"
            await shot(caller, name)  # before the checks: a failure leaves its picture
            await card_fits(caller, (width, lang))
    # A note of the toolkit ("Atkal parasts video") while the card is open, as the tester
    # saw it: the agent switches the video mode and back. It must not cover the title.
    await caller.set_viewport_size({"width": 360, "height": 800})
    await caller.get_by_test_id("lang-lv").click()
    mode = agent.get_by_test_id("cam-mode")
    await mode.select_option("low")
    await expect(caller.get_by_test_id("camera-changes")).to_be_visible(timeout=10_000)
    await mode.select_option("normal")
    note = caller.get_by_test_id("toolkit-note")
    await expect(note).to_have_text("Atkal parasts video", timeout=10_000)
    await shot(caller, "caller-tutorial-note-lv-360x800")
    assert not overlaps(await box(caller, "toolkit-note"), await box(caller, "push-title"))
    await card_fits(caller, "note")
    await caller.set_viewport_size({"width": 390, "height": 844})
    await caller.get_by_test_id("lang-lv").click()
    await caller.get_by_test_id("push-close").click()
    await expect(card).to_be_hidden()


async def test_pushed_image_title(call: Call) -> None:
    agent, caller = call.agent, call.caller
    png = TUTORIAL_PNG
    title = caller.get_by_test_id("push-title")
    # The agent names the picture: the caller reads that name.
    await agent.get_by_test_id("push-image-title").fill("Rūtera aizmugure")
    await agent.get_by_test_id("push-image-file").set_input_files(str(png))
    await expect(caller.get_by_test_id("push-card")).to_have_attribute("data-kind", "image")
    await expect(title).to_have_text("Rūtera aizmugure")
    await expect(agent.get_by_test_id("push-image-title")).to_have_value("")
    await expect(agent.get_by_test_id("push-item").first).to_contain_text("Rūtera aizmugure")
    await caller.get_by_test_id("push-close").click()
    # No title given: the generic line, never the agent's file name.
    await agent.get_by_test_id("push-image-file").set_input_files(str(png))
    await expect(caller.get_by_test_id("push-card")).to_be_visible()
    await expect(title).to_have_text("Konsultants nosūtīja attēlu")
    await expect(caller.get_by_test_id("push-card")).not_to_contain_text("3.png")
    await expect(agent.get_by_test_id("push-item").first).not_to_contain_text("3.png")
    await caller.get_by_test_id("push-close").click()


async def caller_frame(caller: Page) -> tuple[int, int]:
    """The size of the caller's screen frames once they are the panel's (portrait) shape."""
    size = await caller.wait_for_function(
        """() => { const v = document.querySelector('[data-testid=screen-video]');
             return v.videoWidth && v.videoWidth / v.videoHeight < 0.7
               ? [v.videoWidth, v.videoHeight] : null; }""",
        timeout=15_000,
    )
    w, h = await size.json_value()
    return w, h


async def test_share_area_is_phone_sized(call: Call) -> None:
    agent, caller = call.agent, call.caller
    opener = agent.get_by_test_id("share-area-open")
    await expect(opener).to_be_visible()
    await opener.click()
    area = agent.get_by_test_id("share-area")
    await expect(area).to_be_visible()
    await expect(agent.get_by_test_id("share-area-notes")).to_be_focused()
    for testid in ("share-area", "share-area-content", "share-area-share", "share-area-close"):
        await inside_viewport(agent, testid)
    b = await box(agent, "share-area-content")
    # A phone's shape (390x844), as large as the window allows.
    assert abs(b["width"] / b["height"] - 390 / 844) < 0.01, b
    assert b["height"] >= 800 * 0.65, b
    # A tutorial step and a line of text in the area, then share it.
    await agent.get_by_test_id("share-area-tutorial").select_option("router-restart")
    await expect(agent.get_by_test_id("share-area-image")).to_be_visible()
    await expect(agent.get_by_test_id("share-area-step")).to_have_text("1. solis no 3")
    await agent.get_by_test_id("share-area-next").click()
    await expect(agent.get_by_test_id("share-area-text")).to_contain_text("30 sekundes")
    await agent.get_by_test_id("share-area-notes").fill("Pagaidiet 30 sekundes.")
    await shot(agent, "agent-share-area-lv-1280x800")
    for method, label in (("element", "element"), ("crop", "region")):
        await agent.evaluate(f"() => window.callassistShareAreaMethod = '{method}'")
        await agent.get_by_test_id("share-area-share").click()
        await expect(caller.get_by_test_id("call-stage")).to_have_attribute("data-screen", "on")
        await expect(area).to_have_attribute("data-cropped", "yes")
        await expect(area).to_have_attribute("data-method", label)
        # The caller's frames are the panel, at its size: not the 1280x800 tab's.
        w, h = await caller_frame(caller)
        assert abs(w - b["width"]) <= 2 and abs(h - b["height"]) <= 2, (label, w, h, b)
        if label == "element":
            await each_lang(caller, "caller-shared-area")
        await agent.get_by_test_id("stop-share").click()
        await expect(caller.locator("body")).to_have_attribute("data-screen", "off")
        await expect(area).to_have_attribute("data-cropped", "no")
    # A larger window: the full 390x844 minus what the controls need, same shape.
    await agent.set_viewport_size({"width": 1920, "height": 1080})
    big = await box(agent, "share-area-content")
    assert abs(big["width"] / big["height"] - 390 / 844) < 0.01 and big["height"] > 800, big
    await inside_viewport(agent, "share-area")
    await shot(agent, "agent-share-area-lv-1920x1080")
    await agent.set_viewport_size({"width": 1280, "height": 800})
    # Closing the panel while it is shared ends the share.
    await agent.get_by_test_id("share-area-share").click()
    await expect(caller.locator("body")).to_have_attribute("data-screen", "on")
    await agent.get_by_test_id("share-area-close").click()
    await expect(area).to_be_hidden()
    await expect(caller.locator("body")).to_have_attribute("data-screen", "off")
    await expect(agent.get_by_test_id("share-screen")).to_be_visible()


async def test_shared_tab_and_ended_shots(call: Call) -> None:
    agent, caller = call.agent, call.caller
    await agent.get_by_test_id("share-screen").click()
    await expect(caller.locator("body")).to_have_attribute("data-screen", "on")
    # The whole 1280x800 tab (landscape frames), not the last frame of the area's share.
    await caller.wait_for_function(
        "() => { const v = document.querySelector('[data-testid=screen-video]');"
        " return v.videoWidth > v.videoHeight; }", timeout=15_000
    )
    await each_lang(caller, "caller-shared-screen")
    await agent.get_by_test_id("stop-share").click()
    await agent.get_by_test_id("share-area-open").click()  # left open: the end closes it
    await agent.get_by_test_id("end-session").click()
    await agent.get_by_test_id("end-session-confirm").click()
    state = caller.get_by_test_id("call-state")
    await expect(state).to_have_attribute("data-state", "ended", timeout=10_000)
    await expect(caller.get_by_test_id("privacy-receipt")).to_be_visible(timeout=10_000)
    await expect(agent.get_by_test_id("share-area")).to_be_hidden()
    await each_lang(caller, "caller-ended")
    await caller.screenshot(path=str(SHOTS / "caller-ended-lv-390x844-full.png"), full_page=True)
