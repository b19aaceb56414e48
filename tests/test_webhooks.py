"""Webhooks to a real receiver on loopback: signatures, order, retries, dead letters,
the outbox written with the session change."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.exc import IntegrityError

import tests.test_protocol_client as proto
from server.core.appkeys import AUDIT, SECRETS
from server.core.secrets import MissingSecret, load_secrets
from server.observe.ops import OPS
from server.observe.webhooks import WEBHOOKS, sign, verify
from tests.conftest import free_port
from tests.media_helpers import RED, SolidTrack
from tests.signalling_client import Signalling
from tests.test_metrics import scrape, value

FAST_RETRY = {"retry_initial_s": 0.1, "retry_max_s": 0.4, "timeout_s": 2.0}


class Receiver:
    """A CRM stand-in: verifies every request the way docs/webhooks.md says."""

    def __init__(
        self, port: int, key: bytes, fail_first: int = 0, delay_s: float = 0.0,
        dedupe: bool = False,
    ) -> None:  # fmt: skip
        self.port = port
        self.key = key
        self.fail_first = fail_first
        self.delay_s = delay_s  # a slow receiver: a burst is still going out a while
        # Delivery is at least once (docs/ops.md): with `dedupe` a repeated event id is
        # dropped and counted in `duplicates`, as the contract tells receivers to do.
        self.dedupe = dedupe
        self.duplicates: list[str] = []
        self.hold = False  # while True: every request is answered 503 (down for a while)
        self.events: list[dict[str, Any]] = []
        self.seen_ids: set[str] = set()
        self.requests = 0
        self.bad: list[str] = []
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.hold:
            return web.Response(status=503)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        ts = request.headers.get("X-Callassist-Timestamp", "")
        sig = request.headers.get("X-Callassist-Signature", "")
        if not verify(self.key, ts, body, sig):
            self.bad.append(sig)
            return web.Response(status=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        event = json.loads(body)
        assert request.headers["X-Callassist-Event"] == event["type"]
        assert request.headers["X-Callassist-Event-Id"] == event["id"]
        if event["id"] in self.seen_ids:  # a receiver drops replays; we also count them
            (self.duplicates if self.dedupe else self.bad).append("duplicate " + event["id"])
            return web.Response(status=200)
        self.seen_ids.add(event["id"])
        self.events.append(event)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def wait(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"{len(self.events)} of {count} events arrived"
            await asyncio.sleep(0.05)


def by_session(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e["session_id"], []).append(e["type"])
    return out


async def test_signed_events_with_report(make_server) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    server = await make_server(webhooks={"urls": [f"http://127.0.0.1:{port}/hook"], **FAST_RETRY})
    key = server.app[SECRETS].webhook_key
    assert key
    receiver = Receiver(port, key)
    await receiver.start()
    try:
        agent = await server.agent()
        created = await agent.new_session("20000012")
        sid = created["session"]["id"]
        caller = proto.DocClient(await Signalling.caller(server.url, created["link"]), "caller")
        await caller.sig.send({"type": "accept", "notice": caller.sig.welcome["notice"]["version"]})
        await caller.sig.wait_room(status="accepted")
        await caller.connect(SolidTrack(RED))
        await receiver.wait(2)
        status, _ = await agent.post(f"/api/sessions/{sid}/end")
        assert status == 200
        await receiver.wait(3)
        await caller.close()
    finally:
        await receiver.stop()

    assert receiver.bad == []
    assert [e["type"] for e in receiver.events] == [
        "session.created",
        "session.connected",
        "session.ended",
    ]
    created_ev, connected_ev, ended_ev = receiver.events
    assert all(e["session_id"] == sid and e["id"].startswith("evt_") for e in receiver.events)
    assert created_ev["data"]["reference"] == "T-1"
    assert created_ev["data"]["phone_masked"].endswith("12")
    assert connected_ev["data"]["connected_at"]
    ended = ended_ev["data"]
    assert ended["reason"] == "agent_ended"
    report = ended["report"]
    steps = [s["event"] for s in report["timeline"]]
    assert steps[0] == "created" and "connected" in steps and steps[-1] == "ended"
    assert report["end_reason"] == "agent_ended" and report["durations_s"]["to_connect"] > 0
    assert "20000012" not in json.dumps(receiver.events)

    # The signature really covers timestamp and body.
    body = b'{"id":"evt_x"}'
    ts = str(int(time.time()))
    assert verify(key, ts, body, sign(key, ts, body))
    assert not verify(key, ts, body + b" ", sign(key, ts, body))
    assert not verify(b"other key", ts, body, sign(key, ts, body))
    old = str(int(time.time()) - 3600)
    assert not verify(key, old, body, sign(key, old, body))  # a replay, too late


async def test_receiver_down_then_up(make_server) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    server = await make_server(webhooks={"urls": [f"http://127.0.0.1:{port}/hook"], **FAST_RETRY})
    agent = await server.agent()
    sessions = []
    for _ in range(3):
        sid = (await agent.new_session())["session"]["id"]
        sessions.append(sid)
    for sid in sessions:
        start = time.monotonic()
        status, _ = await agent.post(f"/api/sessions/{sid}/end")
        assert status == 200
        assert time.monotonic() - start < 1.0  # a dead receiver never holds a room up

    hooks = server.app[WEBHOOKS]
    deadline = time.monotonic() + 5
    while hooks.stats.failed_attempts < 6:  # every session retried at least once
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert hooks.queued == 6 and hooks.stats.delivered == 0
    metrics = await scrape(server)
    assert value(metrics, "callassist_webhook_deliveries_total", result="failed") >= 6
    assert value(metrics, "callassist_webhook_queue") == 6
    await server.app[OPS].sample()
    snap = server.app[OPS].latest
    assert snap is not None and snap["webhooks"]["failed_attempts"] >= 6
    assert any(w["code"] == "webhooks_failing" for w in snap["warnings"])

    # The receiver comes up, and first answers 503 a few times.
    receiver = Receiver(port, server.app[SECRETS].webhook_key, fail_first=2)  # type: ignore[arg-type]
    await receiver.start()
    try:
        await receiver.wait(6)
        await asyncio.sleep(0.5)  # nothing more arrives
    finally:
        await receiver.stop()
    assert receiver.bad == []
    assert len(receiver.events) == 6 and len(receiver.seen_ids) == 6
    assert by_session(receiver.events) == {
        sid: ["session.created", "session.ended"] for sid in sessions
    }
    assert hooks.queued == 0 and hooks.stats.delivered == 6
    metrics = await scrape(server)
    assert value(metrics, "callassist_webhook_deliveries_total", result="delivered") == 6


async def test_dead_letters_listed_and_replayed(make_server) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    server = await make_server(webhooks={
        "urls": [f"http://127.0.0.1:{port}/hook"], "retry_initial_s": 0.05,
        "retry_max_s": 0.05, "give_up_after_s": 0.3, "poll_s": 0.1, "lease_s": 1.0,
    })  # fmt: skip
    agent = await server.agent()
    sid = (await agent.new_session())["session"]["id"]
    status, _ = await agent.post(f"/api/sessions/{sid}/end")
    assert status == 200
    hooks = server.app[WEBHOOKS]
    deadline = time.monotonic() + 10
    while hooks.counts["dead"] < 2:  # nobody listens: both events given up
        assert time.monotonic() < deadline, hooks.snapshot()
        await asyncio.sleep(0.05)
    assert hooks.queued == 0 and hooks.stats.given_up == 2
    metrics = await scrape(server)
    assert value(metrics, "callassist_webhook_dead_letters") == 2
    assert value(metrics, "callassist_webhook_leader") == 1

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        # In a thread: the server runs on this event loop. Blocking it would freeze the
        # poller, possibly inside a write transaction (its lease), holding SQLite's write
        # lock until the command gave up waiting for it ("database is locked", 15 s).
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "server", "webhooks", *args, "--data-dir",
             str(server.data_dir)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    listed = await cli("dead", "--json")
    assert listed.returncode == 0, listed.stderr
    dead = json.loads(listed.stdout)
    assert [d["type"] for d in dead] == ["session.created", "session.ended"]
    assert all(d["session_id"] == sid and d["attempts"] >= 1 and d["last_error"] for d in dead)
    # Bad input: a clear error, nothing changes.
    assert (await cli("replay")).returncode == 2
    unknown = await cli("replay", "evt_nope")
    assert unknown.returncode == 1 and "evt_nope" in unknown.stderr
    assert hooks.counts["dead"] == 2

    receiver = Receiver(port, server.app[SECRETS].webhook_key)  # type: ignore[arg-type]
    await receiver.start()
    try:
        replayed = await cli("replay", "--all")
        assert replayed.returncode == 0 and "2 events" in replayed.stdout, replayed.stderr
        await receiver.wait(2)
    finally:
        await receiver.stop()
    assert receiver.bad == []
    assert [e["id"] for e in receiver.events] == [d["id"] for d in dead]  # same ids, in order
    assert receiver.events[1]["data"]["report"]["end_reason"] == "agent_ended"
    actions = [(r["action"], r["object"]) for r in await server.app[AUDIT].rows()]
    assert ("webhooks.dead", "") in actions
    assert [o for a, o in actions if a == "webhooks.replay"] == sorted(d["id"] for d in dead)


async def test_delivery_starts_after_the_schema(make_server, caplog) -> None:  # type: ignore[no-untyped-def]
    """On a new data directory the poller's first round waits for the migrations (it ran
    before them and logged "database unavailable (no such table: leases)")."""
    caplog.set_level(logging.INFO, logger="server.observe.webhooks")
    server = await make_server(webhooks={"urls": [f"http://127.0.0.1:{free_port()}/hook"],
                                         "poll_s": 0.05})  # fmt: skip
    hooks = server.app[WEBHOOKS]
    deadline = time.monotonic() + 5
    while not hooks.is_leader:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    said = [r.getMessage() for r in caplog.records if r.name == "server.observe.webhooks"]
    assert not [m for m in said if "database" in m], said


async def test_outbox_row_in_the_same_transaction(make_server) -> None:  # type: ignore[no-untyped-def]
    """A session write that fails writes no event; one that succeeds writes it with it."""
    server = await make_server(webhooks={"urls": [f"http://127.0.0.1:{free_port()}/hook"]})
    agent = await server.agent()
    sid = (await agent.new_session())["session"]["id"]
    db = server.db
    before = await db.outbox_counts()
    with pytest.raises(IntegrityError):  # the same id again: the insert fails ...
        row = await db.get_session(sid)
        await db.add_session(**row)
    assert await db.outbox_counts() == before  # ... and its session.created with it
    await db.update_session(sid, state="ended", ended_at=time.time(), end_reason="x")
    await db.update_session(sid, state="ended", ended_at=time.time(), end_reason="x")
    heads = await db.outbox_heads(time.time() + 3600)
    assert [h["type"] for h in heads if h["session_id"] == sid] == ["session.created"]
    assert (await db.outbox_counts())["pending"] == before["pending"] + 1  # one ended only
    # Erasure and retention delete a session's undelivered events with it.
    assert await db.delete_sessions([sid]) == 1
    assert (await db.outbox_counts())["pending"] == 0


def test_webhook_key_needed_only_with_urls(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CALLASSIST_SERVER_KEY", "s" * 40)
    monkeypatch.delenv("CALLASSIST_WEBHOOK_KEY", raising=False)
    assert load_secrets("production", tmp_path, need_sms=False, need_turn=False).webhook_key is None
    with pytest.raises(MissingSecret, match="webhook_key"):
        load_secrets("production", tmp_path, need_sms=False, need_turn=False, need_webhook=True)
    monkeypatch.setenv("CALLASSIST_WEBHOOK_KEY", "w" * 40)
    got = load_secrets("production", tmp_path, need_sms=False, need_turn=False, need_webhook=True)
    assert got.webhook_key == b"w" * 40
