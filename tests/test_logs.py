"""Structured logs: one JSON object per line, request/room ids, no phone number, no token."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
from pathlib import Path

import aiohttp

from server.observe.logs import make_handler, redact
from tests.conftest import PASSWORD, free_port
from tests.signalling_client import SUBPROTOCOL, open_link
from tests.test_cli import CLI, run

PHONE = "20000012"


def test_redact() -> None:
    text = redact(
        "caller +37120000012 (0037120000012) opened http://x/j/AbCdEfGhIjKlMnOpQrStUv_-123 "
        "token=abc123 password: hunter2 room s-abcd port 8080 at 1795315563.7"
    )
    assert "20000012" not in text and "AbCdEf" not in text
    assert "abc123" not in text and "hunter2" not in text
    assert "+371 ••••••12" in text and "/j/<token>" in text
    assert "s-abcd" in text and "8080" in text and "1795315563.7" in text


def test_redact_phone_numbers_in_every_usual_form() -> None:
    """Issue 14 item 11: the old regex masked contiguous E.164 only; the phonenumbers matcher
    (default region from session.default_country_code, LV here) catches the rest."""
    forms = ["+371 2000 0099", "371-2000-0099", "20000099", "0037120000099", "(+371) 20000099",
             "+371 20 00 00 99"]  # fmt: skip
    for form in forms:
        text = redact(f"caller {form} asked to stop")
        assert "0099" not in text and "+371 ••••••99" in text, (form, text)
    # International numbers of other countries, premium-rate ones included.
    for form in ["+44 20 7946 0958", "+882 1234 5678", "+1 900 555 0123"]:
        assert form[-4:] not in redact(f"call {form} now"), form
    # What is not a phone number stays as it was.
    kept = "room s-abcd port 8080 at 1795315563.7 took 0.123 s, 1234 bytes, seq 123456"
    assert redact(kept) == kept


async def test_json_lines_without_phone_or_token(server) -> None:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    handler = make_handler("json", buf)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        agent = await server.agent()
        created = await agent.new_session(PHONE)
        sid = created["session"]["id"]
        token = created["link"].split("/j/")[1]
        status, _ = await agent.post(f"/api/sessions/{sid}/sms", {"link": created["link"]})
        assert status == 200
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as phone:
            assert await open_link(phone, created["link"]) == 303
            cookie = next(iter(phone.cookie_jar)).value
            # Another browser (no device cookie) gets the 410; the same browser is let back in.
            async with aiohttp.ClientSession() as other, other.get(
                created["link"], allow_redirects=False
            ) as r:
                assert r.status == 410
            ws = await phone.ws_connect(
                server.url.replace("http", "ws") + "/ws/caller",
                protocols=(SUBPROTOCOL,),
                origin=server.url,
            )
            await ws.receive_json()
            await ws.close()
        # Whatever a careless caller of the logger passes in is still masked.
        logging.getLogger("careless").info("caller +371%s opened %s", PHONE, created["link"])
        status, _ = await agent.post(f"/api/sessions/{sid}/end")
        assert status == 200
        await asyncio.sleep(0.1)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)

    out = buf.getvalue()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) > 5
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    assert PHONE not in out
    assert token not in out and cookie not in out
    assert agent.csrf not in out
    access = [x for x in lines if x["logger"] == "aiohttp.access"]
    assert any("/j/<token>" in x["message"] for x in access)
    assert all(x.get("request_id") for x in access)
    assert any(x.get("room_id") == sid for x in lines)  # /api/sessions/{id}/... lines
    careless = next(x for x in lines if x["logger"] == "careless")
    assert careless["message"] == f"caller +371 ••••••12 opened {server.url}/j/<token>"


async def test_serve_log_format_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    r = run(
        "user", "add", "anna", "--role", "agent", "--password-stdin", "--data-dir", str(data),
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[http]\npublic_url = "http://127.0.0.1:{port}"\n')
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", str(port), "--data-dir", str(data), "--config", str(cfg),
        "--log-format", "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            for _ in range(100):
                try:
                    async with http.get(url + "/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            async with http.post(
                url + "/api/login",
                headers={"Origin": url},
                json={"username": "anna", "password": PASSWORD},
            ) as resp:
                csrf = (await resp.json())["csrf"]
            async with http.post(
                url + "/api/sessions",
                json={"phone": PHONE},
                headers={"Origin": url, "X-CSRF-Token": csrf, "X-Request-Id": "req-test-1"},
            ) as resp:
                assert resp.headers["X-Request-Id"] == "req-test-1"
                created = await resp.json()
            assert await open_link(http, created["link"]) == 303
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        err = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, err
    token = created["link"].split("/j/")[1]
    assert token not in err and PHONE not in err
    created_line = next(x for x in lines if "created session" in x["message"])
    assert created_line["request_id"] == "req-test-1" and created_line["level"] == "info"
    opened = [x for x in lines if x["logger"] == "aiohttp.access" and "GET /j/" in x["message"]]
    assert opened and all(
        "/j/<token>" in x["message"] or "/j/%3Ctoken%3E" in x["message"] for x in opened
    )
