"""axe-core on every page and state the browser tests reach (issue #16, item 14): 0
serious or critical violations. axe.min.js comes from the installed Python package
axe-playwright-python (pyproject's test extra): nothing is downloaded at run time, and the
script is evaluated through the DevTools protocol, so the pages' strict CSP stays as it is.
`CALLASSIST_A11Y_REPORT=<file>` writes every violation found (all impacts) as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import axe_playwright_python
from playwright.async_api import Page, expect

from tests.conftest import PASSWORD
from tests.test_browser_e2e import agent_page, caller_page, start_session

AXE = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text(encoding="utf-8")
RUN = """async () => {
  const r = await axe.run(document, {resultTypes: ["violations"]});
  return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 6).map((n) => n.target.join(" "))}));
}"""


class Audit:
    def __init__(self) -> None:
        self.found: dict[str, list[dict[str, Any]]] = {}

    async def check(self, page: Page, state: str) -> None:
        if not await page.evaluate("() => !!window.axe"):
            await page.evaluate(AXE)
        self.found[state] = await page.evaluate(RUN)

    def serious(self) -> dict[str, list[dict[str, Any]]]:
        bad = {
            state: [v for v in found if v["impact"] in ("serious", "critical")]
            for state, found in self.found.items()
        }
        return {state: v for state, v in bad.items() if v}

    def report(self) -> None:
        path = os.environ.get("CALLASSIST_A11Y_REPORT")
        if path:
            Path(path).write_text(json.dumps(self.found, indent=1, ensure_ascii=False))


async def login(page: Page, name: str) -> None:
    await page.get_by_test_id("login-username").fill(name)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()


async def test_no_serious_violations(browser: Any, server: Any) -> None:
    audit = Audit()
    await server.add_user("sue", role="supervisor")
    await server.add_user("dora", role="dpo")
    # The agent console: login form, empty console, a waiting session, a live call.
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await ctx.new_page()
    await page.goto(server.url + "/agent")
    await expect(page.get_by_test_id("login-username")).to_be_visible()
    await audit.check(page, "agent login")
    await ctx.close()
    agent_ctx, agent = await agent_page(browser, server)
    await agent.get_by_test_id("lang-lv").click()
    await audit.check(agent, "agent console")
    link = await start_session(agent)
    await audit.check(agent, "agent session waiting")
    # The caller, in Latvian: link page, notice, ready, live, ended (with the receipt).
    caller_ctx, caller = await caller_page(browser)
    await caller_ctx.add_init_script("localStorage.setItem('callassist.lang','lv')")
    response = await caller.goto(link)
    assert response is not None and response.status == 200
    await audit.check(caller, "link page")
    await caller.get_by_test_id("link-open").click()
    await caller.wait_for_url("**/c")
    await expect(caller.get_by_test_id("notice-accept")).to_be_enabled()
    await audit.check(caller, "caller notice")
    await caller.get_by_test_id("notice-full").locator("summary").click()
    await audit.check(caller, "caller notice, full text")
    await caller.get_by_test_id("notice-accept").click()
    await expect(caller.get_by_test_id("start-camera")).to_be_visible()
    await audit.check(caller, "caller ready")
    await caller.get_by_test_id("start-camera").click()
    state = caller.get_by_test_id("call-state")
    await expect(state).to_have_attribute("data-state", "live", timeout=15_000)
    await caller.wait_for_function("() => !!window.callassistToolkit", timeout=10_000)
    await expect(agent.get_by_test_id("video-caller-state")).to_have_attribute(
        "data-state", "live", timeout=15_000
    )
    await audit.check(caller, "caller live")
    await audit.check(agent, "agent live call")
    await agent.get_by_test_id("chat-input").fill("Sveiki!")
    await agent.get_by_test_id("chat-send").click()
    await caller.get_by_test_id("chat-open").click()
    await expect(caller.get_by_test_id("chat").get_by_test_id("chat-msg")).to_have_count(1)
    await audit.check(caller, "caller chat")
    await caller.get_by_test_id("chat-close").click()
    # A pushed tutorial on the phone; the agent's share area with a tutorial step in it.
    await agent.get_by_test_id("push-tutorial-select").select_option("router-restart")
    await agent.get_by_test_id("push-tutorial").click()
    await expect(caller.get_by_test_id("step-label")).to_have_text("1. solis no 3")
    await audit.check(caller, "caller tutorial card")
    await caller.get_by_test_id("push-close").click()
    await agent.get_by_test_id("push-image-title").fill("Maršrutētājs")
    await agent.get_by_test_id("share-area-open").click()
    await agent.get_by_test_id("share-area-tutorial").select_option("router-restart")
    await expect(agent.get_by_test_id("share-area-step")).to_be_visible()
    await audit.check(agent, "agent share area")
    await agent.get_by_test_id("share-area-close").click()
    await agent.keyboard.press("?")
    await expect(agent.get_by_test_id("shortcuts")).to_be_visible()
    await audit.check(agent, "agent shortcuts")
    await agent.keyboard.press("Escape")
    # Ops watch the room while it is live.
    ops_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    ops = await ops_ctx.new_page()
    await ops.goto(server.url + "/ops")
    await login(ops, "sue")
    await expect(ops.get_by_test_id("room-card").first).to_be_visible(timeout=15_000)
    await audit.check(ops, "ops rooms")
    await ops_ctx.close()
    await agent.get_by_test_id("end-session").click()
    await agent.get_by_test_id("end-session-confirm").click()
    await expect(state).to_have_attribute("data-state", "ended", timeout=10_000)
    await expect(caller.get_by_test_id("privacy-receipt")).to_be_visible(timeout=10_000)
    await audit.check(caller, "caller ended")
    await audit.check(agent, "agent session ended")
    # The link again: the link-invalid page.
    other = await browser.new_context()
    page = await other.new_page()
    await page.goto(link)
    await audit.check(page, "link invalid")
    # The DPO: search result, then the audit log.
    await page.goto(server.url + "/dpo")
    await login(page, "dora")
    await page.get_by_test_id("dpo-phone").fill("20000012")
    await page.get_by_test_id("dpo-search").click()
    await expect(page.get_by_test_id("dpo-session").first).to_be_visible()
    await audit.check(page, "dpo subject")
    await page.get_by_test_id("dpo-tab-audit").click()
    await expect(page.get_by_test_id("dpo-audit-row").first).to_be_visible()
    await audit.check(page, "dpo audit")
    await other.close()
    await agent_ctx.close()
    await caller_ctx.close()
    audit.report()
    assert set(audit.found) >= {"caller notice", "caller ready", "caller live", "caller ended",
                                "agent live call", "ops rooms", "dpo subject",
                                "caller tutorial card", "agent share area"}
    assert not audit.serious(), json.dumps(audit.serious(), indent=1, ensure_ascii=False)
