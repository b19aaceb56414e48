"""Single sign-on for staff (server/http/oidc.py) against a real OpenID provider.

The provider is tests/oidc_provider.py (Authlib's authorization server on Flask) in a
process of its own, at http://localhost:<port>: another site than the server's
http://127.0.0.1:<port>, so the cookies behave as across real sites. Chromium follows the
real redirects: our login link -> the provider's form -> our callback -> the console.

Over 400 lines: every case needs the same provider process, browser and server set-up,
which live here beside the cases rather than in a helper module of their own.
"""

from __future__ import annotations

import contextlib
import html
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from playwright.async_api import Browser, BrowserContext, Page, expect

from server.core import config as config_mod
from server.core.audit import audit_log
from server.core.schema import users
from server.core.secrets import MissingSecret, load_secrets
from server.http.oidc import PROVIDER, mapped_role
from tests.conftest import CHROMIUM, chromium_args, free_port

HERE = Path(__file__).resolve().parent
CLIENT_ID = "callassist-test"
SECRET = "issued-by-the-provider-7c1f0a"  # noqa: S105 - the test provider's client secret
ROLE_MAP = {"cc-supervisors": "supervisor", "cc-agents": "agent", "cc-dpo": "dpo"}
USERS = {
    "olga": {"groups": ["cc-agents"]},
    "sue": {"groups": ["cc-agents", "cc-supervisors"]},
    "nora": {"groups": ["marketing"]},
    "dana": {"groups": ["cc-dpo"]},
    "anna": {"groups": ["cc-agents"]},  # the name of a local account
}


@dataclass
class Idp:
    issuer: str
    port: int
    proc: subprocess.Popen[bytes]

    async def control(self, **body: Any) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{self.port}/control", json=body
        ) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())


@contextlib.contextmanager
def run_provider(folder: Path, *extra: str) -> Iterator[Idp]:
    port = free_port()
    log = open(folder / f"provider-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "oidc_provider.py"), "--port", str(port),
         "--client-id", CLIENT_ID, "--client-secret", SECRET, *extra],
        stdout=subprocess.PIPE, stderr=log,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().split()
        assert line[:1] == ["ready"], line
        yield Idp(line[1], port, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    with run_provider(tmp_path_factory.mktemp("idp")) as provider:
        yield provider


@pytest.fixture(scope="module")
def bare_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    """A provider without end_session_endpoint."""
    with run_provider(tmp_path_factory.mktemp("idp"), "--no-end-session") as provider:
        yield provider


@pytest.fixture(scope="module")
async def sso_browser(fake_camera: Path) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    # The suite's rules send every name but 127.0.0.1 nowhere; the provider is "localhost".
    rules = "--host-resolver-rules=MAP localhost 127.0.0.1, MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=chromium_args(fake_camera, rules)
        )
        yield browser
        await browser.close()


async def start(make_server: Any, idp: Idp, monkeypatch: pytest.MonkeyPatch,
                **auth: Any) -> Any:  # fmt: skip
    monkeypatch.setenv("CALLASSIST_OIDC_CLIENT_SECRET", SECRET)
    oidc = {"issuer": idp.issuer, "client_id": CLIENT_ID, "role_map": ROLE_MAP,
            "privileged_roles": ["dpo"], **auth.pop("oidc", {})}  # fmt: skip
    server = await make_server(auth={"oidc": oidc, **auth})
    await idp.control(
        client={"redirect_uri": server.url + "/auth/oidc/callback",
                "post_logout_uri": server.url + "/agent"},
        users=USERS, mode="normal",
    )  # fmt: skip
    return server


async def at_provider(page: Page, idp: Idp, server: Any, start_page: str = "/agent") -> None:
    await page.goto(server.url + start_page)
    await page.get_by_test_id("login-sso").click()
    await page.wait_for_url(idp.issuer + "/authorize**")


async def sso_login(page: Page, idp: Idp, server: Any, name: str, start_page: str = "/agent"
                    ) -> None:  # fmt: skip
    await at_provider(page, idp, server, start_page)
    await page.fill("#username", name)
    await page.click("#signin")


async def me(page: Page) -> tuple[int, Any]:
    return tuple(await page.evaluate(  # type: ignore[return-value]
        "fetch('/api/me').then(async r => [r.status, await r.json()])"))  # fmt: skip


async def refused(page: Page, reason: str) -> None:
    box = page.get_by_test_id("sso-refused")
    await expect(box).to_be_visible()
    assert await box.get_attribute("data-reason") == reason
    status, _ = await me(page)
    assert status == 401  # no login was made


async def audits(server: Any) -> list[dict[str, Any]]:
    async with server.db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit_log).order_by(audit_log.c.seq))).all()
    return [dict(r._mapping) for r in rows]


async def context(browser: Browser, locale: str = "en-US") -> BrowserContext:
    return await browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})


# --- the way in ---------------------------------------------------------------------------
async def test_sso_login_lands_in_the_console_with_the_mapped_role(
    sso_browser: Browser, idp: Idp, make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start(make_server, idp, monkeypatch)
    ctx = await context(sso_browser)
    try:
        page = await ctx.new_page()
        await sso_login(page, idp, server, "olga")
        await page.wait_for_url(server.url + "/agent")
        await expect(page.get_by_test_id("user-name")).to_have_text("olga")
        await expect(page.locator("#view-console")).to_be_visible()
        assert (await me(page))[1]["user"] == {"name": "olga", "role": "agent"}
        # The agent can work: a session is created under the SSO account.
        status = await page.evaluate("""async () => {
            const me = await (await fetch('/api/me')).json();
            const r = await fetch('/api/sessions', {method: 'POST', headers: {
              'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf},
              body: JSON.stringify({phone: '20000012', reference: 'SSO-1'})});
            return r.status; }""")
        assert status == 201
        # sue is in both groups: the first role_map entry she has (supervisor) decides;
        # she lands on the ops console she started from.
        other = await context(sso_browser)
        page2 = await other.new_page()
        await sso_login(page2, idp, server, "sue", "/ops")
        await page2.wait_for_url(server.url + "/ops")
        await expect(page2.get_by_test_id("ops-user")).to_have_text("sue (supervisor)")
        await other.close()
    finally:
        await ctx.close()
    async with server.db.engine.connect() as conn:
        rows = {r.username: r for r in (await conn.execute(sa.select(users))).all()}
    assert rows["olga"].sso_subject == f"{idp.issuer} id-olga"
    assert rows["olga"].password_hash == "!sso" and rows["olga"].role == "agent"
    assert rows["sue"].role == "supervisor"
    logins = [(a["actor"], a["role"], a["reason"]) for a in await audits(server)
              if a["action"] == "login"]  # fmt: skip
    assert logins == [("olga", "agent", "sso"), ("sue", "supervisor", "sso")]
    # No password opens an SSO account.
    agent = await server.agent("anna")
    async with agent.http.post(server.url + "/api/login",
                               json={"username": "olga", "password": "!sso"}) as r:  # fmt: skip
        assert r.status == 401


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("wrong_audience", "token_invalid"), ("expired", "token_invalid"),
     ("wrong_nonce", "token_invalid"), ("bad_signature", "bad_signature"),
     ("unknown_key", "bad_signature")],
)  # fmt: skip
async def test_a_bad_id_token_is_refused_with_a_clear_page(
    sso_browser: Browser, idp: Idp, make_server: Any, monkeypatch: pytest.MonkeyPatch,
    mode: str, reason: str,
) -> None:  # fmt: skip
    server = await start(make_server, idp, monkeypatch)
    await idp.control(mode=mode)
    ctx = await context(sso_browser)
    try:
        page = await ctx.new_page()
        await sso_login(page, idp, server, "olga")
        await refused(page, reason)
        text = await page.get_by_test_id("sso-refused").inner_text()
        assert "Sign-in could not be confirmed" in text
        # The way back starts a new sign-in.
        assert await page.get_by_test_id("sso-again").get_attribute("href") == "/agent"
    finally:
        await ctx.close()
    assert await server.db.user_by_name("olga") is None  # no row for a refused sign-in
    denied = [a for a in await audits(server) if a["action"] == "login"]
    assert [(a["result"], a["reason"]) for a in denied] == [("denied", f"sso_{reason}")]


async def test_clock_skew_within_the_tolerance_is_accepted(
    sso_browser: Browser, idp: Idp, make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # exp 30 s ago: inside the default 60 s of auth.oidc.clock_skew_s; with 10 s it is not.
    server = await start(make_server, idp, monkeypatch)
    strict = await start(make_server, idp, monkeypatch, oidc={"clock_skew_s": 10})
    await idp.control(mode="late")
    for srv, ok in ((server, True), (strict, False)):
        await idp.control(client={"redirect_uri": srv.url + "/auth/oidc/callback",
                                  "post_logout_uri": srv.url + "/agent"})  # fmt: skip
        ctx = await context(sso_browser)
        try:
            page = await ctx.new_page()
            await sso_login(page, idp, srv, "olga")
            if ok:
                await expect(page.get_by_test_id("user-name")).to_have_text("olga")
            else:
                await refused(page, "token_invalid")
        finally:
            await ctx.close()


async def test_unmapped_role_is_refused_in_lv_en_ru(
    sso_browser: Browser, idp: Idp, make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start(make_server, idp, monkeypatch)
    ctx = await context(sso_browser, locale="lv-LV")
    try:
        page = await ctx.new_page()
        await sso_login(page, idp, server, "nora")
        await refused(page, "no_role")
        box = page.get_by_test_id("sso-refused")
        await expect(box).to_contain_text("Jums nav piekļuves")
        await page.get_by_test_id("lang-en").click()
        await expect(box).to_contain_text("You have no access")
        await page.get_by_test_id("lang-ru").click()
        await expect(box).to_contain_text("У вас нет доступа")
    finally:
        await ctx.close()
    assert await server.db.user_by_name("nora") is None


async def test_state_is_single_use_and_bound_to_the_browser(
    sso_browser: Browser, idp: Idp, make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start(make_server, idp, monkeypatch)
    ctx = await context(sso_browser)
    stranger = await context(sso_browser)
    try:
        page = await ctx.new_page()
        callbacks: list[str] = []
        ours = server.url + "/auth/oidc/callback?"
        page.on("request", lambda r: callbacks.append(r.url) if r.url.startswith(ours)
                else None)  # fmt: skip
        await sso_login(page, idp, server, "olga")
        await expect(page.get_by_test_id("user-name")).to_have_text("olga")
        # The same answer of the provider again (a replay, the back button): refused.
        await page.goto(callbacks[0])
        await refused_here(page, "state_invalid")

        # A fresh answer of the provider carried to another browser: refused there, and
        # used up. (The provider's redirect to us is held: Playwright sees a redirect chain
        # only at its first request, here the form's POST at the provider.)
        victim_ctx = await context(sso_browser)
        victim = await victim_ctx.new_page()
        held: list[str] = []

        async def hold(route: Any) -> None:
            answer = await route.fetch(max_redirects=0)
            held.append(answer.headers["location"])
            await route.fulfill(status=200, body="held")

        await victim.route(lambda url: url.startswith(idp.issuer + "/authorize"), hold)
        await at_provider(victim, idp, server)
        await victim.fill("#username", "olga")
        await victim.click("#signin")
        await expect(victim.locator("body")).to_have_text("held")
        assert held[0].startswith(ours)
        other = await stranger.new_page()
        await other.goto(held[0])
        await refused(other, "state_foreign")
        await victim.goto(held[0])
        await refused(victim, "state_invalid")
        await victim_ctx.close()
    finally:
        await ctx.close()
        await stranger.close()


async def refused_here(page: Page, reason: str) -> None:
    """Refused, while this browser still holds its earlier login."""
    box = page.get_by_test_id("sso-refused")
    await expect(box).to_be_visible()
    assert await box.get_attribute("data-reason") == reason


async def test_jwks_rotation_is_followed(
    sso_browser: Browser, idp: Idp, make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start(make_server, idp, monkeypatch)
    for name, rotate in (("olga", False), ("sue", True)):
        if rotate:
            kid = (await idp.control(rotate=True))["kid"]
        ctx = await context(sso_browser)
        try:
            page = await ctx.new_page()
            await sso_login(page, idp, server, name)
            await expect(page.get_by_test_id("user-name")).to_have_text(name)
        finally:
            await ctx.close()
    # Fetched once at the first login, again when a token named the new key id.
    assert server.app[PROVIDER].jwks_fetches == 2
    assert kid != "k1"


async def test_logout_ends_the_local_login_and_the_provider_session(
    sso_browser: Browser, idp: Idp, make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start(make_server, idp, monkeypatch)
    before = (await idp.control())["logouts"]
    ctx = await context(sso_browser)
    try:
        page = await ctx.new_page()
        await sso_login(page, idp, server, "olga")
        await expect(page.get_by_test_id("user-name")).to_have_text("olga")
        login_cookie = [c for c in await ctx.cookies() if c["name"] == "ca_login"][0]["value"]
        await page.get_by_test_id("logout").click()
        # Via the provider's end_session_endpoint (id_token_hint) back to the console.
        await page.wait_for_url(server.url + "/agent")
        await expect(page.get_by_test_id("login-sso")).to_be_visible()
        assert (await idp.control())["logouts"] == before + 1
        assert await server.db.login_user(login_cookie, server.clock()) is None
        # The provider forgot olga too: signing in again asks for her name.
        await at_provider(page, idp, server)
        await expect(page.locator("#username")).to_be_visible()
    finally:
        await ctx.close()
    assert [a["actor"] for a in await audits(server) if a["action"] == "logout"] == ["olga"]


async def test_local_login_can_be_switched_off_and_names_are_not_taken_over(
    sso_browser: Browser, idp: Idp, make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start(make_server, idp, monkeypatch, local_login=False)
    await server.add_user("anna")  # a local account; the provider also has an "anna"
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/api/login", headers={"Origin": server.url},
                             json={"username": "anna", "password": "x" * 12}) as r:  # fmt: skip
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "local_login_disabled"
        async with http.get(server.url + "/api/login/options") as r:
            assert await r.json() == {"local": False, "sso": True}
    ctx = await context(sso_browser)
    try:
        page = await ctx.new_page()
        await page.goto(server.url + "/agent")
        await expect(page.get_by_test_id("login-sso")).to_be_visible()
        await expect(page.get_by_test_id("login-username")).to_be_hidden()
        await sso_login(page, idp, server, "anna")
        await refused(page, "account")  # never joined to the local "anna"
    finally:
        await ctx.close()
    ctx = await context(sso_browser)
    try:
        page = await ctx.new_page()
        # dpo through SSO: allowed by auth.oidc.privileged_roles = ["dpo"] here.
        await sso_login(page, idp, server, "dana", "/dpo")
        await page.wait_for_url(server.url + "/dpo")
        await expect(page.get_by_test_id("dpo-user")).to_have_text("dana (dpo)")
    finally:
        await ctx.close()
    anna = await server.db.user_by_name("anna")
    assert anna is not None and not anna.sso


async def http_sso_login(http: aiohttp.ClientSession, server: Any, idp: Idp, name: str) -> None:
    """The same redirects without a browser: our link, the provider's form, our callback."""
    async with http.get(server.url + "/auth/oidc/login", allow_redirects=False) as r:
        assert r.status == 302
        authorize = r.headers["Location"]
    async with http.get(authorize) as r:
        action = html.unescape(re.search(r"action='([^']+)'", await r.text())[1])  # type: ignore[index]
    async with http.post(idp.issuer + action, data={"username": name},
                         allow_redirects=False) as r:  # fmt: skip
        assert r.status == 302, await r.text()
        callback = r.headers["Location"]
    async with http.get(callback, allow_redirects=False) as r:
        assert r.status == 303, await r.text()


async def test_logout_stays_local_when_the_provider_has_no_end_session(
    bare_idp: Idp, make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start(make_server, bare_idp, monkeypatch)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await http_sso_login(http, server, bare_idp, "olga")
        async with http.get(server.url + "/api/me") as r:
            assert r.status == 200
            csrf = (await r.json())["csrf"]
        async with http.post(server.url + "/api/logout", headers={
                "Origin": server.url, "X-CSRF-Token": csrf}) as r:  # fmt: skip
            assert r.status == 204  # nothing to go on to
        async with http.get(server.url + "/api/me") as r:
            assert r.status == 401


# --- configuration and pure parts ----------------------------------------------------------
def test_oidc_configuration_is_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"issuer": "https://sso.example.eu/realms/staff", "client_id": "ca",
            "role_map": {"agents": "agent"}}  # fmt: skip

    def cfg(**oidc: Any) -> config_mod.Config:
        return config_mod.from_dict({"auth": {"oidc": {**base, **oidc}}})

    assert cfg().auth.oidc.clock_skew_s == 60
    bad = [
        ({"role_map": {"staff": "admin"}}, "privileged_roles"),
        ({"role_map": {"staff": "boss"}}, "not a role"),
        ({"role_map": {}}, "role_map"),
        ({"scopes": ["profile"]}, "openid"),
        ({"issuer": "https://sso.example.eu/"}, "trailing"),
        ({"client_id": ""}, "client_id"),
        ({"clock_skew_s": 3600}, "clock_skew_s"),
        ({"role_map": {"staff": 1}}, "expected str"),
        ({"secret": "x"}, "unknown configuration key 'auth.oidc.secret'"),
    ]
    for change, words in bad:
        with pytest.raises(config_mod.ConfigError, match=words):
            cfg(**change)
    with pytest.raises(config_mod.ConfigError, match="no way in"):
        config_mod.from_dict({"auth": {"local_login": False}})
    # The client secret comes only from the environment, never generated.
    monkeypatch.delenv("CALLASSIST_OIDC_CLIENT_SECRET", raising=False)
    with pytest.raises(MissingSecret, match="CALLASSIST_OIDC_CLIENT_SECRET"):
        load_secrets("embedded", tmp_path, need_sms=False, need_turn=False, need_oidc=True)
    monkeypatch.setenv("CALLASSIST_OIDC_CLIENT_SECRET", "from-the-provider")
    loaded = load_secrets("embedded", tmp_path, need_sms=False, need_turn=False, need_oidc=True)
    assert loaded.oidc_client_secret == "from-the-provider"


def test_the_first_mapped_group_decides_the_role() -> None:
    assert mapped_role({"groups": ["b", "a"]}, "groups", {"a": "supervisor", "b": "agent"}) == (
        "supervisor"
    )
    assert mapped_role({"groups": "b"}, "groups", {"a": "supervisor", "b": "agent"}) == "agent"
    assert mapped_role({"groups": ["c"]}, "groups", {"a": "agent"}) is None
    assert mapped_role({}, "groups", {"a": "agent"}) is None
    assert mapped_role({"groups": {"a": 1}}, "groups", {"a": "agent"}) is None
