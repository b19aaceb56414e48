"""The signalling transport's limits as docs/protocol.md states them (issue 14, item 16):
Origin, binary floods, the size limit both ways, the heartbeat, and the notice gate."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import aiohttp
import pytest

from server.core.config import SignallingConfig
from server.signalling.socket import drop_after_s
from tests.signalling_client import SUBPROTOCOL, Signalling, open_link

DOCS = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


async def test_upgrade_without_origin_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    created = await agent.new_session()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert await open_link(http, created["link"]) == 303
        url = server.url.replace("http", "ws") + "/ws/caller"
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(url, protocols=(SUBPROTOCOL,))  # no Origin header
        assert info.value.status == 403
        # The same browser with its Origin gets in.
        ws = await http.ws_connect(url, protocols=(SUBPROTOCOL,), origin=server.url)
        assert json.loads((await ws.receive()).data)["type"] == "welcome"
        await ws.close()


async def test_binary_flood_is_rate_limited_and_closed(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(signalling={"rate_per_s": 1.0, "burst": 5})
    agent = await server.agent()
    created = await agent.new_session()
    caller = await Signalling.caller(server.url, created["link"])
    for _ in range(200):
        try:
            await caller.ws.send_bytes(b"\x00" * 10)
        except ConnectionError:
            break
    codes: list[str] = []
    while True:
        msg = await caller.recv()
        if msg["type"] == "_closed":
            break
        if msg["type"] == "error":
            codes.append(msg["code"])
    assert msg["code"] == 1008, msg
    assert "rate_limited" in codes


async def test_size_limit_is_inclusive_and_says_too_large(server) -> None:  # type: ignore[no-untyped-def]
    limit = server.config.signalling.max_message_bytes
    assert limit == 65_536  # docs/protocol.md: "at most 64 KiB"
    agent = await server.agent()
    created = await agent.new_session()
    caller = await Signalling.caller(server.url, created["link"])

    def ping_of(size: int) -> str:
        bare = json.dumps({"type": "ping", "pad": ""})
        return json.dumps({"type": "ping", "pad": "x" * (size - len(bare))})

    exact = ping_of(limit)
    assert len(exact.encode()) == limit
    await caller.ws.send_str(exact)
    await caller.expect("pong")  # exactly the limit is allowed
    await caller.ws.send_str(ping_of(limit + 1))
    err = await caller.expect("error")
    assert err["code"] == "too_large", err
    closed = await caller.expect("_closed")
    assert closed["code"] == 1009, closed


async def test_server_messages_stay_under_the_documented_limit(make_server) -> None:  # type: ignore[no-untyped-def]
    # The documented server -> client limit is the config default.
    text = DOCS.read_text()
    assert "at most 256 KiB" in text and "signalling.max_server_message_bytes" in text
    assert SignallingConfig().max_server_message_bytes == 256 * 1024
    # A small limit shows the rule: a chat that would exceed it reaches the other side as
    # a `too_large` error, never as a bigger frame.
    server = await make_server(signalling={"max_server_message_bytes": 3_000})
    agent_http = await server.agent()
    created = await agent_http.new_session()
    caller = await Signalling.caller(server.url, created["link"])
    await caller.send({"type": "accept", "notice": caller.welcome["notice"]["version"]})
    await caller.wait_room(status="accepted")
    agent = await Signalling.agent(server.url, agent_http.http, created["session"]["id"])
    await agent.send({"type": "chat", "text": "ä" * 800})  # ~4.8 KB of JSON escapes
    sizes: list[int] = []
    seen: dict = {}
    while True:
        raw = await asyncio.wait_for(caller.ws.receive(), 10)
        sizes.append(len(raw.data.encode()))
        seen = json.loads(raw.data)
        if seen["type"] in ("error", "chat"):
            break
    assert seen["type"] == "error" and seen["code"] == "too_large" and seen["ref"] == "chat"
    assert max(sizes) <= 3_000
    await agent.send({"type": "chat", "text": "short"})
    assert (await caller.expect("chat"))["text"] == "short"
    await caller.close()
    await agent.ws.close()


def test_documented_heartbeat_drop_time() -> None:
    # docs: "closes a connection that has not answered for 30 s"; aiohttp drops after
    # heartbeat + heartbeat / 2.
    text = " ".join(DOCS.read_text().split())
    said = re.search(r"closes a connection that has not answered a ping within (\d+) s", text)
    assert said, "docs/protocol.md states the heartbeat drop time"
    ping = re.search(r"sends WebSocket pings every (\d+) s", text)
    assert ping and float(ping.group(1)) == SignallingConfig().heartbeat_s
    assert drop_after_s(SignallingConfig()) == 30 == float(ping.group(1)) + float(said.group(1))


async def test_heartbeat_drops_a_silent_client_not_before_its_time(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(signalling={"heartbeat_s": 2.0})
    agent = await server.agent()
    created = await agent.new_session()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert await open_link(http, created["link"]) == 303
        ws = await http.ws_connect(
            server.url.replace("http", "ws") + "/ws/caller",
            protocols=(SUBPROTOCOL,),
            origin=server.url,
            autoping=False,  # a client that never answers pings
        )
        start = time.monotonic()
        pings = 0
        while True:
            msg = await ws.receive(timeout=30)
            if msg.type == aiohttp.WSMsgType.PING:
                pings += 1
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
        waited = time.monotonic() - start
        # Not before 1.5 x heartbeat_s of silence (a semantic bound, not a speed one).
        assert pings >= 1 and waited >= drop_after_s(server.config.signalling) - 0.2, waited


async def test_caller_messages_before_accept_do_not_reach_the_agent(server) -> None:  # type: ignore[no-untyped-def]
    agent_http = await server.agent()
    created = await agent_http.new_session()
    caller = await Signalling.caller(server.url, created["link"])
    agent = await Signalling.agent(server.url, agent_http.http, created["session"]["id"])
    before = [
        {"type": "chat", "text": "hello"},
        {"type": "caps", "torch": True},
        {"type": "netq", "score": 3},
        {"type": "freeze"},
        {"type": "media", "track": "camera", "state": "paused"},
        {"type": "push_state", "id": "p1", "state": "opened"},
        {"type": "camera_result", "id": 1, "action": "torch", "result": "applied"},
    ]
    for m in before:
        await caller.send(m)
        err = await caller.expect("error")
        assert err["code"] == "notice_not_accepted" and err["ref"] == m["type"], (m, err)
    # After accept the same chat goes through; it is the first thing the agent gets.
    await caller.send({"type": "accept", "notice": caller.welcome["notice"]["version"]})
    await caller.wait_room(status="accepted")
    await caller.send({"type": "chat", "text": "after"})
    while True:
        got = await agent.recv()
        assert got["type"] not in ("caps", "netq", "frozen", "freeze_request"), got
        if got["type"] == "chat":
            assert got["text"] == "after", got
            break
        if got["type"] == "room":
            assert got["room"]["caller"]["status"] != "paused", got
    await caller.close()
    await agent.ws.close()
