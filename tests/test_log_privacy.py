"""The text log cannot be forged with newlines, and the access log keeps the ROPA's promise
(issue 14, item 12): by default no IP address and no User-Agent; masked on request."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from server.observe.logs import make_handler, mask_address, user_agent_product
from tests.conftest import free_port

CLI = [sys.executable, "-m", "server"]
FORGED = "2026-12-01 10:00:00 INFO server.http: admin logged in"
PHONE_UA = "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 Chrome/120.0 Mobile"


def test_text_log_escapes_control_characters() -> None:
    out = io.StringIO()
    log = logging.getLogger("test.forge")
    log.propagate = False
    handler = make_handler("text", out)
    log.addHandler(handler)
    try:
        log.warning("reason %s", "ok\n" + FORGED + "\r\x1b[2J")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed\nforged line")
    finally:
        log.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("reason ok\\n" + FORGED + "\\r\\x1b[2J")
    assert "failed\\nforged line" in lines[1]
    assert all(not ln.startswith("2026-12-01 10:00:00") for ln in lines)
    assert "Traceback" in lines[2]  # a traceback stays readable, below its record


def test_masking_helpers() -> None:
    assert mask_address("203.0.113.77") == "203.0.113.0"
    assert mask_address("2001:db8:1234:5678::1") == "2001:db8:1234::"
    assert mask_address(None) == "-"
    assert user_agent_product(PHONE_UA) == "Mozilla"


async def _access_lines(tmp_path: Path, toml: str) -> list[str]:
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[http]\npublic_url = "http://127.0.0.1:{port}"\n{toml}')
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", str(port), "--data-dir", str(tmp_path / "d"),
        "--config", str(cfg), "--log-format", "text",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(headers={"User-Agent": PHONE_UA}) as http:
            for _ in range(300):
                try:
                    async with http.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            async with http.get(url + "/readyz") as r:
                assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    err = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    return [ln for ln in err.splitlines() if "aiohttp.access" in ln and "/readyz" in ln]


async def test_access_log_has_no_address_or_user_agent_by_default(tmp_path: Path) -> None:
    lines = await _access_lines(tmp_path, "")
    assert lines, "an access line for /readyz"
    assert all("127.0.0.1" not in ln and "Mozilla" not in ln for ln in lines), lines
    assert all("GET /readyz" in ln and " 200 " in ln for ln in lines), lines


async def test_access_log_masked(tmp_path: Path) -> None:
    lines = await _access_lines(tmp_path, 'access_log_clients = "masked"\n')
    assert lines and all(ln.split(": ", 1)[1].startswith("127.0.0.0 ") for ln in lines), lines
    assert all('"Mozilla"' in ln and "Android" not in ln for ln in lines), lines


def test_ropa_says_what_the_log_holds(tmp_path: Path) -> None:
    out = subprocess.run([*CLI, "ropa"], capture_output=True, text=True, check=True).stdout
    assert "no IP address and no User-Agent" in out and "access_log_clients" in out
    cfg = tmp_path / "c.toml"
    cfg.write_text('[http]\naccess_log_clients = "masked"\n')
    out = subprocess.run([*CLI, "ropa", "--config", str(cfg)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert "IPv4 /24" in out
