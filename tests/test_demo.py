"""Demo mode (issue 20): `callassist demo` in a real process; the agent console in real
Chromium shows the built-in caller's pattern (pixels checked) and says it is a demo."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

from playwright.async_api import expect

from server.startup.demo import BARS
from tests.conftest import free_port
from tests.test_browser_e2e import start_session, wait_colours

CLI = [sys.executable, "-m", "server"]
CONSOLE = re.compile(r"(https?://\S+/agent#session=s-[a-z0-9]+)")
PASSWORD = re.compile(r"the password '([^']+)'")


async def test_demo_shows_the_pattern_in_the_agents_video(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    conf = tmp_path / "c.toml"
    conf.write_text(
        '[media]\nice_host_addresses = ["127.0.0.1"]\nallow_loopback_candidates = true\n'
    )
    proc = await asyncio.create_subprocess_exec(
        *CLI, "demo", "--port", str(port), "--config", str(conf),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = ""
    try:
        while not PASSWORD.search(out):
            line = await asyncio.wait_for(proc.stdout.readline(), 60)  # type: ignore[union-attr]
            assert line, out
            out += line.decode()
        assert "DEMO mode" in out and "nothing is sent anywhere" in out
        data_dir = Path(re.search(r"data directory (\S+)", out).group(1))  # type: ignore[union-attr]
        assert await asyncio.to_thread(data_dir.is_dir) and "callassist-demo-" in data_dir.name
        url = CONSOLE.search(out).group(1)  # type: ignore[union-attr]
        ctx = await browser.new_context(viewport={"width": 1280, "height": 800},
                                        permissions=["camera"])  # fmt: skip
        page = await ctx.new_page()
        await page.goto(url)
        await page.get_by_test_id("login-username").fill("demo")
        await page.get_by_test_id("login-password").fill(PASSWORD.search(out).group(1))  # type: ignore[union-attr]
        await page.get_by_test_id("login-submit").click()
        await expect(page.get_by_test_id("demo-banner")).to_contain_text("DEMO")
        await expect(page.get_by_test_id("session-state")).to_be_visible()
        # The colour bars, in the upper three quarters of the frame, left to right.
        points = [((i + 0.5) / len(BARS), 0.35) for i in range(len(BARS))]
        await wait_colours(page, "camera-video", points, BARS, timeout=45)
        # A session of the newcomer's own: "Send SMS" is answered by a new test caller.
        await page.get_by_test_id("end-session").click()
        await page.get_by_test_id("end-session-confirm").click()
        await page.get_by_test_id("new-session").click()
        await start_session(page)
        await page.get_by_test_id("send-sms").click()
        await expect(page.get_by_test_id("sms-status")).to_have_attribute("data-state", "sent")
        await expect(page.get_by_test_id("caller-progress")).to_have_attribute(
            "data-status", "live", timeout=30_000
        )
        await wait_colours(page, "camera-video", points, BARS, timeout=45)
        await ctx.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0
    assert not await asyncio.to_thread(data_dir.exists)  # a demo keeps nothing


def test_demo_is_off_in_production(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('environment = "production"\n')
    for args in (["demo"], ["serve", "--demo", "--data-dir", str(tmp_path / "d")]):
        r = subprocess.run([*CLI, *args, "--config", str(conf), "--port", str(free_port())],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode == 2 and "demo mode is off in production" in r.stderr
