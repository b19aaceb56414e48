"""The REST API and one-time links, over real HTTP against a running server."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from server.core.db import token_hash
from tests.conftest import dump_database


@pytest.fixture
async def server(any_db_server):  # type: ignore[no-untyped-def]
    """Every test here runs on SQLite and on PostgreSQL."""
    return any_db_server


async def _open(url: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False, **kw) as r:
        return r.status, await r.text(), r


async def _tap(url: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
    """The caller's tap on the link page: a same-origin POST to the link."""
    origin = "/".join(url.split("/", 3)[:3])
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, allow_redirects=False, headers={"Origin": origin}, **kw) as r,
    ):
        return r.status, await r.text(), r


async def test_login_rules(server) -> None:  # type: ignore[no-untyped-def]
    await server.add_user("anna")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.url + "/api/login", json={"username": "anna", "password": "wrong password!"}
        ) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "bad_credentials"
        async with http.post(
            server.url + "/api/login", json={"username": "nobody", "password": "whatever12"}
        ) as r:
            assert r.status == 401
        async with http.post(server.url + "/api/login", data="x") as r:
            assert r.status == 400
        async with http.get(server.url + "/api/me") as r:
            assert r.status == 401
        async with http.post(server.url + "/api/sessions", json={"phone": "20000012"}) as r:
            assert r.status == 401


async def test_csrf_and_origin(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    # Logged in, but no CSRF token: refused.
    async with agent.http.post(server.url + "/api/sessions", json={"phone": "20000012"}) as r:
        assert r.status == 403 and (await r.json())["error"]["code"] == "csrf"
    # Right token, foreign origin: refused.
    async with agent.http.post(
        server.url + "/api/sessions",
        json={"phone": "20000012"},
        headers={"X-CSRF-Token": agent.csrf, "Origin": "https://evil.example"},
    ) as r:
        assert r.status == 403 and (await r.json())["error"]["code"] == "origin_not_allowed"
    status, body = await agent.post("/api/sessions", {"phone": "20000012"})
    assert status == 201


async def test_security_headers(server) -> None:  # type: ignore[no-untyped-def]
    status, _, r = await _open(server.url + "/agent")
    assert status == 200
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "object-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"


async def test_session_and_roles(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent("anna")
    other = await server.agent("boris")
    created = await agent.new_session()
    session = created["session"]
    assert session["phone"] == "+37120000012" and session["phone_masked"].endswith("12")
    assert created["link"].startswith(server.url + "/j/")
    assert created["qr_svg"].startswith("<svg")
    status, body = await other.get(f"/api/sessions/{session['id']}")
    assert status == 404  # another agent's session does not exist for them
    status, body = await agent.get("/api/sessions")
    assert [s["id"] for s in body["sessions"]] == [session["id"]]
    status, body = await agent.post("/api/sessions", {"phone": "12"})
    assert status == 400 and body["error"]["code"] == "bad_phone"
    # A supervisor may not start sessions.
    await server.add_user("sue", role="supervisor")
    sue = await server.agent("sue")
    status, body = await sue.post("/api/sessions", {"phone": "20000012"})
    assert status == 403 and body["error"]["code"] == "forbidden"


async def test_sms_sends_only_the_sessions_link(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    sid = created["session"]["id"]
    status, body = await agent.post(f"/api/sessions/{sid}/sms", {"link": created["link"]})
    assert status == 200 and body["sms"]["status"] == "sent"
    status, body = await agent.post(f"/api/sessions/{sid}/sms", {"link": "http://evil/x"})
    assert status == 400 and body["error"]["code"] == "bad_link"


async def test_one_time_link(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    link = created["link"]
    token = link.rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 bits, base64url

    # Opening the link shows the page with the button and uses nothing up.
    status, page, shown = await _open(link)
    assert status == 200 and 'data-testid="link-open"' in page
    assert "Set-Cookie" not in shown.headers and token not in page
    assert shown.headers["Cache-Control"] == "no-store"
    status, _, first = await _tap(link)
    assert status == 303 and first.headers["Location"] == "/c"
    cookie = first.cookies["ca_caller"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    # The same browser reloads the page without the token: fine.
    status, _, _ = await _open(server.url + "/c", cookies={"ca_caller": cookie.value})
    assert status == 200

    neutral = None
    for url in (link, server.url + "/j/" + "A" * 43, server.url + "/j/short"):
        status, text, r = await _open(url)
        assert status == 410
        assert neutral is None or text == neutral  # reused and made-up: the same page
        neutral = text
        assert "Set-Cookie" not in r.headers
    assert neutral is not None
    assert created["session"]["id"] not in neutral and "2000" not in neutral
    # Another browser without the cookie gets the same page on /c.
    status, text, _ = await _open(server.url + "/c")
    assert status == 410 and text == neutral

    status, body = await agent.get(f"/api/sessions/{created['session']['id']}")
    assert body["session"]["caller_status"] == "opened"
    assert body["session"]["device_type"]

    # The database holds only hashes: neither the token nor the cookie is in it.
    dump = await dump_database(server)
    assert token not in dump and cookie.value not in dump
    assert token_hash(token) in dump


async def test_link_expiry_and_new_link(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    sid = created["session"]["id"]
    server.clock.advance(server.config.session.link_ttl_s + 1)
    status, expired_page, _ = await _open(created["link"])
    assert status == 410
    status, fresh = await agent.post(f"/api/sessions/{sid}/link")
    assert status == 200
    status, _, _ = await _tap(fresh["link"])
    assert status == 303


async def test_new_link_after_the_link_was_opened(server) -> None:  # type: ignore[no-untyped-def]
    # (No clock advance here: the inactivity sweep would end the room meanwhile.)
    agent = await server.agent()
    created = await agent.new_session()
    sid = created["session"]["id"]
    assert (await _tap(created["link"]))[0] == 303
    # After the caller opened it, a new link is still issued (same session) and the opened
    # one is revoked: a fresh browser cannot use either old link.
    status, newer = await agent.post(f"/api/sessions/{sid}/link")
    assert status == 200 and newer["link"] != created["link"]
    assert (await _tap(created["link"]))[0] == 410
    assert (await _tap(newer["link"]))[0] == 303


async def test_new_link_revokes_old(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    status, fresh = await agent.post(f"/api/sessions/{created['session']['id']}/link")
    assert (await _open(created["link"]))[0] == 410
    assert (await _tap(created["link"]))[0] == 410
    assert (await _open(fresh["link"]))[0] == 200
    assert (await _tap(fresh["link"]))[0] == 303


async def test_ended_session_link_dead(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    sid = created["session"]["id"]
    status, body = await agent.post(f"/api/sessions/{sid}/end")
    assert status == 200 and body["session"]["state"] == "ended"
    assert body["session"]["end_reason"] == "agent_ended"
    assert (await _open(created["link"]))[0] == 410
    assert (await _tap(created["link"]))[0] == 410


async def test_link_open_rate_limit(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(session={"link_opens_per_minute": 3})
    statuses = [(await _open(server.url + "/j/" + "B" * 43))[0] for _ in range(5)]
    assert statuses == [410] * 5  # limited opens look exactly like invalid links
    agent = await server.agent()
    created = await agent.new_session()
    assert (await _open(created["link"]))[0] == 410  # limited even with a good token


async def test_openapi(server) -> None:  # type: ignore[no-untyped-def]
    status, text, r = await _open(server.url + "/api/openapi.json")
    assert status == 200
    import json

    doc = json.loads(text)
    assert doc["openapi"].startswith("3.")
    for path in ("/api/login", "/api/sessions", "/api/sessions/{session_id}/sms"):
        assert path in doc["paths"]


@pytest.mark.parametrize("path", ["/api/nothing", "/static/nothing.js"])
async def test_unknown_paths_json_404(server, path: str) -> None:  # type: ignore[no-untyped-def]
    status, text, _ = await _open(server.url + path)
    assert status == 404


async def test_link_consumed_once_under_race(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    results = await asyncio.gather(*[_tap(created["link"]) for _ in range(6)])
    assert sorted(r[0] for r in results) == [303] + [410] * 5
