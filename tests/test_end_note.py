"""Free text out of the hash chain (issue 14 item 11): an ops user's reason for ending a room
("caller +371 2000 0111 asked to stop") went verbatim into the audit log and the server log
and outlived erasure. Now: a fixed code in the audit log and the log line, the text masked
and kept with the session, exported with it and erased with it."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from server.core.appkeys import AUDIT
from tests.conftest import dump_database
from tests.test_privacy import dpo, export_zip

PHONE = "20000111"
NOTE = "caller +371 2000 0111 asked to stop, call back on 371-2000-0099 or 20000099"


async def test_ops_end_reason_stays_out_of_the_audit_chain(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    agent = await server.agent("anna")
    sid = (await agent.new_session(PHONE))["session"]["id"]
    await server.add_user("sue", role="supervisor")
    sue = await server.agent("sue")
    status, body = await sue.post(f"/api/ops/rooms/{sid}/end", {"reason": NOTE, "code": "nope"})
    assert status == 400 and body["error"]["code"] == "bad_reason"
    with caplog.at_level(logging.INFO):
        status, body = await sue.post(
            f"/api/ops/rooms/{sid}/end", {"reason": NOTE, "code": "caller_request"}
        )
    assert status == 200 and body["ended"] is True

    rows = await server.app[AUDIT].rows()
    (end,) = [r for r in rows if r["action"] == "ops.room_end"]
    assert (end["actor"], end["object"], end["reason"]) == ("sue", sid, "caller_request")
    chain = json.dumps([{k: v for k, v in r.items() if "hash" not in k} for r in rows])
    assert "asked" not in chain and "0111" not in chain and "0099" not in chain
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "asked" not in logged and "caller_request" in logged

    row = await server.db.get_session(sid)
    assert row["end_reason"] == "ops"
    assert row["end_note"] == (
        "caller +371 ••••••11 asked to stop, call back on +371 ••••••99 or +371 ••••••99"
    )

    # The subject's export has it; erasure removes it with the session.
    officer = await dpo(server)
    status, archive = await export_zip(officer, PHONE)
    assert status == 200
    data = json.loads(archive.read("records.json"))["sessions"]  # type: ignore[union-attr]
    assert any((s["end_note"] or "").startswith("caller +371 ••••••11") for s in data)
    status, body = await officer.post("/api/dpo/erase", {"phone": PHONE, "confirm": PHONE})
    assert status == 200, body
    assert "asked to stop" not in await dump_database(server)


async def test_reasons_typed_for_the_audit_log_are_masked(server: Any) -> None:
    """A DPO's "why" is kept (it is their justification) but a number in it is masked."""
    officer = await dpo(server)
    status, _ = await officer.post(
        "/api/dpo/search", {"phone": PHONE, "reason": "ticket 7, caller 371-2000-0099 called"}
    )
    assert status == 200
    rows = await server.app[AUDIT].rows()
    (search,) = [r for r in rows if r["action"] == "subject.search"]
    assert search["reason"] == "ticket 7, caller +371 ••••••99 called"
    assert (await server.app[AUDIT].verify()).ok
