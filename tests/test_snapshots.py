"""Snapshots and photo uploads: content checks, EXIF/GPS stripping, encrypted storage,
the agent's live view and refusals that leave nothing behind."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
from PIL import ExifTags, Image

from recorder.recovery import read_photo
from server.recording.service import RECORDING
from tests.signalling_client import Signalling
from tests.test_recorder import caller_with_camera


def jpeg_with_gps(size: tuple[int, int] = (400, 300), orientation: int = 1) -> bytes:
    im = Image.new("RGB", size, (200, 30, 30))
    im.paste((30, 30, 200), (0, 0, size[0] // 2, size[1] // 2))  # a blue top-left corner
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretPhone"
    exif[ExifTags.Base.Model] = "Model 7 serial 12345"
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (56.0, 56.0, 42.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (24.0, 6.0, 19.0),
    }
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def stored_files(server: Any) -> list[Path]:
    service = server.app[RECORDING]
    roots = [service.spool.directory, server.data_dir / "store"]
    return sorted(p for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


async def caller_session(server: Any, accept: bool = True) -> tuple[Any, Signalling, str]:
    agent = await server.agent()
    created = await agent.new_session()
    sig = await Signalling.caller(server.url, created["link"])
    if accept:
        await sig.send({"type": "accept", "notice": sig.welcome["notice"]["version"]})
        await sig.wait_room(status="accepted")
    return agent, sig, created["session"]["id"]


async def upload(
    sig: Signalling, server: Any, data: bytes | Any, query: str = "", **headers: str
) -> tuple[int, dict[str, Any]]:
    async with sig.http.post(
        f"{server.url}/api/caller/photos{query}", data=data,
        headers={"Origin": server.url, "Content-Type": "image/jpeg", **headers},
    ) as r:  # fmt: skip
        return r.status, await r.json()


async def test_upload_strips_exif_and_gps_and_is_stored_encrypted(server) -> None:  # type: ignore[no-untyped-def]
    agent, sig, sid = await caller_session(server)
    agent_sig = await Signalling.agent(server.url, agent.http, sid)
    original = jpeg_with_gps(orientation=6)  # stored rotated 90°: shown upright after
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)

    status, body = await upload(sig, server, original)
    assert status == 201, body
    photo = body["photo"]
    assert photo["kind"] == "upload" and (photo["width"], photo["height"]) == (300, 400)
    shown = await agent_sig.expect("photo")  # at once in the agent console
    assert shown["photo"]["id"] == photo["id"]

    async with agent.http.get(server.url + shown["photo"]["url"]) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
        assert r.headers["Cache-Control"] == "no-store"
        jpeg = await r.read()
    im = Image.open(io.BytesIO(jpeg))
    assert im.format == "JPEG" and im.size == (300, 400)
    assert not im.getexif() and "exif" not in im.info and "xmp" not in im.info
    for secret in (b"SecretPhone", b"serial 12345", b"Exif", b"GPS"):
        assert secret not in jpeg
    # Upright: the blue corner of the sideways original is now top-right.
    assert im.getpixel((250, 40))[2] > 150 and im.getpixel((40, 40))[0] > 150

    # On disk only ciphertext: no JPEG marker, no EXIF, in the spool or the store.
    await server.app[RECORDING].spool.drain(5)
    files = stored_files(server)
    assert len(files) == 3  # header, segment 0, manifest
    for f in files:
        data = f.read_bytes()
        assert b"\xff\xd8\xff" not in data[:4] and b"JFIF" not in data and b"Secret" not in data

    status, body = await agent.get(f"/api/sessions/{sid}/photos")
    assert status == 200 and [p["id"] for p in body["photos"]] == [photo["id"]]
    status, body = await agent.get(f"/api/sessions/{sid}/recordings")
    (row,) = body["recordings"]
    assert row["kind"] == "upload" and row["status"] == "complete" and row["container"] == "jpeg"

    # Another agent cannot see it; nobody without a login either.
    other = await server.agent("boris")
    assert (await other.get(f"/api/sessions/{sid}/photos/{photo['id']}"))[0] == 404
    async with aiohttp.ClientSession() as anon, anon.get(server.url + shown["photo"]["url"]) as r:
        assert r.status == 401
    await agent_sig.close()
    await sig.close()


async def test_refused_uploads_say_why_and_leave_nothing(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(recording={"photo_max_bytes": 100_000, "photo_max_per_session": 1})
    agent, sig, sid = await caller_session(server)
    before = stored_files(server)

    async def refused(data: Any, status: int, code: str, **headers: str) -> str:
        got, body = await upload(sig, server, data, **headers)
        assert (got, body["error"]["code"]) == (status, code), body
        assert stored_files(server) == before  # nothing half-written
        assert await server.db.list_recordings(sid) == []
        return body["error"]["message"]

    message = await refused(b"\xff\xd8" + b"x" * 200_000, 413, "too_large")
    assert "larger than" in message

    async def chunks() -> Any:  # no Content-Length: the limit applies while reading
        for _ in range(30):
            yield b"\0" * 10_000

    await refused(chunks(), 413, "too_large")
    message = await refused(b"%PDF-1.7 not a photo at all", 415, "not_an_image")
    assert "not a photo" in message
    whole = jpeg_with_gps()
    await refused(whole[: len(whole) // 2], 415, "not_an_image")  # truncated: a real decode
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    message = await refused(gif.getvalue(), 415, "unsupported_image")
    assert "GIF" in message
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, "PNG")  # 81 MP in a few KB
    await refused(bomb.getvalue(), 413, "image_too_large")
    await refused(b"", 400, "empty_upload")

    # One photo per session in this configuration: the next is refused, clearly.
    assert (await upload(sig, server, jpeg_with_gps()))[0] == 201
    status, body = await upload(sig, server, jpeg_with_gps())
    assert status == 429 and body["error"]["code"] == "too_many_photos"
    await sig.close()


async def test_caller_must_accept_the_notice_and_be_same_origin(server) -> None:  # type: ignore[no-untyped-def]
    _, sig, _ = await caller_session(server, accept=False)
    status, body = await upload(sig, server, jpeg_with_gps())
    assert status == 403 and body["error"]["code"] == "notice_not_accepted"
    status, body = await upload(sig, server, jpeg_with_gps(), Origin="https://evil.example")
    assert status == 403 and body["error"]["code"] == "origin_not_allowed"
    async with (
        aiohttp.ClientSession() as anon,
        anon.post(server.url + "/api/caller/photos", data=b"x", headers={"Origin": server.url})
        as r,
    ):
        assert r.status == 401
    await sig.close()


async def test_agent_snapshot_round_trip(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent()
    status, body = await agent.post("/api/sessions/s-nothere/snapshot")
    assert status == 404
    caller, sid = await caller_with_camera(server, agent)
    agent_sig = await Signalling.agent(server.url, agent.http, sid)

    status, body = await agent.post(f"/api/sessions/{sid}/snapshot")
    assert status == 202, body
    request_id = body["snapshot"]["id"]
    asked = await caller.sig.expect("snapshot")
    assert asked["id"] == request_id
    # The page takes the still (takePhoto or a canvas) and uploads it with the request id.
    status, body = await upload(caller.sig, server, jpeg_with_gps((640, 480)),
                                f"?snapshot={request_id}")  # fmt: skip
    assert status == 201 and body["photo"]["kind"] == "snapshot", body
    shown = await agent_sig.expect("photo")
    assert shown["photo"]["snapshot_id"] == request_id and shown["photo"]["width"] == 640
    service = server.app[RECORDING]
    jpeg, meta = await read_photo(service.source, service.keys, shown["photo"]["id"])
    assert meta["kind"] == "snapshot" and b"GPS" not in jpeg

    # A request id is single use.
    status, body = await upload(caller.sig, server, jpeg_with_gps(), f"?snapshot={request_id}")
    assert status == 409 and body["error"]["code"] == "snapshot_unknown"

    # The page cannot take one: the agent is told why.
    status, body = await agent.post(f"/api/sessions/{sid}/snapshot")
    second = body["snapshot"]["id"]
    await caller.sig.expect("snapshot", id=second)
    await caller.sig.send({"type": "snapshot_failed", "id": second, "reason": "camera_paused"})
    failed = await agent_sig.expect("snapshot_failed")
    assert failed == {"type": "snapshot_failed", "id": second, "reason": "camera_paused"}

    # Without the caller's camera there is nothing to take.
    await caller.pc.close()  # type: ignore[union-attr]
    await agent_sig.wait_room(status="reconnecting")
    status, body = await agent.post(f"/api/sessions/{sid}/snapshot")
    assert status == 409 and body["error"]["code"] == "camera_not_live"
    await agent_sig.close()
    await caller.close()
