"""Data-subject rights by phone number (docs/security.md): access (export archive), erasure
(records, media in every storage, wrapped data keys), rectification and objection, on SQLite
and PostgreSQL, with local and S3 (moto) storage."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import av
import pytest

from recorder.crypto import header_object
from recorder.recovery import verify
from server.core.appkeys import AUDIT, SECRETS
from server.privacy.subjects import subject_ref
from server.recording.service import RECORDING
from server.rooms.manager import ROOMS
from tests.conftest import dump_database
from tests.privacy_helpers import (
    Backend,
    backend_for,
    caller_for,
    dominant,
    make_subject,
)
from tests.recorder_helpers import quadrants_ok
from tests.signalling_client import Signalling

ANNA = "+37120000001"
BORIS = "+37120000002"


@pytest.fixture(params=[("sqlite", "local"), ("postgresql", "s3")], ids=lambda p: "-".join(p))
async def backend_server(request: pytest.FixtureRequest, make_server: Any) -> tuple[Any, Backend]:
    backend = backend_for(request, *request.param)
    return await make_server(**backend.sections), backend


async def dpo(server: Any) -> Any:
    if await server.db.user_by_name("dora") is None:
        await server.add_user("dora", role="dpo")
    return await server.agent("dora")


async def export_zip(client: Any, phone: str) -> tuple[int, zipfile.ZipFile | dict]:
    async with client.http.post(
        client.server.url + "/api/dpo/export", json={"phone": phone, "reason": "REQ-1"},
        headers={"X-CSRF-Token": client.csrf},
    ) as r:  # fmt: skip
        if r.status != 200:
            return r.status, await r.json()
        assert r.headers["Content-Type"] == "application/zip"
        assert r.headers["Cache-Control"] == "no-store"
        assert "attachment" in r.headers["Content-Disposition"]
        return 200, zipfile.ZipFile(io.BytesIO(await r.read()))


async def test_export_holds_one_person_only(backend_server: tuple[Any, Backend]) -> None:
    """Two callers with the same device type and the same agent: each archive holds its own
    records and media, and nothing of the other."""
    server, backend = backend_server
    agent = await server.agent("anna")
    a = await make_subject(server, agent, ANNA, "red", photos=2, video_s=2.2)
    b = await make_subject(server, agent, BORIS, "blue", photos=1, video_s=1.2)
    a2 = await make_subject(server, agent, ANNA, "red", photos=1)  # a second call of Anna
    sessions = [await server.db.get_session(s) for s in (a.session_id, b.session_id)]
    assert sessions[0]["device_type"] == sessions[1]["device_type"] != ""
    assert sessions[0]["agent_id"] == sessions[1]["agent_id"]

    officer = await dpo(server)
    status, found = await officer.post("/api/dpo/search", {"phone": "20000001"})
    assert status == 200 and found["phone"] == ANNA
    assert [s["id"] for s in found["sessions"]] == [a.session_id, a2.session_id]
    assert found["sessions"][0]["recordings"] == 1 and found["sessions"][0]["uploads"] == 2

    status, archive = await export_zip(officer, "20000001")
    assert status == 200, archive
    assert isinstance(archive, zipfile.ZipFile)
    manifest = json.loads(archive.read("manifest.json"))
    records = json.loads(archive.read("records.json"))
    names = set(archive.namelist())
    # The manifest lists every other file with its hash; nothing is unlisted.
    assert {f["path"] for f in manifest["files"]} | {"manifest.json"} == names
    for f in manifest["files"]:
        data = archive.read(f["path"])
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
    assert manifest["not_exported"] == [] and manifest["subject"] == {"phone": ANNA}

    assert [s["id"] for s in records["sessions"]] == [a.session_id, a2.session_id]
    first = records["sessions"][0]
    assert first["phone"] == ANNA and first["agent"] == "anna"
    assert first["notice_version_accepted"] and first["accepted_at"] and first["ended_at"]
    assert first["device_type"] == sessions[0]["device_type"]
    kinds = sorted(r["kind"] for r in first["recordings"])
    assert kinds == ["upload", "upload", "video"]
    photos = [n for n in names if n.endswith(".jpg")]
    videos = [n for n in names if n.endswith((".webm", ".mkv"))]
    assert len(photos) == 3 and len(videos) == 1
    assert {dominant(archive.read(n)) for n in photos} == {"red"}  # Anna's pictures only
    with av.open(io.BytesIO(archive.read(videos[0]))) as inp:
        frames = list(inp.decode(video=0))
    assert len(frames) >= 60 and quadrants_ok(frames[0]) and quadrants_ok(frames[-1])
    # Who viewed or handled the data, by role (the upload events of the caller, ...).
    assert any(e["action"] == "photo.upload" for e in records["access_log"])

    # Nothing of Boris anywhere in the archive.
    blob = b"".join(archive.read(n) for n in names)
    for secret in (BORIS.encode(), b.session_id.encode(), *(i.encode() for i in b.photo_ids),
                   *(i.encode() for i in b.video_ids), b"20000002"):  # fmt: skip
        assert secret not in blob

    # Every decryption and the export itself are audit events, without the number.
    rows = await server.app[AUDIT].rows()
    ref = subject_ref(server.app[SECRETS].server_key, ANNA)
    assert any(r["action"] == "subject.export" and r["object"] == ref and r["actor"] == "dora"
               and "REQ-1" in r["reason"] for r in rows)  # fmt: skip
    exported = {r["object"] for r in rows if r["action"] == "recording.export"}
    assert exported == set(a.photo_ids + a.video_ids + a2.photo_ids)
    assert all("20000001" not in str(r) for r in rows)


async def test_erasure_deletes_records_media_and_keys(backend_server: tuple[Any, Backend]) -> None:
    server, backend = backend_server
    agent = await server.agent("anna")
    a = await make_subject(server, agent, ANNA, "red", photos=1, video_s=1.2)
    b = await make_subject(server, agent, BORIS, "blue", photos=1, video_s=1.2)
    service = server.app[RECORDING]
    await service.spool.drain(10)
    a_ids = a.photo_ids + a.video_ids
    b_ids = b.photo_ids + b.video_ids
    for rid in a_ids + b_ids:
        assert backend.keys(server, f"recordings/{rid}/"), rid
    officer = await dpo(server)

    # Confirmation is needed: the number typed twice.
    status, body = await officer.post("/api/dpo/erase", {"phone": ANNA, "confirm": BORIS})
    assert status == 400 and body["error"]["code"] == "not_confirmed"
    # A live session of the number is refused (end it first).
    live_sid, sig = await caller_for(server, agent, ANNA)
    status, body = await officer.post("/api/dpo/erase", {"phone": ANNA, "confirm": ANNA})
    assert status == 409 and body["error"]["code"] == "session_live"
    await agent.post(f"/api/sessions/{live_sid}/end")
    await sig.close()

    status, body = await officer.post("/api/dpo/erase", {"phone": "20000001",
                                                          "confirm": "+371 2000 0001"})  # fmt: skip
    assert status == 200, body
    assert body["erased"]["sessions"] == 2 and body["erased"]["recordings"] == 2

    # Anna: nothing in the database, nothing in the storage or the spool, no header.
    dump = await dump_database(server)
    records = "\n".join(x for x in dump.splitlines() if not x.startswith("audit_log:"))
    assert ANNA not in dump, [x for x in dump.splitlines() if ANNA in x]
    assert a.session_id not in records and live_sid not in records
    for rid in a_ids:
        assert rid not in records
        assert backend.keys(server, f"recordings/{rid}/") == []
        assert backend.paths(server, rid) == []
        report = await verify(service.source, service.keys, rid)
        assert not report.ok and "HeaderMissing" in report.errors[0]
        assert not await service.source.exists(header_object(rid))
    # Boris is untouched, and still decrypts.
    assert BORIS in dump and b.session_id in dump
    for rid in b_ids:
        assert (await verify(service.source, service.keys, rid)).complete

    # The audit log keeps the erasure, naming the subject by an HMAC only.
    rows = await server.app[AUDIT].rows()
    (event,) = [r for r in rows if r["action"] == "subject.erase" and r["result"] == "ok"]
    assert event["object"] == subject_ref(server.app[SECRETS].server_key, ANNA)
    assert all("20000001" not in str(r) for r in rows)
    assert (await server.app[AUDIT].verify()).ok
    status, found = await officer.post("/api/dpo/search", {"phone": ANNA})
    assert status == 200 and found["sessions"] == []


async def test_erasure_shreds_copies_left_in_a_spool(make_server: Any, tmp_path: Any) -> None:
    """A copy of the ciphertext kept elsewhere (a backup, header included) cannot be
    decrypted afterwards: the recording key was in the database, and the erasure deleted
    it with the rows."""
    import shutil

    from recorder.recovery import ObjectSource
    from recorder.storage import LocalStorage

    server = await make_server(recording={"segment_s": 1.0})
    agent = await server.agent("anna")
    a = await make_subject(server, agent, ANNA, "red", photos=0, video_s=1.2)
    service = server.app[RECORDING]
    await service.spool.drain(10)
    (rid,) = a.video_ids
    backup = tmp_path / "backup"
    shutil.copytree(server.data_dir / "store", backup)  # everything, header included
    officer = await dpo(server)
    status, _ = await officer.post("/api/dpo/erase", {"phone": ANNA, "confirm": ANNA})
    assert status == 200
    assert (backup / header_object(rid)).is_file()  # the whole copy, header and all
    report = await verify(ObjectSource(LocalStorage(backup)), service.keys, rid)
    assert not report.ok and "KeyErased" in report.errors[0], report.errors


async def test_rectification(any_db_server: Any) -> None:
    server = any_db_server
    agent = await server.agent("anna")
    a = await make_subject(server, agent, ANNA, "red", photos=0)
    officer = await dpo(server)
    path = f"/api/dpo/sessions/{a.session_id}/rectify"
    status, body = await officer.post(path, {"reference": "T-9"})
    assert status == 400 and body["error"]["code"] == "bad_reason"
    status, body = await officer.post(path, {"phone": "not a number", "reason": "REQ-2"})
    assert status == 400 and body["error"]["code"] == "bad_phone"
    status, body = await officer.post(path, {"phone": "20000003", "reference": "T-9",
                                             "reason": "REQ-2"})  # fmt: skip
    assert status == 200 and body["changed"] == ["phone", "reference"]
    row = await server.db.get_session(a.session_id)
    assert row["phone"] == "+37120000003" and row["reference"] == "T-9"
    status, found = await officer.post("/api/dpo/search", {"phone": "20000003"})
    assert [s["id"] for s in found["sessions"]] == [a.session_id]
    rows = await server.app[AUDIT].rows()
    (event,) = [r for r in rows if r["action"] == "session.rectify"]
    assert event["object"] == a.session_id and event["actor"] == "dora"
    assert "phone, reference" in event["reason"] and "REQ-2" in event["reason"]
    assert all("2000000" not in str(r) for r in rows)
    # Only the DPO: the agent of the session may not.
    status, _ = await agent.post(path, {"reference": "x", "reason": "y"})
    assert status == 403


async def test_objection_stops_recording_and_the_agent_sees_why(make_server: Any) -> None:
    server = await make_server(recording={"segment_s": 1.0})
    officer = await dpo(server)
    status, body = await officer.post("/api/dpo/objection", {"phone": "20000001",
                                                              "do_not_record": True})  # fmt: skip
    assert status == 200 and body == {"phone": ANNA, "do_not_record": True}
    status, found = await officer.post("/api/dpo/search", {"phone": ANNA})
    assert found["do_not_record"] is True
    # The list holds no number: only an HMAC.
    assert "2000000" not in await dump_database(server)

    agent = await server.agent("anna")
    sid, sig = await caller_for(server, agent, ANNA)
    status, body = await agent.post(f"/api/sessions/{sid}/recording", {"action": "start"})
    assert status == 409 and body["error"]["code"] == "do_not_record"
    assert "objected" in body["error"]["message"]
    other, sig2 = await caller_for(server, agent, BORIS)  # another number: recorded
    status, body = await agent.post(f"/api/sessions/{other}/recording", {"action": "start"})
    assert status == 200 and body["recording"]["active"]
    await agent.post(f"/api/sessions/{other}/recording", {"action": "stop"})

    # Lifted: recording works again.
    status, _ = await officer.post("/api/dpo/objection", {"phone": ANNA, "do_not_record": False})
    assert status == 200
    status, body = await agent.post(f"/api/sessions/{sid}/recording", {"action": "start"})
    assert status == 200
    await agent.post(f"/api/sessions/{sid}/recording", {"action": "stop"})
    for s in (sig, sig2):
        await s.close()
    actions = [(r["action"], r["reason"]) for r in await server.app[AUDIT].rows()]
    assert ("subject.objection", "do_not_record on") in actions
    assert ("subject.objection", "do_not_record off") in actions


async def test_objection_in_mode_always(make_server: Any) -> None:
    """Mode `always` starts recording by itself: not for a number that objected, and the
    agent's console is told why."""
    server = await make_server(recording={"mode": "always", "segment_s": 1.0})
    officer = await dpo(server)
    await officer.post("/api/dpo/objection", {"phone": ANNA, "do_not_record": True})
    agent = await server.agent("anna")
    sid, sig = await caller_for(server, agent, ANNA)
    agent_sig = await Signalling.agent(server.url, agent.http, sid)
    live = server.app[ROOMS].get(sid)
    server.app[ROOMS].emit("track", live.room, track="camera", live=True)  # the camera is on
    msg = await agent_sig.expect("error", code="do_not_record")
    assert "objected" in msg["message"]
    assert sid not in server.app[RECORDING].active
    await agent_sig.close()
    await sig.close()
