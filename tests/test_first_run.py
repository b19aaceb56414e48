"""A newcomer's first run (issue 20): `serve` on an empty data directory, no second
terminal. Real `callassist serve` processes, real Chromium, a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import expect

from server.core.appkeys import DB
from server.http import setup
from server.http.app import create_app
from tests import conftest
from tests.conftest import PASSWORD, FakeClock, free_port
from tests.test_browser_e2e import start_session

CLI = [sys.executable, "-m", "server"]
SETUP_URL = re.compile(r"https?://\S+/setup/[A-Za-z0-9_-]{20,}")


async def _serve(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI, "serve", *args,
        stdin=asyncio.subprocess.DEVNULL,  # no terminal: the setup link path
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def _read_until(proc: asyncio.subprocess.Process, pattern: re.Pattern[str]) -> str:
    seen = []
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)  # type: ignore[union-attr]
        if not line:
            raise AssertionError("serve exited:\n" + "".join(seen))
        seen.append(line.decode())
        found = pattern.search(seen[-1])
        if found:
            return "".join(seen)


async def _stop(proc: asyncio.subprocess.Process) -> str:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
    return (await proc.stdout.read()).decode()  # type: ignore[union-attr]


async def test_setup_link_in_chromium_then_an_agent_starts_a_session(
    tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(  # no public_url
        '[media]\nice_host_addresses = ["127.0.0.1"]\nallow_loopback_candidates = true\n'
    )
    data = tmp_path / "empty"
    proc = await _serve("--port", str(port), "--data-dir", str(data), "--config", str(cfg))
    try:
        out = await _read_until(proc, SETUP_URL)
        url = SETUP_URL.search(out).group(0)  # type: ignore[union-attr]
        # The printed URLs follow --port (no public_url in the file), and say so.
        assert f"links use http://127.0.0.1:{port} (from --host/--port" in out
        assert f"agent console: http://127.0.0.1:{port}/agent" in out
        ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await ctx.new_page()
        await page.goto(url)
        assert "/setup/" not in page.url  # the token left the address bar
        await expect(page.get_by_test_id("setup-form")).to_be_visible()
        await page.get_by_test_id("setup-admin-username").fill("root")
        await page.get_by_test_id("setup-admin-password").fill("short")
        await page.get_by_test_id("setup-agent-username").fill("anna")
        await page.get_by_test_id("setup-agent-password").fill(PASSWORD)
        await page.get_by_test_id("setup-submit").click()
        # Bad input: a clear error, and the form (and the one use) are still there.
        await expect(page.get_by_test_id("setup-error")).to_contain_text("at least 10")
        await page.get_by_test_id("setup-admin-password").fill(PASSWORD + " admin")
        await page.get_by_test_id("setup-submit").click()
        await expect(page.get_by_test_id("setup-done")).to_be_visible()
        await expect(page.get_by_test_id("setup-done-text")).to_contain_text("anna")
        await page.get_by_test_id("setup-console").click()
        await page.get_by_test_id("login-username").fill("anna")
        await page.get_by_test_id("login-password").fill(PASSWORD)
        await page.get_by_test_id("login-submit").click()
        link = await start_session(page)
        assert link.startswith(f"http://127.0.0.1:{port}/j/")
        # The agent sees the SMS segment count of the chosen language before sending.
        seg = page.get_by_test_id("sms-segments")
        await expect(seg).to_have_attribute("data-encoding", "GSM-7")
        await expect(seg).to_have_attribute("data-segments", "1")
        await page.get_by_test_id("sms-lang").select_option("ru")
        await expect(seg).to_have_attribute("data-encoding", "UCS-2")
        await expect(seg).to_have_attribute("data-segments", "2")
        await page.get_by_test_id("send-sms").click()
        await expect(page.get_by_test_id("sms-status")).to_have_attribute("data-state", "sent")
        # Once only: the same URL now says it is used, in a fresh browser too.
        other = await browser.new_context()
        again = await other.new_page()
        await again.goto(url)
        assert "setup_closed" in (await again.content())
        await other.close()
        await ctx.close()
    finally:
        rest = await _stop(proc)
    assert url.rsplit("/", 1)[1] not in rest  # printed once, never logged
    assert re.search(r"GET /setup/(<|%3C)token", rest)  # the access log line, redacted


async def _setup_server(
    tmp_path: Path, **sections: dict[str, object]
) -> tuple[str, str, FakeClock, web.AppRunner]:
    port = free_port()
    clock = FakeClock()
    app = create_app(conftest.test_config(port, **sections), tmp_path / "d", clock=clock)
    token = setup.offer(app)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}", token, clock, runner


BODY = {
    "admin": {"username": "root", "password": PASSWORD + "!"},
    "agent": {"username": "anna", "password": PASSWORD},
}


async def test_setup_link_expires_after_15_minutes(tmp_path: Path) -> None:
    url, token, clock, runner = await _setup_server(tmp_path)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{url}/setup/{token}", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/setup"
            clock.advance(setup.SETUP_TTL_S + 1)
            async with http.post(url + "/api/setup", json=BODY, headers={"Origin": url}) as r:
                assert r.status == 410 and (await r.json())["error"]["code"] == "setup_closed"
            async with http.get(f"{url}/setup/{token}", allow_redirects=False) as r:
                assert r.status == 410
        assert await runner.app[DB].list_users() == []
    finally:
        await runner.cleanup()


async def test_setup_link_refuses_a_forwarded_remote_client(tmp_path: Path) -> None:
    # Behind a proxy on this machine every request comes from loopback: the forwarded
    # address decides, and a client elsewhere is refused.
    url, token, _, runner = await _setup_server(tmp_path, http={"behind_proxy": True})
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            remote = {"X-Forwarded-For": "203.0.113.7"}
            async with http.get(f"{url}/setup/{token}", allow_redirects=False,
                                headers=remote) as r:  # fmt: skip
                assert r.status == 410
            local = {"X-Forwarded-For": "127.0.0.1"}
            async with http.get(f"{url}/setup/{token}", allow_redirects=False,
                                headers=local) as r:  # fmt: skip
                assert r.status == 303
            async with http.post(url + "/api/setup", json=BODY,
                                 headers={"Origin": url, **remote}) as r:  # fmt: skip
                assert r.status == 410
            evil = {"Origin": "http://evil.example", **local}
            async with http.post(url + "/api/setup", json=BODY, headers=evil) as r:
                assert r.status == 403
            async with http.post(url + "/api/setup", json=BODY,
                                 headers={"Origin": url, **local}) as r:  # fmt: skip
                assert r.status == 201, await r.text()
            async with http.post(url + "/api/setup", json=BODY,
                                 headers={"Origin": url, **local}) as r:  # fmt: skip
                assert r.status == 410  # once
        names = sorted((u.username, u.role) for u in await runner.app[DB].list_users())
        assert names == [("anna", "agent"), ("root", "admin")]
    finally:
        await runner.cleanup()


def test_first_run_on_a_terminal_asks_for_the_accounts(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "d"
    pid, fd = pty.fork()
    if pid == 0:  # the child: `serve` with a terminal on stdin and stdout
        os.execv(sys.executable, [*CLI, "serve", "--port", str(port), "--data-dir", str(data)])  # noqa: S606
    out = b""

    def until(text: bytes) -> None:
        nonlocal out
        while text not in out:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                raise AssertionError(out.decode(errors="replace")) from None
            if not chunk:
                raise AssertionError(out.decode(errors="replace"))
            out += chunk

    try:
        for prompt, answer in (
            (b"admin user name [admin]: ", b"\n"),
            (b"password (at least 10 characters): ", PASSWORD.encode() + b"!\n"),
            (b"again: ", PASSWORD.encode() + b"!\n"),
            (b"agent user name: ", b"anna\n"),
            (b"password (at least 10 characters): ", PASSWORD.encode() + b"\n"),
            (b"again: ", PASSWORD.encode() + b"\n"),
        ):
            until(prompt)
            out = out.split(prompt, 1)[1]
            os.write(fd, answer)
        until(b"agent console:")
        assert b"/setup/" not in out  # the terminal was used: no setup link
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.close(fd)
    r = subprocess.run([*CLI, "user", "list", "--data-dir", str(data)], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.stdout.split() == ["admin", "admin", "active", "anna", "agent", "active"]


@pytest.mark.parametrize("explicit", [False, True])
def test_printed_urls_say_whether_public_url_or_port_wins(tmp_path: Path, explicit: bool) -> None:
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text('[http]\npublic_url = "https://support.example.eu"\n' if explicit else "")
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--data-dir", str(tmp_path / "d"),
         "--config", str(cfg)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        while not lines or "agent console:" not in lines[-1]:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "".join(lines)
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    out = "".join(lines)
    if explicit:
        assert f"links use https://support.example.eu (http.public_url in {cfg} wins" in out
        assert "agent console: https://support.example.eu/agent" in out
    else:
        assert f"links use http://127.0.0.1:{port} (from --host/--port" in out


def test_readme_first_screen_is_what_serve_prints(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    port, data = free_port(), tmp_path / "data"
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--data-dir", str(data)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    printed: list[str] = []
    try:
        while len(printed) < len(block):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, printed
            if not re.match(r"\d{4}-\d\d-\d\d ", line):  # log lines are not the screen
                printed.append(line.rstrip("\n"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    for want, got in zip(block, printed, strict=True):
        want = (
            want.replace("8080", str(port))
            .replace("/root/callassist/data", str(data.resolve()))
            .replace("--data-dir data", f"--data-dir {data}")
        )
        if "/setup/" in want:  # the token differs every time
            assert re.fullmatch(re.escape(want.split("/setup/")[0]) + r"/setup/[\w-]{43}", got)
        else:
            assert got == want
