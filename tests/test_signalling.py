"""Signalling edge cases over a real WebSocket: origin, version, auth, malformed input."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.signalling_client import SUBPROTOCOL, Signalling


async def _upgrade_status(url: str, **kw) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        cookies = kw.pop("cookies", None)
        if cookies:
            http.cookie_jar.update_cookies(cookies)
        try:
            ws = await http.ws_connect(url, **kw)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, {}
        await ws.close()
        return 101, {}


async def test_upgrade_refusals(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    room = created["session"]["id"]
    ws_url = server.url.replace("http", "ws") + f"/ws/agent/{room}"
    # Wrong origin.
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await agent.http.ws_connect(ws_url, protocols=(SUBPROTOCOL,), origin="https://evil.example")
    assert info.value.status == 403
    # No subprotocol: version unsupported.
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await agent.http.ws_connect(ws_url, origin=server.url)
    assert info.value.status == 400
    # No login.
    status, _ = await _upgrade_status(ws_url, protocols=(SUBPROTOCOL,), origin=server.url)
    assert status == 401
    # Another agent's room.
    other = await server.agent("boris")
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await other.http.ws_connect(ws_url, protocols=(SUBPROTOCOL,), origin=server.url)
    assert info.value.status == 403
    # Caller without cookie.
    status, _ = await _upgrade_status(
        server.url.replace("http", "ws") + "/ws/caller",
        protocols=(SUBPROTOCOL,),
        origin=server.url,
    )
    assert status == 401


async def test_malformed_messages_get_errors(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    caller = await Signalling.caller(server.url, created["link"])
    assert caller.welcome["v"] == 1 and caller.welcome["role"] == "caller"
    assert caller.welcome["iceServers"] == []
    assert caller.welcome["notice"] == {
        "version": server.config.session.notice_version,
        "accepted": False,
    }
    cases = [
        ("{nope", "bad_json"),
        ('"just a string"', "bad_json"),
        ('{"type": 5}', "bad_message"),
        ('{"type": "warp"}', "unknown_type"),
        ('{"type": "end"}', "not_allowed"),
        ('{"type": "offer", "pc": 1, "sdp": "v=0\\r\\n"}', "notice_not_accepted"),
        ('{"type": "accept", "notice": "1999-01-01"}', "notice_outdated"),
    ]
    for raw, code in cases:
        await caller.ws.send_str(raw)
        err = await caller.expect("error")
        assert err["code"] == code, (raw, err)
    await caller.ws.send_bytes(b"\x00\x01")
    assert (await caller.expect("error"))["code"] == "bad_json"
    # Still alive after all that.
    await caller.send({"type": "ping"})
    await caller.expect("pong")
    # Accept, then a broken SDP: a clear error, the socket stays.
    await caller.send({"type": "accept", "notice": caller.welcome["notice"]["version"]})
    room = await caller.wait_room(status="accepted")
    assert room["caller"]["status"] == "accepted"
    await caller.send({"type": "offer", "pc": 1, "sdp": "v=0\r\nthis is not sdp\r\n"})
    err = await caller.expect("error")
    assert err["code"] == "sdp_failed" and err["ref"] == "offer"
    await caller.send({"type": "ping"})
    await caller.expect("pong")
    await caller.close()


async def test_oversized_message_closes_socket(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    caller = await Signalling.caller(server.url, created["link"])
    await caller.ws.send_str(json.dumps({"type": "ping", "pad": "x" * 70_000}))
    closed = await caller.expect("_closed")
    assert closed["code"] == 1009, closed
    # The room survives: the same browser connects again.
    again = await Signalling._connect(caller.http, server.url, "/ws/caller")
    assert again.welcome["room"]["state"] == "waiting"
    await again.close()


async def test_rate_limit(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(signalling={"rate_per_s": 1.0, "burst": 5})
    agent = await server.agent()
    created = await agent.new_session()
    caller = await Signalling.caller(server.url, created["link"])
    for _ in range(8):
        await caller.send({"type": "ping"})
    replies = [await caller.recv() for _ in range(8)]
    replies = [r for r in replies if r["type"] != "room"]
    assert [r["type"] for r in replies[:5]] == ["pong"] * 5
    assert {"error"} == {r["type"] for r in replies[5:]}
    assert {r["code"] for r in replies[5:]} == {"rate_limited"}
    await caller.close()


async def test_agent_end_reaches_caller(server) -> None:  # type: ignore[no-untyped-def]
    agent_http = await server.agent()
    created = await agent_http.new_session()
    room = created["session"]["id"]
    caller = await Signalling.caller(server.url, created["link"])
    agent = await Signalling.agent(server.url, agent_http.http, room)
    assert agent.welcome["room"]["caller"]["status"] == "opened"
    await agent.send({"type": "end"})
    ended = await caller.expect("ended")
    assert ended["reason"] == "agent_ended"
    closed = await caller.expect("_closed")
    assert closed["code"] == 4000, closed
    await agent.expect("ended")
    await caller.close()
    await agent.ws.close()


async def test_inactivity_timeout_ends_room(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server()
    agent = await server.agent()
    created = await agent.new_session()
    caller = await Signalling.caller(server.url, created["link"])
    server.clock.advance(server.config.session.inactivity_timeout_s + 1)
    ended = await caller.expect("ended", timeout=6)
    assert ended["reason"] == "inactive"
    status, body = await agent.get(f"/api/sessions/{created['session']['id']}")
    assert body["session"]["state"] == "ended" and body["session"]["end_reason"] == "inactive"
    await caller.close()
