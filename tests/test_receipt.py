"""The caller's privacy receipt (GET /api/caller/receipt, web/receipt.js) and the stored
acceptance of the notice; the DPO page in a real browser."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from typing import Any

import aiohttp
from playwright.async_api import expect

from server.rooms.state import iso
from tests.conftest import PASSWORD
from tests.privacy_helpers import caller_for, jpeg, record, upload
from tests.test_browser_e2e import open_link

DAY = 86_400


async def test_receipt_api_and_the_stored_acceptance(make_server: Any) -> None:
    server = await make_server(recording={"segment_s": 1.0},
                               retention={"recordings_days": 7, "media_days": 14,
                                          "sessions_days": 30})  # fmt: skip
    agent = await server.agent("anna")
    sid, sig = await caller_for(server, agent, "+37120000001")
    other_sid, other = await caller_for(server, agent, "+37120000002")
    await upload(server, sig, jpeg("red"))
    await upload(server, sig, jpeg("blue"))
    await record(server, sid, 2.0, realtime=True)
    status, _ = await agent.post(f"/api/sessions/{sid}/end")
    assert status == 200

    # The acceptance of the notice is stored with its version and time.
    row = await server.db.get_session(sid)
    assert row["notice_version"] == server.config.session.notice_version
    assert row["opened_at"] <= row["accepted_at"] <= row["ended_at"]

    async with sig.http.get(server.url + "/api/caller/receipt") as r:
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        receipt = (await r.json())["receipt"]
    assert receipt["session_id"] == sid and receipt["ended"] is True
    assert receipt["phone_masked"] == "+371 ••••••01"
    assert (receipt["snapshots"], receipt["uploads"]) == (0, 2)
    assert receipt["recording"]["recorded"] is True and receipt["recording"]["count"] == 1
    assert 2 <= receipt["recording"]["seconds"] <= 5
    ended = row["ended_at"]
    assert receipt["kept_until"] == {
        "record": iso(ended + 30 * DAY), "recordings": iso(ended + 7 * DAY),
        "photos": iso(ended + 14 * DAY),
    }  # fmt: skip
    assert receipt["contact"] == server.config.session.privacy_contact
    assert receipt["notice_version"] == row["notice_version"]
    assert "20000001" not in json.dumps(receipt)

    # The other caller gets their own receipt: nothing kept.
    async with other.http.get(server.url + "/api/caller/receipt") as r:
        mine = (await r.json())["receipt"]
    assert mine["session_id"] == other_sid and mine["ended"] is False
    assert (mine["snapshots"], mine["uploads"], mine["recording"]["recorded"]) == (0, 0, False)
    assert mine["kept_until"]["recordings"] is None and mine["kept_until"]["photos"] is None
    # No device cookie, no receipt; a login is not a caller.
    async with aiohttp.ClientSession() as anon, anon.get(server.url + "/api/caller/receipt") as r:
        assert r.status == 401
    async with agent.http.get(server.url + "/api/caller/receipt") as r:
        assert r.status == 401
    await sig.close()
    await other.close()


async def test_receipt_on_the_caller_page(browser: Any, server: Any) -> None:
    agent = await server.agent("anna")
    status, body = await agent.post("/api/sessions", {"phone": "20000012"})
    assert status == 201
    sid = body["session"]["id"]
    ctx = await browser.new_context(**browser.callassist_devices["Pixel 7"])
    await ctx.add_init_script("localStorage.setItem('callassist.lang','en')")
    page = await ctx.new_page()
    try:
        await open_link(page, body["link"])
        await page.get_by_test_id("notice-accept").click()
        await expect(page.get_by_test_id("camera-reminder")).to_be_visible()
        # A photo from the gallery (the page's own cookie, as recording-caller.js sends it).
        r = await page.request.post(server.url + "/api/caller/photos", data=jpeg("green"),
                                    headers={"Origin": server.url})  # fmt: skip
        assert r.status == 201
        loaded = "performance.getEntriesByType('resource').map(e => e.name)"
        assert not any(u.endswith("/receipt.js") for u in await page.evaluate(loaded))
        status, _ = await agent.post(f"/api/sessions/{sid}/end")
        assert status == 200

        box = page.get_by_test_id("privacy-receipt")
        await expect(box).to_be_visible()
        await expect(page.get_by_test_id("receipt-uploads")).to_have_attribute("data-count", "1")
        await expect(page.get_by_test_id("receipt-snapshots")).to_have_attribute(
            "data-count", "0")  # fmt: skip
        await expect(page.get_by_test_id("receipt-recording")).to_have_attribute(
            "data-recorded", "no")  # fmt: skip
        await expect(page.get_by_test_id("receipt-session")).to_have_text(sid)
        contact = page.get_by_test_id("receipt-contact")
        await expect(contact).to_have_text(server.config.session.privacy_contact)
        mailto = "mailto:" + server.config.session.privacy_contact
        assert await contact.get_attribute("href") == mailto
        await expect(page.get_by_test_id("receipt-kept-until")).to_contain_text("Kept until")
        await expect(box).to_contain_text("Your privacy receipt")
        await page.get_by_test_id("lang-lv").click()
        await expect(box).to_contain_text("Jūsu privātuma kvīts")
        await expect(page.get_by_test_id("receipt-kept-until")).to_contain_text("Glabāšanas")
        await page.get_by_test_id("lang-ru").click()
        await expect(box).to_contain_text("Ваша квитанция о данных")
        # The module came with the end, not with the page (not part of its weight).
        assert any(u.endswith("/static/receipt.js") for u in await page.evaluate(loaded))
    finally:
        await ctx.close()


async def test_dpo_page(browser: Any, server: Any) -> None:
    agent = await server.agent("anna")
    sid, sig = await caller_for(server, agent, "+37120000001")
    await upload(server, sig, jpeg("red"))
    await agent.post(f"/api/sessions/{sid}/end")
    await sig.close()
    await server.add_user("dora", role="dpo")
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    await ctx.add_init_script("localStorage.setItem('callassist.lang','en')")
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        response = await page.goto(server.url + "/dpo")
        assert response is not None
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        await page.get_by_test_id("login-username").fill("dora")
        await page.get_by_test_id("login-password").fill(PASSWORD)
        await page.get_by_test_id("login-submit").click()
        await page.get_by_test_id("dpo-phone").fill("20000001")
        await page.get_by_test_id("dpo-reason").fill("REQ-7")
        await page.get_by_test_id("dpo-search").click()
        await expect(page.get_by_test_id("dpo-subject")).to_have_text("+37120000001")
        rows = page.get_by_test_id("dpo-session")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-session-id", sid)

        async with page.expect_download() as info:
            await page.get_by_test_id("dpo-export").click()
        download = await info.value
        path = await download.path()
        archive = zipfile.ZipFile(io.BytesIO(await asyncio.to_thread(path.read_bytes)))
        assert "manifest.json" in archive.namelist() and "records.json" in archive.namelist()
        await expect(page.get_by_test_id("dpo-export-status")).to_have_attribute(
            "data-state", "done")  # fmt: skip

        await page.get_by_test_id("dpo-dnr").check()
        await expect(page.get_by_test_id("dpo-dnr-status")).to_have_attribute("data-state", "on")

        await page.get_by_test_id("dpo-rectify-open").click()
        await page.get_by_test_id("dpo-rectify-reference").fill("T-99")
        await page.get_by_test_id("dpo-rectify-save").click()
        await expect(rows.first).to_contain_text("T-99")

        await page.get_by_test_id("dpo-erase").click()
        await page.get_by_test_id("dpo-erase-phone").fill("+371 20000001")
        await page.get_by_test_id("dpo-erase-submit").click()
        await expect(page.get_by_test_id("dpo-erase-status")).to_have_attribute(
            "data-state", "done")  # fmt: skip
        await expect(page.get_by_test_id("dpo-empty")).to_be_visible()
        assert await server.db.get_session(sid) is None

        await page.get_by_test_id("dpo-tab-audit").click()
        await expect(page.get_by_test_id("dpo-audit-verify")).to_have_attribute("data-state", "ok")
        actions = await page.get_by_test_id("dpo-audit-row").all_text_contents()
        assert any("subject.erase" in a for a in actions)
        assert not any("20000001" in a for a in actions)
        await page.get_by_test_id("lang-lv").click()
        await expect(page.get_by_test_id("dpo-tab-audit")).to_have_text("Audita žurnāls")
        # (The first GET /api/me, before the login, is a 401 the browser logs.)
        assert [e for e in errors if "401" not in e] == [], errors
    finally:
        await ctx.close()
