"""The HTTP SMS sender against a real gateway on loopback: signed, and failures shown."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from aiohttp import web

from tests.conftest import free_port


async def _gateway(status: int = 200) -> tuple[web.AppRunner, int, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        received.append(
            {
                "body": json.loads(body),
                "raw": body,
                "ts": request.headers["X-Callassist-Timestamp"],
                "sig": request.headers["X-Callassist-Signature"],
            }
        )
        return web.json_response({"ok": status < 300}, status=status)

    app = web.Application()
    app.router.add_post("/sms", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port, received


async def test_http_sender_signs_and_reports(make_server) -> None:  # type: ignore[no-untyped-def]
    runner, port, received = await _gateway()
    server = await make_server(sms={"sender": "http", "http_url": f"http://127.0.0.1:{port}/sms"})
    key = (server.data_dir / "secrets" / "sms_hmac_key.key").read_text().strip().encode()
    agent = await server.agent()
    created = await agent.new_session()
    sid = created["session"]["id"]
    status, body = await agent.post(f"/api/sessions/{sid}/sms", {"link": created["link"]})
    assert status == 200, body
    assert body["sms"]["to"].endswith("12") and "2000" not in body["sms"]["to"]
    (msg,) = received
    assert msg["body"]["to"] == "+37120000012"
    assert created["link"] in msg["body"]["text"]
    expected = hmac.new(key, msg["ts"].encode() + b"." + msg["raw"], hashlib.sha256).hexdigest()
    assert msg["sig"] == "sha256=" + expected
    assert abs(int(msg["ts"]) - time.time()) < 30
    await runner.cleanup()

    # The gateway is down now: the agent gets a clear error, and can retry later.
    status, body = await agent.post(f"/api/sessions/{sid}/sms", {"link": created["link"]})
    assert status == 502 and body["error"]["code"] == "sms_failed"
    assert "cannot be reached" in body["error"]["message"]


async def test_http_sender_gateway_refuses(make_server) -> None:  # type: ignore[no-untyped-def]
    runner, port, _ = await _gateway(status=503)
    server = await make_server(sms={"sender": "http", "http_url": f"http://127.0.0.1:{port}/sms"})
    agent = await server.agent()
    created = await agent.new_session()
    sid = created["session"]["id"]
    status, body = await agent.post(f"/api/sessions/{sid}/sms", {"link": created["link"]})
    assert status == 502 and "HTTP 503" in body["error"]["message"]
    await runner.cleanup()
