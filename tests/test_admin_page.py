"""The admin page (/admin) and its API, in real Chromium against a real server: accounts
(create, disable, enable, password, role, and the refusals for dpo/admin), the effective
configuration with every secret masked, the nodes (one node here; a real two-node cluster
on a real redis-server below), webhook deliveries (a real receiver: a dead letter replayed,
a pending one), each action audited; axe on every state; screenshots with
CALLASSIST_SHOTS=<dir> at 390 and 1280 px.

Over 400 lines: one module so the started servers (a node with webhooks, a cluster of two)
are reused by every test here instead of being started per test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Page, expect
from redis_helpers import RedisServer

from server.core import config as config_mod
from server.core.appkeys import AUDIT, SECRETS
from server.core.secrets import Secrets
from server.http import admin_config
from server.http.app import create_app
from server.observe.webhooks import WEBHOOKS
from tests.conftest import PASSWORD, FakeClock, Server, free_port
from tests.conftest import test_config as config_for
from tests.test_a11y import Audit as Axe

SHOTS = os.environ.get("CALLASSIST_SHOTS")
NEW_PASSWORD = "another good passphrase"
# Known secret values, planted wherever the configuration can carry one.
HOOK_PASS, HOOK_PATH, HOOK_QUERY = "HOOKPASS7f3a", "HOOKPATH91c2", "HOOKQUERY55d0"
SMS_PASS, SMS_PATH, SMS_QUERY = "SMSPASS18b4", "SMSPATH6e0d", "SMSQUERY2a7c"
TURN_PASS, S3_PASS, S3_TOKEN = "TURNPASS9d1e", "S3PASS03fa", "S3TOKEN77c1"
KMS_PASS, REDIS_PASS, PG_PASS = "KMSPASS4b8e", "REDISPASS5c2d", "PGPASS8e61"
MARKERS = [HOOK_PASS, HOOK_PATH, HOOK_QUERY, SMS_PASS, SMS_PATH, SMS_QUERY, TURN_PASS,
           S3_PASS, S3_TOKEN, KMS_PASS, REDIS_PASS, PG_PASS]  # fmt: skip


def secret_values(secrets: Secrets) -> list[str]:
    out = []
    for f in dataclasses.fields(secrets):
        v = getattr(secrets, f.name)
        if v:
            out.append(v.decode() if isinstance(v, bytes) else v)
    return out


# --- the masking, pure --------------------------------------------------------------------


def test_every_string_key_is_classified() -> None:
    # A key added to Config later must be classified (or it is masked whole meanwhile).
    keys = set(admin_config.string_keys())
    known = admin_config.PLAIN | admin_config.URLS | admin_config.RECEIVERS
    assert keys - known == set(), "classify these in server/http/admin_config.py"
    assert known - keys == set(), "classified keys that Config no longer has"


def test_unclassified_values_are_masked_whole() -> None:
    assert admin_config._shown("some.new_key", "s3cr3t") == ("•••", True)
    assert admin_config._shown("some.new_list", ["a", "b"]) == (["•••", "•••"], True)
    assert admin_config._shown("media.turn_ttl_s", 3600) == (3600, False)


def test_urls_lose_passwords_and_tokens() -> None:
    m = admin_config.mask_url
    assert m("sqlite:////var/lib/callassist/callassist.db") == (
        "sqlite:////var/lib/callassist/callassist.db")  # fmt: skip
    assert m("postgresql+asyncpg://ca:pw@db:5432/ca?sslmode=require") == (
        "postgresql+asyncpg://•••@db:5432/ca?sslmode=•••")  # fmt: skip
    assert m("redis://:pw@10.0.0.1:6379/0") == "redis://•••@10.0.0.1:6379/0"
    assert m("turn:user:pw@turn.example.eu:3478?transport=udp") == (
        "turn:•••@turn.example.eu:3478?transport=•••")  # fmt: skip
    assert m("http://[::1]:8080/x") == "http://[::1]:8080/x"
    o = admin_config.origin_only
    assert o("https://hooks.example.eu/T0/B0/XYZ") == "https://hooks.example.eu/•••"
    assert o("https://crm.example.eu") == "https://crm.example.eu"


def test_a_config_full_of_secrets_shows_none_of_them() -> None:
    """Every URL-like key gets a value with a password, a token in the query and (for
    receivers) a token in the path; the secrets get known values. None may come out."""
    data: dict[str, Any] = {}
    for key in sorted(admin_config.URLS | admin_config.RECEIVERS):
        secret = f"K{abs(hash(key)) % 10**8}X"
        # The path is shown for URLs (a database name, a file), not for receivers, whose
        # path is often their token.
        path = f"{secret}path" if key in admin_config.RECEIVERS else "db"
        value = f"https://u:{secret}p@h.example.eu:8443/{path}?token={secret}q"
        if key in ("media.turn_urls", "media.stun_urls", "media.server_turn_url"):
            value = f"turn:u:{secret}p@h.example.eu:3478?key={secret}q"
        if key == "storage.database_url":
            value = f"postgresql+asyncpg://ca:{secret}p@db:5432/ca?password={secret}q"
        if key == "cluster.redis_url":
            value = f"redis://:{secret}p@10.0.0.1:6379/0"
        section, *rest = key.split(".")
        target = data.setdefault(section, {})
        for part in rest[:-1]:
            target = target.setdefault(part, {})
        is_list = key in ("media.turn_urls", "media.stun_urls", "webhooks.urls",
                          "http.allowed_origins")  # fmt: skip
        target[rest[-1]] = [value] if is_list else value
    cfg = config_mod._build(config_mod.Config, data, "")  # the file's form, unvalidated
    secrets = Secrets(server_key=b"SERVERKEY0123456789abcdef0123456789", sms_hmac_key=b"SMSKEY1",
                      turn_secret="TURNSECRET1", webhook_key=b"WEBHOOKKEY1",
                      metrics_token="METRICSTOKEN1")  # fmt: skip
    shown = json.dumps(admin_config.effective_config(cfg, secrets), ensure_ascii=False)
    for key in admin_config.URLS | admin_config.RECEIVERS:
        secret = f"K{abs(hash(key)) % 10**8}X"
        assert secret not in shown, f"{key} leaks its secret: {shown}"
    for value in secret_values(secrets):
        assert value not in shown
    rows = {r["key"]: r for s in json.loads(shown)["sections"] for r in s["keys"]}
    assert rows["webhooks.urls"] == {"key": "webhooks.urls", "masked": True,
                                     "value": ["https://h.example.eu:8443/•••"]}  # fmt: skip
    assert rows["retention.sessions_days"]["value"] == 90
    assert set(rows) >= set(admin_config.string_keys())  # every key is listed


# --- a server with secrets in its configuration, and a webhook receiver ----------------------


class Receiver:
    """A CRM stand-in on loopback. `mode`: "fail" (500), "hold" (answers when released),
    "ok" (204). `delivered` lists the event ids it took (2xx)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "ok"
        self.delivered: list[str] = []
        self.seen: list[str] = []
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        self.seen.append(event["id"])
        mode = self.mode
        if mode == "fail":
            return web.Response(status=500)
        if mode == "hold":
            self.held.set()
            await self.release.wait()
        self.delivered.append(event["id"])
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


async def start_server(tmp: Path, cfg: config_mod.Config, port: int) -> tuple[Server, Any]:
    clock = FakeClock()
    app = create_app(cfg, tmp / f"data-{port}", clock=clock)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Server(f"http://127.0.0.1:{port}", port, app, tmp / f"data-{port}", cfg, clock), runner


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Server, Receiver]]:
    receiver = Receiver()
    await receiver.start()
    port = free_port()
    cfg = config_for(
        port,
        webhooks={"urls": [f"http://hook:{HOOK_PASS}@127.0.0.1:{receiver.port}/hook/"
                           f"{HOOK_PATH}?token={HOOK_QUERY}"],
                  "retry_initial_s": 300.0, "retry_max_s": 300.0, "give_up_after_s": 0.0,
                  "poll_s": 0.2, "lease_s": 1.0, "timeout_s": 60.0},
        sms={"sender": "http",
             "http_url": f"http://sms:{SMS_PASS}@127.0.0.1:9/send/{SMS_PATH}?key={SMS_QUERY}"},
        media={"turn_urls": [f"turn:turnuser:{TURN_PASS}@127.0.0.1:3478"]},
        recording={"s3": {"endpoint_url": f"http://s3:{S3_PASS}@127.0.0.1:9/?t={S3_TOKEN}"},
                   "kms": {"endpoint_url": f"http://kms:{KMS_PASS}@127.0.0.1:9/"}},
        cluster={"redis_url": f"redis://:{REDIS_PASS}@127.0.0.1:9/0"},
    )  # fmt: skip
    server, runner = await start_server(tmp_path_factory.mktemp("admin"), cfg, port)
    for name, role in (("adam", "admin"), ("alma", "admin"), ("anna", "agent"),
                       ("dora", "dpo")):  # fmt: skip
        await server.add_user(name, role)
    try:
        yield server, receiver
    finally:
        receiver.release.set()
        await runner.cleanup()
        await receiver.stop()


async def page_as(browser: Any, server: Server, name: str = "adam", width: int = 1280,
                  lang: str = "en") -> tuple[Any, Page]:  # fmt: skip
    ctx = await browser.new_context(viewport={"width": width, "height": 900}, locale="en-GB")
    await ctx.add_init_script(f"localStorage.setItem('callassist.lang','{lang}')")
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.callassist_errors = errors  # type: ignore[attr-defined]
    await page.goto(server.url + "/admin")
    await page.get_by_test_id("login-username").fill(name)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    return ctx, page


def script_errors(page: Page) -> list[str]:
    # The 401 of the login probe before logging in is expected ("Failed to load resource").
    errors = page.callassist_errors  # type: ignore[attr-defined]
    return [e for e in errors if not e.startswith("Failed to load resource")]


async def shoot(page: Page, name: str) -> None:
    if not SHOTS:
        return
    out = Path(SHOTS)
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before screenshots
    for width in (1280, 390):
        await page.set_viewport_size({"width": width, "height": 900})
        await asyncio.sleep(0.2)
        await page.screenshot(path=str(out / f"admin-{name}-{width}.png"), full_page=True)
    await page.set_viewport_size({"width": 1280, "height": 900})


async def audit_rows(server: Server, since: int = 0) -> list[dict[str, Any]]:
    return [r for r in await server.app[AUDIT].rows() if r["seq"] > since]


async def audit_head(server: Server) -> int:
    rows = await server.app[AUDIT].rows()
    return rows[-1]["seq"] if rows else 0


def user_row(page: Page, name: str) -> Any:
    return page.locator(f'[data-testid="admin-account"][data-name="{name}"]')


async def can_log_in(server: Server, name: str, password: str) -> bool:
    async with aiohttp.ClientSession() as http, http.post(
        server.url + "/api/login", json={"username": name, "password": password},
        headers={"Origin": server.url},
    ) as r:  # fmt: skip
        return r.status == 200


# --- users -----------------------------------------------------------------------------------


async def test_users_create_disable_enable_password_role(browser: Any, site: Any) -> None:
    server, _ = site
    seq = await audit_head(server)
    ctx, page = await page_as(browser, server)
    try:
        await expect(user_row(page, "anna")).to_be_visible()
        await expect(page.get_by_test_id("admin-account")).to_have_count(4)
        await expect(page.get_by_test_id("admin-user")).to_have_text("adam (admin)")  # header
        # Own account: no disable button; dpo and admin rows say "command line only".
        await expect(user_row(page, "adam").get_by_test_id("admin-user-toggle")).to_have_count(0)
        await expect(user_row(page, "dora").get_by_test_id("admin-user-cli")).to_be_visible()

        # Create: bad input first (a clear error, nothing made), then a supervisor.
        await page.get_by_test_id("admin-create-username").fill("bob")
        await page.get_by_test_id("admin-create-password").fill("short")
        await page.get_by_test_id("admin-create-submit").click()
        error = page.get_by_test_id("admin-error")
        await expect(error).to_have_attribute("data-code", "bad_password")
        await expect(user_row(page, "bob")).to_have_count(0)
        await page.get_by_test_id("admin-create-password").fill(PASSWORD)
        await page.get_by_test_id("admin-create-role").select_option("supervisor")
        await page.get_by_test_id("admin-create-submit").click()
        await expect(user_row(page, "bob")).to_have_attribute("data-role", "supervisor")
        await expect(page.get_by_test_id("admin-status")).to_contain_text("bob created")
        await expect(page.get_by_test_id("admin-error")).to_be_hidden()
        assert await can_log_in(server, "bob", PASSWORD)
        # The same name again: refused.
        await page.get_by_test_id("admin-create-username").fill("Bob")
        await page.get_by_test_id("admin-create-password").fill(PASSWORD)
        await page.get_by_test_id("admin-create-submit").click()
        await expect(error).to_have_attribute("data-code", "user_exists")

        # Disable and enable anna: her login stops and works again.
        await user_row(page, "anna").get_by_test_id("admin-user-toggle").click()
        await expect(user_row(page, "anna").get_by_test_id("admin-user-state")).to_have_attribute(
            "data-state", "disabled")  # fmt: skip
        # The keyboard stays on the row's button.
        focused = await page.evaluate("document.activeElement.closest('tr').dataset.name")
        assert focused == "anna"
        assert not await can_log_in(server, "anna", PASSWORD)
        await user_row(page, "anna").get_by_test_id("admin-user-toggle").click()
        await expect(user_row(page, "anna").get_by_test_id("admin-user-state")).to_have_attribute(
            "data-state", "active")  # fmt: skip
        assert await can_log_in(server, "anna", PASSWORD)

        # A new password for bob; a role change for bob.
        await user_row(page, "bob").get_by_test_id("admin-user-password").click()
        await expect(page.get_by_test_id("admin-password-input")).to_be_focused()
        await page.get_by_test_id("admin-password-input").fill(NEW_PASSWORD)
        await page.get_by_test_id("admin-password-save").click()
        await expect(page.get_by_test_id("admin-password-form")).to_be_hidden()
        await expect(page.get_by_test_id("admin-status")).to_contain_text("bob's password")
        assert await can_log_in(server, "bob", NEW_PASSWORD)
        assert not await can_log_in(server, "bob", PASSWORD)
        await user_row(page, "bob").get_by_test_id("admin-user-role").select_option("agent")
        await expect(user_row(page, "bob")).to_have_attribute("data-role", "agent")
        await shoot(page, "users")

        actions = [(r["action"], r["object"], r["reason"]) for r in await audit_rows(server, seq)]
        assert ("user.create", "bob", "role supervisor") in actions
        assert ("user.update", "anna", "changed: disabled") in actions
        assert [a for a in actions if a[:2] == ("user.update", "anna")] == [
            ("user.update", "anna", "changed: disabled")] * 2  # disable, enable
        assert ("user.update", "bob", "changed: password") in actions
        assert ("user.update", "bob", "changed: role") in actions
        assert script_errors(page) == []
    finally:
        await ctx.close()


async def test_refusals_for_dpo_and_admin_accounts_are_shown(browser: Any, site: Any) -> None:
    server, _ = site
    seq = await audit_head(server)
    ctx, page = await page_as(browser, server)
    error = page.get_by_test_id("admin-error")
    try:
        # Elevate an agent: refused, shown, the select back on the role anna still has.
        await user_row(page, "anna").get_by_test_id("admin-user-role").select_option("admin")
        await expect(error).to_have_attribute("data-code", "cli_only")
        await expect(error).to_contain_text("only with the command line on the server")
        await expect(page.get_by_test_id("admin-error-subject")).to_have_text("anna: ")
        await expect(user_row(page, "anna").get_by_test_id("admin-user-role")).to_have_value(
            "agent")  # fmt: skip
        # Take over a dpo (new password) or another admin (role): refused.
        await user_row(page, "dora").get_by_test_id("admin-user-password").click()
        await page.get_by_test_id("admin-password-input").fill(NEW_PASSWORD)
        await page.get_by_test_id("admin-password-save").click()
        await expect(error).to_have_attribute("data-code", "cli_only")
        await expect(page.get_by_test_id("admin-error-subject")).to_have_text("dora: ")
        assert await can_log_in(server, "dora", PASSWORD)
        await page.get_by_test_id("admin-password-cancel").click()
        await user_row(page, "alma").get_by_test_id("admin-user-role").select_option("agent")
        await expect(error).to_have_attribute("data-code", "cli_only")
        await expect(user_row(page, "alma")).to_have_attribute("data-role", "admin")
        await shoot(page, "refused")
        # In Latvian the refusal is Latvian.
        await page.get_by_test_id("lang-lv").click()
        await expect(error).to_contain_text("tikai ar komandrindu serverī")
        await page.get_by_test_id("lang-en").click()
        # Disabling a dpo is allowed (and undone).
        await user_row(page, "dora").get_by_test_id("admin-user-toggle").click()
        await expect(user_row(page, "dora").get_by_test_id("admin-user-state")).to_have_attribute(
            "data-state", "disabled")  # fmt: skip
        assert not await can_log_in(server, "dora", PASSWORD)
        await user_row(page, "dora").get_by_test_id("admin-user-toggle").click()
        await expect(user_row(page, "dora").get_by_test_id("admin-user-state")).to_have_attribute(
            "data-state", "active")  # fmt: skip
        rows = await audit_rows(server, seq)
        denied = [r for r in rows if r["result"] == "denied" and r["actor"] == "adam"]
        assert len(denied) == 3 and {r["reason"] for r in denied} == {"cli_only"}
        assert {r["action"] for r in denied} == {"POST /api/admin/users/{username}"}
        assert ("user.update", "dora") in [(r["action"], r["object"]) for r in rows]
        assert script_errors(page) == []
    finally:
        await ctx.close()


async def test_another_role_sees_no_access(browser: Any, site: Any) -> None:
    server, _ = site
    ctx, page = await page_as(browser, server, "anna")
    try:
        await expect(page.get_by_test_id("admin-forbidden")).to_be_visible()
        await expect(page.locator("#view-console")).to_be_hidden()
        for path in ("/api/admin/config", "/api/admin/nodes", "/api/admin/webhooks"):
            status = await page.evaluate(f"fetch('{path}').then((r) => r.status)")
            assert status == 403, path
    finally:
        await ctx.close()


# --- configuration ---------------------------------------------------------------------------


async def test_configuration_masks_every_secret(browser: Any, site: Any) -> None:
    server, _ = site
    secrets = secret_values(server.app[SECRETS])
    assert len(secrets) == 5  # every secret is set in this embedded server: all must hide
    anna = await server.agent("adam")
    try:
        status, body = await anna.get("/api/admin/config")
        assert status == 200
        text = json.dumps(body, ensure_ascii=False)
        for value in MARKERS + secrets:
            assert value not in text, f"{value} in {text}"
        rows = {r["key"]: r for s in body["sections"] for r in s["keys"]}
        assert rows["webhooks.urls"]["masked"] and rows["sms.http_url"]["masked"]
        assert rows["sms.http_url"]["value"] == "http://127.0.0.1:9/•••"
        assert rows["media.turn_urls"]["value"] == ["turn:•••@127.0.0.1:3478"]
        assert rows["cluster.redis_url"]["value"] == "redis://•••@127.0.0.1:9/0"
        assert rows["environment"] == {"key": "environment", "value": "embedded",
                                       "masked": False}  # fmt: skip
        assert {s["name"]: s["set"] for s in body["secrets"]}["webhook_key"] is True
        # The status route neither.
        status, body = await anna.get("/api/admin/status")
        text = json.dumps(body, ensure_ascii=False)
        assert status == 200 and not [v for v in MARKERS + secrets if v in text]
    finally:
        await anna.close()
    ctx, page = await page_as(browser, server)
    try:
        await page.get_by_test_id("admin-tab-config").click()
        value = page.locator('[data-testid="admin-config-value"][data-key="webhooks.urls"]')
        await expect(value).to_have_attribute("data-masked", "true")
        await expect(value).to_contain_text(f"http://127.0.0.1:{site[1].port}/•••")
        secret = page.locator('[data-testid="admin-secret"][data-name="server_key"]')
        await expect(secret).to_have_attribute("data-set", "true")
        html = await page.content()
        for value in MARKERS + secrets:
            assert value not in html
        await shoot(page, "config")
        assert script_errors(page) == []
    finally:
        await ctx.close()


# --- nodes (single) and webhooks -------------------------------------------------------------


async def test_single_node(browser: Any, site: Any) -> None:
    server, _ = site
    adam = await server.agent("adam")
    try:
        status, body = await adam.post("/api/admin/nodes/x/drain", {"drain": True})
        assert status == 409 and body["error"]["code"] == "no_cluster"
        status, body = await adam.get("/api/admin/nodes")
        assert status == 200 and body["cluster"] is False and body["nodes"] == []
    finally:
        await adam.close()
    ctx, page = await page_as(browser, server)
    try:
        # The keyboard: arrow keys move along the tabs.
        await expect(user_row(page, "adam")).to_be_visible()
        await page.get_by_test_id("admin-tab-users").focus()
        await page.keyboard.press("ArrowRight")
        await page.keyboard.press("ArrowRight")
        await expect(page.get_by_test_id("admin-tab-nodes")).to_be_focused()
        await expect(page.get_by_test_id("admin-tab-nodes")).to_have_attribute(
            "aria-selected", "true")  # fmt: skip
        summary = page.get_by_test_id("admin-nodes-summary")
        await expect(summary).to_contain_text("Single node")
        await expect(summary).to_have_attribute("data-cluster", "false")
        await shoot(page, "nodes-single")
    finally:
        await ctx.close()


async def wait_for(check: Any, timeout: float = 10) -> None:
    """Until check() (a function, sync or async) is true."""
    deadline = time.monotonic() + timeout
    while True:
        done = check()
        if asyncio.iscoroutine(done):
            done = await done
        if done:
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_webhooks_pending_dead_and_replay(browser: Any, site: Any) -> None:
    server, receiver = site
    hooks = server.app[WEBHOOKS]
    anna = await server.agent("anna")
    try:
        receiver.mode = "fail"  # session.created of s1: 500, given up at once (give_up 0)
        s1 = (await anna.new_session("20000012"))["session"]["id"]
        await wait_for(lambda: hooks.counts["dead"] >= 1)
        receiver.mode = "hold"  # session.created of s2: in flight, pending
        s2 = (await anna.new_session("20000034"))["session"]["id"]
        await asyncio.wait_for(receiver.held.wait(), 10)
        receiver.mode = "ok"
    finally:
        await anna.close()
    dead_id = (await server.db.outbox_list("dead"))[0]["id"]
    seq = await audit_head(server)
    ctx, page = await page_as(browser, server)
    try:
        await page.get_by_test_id("admin-tab-webhooks").click()
        dead = page.locator(f'[data-testid="admin-dead-row"][data-event-id="{dead_id}"]')
        await expect(dead).to_contain_text("session.created")
        await expect(dead).to_contain_text(s1)
        await expect(dead).to_contain_text("HTTP 500")
        pending = page.get_by_test_id("admin-pending-row")
        await expect(pending).to_have_count(1)
        await expect(pending).to_contain_text(s2)
        await expect(page.get_by_test_id("admin-webhooks-summary")).to_contain_text(
            "Pending: 1, given up: 1")  # fmt: skip
        html = await page.content()
        assert HOOK_PASS not in html and HOOK_PATH not in html and HOOK_QUERY not in html
        await shoot(page, "webhooks")
        axe = Axe()
        await axe.check(page, "admin webhooks")
        assert axe.serious() == {}, axe.serious()

        await dead.get_by_test_id("admin-replay").click()
        await expect(page.get_by_test_id("admin-status")).to_contain_text("pending again")
        await wait_for(lambda: dead_id in receiver.delivered)
        # Replayed again (a second click, another admin): refused, nothing sent twice.
        adam = await server.agent("adam")
        try:
            status, body = await adam.post(f"/api/admin/webhooks/{dead_id}/replay")
            assert status in (404, 409), body  # delivered (gone) or still pending
            status, body = await adam.post("/api/admin/webhooks/nonsense/replay")
            assert status == 400 and body["error"]["code"] == "bad_event_id"
        finally:
            await adam.close()
        await asyncio.sleep(0.5)  # a few delivery rounds
        assert receiver.delivered.count(dead_id) == 1
        replays = [r for r in await audit_rows(server, seq) if r["action"] == "webhooks.replay"]
        assert [(r["actor"], r["object"]) for r in replays] == [("adam", dead_id)]
        assert any(r["action"] == "webhooks.view" for r in await audit_rows(server, seq))
        receiver.release.set()  # s2's delivery answers
        # Two replays at once (two admins): one changes the row, the other finds it pending.
        receiver.mode = "fail"
        anna = await server.agent("anna")
        adam = await server.agent("adam")
        try:
            await anna.new_session("20000056")
            await wait_for(lambda: hooks.counts["dead"] >= 1)
            receiver.mode = "ok"
            again = (await server.db.outbox_list("dead"))[0]["id"]
            url = f"/api/admin/webhooks/{again}/replay"
            answers = await asyncio.gather(adam.post(url), adam.post(url))
            assert sorted(s for s, _ in answers)[0] == 200
            assert sorted(s for s, _ in answers)[1] in (404, 409), answers
            await wait_for(lambda: again in receiver.delivered)
            await asyncio.sleep(0.5)
            assert receiver.delivered.count(again) == 1
            objects = [r["object"] for r in await audit_rows(server, seq)
                       if r["action"] == "webhooks.replay"]  # fmt: skip
            assert objects == [dead_id, again]
        finally:
            await anna.close()
            await adam.close()
        await wait_for(lambda: hooks.counts["pending"] == 0)
        await page.get_by_test_id("admin-webhooks-reload").click()
        await expect(page.get_by_test_id("admin-pending-empty")).to_be_visible()
        await expect(page.get_by_test_id("admin-dead-empty")).to_be_visible()
        assert script_errors(page) == []
    finally:
        await ctx.close()


async def test_axe_on_every_state(browser: Any, site: Any) -> None:
    server, _ = site
    axe = Axe()
    for width in (390, 1280):
        ctx = await browser.new_context(viewport={"width": width, "height": 900})
        page = await ctx.new_page()
        await page.goto(server.url + "/admin")
        await expect(page.get_by_test_id("login-username")).to_be_visible()
        await axe.check(page, f"admin login {width}")
        await ctx.close()
        ctx, page = await page_as(browser, server, width=width, lang="lv" if width < 800 else "en")
        try:
            await expect(user_row(page, "anna")).to_be_visible()
            await axe.check(page, f"admin users {width}")
            await user_row(page, "anna").get_by_test_id("admin-user-password").click()
            await axe.check(page, f"admin password form {width}")
            for tab in ("config", "nodes", "webhooks"):
                await page.get_by_test_id(f"admin-tab-{tab}").click()
                await expect(page.locator(f"#panel-{tab}")).to_be_visible()
                await page.wait_for_timeout(200)
                await axe.check(page, f"admin {tab} {width}")
        finally:
            await ctx.close()
    axe.report()
    assert axe.serious() == {}, axe.serious()


# --- a real cluster of two nodes on a real redis-server --------------------------------------


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[Server]]:
    redis = RedisServer().start()
    tmp = tmp_path_factory.mktemp("admin-cluster")
    started: list[tuple[Server, Any]] = []
    try:
        for node_id in ("adm-a", "adm-b"):
            port = free_port()
            cfg = config_for(port, cluster={
                "router": "redis", "redis_url": redis.url, "node_id": node_id,
                "internal_url": f"http://127.0.0.1:{port}", "heartbeat_s": 0.3,
                "node_ttl_s": 3.0, "max_rooms_per_node": 7})  # fmt: skip
            started.append(await start_server(tmp, cfg, port))
        await started[0][0].add_user("adam", "admin")
        yield [s for s, _ in started]
    finally:
        for _, runner in reversed(started):
            await runner.cleanup()
        redis.close()


async def test_cluster_nodes_drain_and_undo(browser: Any, cluster: list[Server]) -> None:
    a, b = cluster
    adam = await a.agent("adam")

    async def both_beat() -> bool:
        _, body = await adam.get("/api/admin/nodes")
        return [n["node_id"] for n in body["nodes"]] == ["adm-a", "adm-b"]

    try:
        await wait_for(both_beat)
        status, body = await adam.post("/api/admin/nodes/adm-zz/drain", {"drain": True})
        assert status == 404 and body["error"]["code"] == "not_found"  # no such node
        status, body = await adam.post("/api/admin/nodes/adm-b/drain", {"drain": "yes"})
        assert status == 400 and body["error"]["code"] == "bad_request"
    finally:
        await adam.close()
    seq = await audit_head(a)
    ctx, page = await page_as(browser, a)
    try:
        await page.get_by_test_id("admin-tab-nodes").click()
        await expect(page.get_by_test_id("admin-nodes-summary")).to_contain_text("Cluster: 2")
        row_a = page.locator('[data-testid="admin-node"][data-node-id="adm-a"]')
        row_b = page.locator('[data-testid="admin-node"][data-node-id="adm-b"]')
        await expect(row_a).to_contain_text("this one")
        await expect(row_b.get_by_test_id("admin-node-rooms")).to_have_text("0 / 7")
        state = row_b.get_by_test_id("admin-node-state")
        await expect(state).to_have_attribute("data-state", "open")
        await row_b.get_by_test_id("admin-node-drain").click()
        await expect(page.get_by_test_id("admin-status")).to_contain_text("adm-b is draining")
        await expect(row_b.get_by_test_id("admin-node-drain")).to_be_focused()
        # From b's next heartbeat its own row says draining, and placement skips it.
        for _ in range(50):
            if await state.get_attribute("data-state") == "draining":
                break
            await page.get_by_test_id("admin-nodes-reload").click()
            await asyncio.sleep(0.2)
        await expect(state).to_have_attribute("data-state", "draining")
        from server.cluster.node import CLUSTER

        assert b.app[CLUSTER].registry.draining
        await shoot(page, "nodes-cluster")
        await row_b.get_by_test_id("admin-node-drain").click()
        await expect(page.get_by_test_id("admin-status")).to_contain_text("takes new rooms")
        await wait_for(lambda: not b.app[CLUSTER].registry.draining)
        drains = [(r["actor"], r["object"], r["reason"]) for r in await audit_rows(a, seq)
                  if r["action"] == "node.drain"]  # fmt: skip
        assert drains == [("adam", "adm-b", "drain"), ("adam", "adm-b", "undo")]
        assert script_errors(page) == []
    finally:
        await ctx.close()


async def test_an_sso_account_keeps_its_password_and_role_at_the_provider(
    browser: Any, site: Any
) -> None:
    """A password set here would be a second way into an account that signs in through the
    identity provider, and a role set here would be undone at its next sign-in."""
    server, _ = site
    await server.db.add_sso_user("olga", "https://idp.example|olga", "agent", time.time())
    head = await audit_head(server)
    admin = await server.agent("adam")
    try:
        status, body = await admin.get("/api/admin/users")
        assert status == 200
        (olga,) = [u for u in body["users"] if u["name"] == "olga"]
        assert olga["sso"] is True
        for change in ({"password": "a long new password 42"}, {"role": "supervisor"}):
            status, body = await admin.post("/api/admin/users/olga", change)
            assert (status, body["error"]["code"]) == (409, "sso_account"), change
        # Disabling stays here: it ends the account's logins at once.
        status, _ = await admin.post("/api/admin/users/olga", {"disabled": True})
        assert status == 200
    finally:
        await admin.http.close()
    user = await server.db.user_by_name("olga")
    assert user is not None and user.role == "agent" and user.disabled
    ctx, page = await page_as(browser, server)
    try:  # the page offers neither: a badge says why
        row = user_row(page, "olga")
        await expect(row.get_by_test_id("admin-user-sso")).to_have_text("single sign-on")
        await expect(row.get_by_test_id("admin-user-password")).to_have_count(0)
        await expect(row.get_by_test_id("admin-user-role")).to_be_disabled()
        await expect(user_row(page, "anna").get_by_test_id("admin-user-password")).to_have_count(1)
    finally:
        await ctx.close()
    assert [r["action"] for r in await audit_rows(server, head)].count("user.update") == 1
