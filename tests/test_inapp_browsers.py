"""In-app browsers (web/inapp.js) and the caller without a camera, in real Chromium with
the real user agent strings of those apps: the link page offers the phone's own browser
before the link is used up (Android: an intent:// link; iOS: copy the link), the caller
page explains and keeps the photo path, and the agent's console says which case it is."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.test_browser_e2e import agent_page, open_link, start_session

pytestmark = pytest.mark.timeout(180)

SHOTS = os.environ.get("CALLASSIST_SHOTS")

# Real user agents, as these apps send them (app, os) — None: a real browser, not detected.
UAS: list[tuple[str, tuple[str, str] | None]] = [
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S911B Build/UP1A.231005.007; wv) AppleWebKit/537.36"
        " (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36"
        " [FB_IAB/FB4A;FBAV/446.0.0.33.118;]",
        ("facebook", "android"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
        " like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;"
        "FBSV/17.2.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/0]",
        ("facebook", "ios"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
        " like Gecko) Mobile/15E148 [FBAN/MessengerForiOS;FBAV/436.0.0.41.109;FBBV/554826155;"
        "FBDV/iPhone13,2;FBMD/iPhone;FBSN/iOS;FBSV/17.0;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
        ("messenger", "ios"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36"
        " (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 Instagram"
        " 309.1.0.41.113 Android (33/13; 420dpi; 1080x2400; Google/google; Pixel 7; panther;"
        " panther; en_US; 541635863)",
        ("instagram", "android"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
        " like Gecko) Mobile/15E148 Instagram 311.0.2.22.109 (iPhone14,5; iOS 17_1_2; en_US;"
        " en; scale=3.00; 1170x2532; 545256446)",
        ("instagram", "ios"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
        " like Gecko) Mobile/15E148 Safari Line/13.16.0",
        ("line", "ios"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; V2227A Build/TP1A.220624.014; wv) AppleWebKit/537.36"
        " (KHTML, like Gecko) Version/4.0 Chrome/107.0.5304.141 Mobile Safari/537.36"
        " XWEB/5023 MMWEBSDK/20230701 MMWEBID/1234 MicroMessenger/8.0.40.2420(0x28002837)"
        " WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64",
        ("wechat", "android"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
        " like Gecko) Mobile/15E148 Snapchat/12.60.0.43 (like Safari/8617.2.4.10.8, panda)",
        ("snapchat", "ios"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 12; SM-A525F Build/SP1A.210812.016; wv) AppleWebKit/537.36"
        " (KHTML, like Gecko) Version/4.0 Chrome/114.0.5735.196 Mobile Safari/537.36"
        " trill_310003 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/trill"
        " app_version/31.0.3 ByteLocale/en Region/LV BytedanceWebview/d8a21c6",
        ("tiktok", "android"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
        " like Gecko) Mobile/15E148 [LinkedInApp]/9.29.6750",
        ("linkedin", "ios"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-G991B Build/TP1A.220624.014; wv) AppleWebKit/537.36"
        " (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36",
        ("webview", "android"),
    ),
    # Real browsers (WhatsApp opens links in one of these): no notice.
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/120.0.0.0 Mobile Safari/537.36",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
        " like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko)"
        " SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        None,
    ),
    ("Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0", None),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
        " like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
        None,
    ),
]
FACEBOOK_ANDROID, INSTAGRAM_IOS = UAS[0][0], UAS[4][0]
CHROME_ANDROID = UAS[11][0]


async def shot(page: Any, tmp_path: Path, name: str) -> None:
    folder = Path(SHOTS) if SHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def phone(browser: Any, ua: str, **extra: Any) -> tuple[Any, Any]:
    ctx = await browser.new_context(
        user_agent=ua, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
        **extra,
    )  # fmt: skip
    return ctx, await ctx.new_page()


async def test_detection_table(browser, server) -> None:  # type: ignore[no-untyped-def]
    ctx = await browser.new_context()
    page = await ctx.new_page()
    await page.goto(server.url + "/agent")  # any page of the server: the module's origin
    got = await page.evaluate(
        """async (uas) => {
        const m = await import("/static/inapp.js");
        return uas.map((ua) => { const r = m.inAppBrowser(ua); return r && [r.app, r.os]; });
        }""",
        [ua for ua, _ in UAS],
    )
    assert [tuple(g) if g else None for g in got] == [want for _, want in UAS]
    await ctx.close()


async def test_link_page_in_facebook_on_android(browser, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    ctx, page = await phone(browser, FACEBOOK_ANDROID)
    await page.goto(link)
    notice = page.get_by_test_id("inapp-notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_have_attribute("data-app", "facebook")
    await expect(notice).to_have_attribute("data-os", "android")
    for text in ("Facebook", "Open in browser", "Открыть в браузере", "Atvērt pārlūkā"):
        await expect(notice).to_contain_text(text)
    # The same one-time link, opened by Android in the default browser; nothing used up.
    host_path = link.split("://", 1)[1]
    await expect(page.get_by_test_id("inapp-open")).to_have_attribute(
        "href", f"intent://{host_path}#Intent;scheme=http;action=android.intent.action.VIEW;end"
    )
    await expect(page.get_by_test_id("inapp-copy")).to_be_hidden()
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    await shot(page, tmp_path, "inapp-facebook-android")
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "link_sent"
    )
    # "Continue" still works here; the caller page then explains and keeps the photo path.
    await page.get_by_test_id("link-open").click()
    await page.wait_for_url("**/c")
    await page.get_by_test_id("notice-accept").click()
    error = page.get_by_test_id("camera-error")
    await page.get_by_test_id("start-camera").click()
    await expect(error).to_have_attribute("data-reason", "in_app_browser")
    await expect(page.get_by_test_id("camera-try-anyway")).to_be_visible()
    await expect(page.get_by_test_id("upload-photo")).to_be_visible()
    await expect(page.get_by_test_id("call-state")).to_have_attribute("data-state", "photos")
    await expect(agent.get_by_test_id("caller-camera")).to_have_attribute(
        "data-reason", "in_app_browser"
    )
    await ctx.close()
    await agent_ctx.close()


async def test_link_page_in_instagram_on_iphone(browser, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    ctx, page = await phone(
        browser, INSTAGRAM_IOS, permissions=["clipboard-read", "clipboard-write"]
    )
    await page.goto(link)
    notice = page.get_by_test_id("inapp-notice")
    await expect(notice).to_have_attribute("data-os", "ios")
    for text in ("Instagram", "Safari", "Copy link"):
        await expect(notice).to_contain_text(text)
    await expect(page.get_by_test_id("inapp-open")).to_be_hidden()
    await page.get_by_test_id("inapp-copy").click()
    await expect(page.get_by_test_id("inapp-copied")).to_contain_text("Link copied")
    assert await page.evaluate("navigator.clipboard.readText()") == link
    await shot(page, tmp_path, "inapp-instagram-ios")
    await ctx.close()
    await agent_ctx.close()


async def test_real_browser_gets_no_notice(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    ctx, page = await phone(browser, CHROME_ANDROID)
    await page.goto(link)
    await expect(page.get_by_test_id("link-open")).to_be_visible()
    await expect(page.get_by_test_id("inapp-notice")).to_be_hidden()
    await ctx.close()
    await agent_ctx.close()


async def test_camera_denied_keeps_photos_and_tells_the_agent(browser, server) -> None:  # type: ignore[no-untyped-def]
    # No camera grant: Chromium refuses getUserMedia, as when the caller taps "Block".
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    ctx, page = await phone(browser, CHROME_ANDROID)
    await open_link(page, link)
    await page.get_by_test_id("notice-accept").click()
    await page.get_by_test_id("start-camera").click()
    error = page.get_by_test_id("camera-error")
    await expect(error).to_have_attribute("data-reason", "denied")
    await expect(error).to_contain_text(re.compile("Chrome"))  # how to allow it, on Android
    await expect(page.get_by_test_id("camera-retry")).to_be_visible()
    await expect(page.get_by_test_id("call-state")).to_have_attribute("data-state", "photos")
    camera = agent.get_by_test_id("caller-camera")
    await expect(camera).to_have_attribute("data-reason", "denied")
    # Chat works without a camera.
    await agent.get_by_test_id("chat-input").fill("Varat nosūtīt fotoattēlu")
    await agent.get_by_test_id("chat-send").click()
    await expect(page.get_by_test_id("chat-badge")).to_have_text("1")
    await page.get_by_test_id("chat-open").click()
    await expect(page.get_by_test_id("chat-list")).to_contain_text("Varat nosūtīt")
    await page.get_by_test_id("chat-close").click()
    # The caller allows the camera after all: it goes live and the agent's note goes away.
    await ctx.grant_permissions(["camera"])
    await page.get_by_test_id("camera-retry").click()
    await expect(page.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=15_000
    )
    await expect(camera).to_be_hidden()
    await ctx.close()
    await agent_ctx.close()
