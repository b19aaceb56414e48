"""SMS pumping and room floods (issue 14, item 4): per-agent caps on live rooms, caps on
SMS sends per session and per agent per hour, and an allow-list of destination countries
and number types (premium-rate +1900..., international networks +882...)."""

from __future__ import annotations

from typing import Any

import pytest


async def _sms(agent: Any, created: dict) -> tuple[int, dict]:
    sid = created["session"]["id"]
    return await agent.post(f"/api/sessions/{sid}/sms", {"link": created["link"]})


@pytest.mark.parametrize(
    ("phone", "said"),
    [
        ("+19005550100", "US numbers are not allowed"),  # US premium rate
        ("+88213000000", "international-network"),
        ("+37190000000", "premium-rate numbers are not allowed"),  # Latvian premium rate
    ],
)
async def test_sms_to_disallowed_destinations_is_refused(server, phone: str, said: str) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    status, created = await agent.post("/api/sessions", {"phone": phone})
    if status == 400:  # not even a valid number: refused earlier, still nothing is sent
        assert created["error"]["code"] == "bad_phone"
        return
    assert status == 201, created
    status, body = await _sms(agent, created)
    assert status == 400 and body["error"]["code"] == "sms_not_allowed", body
    assert said in body["error"]["message"]


async def test_sms_allow_list_is_configurable(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(sms={"allowed_countries": ["US"], "allowed_types": ["premium_rate"]})
    agent = await server.agent()
    status, created = await agent.post("/api/sessions", {"phone": "+19005550100"})
    assert status == 201
    assert (await _sms(agent, created))[0] == 200


async def test_sms_sends_are_capped(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(sms={"max_per_session": 3, "max_per_agent_per_hour": 5})
    agent = await server.agent()
    created = await agent.new_session()
    codes = [(await _sms(agent, created))[0] for _ in range(6)]
    assert codes == [200, 200, 200, 429, 429, 429]
    status, body = await _sms(agent, created)
    assert body["error"]["code"] == "rate_limited" and "3 times" in body["error"]["message"]
    second = await agent.new_session()
    codes = [(await _sms(agent, second))[0] for _ in range(3)]
    assert codes == [200, 200, 429]  # 5 per agent per hour
    status, body = await _sms(agent, second)
    assert "per agent per hour" in body["error"]["message"]


async def test_live_rooms_per_agent_are_capped(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(session={"max_live_rooms_per_agent": 3})
    anna = await server.agent()
    made = [await anna.post("/api/sessions", {"phone": "20000012"}) for _ in range(4)]
    assert [s for s, _ in made] == [201, 201, 201, 429]
    assert made[3][1]["error"]["code"] == "too_many_rooms"
    boris = await server.agent("boris")  # another agent's cap is their own
    assert (await boris.post("/api/sessions", {"phone": "20000012"}))[0] == 201
    sid = made[0][1]["session"]["id"]
    assert (await anna.post(f"/api/sessions/{sid}/end", {}))[0] == 200
    assert (await anna.post("/api/sessions", {"phone": "20000012"}))[0] == 201


async def test_live_room_cap_holds_across_nodes_sharing_the_database(make_server) -> None:  # type: ignore[no-untyped-def]
    """Two nodes on one database: the cap counts the agent's open sessions on both (it
    counted this node's rooms only, so each node allowed the full cap)."""
    a = await make_server(session={"max_live_rooms_per_agent": 3})
    url = f"sqlite+aiosqlite:///{a.data_dir / 'callassist.db'}"
    b = await make_server(session={"max_live_rooms_per_agent": 3},
                          storage={"database_url": url})  # fmt: skip
    on_a, on_b = await a.agent(), await b.agent()
    assert [(await on_a.post("/api/sessions", {"phone": "20000012"}))[0] for _ in range(2)] == [
        201, 201]  # fmt: skip
    assert (await on_b.post("/api/sessions", {"phone": "20000012"}))[0] == 201
    status, body = await on_b.post("/api/sessions", {"phone": "20000012"})
    assert status == 429 and body["error"]["code"] == "too_many_rooms"
    status, body = await on_a.post("/api/sessions", {"phone": "20000012"})
    assert status == 429
