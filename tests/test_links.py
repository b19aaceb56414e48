"""One-time links and link previews (issue 14, item 1): opening a link with GET or HEAD
uses nothing up; only the caller's tap (a same-origin POST from the link page) does."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.signalling_client import open_link

# What SMS and messenger apps send when they fetch a link to build its preview.
PREVIEWERS = {
    "facebook": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "whatsapp": "WhatsApp/2.23.20.0 A",
    "telegram": "TelegramBot (like TwitterBot)",
    "slack": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "twitter": "Twitterbot/1.0",
    # iMessage's link-preview agent (it names the others too)
    "imessage": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 "
    "(KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot "
    "Twitterbot/1.0",
}


@pytest.fixture
async def server(any_db_server):  # type: ignore[no-untyped-def]
    return any_db_server


async def preview(link: str) -> list[tuple[str, int, bool]]:
    """HEAD, then a GET with each previewer's User-Agent, each from a fresh client: what
    came back, and whether any cookie was set."""
    seen = []
    for who, method, ua in [("head", "HEAD", "curl/8.0")] + [
        (name, "GET", ua) for name, ua in PREVIEWERS.items()
    ]:
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as bot,
            bot.request(method, link, allow_redirects=True, headers={"User-Agent": ua}) as r,
        ):
            await r.read()
            seen.append((who, r.status, len(bot.cookie_jar) > 0))
    return seen


async def caller_status(agent: Any, sid: str) -> str:
    status, body = await agent.get(f"/api/sessions/{sid}")
    assert status == 200
    return str(body["session"]["caller_status"])


async def test_previews_do_not_use_up_the_link(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    sid = created["session"]["id"]
    seen = await preview(created["link"])
    assert seen == [(who, 200, False) for who, _, _ in seen], seen  # page shown, no cookie
    assert await caller_status(agent, sid) == "link_sent"  # the agent sees no "opened"
    # Then the caller opens it, and it works.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as phone:
        assert await open_link(phone, created["link"]) == 303
        async with phone.get(server.url + "/c") as r:
            assert r.status == 200
    assert await caller_status(agent, sid) == "opened"
    # Now it is used: previews and other browsers get the neutral page.
    assert {status for _, status, _ in await preview(created["link"])} == {410}


async def test_tap_must_come_from_our_origin(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    link = created["link"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            async with other.post(link, headers=headers, allow_redirects=False) as r:
                assert r.status == 410
        assert len(other.cookie_jar) == 0
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as phone:
        assert await open_link(phone, link) == 303  # nothing was used up by those


async def test_second_tap_from_the_same_browser(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    link = created["link"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as phone:
        assert await open_link(phone, link) == 303
        # Back, and tap again: the browser that holds the cookie goes on to /c.
        async with phone.post(link, headers={"Origin": server.url}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/c"
            assert "Set-Cookie" not in r.headers
    async with (
        aiohttp.ClientSession() as other,
        other.post(link, headers={"Origin": server.url}, allow_redirects=False) as r,
    ):
        assert r.status == 410
