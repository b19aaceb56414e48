"""/metrics is not anonymous (issue 14, item 13): only Prometheus' bearer token opens it,
so a prober cannot watch the link counters tick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from server.core.secrets import load_secrets
from tests.conftest import scraper


async def _status(server: Any, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(server.url + "/metrics") as r,
    ):
        return r.status


async def test_metrics_need_the_bearer_token(server: Any) -> None:
    assert await _status(server) == 401
    assert await _status(server, {"Authorization": "Bearer wrong"}) == 401
    assert await _status(server, {"Authorization": "Basic eDp5"}) == 401
    agent = await server.agent()  # a login is not the scraper's token
    async with agent.http.get(server.url + "/metrics") as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "not_authenticated"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    async with (
        aiohttp.ClientSession(headers=scraper(server)) as http,
        http.get(server.url + "/metrics") as r,
    ):
        assert r.status == 200
        assert "callassist_" in await r.text()


def test_production_without_a_metrics_token_serves_no_metrics(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CALLASSIST_SERVER_KEY", "x" * 43)
    monkeypatch.delenv("CALLASSIST_METRICS_TOKEN", raising=False)
    got = load_secrets("production", tmp_path, need_sms=False, need_turn=False)
    assert got.metrics_token is None  # /metrics then refuses everyone
    assert not (tmp_path / "secrets").exists()  # nothing generated in production
    monkeypatch.setenv("CALLASSIST_METRICS_TOKEN", "t" * 40)
    got = load_secrets("production", tmp_path, need_sms=False, need_turn=False)
    assert got.metrics_token == "t" * 40
