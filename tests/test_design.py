"""Layout and keyboard facts of the design pass (issue #16), in real Chromium: the agent's
console fits one 1280x800 screen (and 1920x1080), the caller's state is shown on the
picture, the console works from the keyboard, and the caller page keeps the operator's
name, orders its actions, tells pause from freeze, and ends without quality bars.

One live session (agent at 1280x800, caller on a Pixel 7) is shared by the module's tests,
which run in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.test_browser_e2e import agent_page, caller_page, open_link, start_session, wait_colours
from tests.test_toolkit_browser import COLOURS, QUADRANTS

OPERATOR = "Example Telecom"  # the default session.operator_name
ICON = "b => getComputedStyle(b, '::before').maskImage"
# The live view, the caller's state and the main actions, plus the side panel's chat/push.
MUST_FIT = ("camera-video", "video-caller-state", "end-session", "freeze", "share-screen",
            "record-start", "recording-state", "take-snapshot", "tool-pointer", "chat-input",
            "push-url")


@dataclass
class Call:
    agent: Page
    caller: Page
    caller_ctx: Any


async def box(page: Page, testid: str) -> dict[str, float]:
    b = await page.get_by_test_id(testid).first.bounding_box()
    assert b is not None, f"{testid} is not shown"
    return b


async def inside_viewport(page: Page, testid: str) -> None:
    b = await box(page, testid)
    vp = page.viewport_size
    assert vp is not None
    assert b["x"] >= 0 and b["y"] >= 0, (testid, b)
    assert b["x"] + b["width"] <= vp["width"], (testid, b, vp)
    assert b["y"] + b["height"] <= vp["height"], (testid, b, vp)


@pytest.fixture(scope="module")
async def call(browser: Any, make_server_module: Any) -> Any:
    server = make_server_module
    agent_ctx, agent = await agent_page(browser, server)
    await agent.get_by_test_id("lang-lv").click()
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await caller.get_by_test_id("lang-lv").click()
    yield Call(agent, caller, caller_ctx)
    await agent_ctx.close()
    await caller_ctx.close()


@pytest.fixture(scope="module")
async def make_server_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from aiohttp import web

    from server.http.app import create_app
    from tests import conftest

    port = conftest.free_port()
    cfg = conftest.test_config(port)
    clock = conftest.FakeClock()
    data_dir = tmp_path_factory.mktemp("design")
    app = create_app(cfg, data_dir, clock=clock)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield conftest.Server(f"http://127.0.0.1:{port}", port, app, data_dir, cfg, clock)
    await runner.cleanup()


async def test_notice_summary_comes_before_the_button(call: Call) -> None:
    caller = call.caller
    await expect(caller.get_by_test_id("notice-accept")).to_be_enabled()
    summary = caller.get_by_test_id("notice-summary")
    # Who, what is shared, what is kept, how to stop; the operator named in the first line.
    await expect(summary.locator("dt")).to_have_count(4)
    await expect(summary.locator("dd").first).to_contain_text(OPERATOR)
    s, button = await box(caller, "notice-summary"), await box(caller, "notice-accept")
    assert s["y"] + s["height"] <= button["y"], (s, button)
    await inside_viewport(caller, "notice-accept")  # informed at a glance: both on screen
    # The full text one tap away, closed until then.
    full = caller.get_by_test_id("notice-full")
    assert not await full.evaluate("d => d.open")
    await full.locator("summary").click()
    assert await full.evaluate("d => d.open")
    await expect(caller.locator("#notice-body h2").first).to_be_visible()
    for lang, word in (("en", "an agent from " + OPERATOR), ("lv", "uzņēmuma " + OPERATOR)):
        await caller.get_by_test_id(f"lang-{lang}").click()
        await expect(caller.locator("#notice-body")).to_contain_text(word)
    await expect(caller.locator("#notice-body")).to_contain_text("Turpinot, jūs apstiprināt")
    await expect(caller.get_by_test_id("operator-name")).to_have_text(OPERATOR)


async def test_ready_view_puts_the_camera_first(call: Call) -> None:
    caller = call.caller
    await caller.get_by_test_id("notice-accept").click()
    await expect(caller.get_by_test_id("start-camera")).to_be_visible()
    start, photo = await box(caller, "start-camera"), await box(caller, "upload-photo")
    assert start["y"] + start["height"] <= photo["y"], (start, photo)
    assert start["width"] > photo["width"] and start["height"] >= photo["height"], (start, photo)


async def test_live_call_keeps_the_operator_and_tells_pause_from_freeze(call: Call) -> None:
    caller, agent = call.caller, call.agent
    await caller.get_by_test_id("start-camera").click()
    state = caller.get_by_test_id("call-state")
    await expect(state).to_have_attribute("data-state", "live", timeout=15_000)
    await caller.wait_for_function("() => !!window.callassistToolkit", timeout=10_000)
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS)
    # The toolkit's strings arrived (i18n.apply ran again): the name is still there.
    await expect(caller.get_by_test_id("operator-name")).to_have_text(OPERATOR)
    for lang in ("en", "ru", "lv"):
        await caller.get_by_test_id(f"lang-{lang}").click()
        await expect(caller.get_by_test_id("operator-name")).to_have_text(OPERATOR)
        pause = (await caller.get_by_test_id("pause-camera").text_content() or "").strip()
        freeze = (await caller.get_by_test_id("freeze").text_content() or "").strip()
        # No shared word: "Apturēt kameru" / "Apturēt attēlu" was the confusion.
        assert not set(pause.lower().split()) & set(freeze.lower().split()), (lang, pause, freeze)
        icons = [
            await caller.get_by_test_id(t).evaluate(ICON) for t in ("pause-camera", "freeze")
        ]
        assert all(i.startswith("url(") for i in icons) and icons[0] != icons[1], icons


async def test_caller_chat_sheet_shows_many_messages(call: Call) -> None:
    caller, agent = call.caller, call.agent
    for i in range(7):
        await agent.get_by_test_id("chat-input").fill(f"ziņa {i + 1}")
        await agent.get_by_test_id("chat-send").click()
    await caller.get_by_test_id("chat-open").click()
    msgs = caller.get_by_test_id("chat").get_by_test_id("chat-msg")
    await expect(msgs).to_have_count(7)
    area = await caller.get_by_test_id("chat").get_by_test_id("chat-list").bounding_box()
    assert area is not None
    shown = 0
    for i in range(7):
        b = await msgs.nth(i).bounding_box()
        if b and b["y"] >= area["y"] - 1 and b["y"] + b["height"] <= area["y"] + area["height"] + 1:
            shown += 1
    assert shown >= 6, shown
    await caller.get_by_test_id("chat-close").click()


async def test_agent_fits_one_screen(call: Call) -> None:
    agent = call.agent
    await expect(agent.get_by_test_id("take-snapshot")).to_be_visible()
    for width, height in ((1280, 800), (1920, 1080)):
        await agent.set_viewport_size({"width": width, "height": height})
        await asyncio.sleep(0.3)
        for testid in MUST_FIT:
            await inside_viewport(agent, testid)
        assert await agent.evaluate("() => scrollY") == 0
        video = await box(agent, "camera-video")
        assert video["width"] >= width * 0.45 and video["height"] >= height * 0.45, (width, video)
    await agent.set_viewport_size({"width": 1280, "height": 800})


async def test_caller_state_is_on_the_picture(call: Call) -> None:
    agent, caller = call.agent, call.caller
    chip = agent.get_by_test_id("video-caller-state")
    await expect(chip).to_have_attribute("data-state", "live")
    video, on = await box(agent, "camera-video"), await box(agent, "video-caller-state")
    assert video["x"] <= on["x"] <= on["x"] + on["width"] <= video["x"] + video["width"], on
    assert video["y"] <= on["y"] <= on["y"] + on["height"] <= video["y"] + video["height"], on
    await caller.get_by_test_id("pause-camera").click()
    await expect(chip).to_have_attribute("data-state", "paused")
    placeholder = agent.get_by_test_id("camera-placeholder")
    await expect(placeholder).to_have_attribute("data-reason", "paused")
    await caller.get_by_test_id("resume-camera").click()
    await expect(chip).to_have_attribute("data-state", "live", timeout=10_000)


async def test_shared_screen_takes_the_screen(call: Call) -> None:
    agent, caller = call.agent, call.caller
    await agent.get_by_test_id("share-screen").click()
    await expect(caller.get_by_test_id("call-stage")).to_have_attribute("data-screen", "on")
    await expect(caller.locator("body")).to_have_attribute("data-screen", "on")
    # Reminder, "Send a photo" and the "live" banner step aside; the name stays.
    await expect(caller.get_by_test_id("camera-reminder")).to_be_hidden()
    await expect(caller.get_by_test_id("upload-photo")).to_be_hidden()
    await expect(caller.get_by_test_id("operator-name")).to_have_text(OPERATOR)
    vp = caller.viewport_size
    assert vp is not None
    screen = await box(caller, "screen-video")
    assert screen["width"] >= vp["width"] - 1 and screen["height"] >= vp["height"] * 0.8, screen
    # The controls lie over the picture, fade when idle and stay usable.
    controls = caller.locator(".controls")
    await expect(caller.locator("#view-call")).to_have_class("view view-call idle", timeout=10_000)
    # The fade is a 0.6 s transition: the class is there before the opacity has moved.
    await controls.evaluate(
        """c => new Promise((done, fail) => {
            const until = performance.now() + 5000;
            const look = () => parseFloat(getComputedStyle(c).opacity) < 1 ? done()
                : performance.now() > until ? fail(new Error("the controls did not fade"))
                : requestAnimationFrame(look);
            look();
        })"""
    )
    await caller.get_by_test_id("screen-video").click()
    await expect(caller.locator("#view-call")).not_to_have_class("view view-call idle")
    # A tap on the preview moves it to the other corner.
    before = await box(caller, "camera-preview")
    await caller.get_by_test_id("camera-preview").click()
    after = await box(caller, "camera-preview")
    assert after["x"] < before["x"] - vp["width"] / 3, (before, after)
    await agent.get_by_test_id("stop-share").click()
    await expect(caller.locator("body")).to_have_attribute("data-screen", "off")
    await expect(caller.get_by_test_id("camera-reminder")).to_be_visible()


async def test_agent_keyboard(call: Call) -> None:
    agent, caller = call.agent, call.caller
    await agent.locator("body").click(position={"x": 5, "y": 700})  # nothing focused
    # Tab reaches a button and its focus is drawn.
    await agent.keyboard.press("Tab")
    ring = await agent.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [document.activeElement.tagName, s.boxShadow, s.outlineStyle]; }"
    )
    assert ring[0] in ("BUTTON", "INPUT", "SELECT", "A"), ring
    assert ring[1] != "none" or ring[2] != "none", ring
    # ? lists the shortcuts; Escape closes it.
    await agent.keyboard.press("?")
    await expect(agent.get_by_test_id("shortcuts")).to_be_visible()
    await expect(agent.get_by_test_id("shortcuts-close")).to_be_focused()
    await agent.keyboard.press("Escape")
    await expect(agent.get_by_test_id("shortcuts")).to_be_hidden()
    # F freezes on both sides, F again goes back to video.
    await agent.keyboard.press("f")
    await expect(caller.get_by_test_id("freeze-view")).to_be_visible(timeout=10_000)
    await agent.keyboard.press("f")
    await expect(caller.get_by_test_id("freeze-view")).to_be_hidden(timeout=10_000)
    # S takes a snapshot of the caller's camera.
    await agent.keyboard.press("s")
    await expect(agent.get_by_test_id("photo").first).to_be_visible(timeout=15_000)
    # Letters typed in a field are text, not shortcuts.
    await agent.get_by_test_id("chat-input").fill("")
    await agent.get_by_test_id("chat-input").press("e")
    await expect(agent.get_by_test_id("end-confirm")).to_be_hidden()
    await agent.get_by_test_id("chat-input").fill("")
    await agent.locator("body").click(position={"x": 5, "y": 700})
    # E asks first; Escape cancels; E then Enter ends.
    await agent.keyboard.press("e")
    await expect(agent.get_by_test_id("end-confirm")).to_be_visible()
    await expect(agent.get_by_test_id("end-session-confirm")).to_be_focused()
    await agent.keyboard.press("Escape")
    await expect(agent.get_by_test_id("end-confirm")).to_be_hidden()
    await expect(caller.get_by_test_id("call-state")).to_have_attribute("data-state", "live")
    await agent.keyboard.press("e")
    await agent.keyboard.press("Enter")
    state = caller.get_by_test_id("call-state")
    await expect(state).to_have_attribute("data-state", "ended", timeout=10_000)


async def test_ended_view(call: Call) -> None:
    caller = call.caller
    await expect(caller.get_by_test_id("privacy-receipt")).to_be_visible(timeout=10_000)
    await expect(caller.get_by_test_id("operator-name")).to_have_text(OPERATOR)
    await expect(caller.get_by_test_id("netq")).to_be_hidden()
    # "…: 1" keeps its number on the label's line (a no-break space before it).
    for testid in ("receipt-snapshots", "receipt-uploads"):
        text = await caller.get_by_test_id(testid).text_content() or ""
        assert ":\u00a0" in text, text
