"""End to end in real Chromium: agent console and caller page, media both ways."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from typing import Any

from playwright.async_api import BrowserContext, Page, expect

from tests.conftest import PASSWORD

# Counts getUserMedia calls so a test can prove the camera is not asked for before the
# notice is accepted.
COUNT_GUM = """
(() => {
  window.__gumCalls = 0;
  const md = navigator.mediaDevices;
  if (!md) return;
  const orig = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => { window.__gumCalls += 1; return orig(c); };
})();
"""

# Samples the RGB of a <video> at fractions of its width/height.
SAMPLE = """
([testid, points]) => {
  const v = document.querySelector(`[data-testid="${testid}"]`);
  if (!v || !v.videoWidth) return null;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  return points.map(([fx, fy]) =>
    Array.from(g.getImageData(Math.floor(fx * c.width), Math.floor(fy * c.height), 1, 1).data)
      .slice(0, 3));
}
"""

# Frames the agent's current peer connection has decoded (inbound video, all receivers).
DECODED = """
async () => {
  const pc = window.callassist && window.callassist.pc;
  if (!pc) return 0;
  let n = 0;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") n += r.framesDecoded || 0;
  });
  return n;
}
"""


def close(rgb: list[int], want: tuple[int, int, int], tol: int = 60) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, want, strict=True))


async def wait_colours(
    page: Page,
    testid: str,
    points: list[tuple[float, float]],
    want: list[tuple[int, int, int]],
    timeout: float = 15,
) -> list[list[int]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got = None
    while loop.time() < deadline:
        got = await page.evaluate(SAMPLE, [testid, points])
        if got and all(close(g, w) for g, w in zip(got, want, strict=True)):
            return got
        await asyncio.sleep(0.2)
    raise AssertionError(f"{testid}: wanted {want}, last sampled {got}")


async def frames(page: Page) -> int:
    return int(await page.evaluate(DECODED))


async def wait_frames(page: Page, at_least: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (n := await frames(page)) < at_least:
        assert loop.time() < deadline, f"{n} frames decoded, wanted {at_least} in {timeout}s"
        await asyncio.sleep(0.1)


async def agent_page(browser: Any, server: Any, name: str = "anna") -> tuple[BrowserContext, Page]:
    if await server.db.user_by_name(name) is None:
        await server.add_user(name)
    # The camera grant is not used by the console; without any media grant Chromium offers
    # only the default route's address for ICE, and the test namespace has no route.
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, permissions=["camera"])
    # Share this tab (the real capture), not a picker: there is no picker in headless.
    await ctx.add_init_script(
        "window.callassistShareOptions = {video: true, preferCurrentTab: true};"
    )
    page = await ctx.new_page()
    await page.goto(server.url + "/agent")
    await page.get_by_test_id("login-username").fill(name)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("new-session-phone")).to_be_visible()
    return ctx, page


async def start_session(page: Page) -> str:
    await page.get_by_test_id("new-session-phone").fill("20000012")
    await page.get_by_test_id("new-session-reference").fill("TICKET-7")
    await page.get_by_test_id("new-session-submit").click()
    link = page.get_by_test_id("session-link")
    await expect(link).to_contain_text("/j/")
    text = (await link.text_content() or await link.input_value()).strip()
    return re.search(r"https?://\S+/j/[A-Za-z0-9_-]+", text).group(0)  # type: ignore[union-attr]


async def open_link(page: Page, link: str) -> None:
    """What a caller does with the link from the SMS: open it (the link page, nothing used
    up yet) and tap the button (a same-origin POST), which lands on /c."""
    response = await page.goto(link)
    assert response is not None and response.status == 200, response and response.status
    await page.get_by_test_id("link-open").click()
    await page.wait_for_url("**/c")


async def caller_page(browser: Any) -> tuple[BrowserContext, Page]:
    devices = browser.callassist_devices
    ctx = await browser.new_context(**devices["Pixel 7"], permissions=["camera"])
    await ctx.add_init_script(COUNT_GUM)
    return ctx, await ctx.new_page()


async def test_full_session(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    await expect(agent.get_by_test_id("session-qr")).to_be_visible()
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "link_sent"
    )

    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    assert caller.url.endswith("/c")  # the token left the address bar
    await expect(caller.get_by_test_id("notice")).to_be_visible()
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute("data-status", "opened")
    await asyncio.sleep(0.5)
    assert await caller.evaluate("window.__gumCalls") == 0  # no camera before accepting

    await caller.get_by_test_id("notice-accept").click()
    await expect(caller.get_by_test_id("camera-reminder")).to_be_visible()
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "accepted"
    )
    assert await caller.evaluate("window.__gumCalls") == 0
    await caller.get_by_test_id("start-camera").click()
    await expect(caller.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=15_000
    )
    assert await caller.evaluate("window.__gumCalls") >= 1

    # The fake camera's quadrants (red, green / blue, white) reach the agent's <video>.
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "live", timeout=15_000
    )
    await wait_colours(
        agent,
        "camera-video",
        [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)],
        [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)],
    )

    # The agent shares this tab; paint it one colour so the caller's pixels are known.
    await agent.evaluate(
        """() => { const d = document.createElement('div');
        d.id = 'paint'; d.style.position = 'fixed'; d.style.inset = '0';
        d.style.background = 'rgb(255, 0, 255)'; d.style.zIndex = '99999';
        d.style.pointerEvents = 'none'; document.body.appendChild(d); }"""
    )
    await agent.get_by_test_id("share-screen").click()
    await wait_colours(caller, "screen-video", [(0.5, 0.5)], [(255, 0, 255)], timeout=20)
    await agent.evaluate("() => document.getElementById('paint').remove()")
    await agent.get_by_test_id("stop-share").click()

    # The agent ends the session; both pages say so.
    await agent.get_by_test_id("end-session").click()
    await agent.get_by_test_id("end-session-confirm").click()
    await expect(caller.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "ended", timeout=10_000
    )
    await expect(agent.get_by_test_id("session-state")).to_have_attribute(
        "data-state", "ended", timeout=10_000
    )
    await agent_ctx.close()
    await caller_ctx.close()


async def test_link_single_use(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    token = link.rsplit("/", 1)[1]
    first_ctx, first = await caller_page(browser)
    await open_link(first, link)
    await expect(first.get_by_test_id("notice")).to_be_visible()
    assert token not in first.url

    # Another browser with the same link: the neutral page, status 410.
    second_ctx, second = await caller_page(browser)
    response = await second.goto(link)
    assert response is not None and response.status == 410
    neutral = await second.content()
    made_up = await second.goto(server.url + "/j/" + "Z" * 43)
    assert made_up is not None and made_up.status == 410
    assert await second.content() == neutral

    # Reload in the first browser keeps working.
    await first.reload()
    await expect(first.get_by_test_id("notice")).to_be_visible()

    # No usable token in the database.
    db = sqlite3.connect(server.data_dir / "callassist.db")
    assert token not in "\n".join(db.iterdump())
    db.close()
    for ctx in (agent_ctx, first_ctx, second_ctx):
        await ctx.close()


async def test_link_previews_then_chromium_opens_it(browser, server) -> None:  # type: ignore[no-untyped-def]
    from tests.test_links import preview

    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    # HEAD and the previewers of Facebook, WhatsApp, Telegram, Slack, Twitter, iMessage.
    seen = await preview(link)
    assert all(status == 200 and not cookie for _, status, cookie in seen), seen
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "link_sent"
    )
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await expect(caller.get_by_test_id("notice")).to_be_visible()
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute("data-status", "opened")
    await agent_ctx.close()
    await caller_ctx.close()


async def test_link_opens_without_javascript(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    ctx = await browser.new_context(java_script_enabled=False)
    page = await ctx.new_page()
    await open_link(page, link)  # the plain form's POST, then the redirect
    assert page.url == server.url + "/c"
    assert any(c["name"] == "ca_caller" for c in await ctx.cookies())
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute("data-status", "opened")
    await agent_ctx.close()
    await ctx.close()


async def test_link_expired(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    server.clock.advance(server.config.session.link_ttl_s + 1)
    ctx, page = await caller_page(browser)
    response = await page.goto(link)
    assert response is not None and response.status == 410
    await agent_ctx.close()
    await ctx.close()


async def test_caller_recovers_without_new_link(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await caller.get_by_test_id("notice-accept").click()
    await caller.get_by_test_id("start-camera").click()
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "live", timeout=15_000
    )
    await wait_frames(agent, 5, timeout=10)

    # Cut the caller's connection from the page.
    await caller.evaluate("() => window.callassist.pc.close()")
    cut = asyncio.get_running_loop().time()
    await asyncio.sleep(0.3)
    before = await frames(agent)
    await asyncio.sleep(0.5)
    # Frames flow again within 5 s, on the agent's same <video>, with no new link.
    await wait_frames(agent, before + 10, timeout=5.0 - (asyncio.get_running_loop().time() - cut))
    await expect(caller.get_by_test_id("call-state")).to_have_attribute("data-state", "live")
    await agent_ctx.close()
    await caller_ctx.close()


async def test_h264_both_ways(browser, make_server) -> None:  # type: ignore[no-untyped-def]
    # media.codec = "H264" on every leg: Chromium encodes H264 and decodes what the server
    # forwarded (the camera to the agent, the agent's screen to the caller).
    server = await make_server(media={"codec": "H264"})
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await caller.get_by_test_id("notice-accept").click()
    await caller.get_by_test_id("start-camera").click()
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "live", timeout=15_000
    )
    await wait_colours(
        agent,
        "camera-video",
        [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)],
        [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)],
    )
    codecs = await agent.evaluate(
        """async () => {
        const out = [];
        (await window.callassist.pc.getStats()).forEach((r) => {
          if (r.type === "codec") out.push(r.mimeType);
        });
        return out; }"""
    )
    assert "video/H264" in codecs and "video/VP8" not in codecs, codecs
    await agent.evaluate(
        """() => { const d = document.createElement('div');
        d.id = 'paint'; d.style.position = 'fixed'; d.style.inset = '0';
        d.style.background = 'rgb(255, 0, 255)'; d.style.zIndex = '99999';
        d.style.pointerEvents = 'none'; document.body.appendChild(d); }"""
    )
    await agent.get_by_test_id("share-screen").click()
    await wait_colours(caller, "screen-video", [(0.5, 0.5)], [(255, 0, 255)], timeout=20)
    await agent_ctx.close()
    await caller_ctx.close()
