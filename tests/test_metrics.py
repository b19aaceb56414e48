"""/metrics scraped and parsed like Prometheus does; /healthz and /readyz."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

import tests.test_protocol_client as proto
from server.core.appkeys import DB
from tests.conftest import scraper
from tests.media_helpers import RED, SolidTrack
from tests.signalling_client import Signalling


async def scrape(server: Any) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} from the server's /metrics."""
    async with (
        aiohttp.ClientSession(headers=scraper(server)) as http,
        http.get(server.url + "/metrics") as r,
    ):
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics[name][tuple(sorted(labels.items()))]


async def test_metrics_follow_a_session(server) -> None:  # type: ignore[no-untyped-def]
    before = await scrape(server)
    for name in (
        "callassist_rooms",
        "callassist_link_opens_total",
        "callassist_peer_connection_failures_total",
        "callassist_media_bytes_received_total",
        "callassist_media_frames_forwarded_total",
        "callassist_keyframe_requests_total",
        "callassist_media_datagrams_sent_total",
        "callassist_media_gso_sendmsg_total",
        "callassist_media_gso_refused_total",
        "callassist_webhook_deliveries_total",
        "callassist_event_loop_lag_seconds",
        "callassist_recording_bytes_total",
        "callassist_recording_spool_bytes",
        "process_resident_memory_bytes",
    ):
        assert name in before, name
    assert value(before, "callassist_rooms", state="active") == 0
    assert value(before, "callassist_link_opens_total", outcome="opened") == 0

    # A live room: the caller publishes, the agent receives.
    agent_http = await server.agent()
    created = await agent_http.new_session()
    room = created["session"]["id"]
    caller = proto.DocClient(await Signalling.caller(server.url, created["link"]), "caller")
    await caller.sig.send({"type": "accept", "notice": caller.sig.welcome["notice"]["version"]})
    await caller.sig.wait_room(status="accepted")
    await caller.connect(SolidTrack(RED))
    agent = proto.DocClient(await Signalling.agent(server.url, agent_http.http, room), "agent")
    await agent.connect(None)
    assert agent.watcher is not None
    await agent.watcher.wait_colour(RED)
    await asyncio.sleep(1.2)  # one ops sample of the sent bytes

    # Link outcomes: the same link again (reused), a made-up one, an expired one.
    async with aiohttp.ClientSession() as phone:
        async with phone.get(created["link"], allow_redirects=False) as r:
            assert r.status == 410
        async with phone.get(server.url + "/j/" + "x" * 43, allow_redirects=False) as r:
            assert r.status == 410
        later = await agent_http.new_session()
        server.clock.advance(server.config.session.link_ttl_s + 1)
        async with phone.get(later["link"], allow_redirects=False) as r:
            assert r.status == 410
        server.clock.advance(-(server.config.session.link_ttl_s + 1))

    live = await scrape(server)
    assert value(live, "callassist_rooms", state="active") == 1
    assert value(live, "callassist_rooms", state="waiting") == 1
    assert value(live, "callassist_callers", status="live") == 1
    assert value(live, "callassist_participants", role="caller", state="connected") == 1
    assert value(live, "callassist_participants", role="agent", state="connected") == 1
    assert value(live, "callassist_signalling_connections", role="caller") == 1
    assert value(live, "callassist_media_bytes_received_total", track="camera") > 0
    assert value(live, "callassist_media_frames_forwarded_total", track="camera") > 0
    assert value(live, "callassist_keyframe_requests_total", track="camera") >= 1
    assert value(live, "callassist_media_bytes_sent_total") > 0
    assert value(live, "callassist_sessions_created_total") == 2
    assert value(live, "callassist_sessions_connected_total") == 1
    for outcome, n in (("opened", 1), ("reused", 1), ("invalid", 1), ("expired", 1)):
        assert value(live, "callassist_link_opens_total", outcome=outcome) == n, outcome

    await agent.sig.send({"type": "end"})
    await caller.sig.expect("ended")
    await caller.close()
    await agent.close()
    for _ in range(50):  # `ended` reaches the caller before the room is gone
        done = await scrape(server)
        if value(done, "callassist_sessions_ended_total", reason="agent_ended") == 1:
            break
        await asyncio.sleep(0.1)
    assert value(done, "callassist_rooms", state="active") == 0
    # Counters keep what ended rooms did.
    frames = value(done, "callassist_media_frames_forwarded_total", track="camera")
    assert frames >= value(live, "callassist_media_frames_forwarded_total", track="camera")
    assert value(done, "callassist_sessions_ended_total", reason="agent_ended") == 1
    assert "callassist_event_loop_lag_bucket" in done


async def test_two_apps_in_one_process(make_server) -> None:  # type: ignore[no-untyped-def]
    a = await make_server()
    b = await make_server()
    agent = await a.agent()
    await agent.new_session()
    ma, mb = await scrape(a), await scrape(b)
    assert value(ma, "callassist_sessions_created_total") == 1
    assert value(mb, "callassist_sessions_created_total") == 0


async def test_health_and_readiness(server) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with http.get(server.url + "/readyz") as r:
            body = await r.json()
            assert r.status == 200 and body["status"] == "ready", body
            assert body["checks"] == {"database": "ok", "storage": "ok"}

        # The database goes away: not ready, with the reason; the process is still up.
        db = server.app[DB]
        real = db.engine
        db.engine = create_async_engine("sqlite+aiosqlite:////nonexistent-dir/x.db")
        try:
            start = time.monotonic()
            async with http.get(server.url + "/readyz") as r:
                body = await r.json()
                assert r.status == 503, body
                assert body["status"] == "not_ready"
                assert body["reason"].startswith("database")
            assert time.monotonic() - start < 5
            async with http.get(server.url + "/healthz") as r:
                assert r.status == 200
        finally:
            await db.engine.dispose()
            db.engine = real
        async with http.get(server.url + "/readyz") as r:
            assert r.status == 200
