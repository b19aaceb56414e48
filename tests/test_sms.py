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


def test_segments_count_like_a_handset() -> None:
    from server.sessions.sms import segments

    assert segments("a" * 160) == ("GSM-7", 160, 1)
    assert segments("a" * 161) == ("GSM-7", 161, 2)  # 153 per part once split
    assert segments("a" * 306) == ("GSM-7", 306, 2)
    assert segments("a" * 307) == ("GSM-7", 307, 3)
    assert segments("€" * 80) == ("GSM-7", 160, 1)  # extension characters take two septets
    assert segments("ā" * 70) == ("UCS-2", 70, 1)  # Latvian diacritics are not GSM-7
    assert segments("ā" * 71) == ("UCS-2", 71, 2)  # 67 per part once split
    assert segments("😀" * 36) == ("UCS-2", 72, 2)  # outside the BMP: two UTF-16 units


def test_sms_text_per_language_stays_in_one_segment_where_it_can() -> None:
    from server.sessions.sms import compose

    link = "https://support.example.lv/j/" + "A" * 43  # a real link's length
    lv = compose("lv", "Example Telecom", link)
    # Latvian with diacritics would be UCS-2 (3 segments): the GSM-7 variant fits in one.
    assert (lv.encoding, lv.segments) == ("GSM-7", 1) and "atveriet" in lv.text
    assert lv.text.startswith("Example Telecom: ") and lv.text.endswith(link)
    en = compose("en", "Example Telecom", link)
    assert (en.encoding, en.segments) == ("GSM-7", 1) and "open" in en.text
    ru = compose("ru", "Example Telecom", link)
    assert (ru.encoding, ru.segments) == ("UCS-2", 2) and "ссылке" in ru.text
    # An operator name outside GSM-7 makes any text UCS-2; the count says so.
    lv2 = compose("lv", "Tele Ļ", link)
    assert lv2.encoding == "UCS-2" and lv2.segments > 1 and "parādītu" in lv2.text


async def test_sms_language_chosen_per_session(make_server) -> None:  # type: ignore[no-untyped-def]
    runner, port, received = await _gateway()
    server = await make_server(
        sms={"sender": "http", "http_url": f"http://127.0.0.1:{port}/sms"},
        session={"operator_name": "Tele2"},
    )
    agent = await server.agent()
    created = await agent.new_session()
    assert created["sms"]["lv"]["segments"] == 1 and created["sms"]["ru"]["encoding"] == "UCS-2"
    sid = created["session"]["id"]
    status, body = await agent.post(f"/api/sessions/{sid}/sms", {"link": created["link"]})
    assert status == 200 and body["sms"]["lang"] == "lv" and body["sms"]["segments"] == 1
    assert received[-1]["body"]["text"].startswith("Tele2: lai paraditu")
    status, body = await agent.post(
        f"/api/sessions/{sid}/sms", {"link": created["link"], "lang": "ru"}
    )
    assert status == 200 and body["sms"] == {
        "status": "sent", "to": body["sms"]["to"], **created["sms"]["ru"]
    }  # fmt: skip
    assert "покажите" in received[-1]["body"]["text"]
    status, body = await agent.post(
        f"/api/sessions/{sid}/sms", {"link": created["link"], "lang": "de"}
    )
    assert status == 400 and body["error"]["code"] == "bad_lang"
    assert len(received) == 2  # the refused one was not sent
    await runner.cleanup()
