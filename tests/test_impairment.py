"""A bad network between the caller and the server (issue 15, "Impairment"): the caller's
page is relay only through the impairment relay (tests/impair.py) in front of coturn.
Loss of 5/10/20 %, +150 ms RTT with jitter and a 500 kbps cap: the session survives and
frames keep reaching the agent; a 10 s blackout: media comes back by itself (the goal is
< 5 s; asserted generously, < 15 s, the measured value is printed), and the indicators on
both pages say so meanwhile. The numbers per condition: bench/impairment.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from playwright.async_api import expect

from tests.coturn import Turn, start_coturn, stop_coturn
from tests.impair import Impairment, ImpairRelay
from tests.impair_call import FrameCounter, blackout, run_condition, start_call

# (condition, seconds held). 5 s each for the survival checks: longer than the pages'
# DISCONNECTED_GRACE_MS (2 s, web/rtc.js) after which a broken link is replaced, and than
# the agent's CALLER_Q_STALE_MS (3.5 s, web/toolkit-agent.js): a condition that broke the
# call shows by its end. 20 % loss, whose bars and low-mode suggestion are asserted, keeps
# 8 s: the suggestion needs 3 to 5 of the caller's once-a-second reports (POOR_WINDOW).
CONDITIONS = [
    (Impairment(loss=0.05), 5),
    (Impairment(loss=0.10), 5),
    (Impairment(delay_s=0.075, jitter_s=0.03), 5),
    (Impairment(rate_kbps=500), 5),
    (Impairment(loss=0.20), 8),
]


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    turn, proc = start_coturn(tmp_path_factory.mktemp("coturn"))
    yield turn
    stop_coturn(proc)


@pytest.fixture
async def relay(coturn: Turn) -> AsyncIterator[ImpairRelay]:
    relay = await ImpairRelay(("127.0.0.1", coturn.port)).start()
    yield relay
    relay.close()


@pytest.fixture
async def call(browser, make_server, coturn, relay, monkeypatch) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CALLASSIST_TURN_SECRET", coturn.secret)
    url = f"turn:127.0.0.1:{relay.port}?transport=udp"
    server = await make_server(media={"turn_urls": [url]})
    agent_ctx, agent, caller_ctx, caller = await start_call(browser, server)
    yield agent, caller
    await agent_ctx.close()
    await caller_ctx.close()


async def test_the_session_survives_loss_delay_and_a_cap(call, relay) -> None:  # type: ignore[no-untyped-def]
    agent, caller = call
    counter = FrameCounter()
    await counter.read(agent)
    for impairment, seconds in CONDITIONS:
        got = await run_condition(relay, agent, caller, counter, impairment, seconds=seconds)
        print(got)
        ind = got["indicators_end"]
        assert ind["session"] != "ended" and ind["call_state"] != "ended", got
        assert got["frames_delivered"] > 0, got  # media kept flowing under the condition
        assert got["relay"]["up"]["packets"] > 0, got  # and it did go through the relay
    # 20 % loss is a poor link: the caller's own bars and the agent's view of them drop,
    # and the agent is offered the low-bandwidth mode.
    assert got["lowest"]["caller_own"] <= 3, got
    assert got["lowest"]["agent_view_of_caller"] <= 3, got
    assert got["suggest_low_seen"], got
    await agent.get_by_test_id("suggest-low-apply").click()
    await expect(agent.get_by_test_id("cam-mode")).to_have_value("low")


async def test_media_comes_back_after_a_10_s_blackout(call, relay) -> None:  # type: ignore[no-untyped-def]
    agent, caller = call
    counter = FrameCounter()
    await counter.read(agent)
    got = await blackout(relay, agent, caller, counter, seconds=10, settled=_back)
    print(got)
    during = got["indicators_end"]
    # The truth during the outage: no bars for the caller on either page (not 5 bars for
    # a caller whose packets do not arrive), and the agent's picture is marked.
    assert during["caller_own"] == 0, got
    assert during["agent_view_of_caller"] == 0, got
    assert during["placeholder"] == "reconnecting", got  # at once, not the frozen frame
    assert during["session"] != "ended", got
    # Back by itself, nobody tapped (the documented goal is < 5 s; see the bench).
    assert got["recovery_s"] is not None and got["recovery_s"] < 15, got
    after = got["indicators_after"]
    assert after["call_state"] == "live", got
    assert after["caller_own"] and after["caller_own"] >= 3, got
    assert after["agent_view_of_caller"] and after["agent_view_of_caller"] >= 3, got


def _back(ind: dict[str, Any]) -> bool:
    """What the blackout test asserts of the indicators after it (blackout stops waiting
    for them once this holds, at most its 3 s)."""
    return (ind["call_state"] == "live" and (ind["caller_own"] or 0) >= 3
            and (ind["agent_view_of_caller"] or 0) >= 3)  # fmt: skip
