"""Join, visibly (issue #19), in real Chromium with three contexts: the caller (Pixel 7,
fake red/green/blue/white camera), the agent's console, a supervisor's ops console.

The supervisor joins from the ops console: the caller's page names them before they get
any media, they see the caller's pattern, marks from the agent and the supervisor both
land on the caller's picture (with whose they are), a second joiner past
rooms.max_participants is refused, and the caller asks the supervisor to leave (the
agent is told). With CALLASSIST_SHOTS=<dir> the pages are saved there."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.conftest import PASSWORD
from tests.test_browser_e2e import agent_page, caller_page, open_link, start_session, wait_colours
from tests.test_ops_browser import login
from tests.test_toolkit_browser import COLOURS, MAP, QUADRANTS, agent_click_frame, drawn, near

SHOTS = os.environ.get("CALLASSIST_SHOTS")


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)  # noqa: ASYNC230 - a directory, once
        await page.screenshot(path=str(Path(SHOTS) / f"team-{name}.png"))


async def test_supervisor_joins_visibly_marks_and_is_asked_to_leave(
    browser: Any, make_server: Any
) -> None:
    # Three people at most: the agent, the caller and one more.
    server = await make_server(rooms={"max_participants": 3})
    await server.add_user("sue", role="supervisor")
    await server.add_user("tom", role="supervisor")
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    errors: list[str] = []
    caller.on("pageerror", lambda e: errors.append(f"caller: {e}"))
    agent.on("pageerror", lambda e: errors.append(f"agent: {e}"))
    contexts = [agent_ctx, caller_ctx]
    try:
        await open_link(caller, link)
        await caller.get_by_test_id("lang-en").click()
        await caller.get_by_test_id("notice-accept").click()
        await caller.get_by_test_id("start-camera").click()
        await expect(caller.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "live", timeout=15_000
        )
        await caller.wait_for_function("() => !!window.callassistToolkit", timeout=10_000)
        await wait_colours(agent, "camera-video", QUADRANTS, COLOURS)

        # The supervisor joins from the ops console.
        sue_ctx, sue = await login(browser, server, "sue")
        contexts.append(sue_ctx)
        sue.on("pageerror", lambda e: errors.append(f"sue: {e}"))
        join = sue.get_by_test_id("room-join")
        await expect(join).to_be_visible(timeout=10_000)
        await join.click()

        # The caller's page names them (en) ...
        joined = caller.get_by_test_id("team-joined")
        await expect(joined).to_contain_text("Supervisor sue joined the call", timeout=10_000)
        await expect(caller.get_by_test_id("team-dismiss")).to_be_visible()
        # ... and the supervisor sees the caller's pattern, only after the caller was told.
        await wait_colours(sue, "join-camera", QUADRANTS, COLOURS)
        await expect(sue.get_by_test_id("join-state")).to_have_attribute("data-state", "connected")
        shown = await caller.evaluate("() => Object.values(window.callassist.team.shownAt)[0]")
        first = await sue.evaluate("() => window.callassistJoin.firstFrameAt.camera")
        assert shown and first and shown <= first, (shown, first)
        # The agent's console says who is there.
        await expect(agent.get_by_test_id("agent-team")).to_contain_text("Supervisor sue")

        # Marks from both staff land on the caller's picture where they were put.
        await agent.get_by_test_id("tool-arrow").click()
        await agent.get_by_test_id("tool-pin").check()
        await agent_click_frame(agent, 0.25, 0.25, (0.4, 0.4))
        agent_mark = await agent.evaluate(
            "() => [...window.callassistToolkit.overlay.marks.keys()].pop()"
        )
        got = await sue.evaluate(MAP, ["[data-testid=join-camera]", [[0.75, 0.75]]])
        (x, y) = got["pts"][0]
        await sue.mouse.click(x, y)
        sue_mark = await sue.evaluate("() => window.callassistJoin.marks[0]")
        want = await caller.evaluate(
            MAP, ["[data-testid=camera-preview]", [[0.25, 0.25], [0.75, 0.75]]]
        )
        a = await drawn(caller, "overlay", agent_mark)
        s = await drawn(caller, "overlay", sue_mark)
        assert near(a["pts"][0], want["pts"][0], 2), (a, want)
        assert near(s["pts"][0], want["pts"][1], 2), (s, want)
        await expect(caller.get_by_test_id("team-mark-by")).to_have_text("Marked by Supervisor sue")
        # Chat from the supervisor reaches the caller and carries whose it is.
        await sue.get_by_test_id("join-chat-input").fill("Hello from sue")
        await sue.get_by_test_id("join-chat-send").click()
        await expect(sue.get_by_test_id("join-chat-msg")).to_contain_text("sue (supervisor): Hello")
        await shot(caller, "caller-joined")
        await shot(sue, "supervisor-joined")
        await shot(agent, "agent-joined")

        # A fourth person is one too many: a clear refusal.
        tom_ctx, tom = await login(browser, server, "tom")
        contexts.append(tom_ctx)
        await tom.get_by_test_id("room-join").click()
        await expect(tom.get_by_test_id("join-state")).to_have_attribute(
            "data-state", "full", timeout=10_000
        )
        await shot(tom, "refused-full")

        # The caller asks the supervisor to leave: removed, the agent is told.
        await caller.get_by_test_id("team-dismiss").click()
        await expect(sue.get_by_test_id("join-state")).to_have_attribute(
            "data-state", "removed", timeout=10_000
        )
        await expect(caller.get_by_test_id("team-left")).to_contain_text("Supervisor sue left")
        await expect(agent.get_by_test_id("agent-team")).to_have_attribute(
            "data-last", "caller_asked"
        )
        await expect(caller.get_by_test_id("team-here")).to_have_count(0)
        await shot(caller, "caller-dismissed")
        await shot(agent, "agent-dismissed")
        await asyncio.sleep(0.2)
        assert not errors, errors
    finally:
        for ctx in contexts:
            await ctx.close()


async def _ws_welcome(user: Any, server: Any, path: str) -> dict[str, Any]:
    """Open a signalling socket as `user` and return its first message."""
    url = server.url.replace("http", "ws", 1) + path
    async with user.http.ws_connect(url, protocols=["callassist.v1"]) as ws:
        return await ws.receive_json(timeout=10)  # type: ignore[no-any-return]


async def test_staff_link_is_single_use_expires_and_hand_over_is_recorded(
    make_server: Any,
) -> None:
    from server.core.audit import Audit
    from tests.privacy_helpers import caller_for

    server = await make_server()
    anna = await server.agent("anna")
    boris = await server.agent("boris")
    carl = await server.agent("carl")
    sid, sig = await caller_for(server, anna, "+37120000001")
    try:
        # Only the holder makes links; the link is single use and the hash is stored.
        status, body = await boris.post(f"/api/sessions/{sid}/staff-link")
        assert status == 404, body
        status, body = await anna.post(f"/api/sessions/{sid}/staff-link")
        assert status == 200, body
        token = body["link"].rsplit("/x/", 1)[1]
        async with server.db.engine.connect() as conn:
            stored = json.dumps([list(r) for r in (await conn.exec_driver_sql(
                "SELECT * FROM staff_links")).all()])  # fmt: skip
        assert token not in stored
        # Not joined yet: no expert socket.
        url = server.url.replace("http", "ws", 1) + f"/ws/expert/{sid}"
        async with boris.http.get(url.replace("ws", "http", 1)) as r:
            assert r.status in (400, 403)
        status, body = await boris.post("/api/staff-links/redeem", {"token": token})
        assert (status, body) == (200, {"room": sid})
        status, body = await carl.post("/api/staff-links/redeem", {"token": token})
        assert status == 410 and body["error"]["code"] == "link_invalid", body
        status, body = await carl.post("/api/staff-links/redeem", {"token": "x"})
        assert status == 400 and body["error"]["code"] == "bad_token"
        # Boris joins as an expert; carl (no link) is refused.
        welcome = await _ws_welcome(boris, server, f"/ws/expert/{sid}")
        assert welcome["role"] == "staff" and welcome["participant"].startswith("staff-expert-")
        async with carl.http.get(url.replace("ws", "http", 1)) as r:
            assert r.status in (400, 403)

        # Hand-over to another agent account: record, holders, audit, report.
        status, body = await anna.post(f"/api/sessions/{sid}/hand-over", {"username": "nobody"})
        assert status == 400 and body["error"]["code"] == "bad_target"
        status, body = await anna.post(f"/api/sessions/{sid}/hand-over", {"username": "carl"})
        assert (status, body) == (200, {"holder": "carl"})
        row = await server.db.get_session(sid)
        carl_user = await server.db.user_by_name("carl")
        assert row["agent_id"] == carl_user.id
        holders = await server.db.holders(sid)
        assert [h["username"] for h in holders] == ["anna", "carl"]
        assert holders[0]["until"] == holders[1]["since"] and holders[1]["until"] is None
        actions = [(r["action"], r["role"]) for r in await Audit.rows_about(server.db, {sid})]
        for want in ("team.link_create", "team.link_use", "media.join", "session.hand_over"):
            assert want in {a for a, _ in actions}, actions
        # Anna no longer holds it: she cannot hand it over again; carl's report lists both.
        status, _ = await anna.post(f"/api/sessions/{sid}/hand-over", {"username": "boris"})
        assert status == 404
        status, body = await carl.get(f"/api/sessions/{sid}/report")
        report = body["report"]
        assert status == 200
        assert [h["agent"] for h in report["holders"]] == ["anna", "carl"]
        assert report["holders"][1]["until"] is None
        # A link expires after 15 minutes (last: the room times out meanwhile too).
        status, body = await carl.post(f"/api/sessions/{sid}/staff-link")
        later = body["link"].rsplit("/x/", 1)[1]
        server.clock.advance(901)
        status, body = await anna.post("/api/staff-links/redeem", {"token": later})
        assert status == 410 and body["error"]["code"] == "link_invalid"
    finally:
        await sig.close()
        for user in (anna, boris, carl):
            await user.close()


async def test_receipt_says_whether_a_supervisor_watched(make_server: Any) -> None:
    from tests.privacy_helpers import caller_for

    server = await make_server()
    await server.add_user("sue", role="supervisor")
    anna = await server.agent("anna")
    sue = await server.agent("sue")
    watched_sid, watched = await caller_for(server, anna, "+37120000001")
    _, quiet = await caller_for(server, anna, "+37120000002")
    try:
        welcome = await _ws_welcome(sue, server, f"/ws/watch/{watched_sid}")
        assert welcome["role"] == "supervisor"
        for sig, want in ((watched, True), (quiet, False)):
            async with sig.http.get(server.url + "/api/caller/receipt") as r:
                receipt = (await r.json())["receipt"]
            assert receipt["watched_by_supervisor"] is want
    finally:
        for c in (watched, quiet, anna, sue):
            await c.close()


async def test_expert_link_opens_a_join_page_and_hand_over_changes_the_holder(
    browser: Any, make_server: Any
) -> None:
    server = await make_server()
    await server.add_user("boris")
    await server.add_user("carl")
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    contexts = [agent_ctx, caller_ctx]
    try:
        await open_link(caller, link)
        await caller.get_by_test_id("lang-en").click()
        await caller.get_by_test_id("notice-accept").click()
        await caller.get_by_test_id("start-camera").click()
        await expect(caller.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "live", timeout=15_000
        )
        # The agent makes a one-time link for a colleague.
        await agent.get_by_test_id("agent-invite").click()
        shown = agent.get_by_test_id("agent-invite-link")
        await expect(shown).to_contain_text("/x/")
        staff_link = re.search(r"https?://\S+/x/[A-Za-z0-9_-]+", await shown.inner_text())
        assert staff_link is not None
        # Boris opens it, logs in and is in the call as an expert.
        boris_ctx, boris = await _staff_at(browser, staff_link.group(0), "boris")
        contexts.append(boris_ctx)
        await expect(boris.get_by_test_id("xjoin-state")).to_have_attribute("data-state", "joined")
        assert boris.url.endswith("/x")  # the token left the address bar
        await expect(caller.get_by_test_id("team-joined")).to_contain_text(
            "Expert boris joined the call", timeout=10_000
        )
        await wait_colours(boris, "join-camera", QUADRANTS, COLOURS)
        # Used once: carl gets a clear refusal.
        carl_ctx, carl = await _staff_at(browser, staff_link.group(0), "carl")
        contexts.append(carl_ctx)
        await expect(carl.get_by_test_id("xjoin-state")).to_have_attribute("data-state", "invalid")
        await expect(carl.get_by_test_id("xjoin-state")).to_contain_text("used already")
        await shot(boris, "expert-joined")
        await shot(carl, "expert-link-used")

        # Hand-over to the joined expert: every page names boris.
        hand = agent.locator('[data-testid="agent-hand-over"]')
        await expect(hand).to_contain_text("Expert boris")
        await hand.click()
        await expect(caller.get_by_test_id("team-holder")).to_have_text(
            "Now helping you: boris", timeout=10_000
        )
        await expect(agent.get_by_test_id("agent-holder")).to_contain_text("Held by boris")
        await expect(agent.get_by_test_id("agent-invite")).to_have_count(0)
        sid = await agent.evaluate("() => window.callassist.session.id")
        row = await server.db.get_session(sid)
        assert row["agent_id"] == (await server.db.user_by_name("boris")).id
        assert [h["username"] for h in await server.db.holders(sid)] == ["anna", "boris"]
        from server.core.audit import Audit

        actions = {r["action"] for r in await Audit.rows_about(server.db, {sid})}
        assert "session.hand_over" in actions, actions
        await shot(caller, "caller-handed-over")
        await shot(agent, "agent-handed-over")
    finally:
        for ctx in contexts:
            await ctx.close()


async def _staff_at(browser: Any, url: str, name: str) -> tuple[Any, Page]:
    ctx = await browser.new_context(
        viewport={"width": 1280, "height": 900}, permissions=["camera"], locale="en-GB"
    )
    page = await ctx.new_page()
    await page.goto(url)
    await page.get_by_test_id("login-username").fill(name)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    return ctx, page
