"""Helpers for the privacy tests: servers on SQLite/PostgreSQL with local or S3 storage,
sessions that hold photos and a recording, and looking for what is left in the storage."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from server.recording.service import RECORDING
from server.rooms.manager import ROOMS
from tests.recorder_helpers import SyntheticCamera
from tests.s3_server import S3TestServer
from tests.signalling_client import Signalling

RGB = {"red": (220, 20, 20), "blue": (20, 20, 220), "green": (20, 200, 20)}


def jpeg(colour: str, size: tuple[int, int] = (160, 120)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, RGB[colour]).save(out, "JPEG", quality=90)
    return out.getvalue()


def dominant(jpeg_bytes: bytes) -> str:
    r, g, b = Image.open(io.BytesIO(jpeg_bytes)).convert("RGB").getpixel((10, 10))
    return min(RGB, key=lambda k: sum(abs(a - c) for a, c in zip((r, g, b), RGB[k], strict=True)))


@dataclass
class Backend:
    """Where a test server keeps its data: the database and the recording storage."""

    db: str
    storage: str
    s3: S3TestServer | None = None
    bucket: str = ""
    sections: dict[str, Any] = field(default_factory=dict)

    def keys(self, server: Any, prefix: str = "recordings/") -> list[str]:
        """Every object key under `prefix` in the storage AND the spool (any version)."""
        found: list[str] = []
        service = server.app[RECORDING]
        spool = service.spool.directory
        found += [p.relative_to(spool).as_posix() for p in spool.rglob("*") if p.is_file()
                  and p.relative_to(spool).as_posix().startswith(prefix)]  # fmt: skip
        if self.storage == "s3":
            assert self.s3 is not None
            client = self.s3.client()
            pages = client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                versions = page.get("Versions", []) + page.get("DeleteMarkers", [])
                found += [v["Key"] for v in versions]
        else:
            store = server.data_dir / "store"
            found += [p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()
                      and p.relative_to(store).as_posix().startswith(prefix)]  # fmt: skip
        return sorted(found)

    def paths(self, server: Any, rid: str) -> list[Path]:
        """Local files (spool and local store) whose path names the recording."""
        service = server.app[RECORDING]
        roots = [service.spool.directory, server.data_dir / "store"]
        return [p for root in roots if root.exists() for p in root.rglob(f"*{rid}*")]


@pytest.fixture(scope="session")
def s3_server() -> Any:
    with S3TestServer() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "eu-north-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def backend_for(request: pytest.FixtureRequest, db: str, storage: str) -> Backend:
    sections: dict[str, Any] = {"recording": {"segment_s": 1.0}}
    backend = Backend(db, storage, sections=sections)
    if db == "postgresql":
        pg = request.getfixturevalue("postgres")
        sections["storage"] = {"database_url": pg.create_database("t" + uuid.uuid4().hex[:16])}
    if storage == "s3":
        request.getfixturevalue("aws_env")
        s3 = request.getfixturevalue("s3_server")
        backend.s3, backend.bucket = s3, s3.create_bucket("eu-north-1")
        sections["recording"].update(storage="s3", s3={
            "bucket": backend.bucket, "endpoint_url": s3.endpoint_url, "region": "eu-north-1",
            "max_attempts": 1})  # fmt: skip
    return backend


@dataclass
class Made:
    session_id: str
    phone: str
    photo_ids: list[str]
    video_ids: list[str]


async def caller_for(server: Any, agent: Any, phone: str) -> tuple[str, Signalling]:
    body = {"phone": phone, "reference": "T-" + phone[-4:]}
    status, body = await agent.post("/api/sessions", body)
    assert status == 201, body
    sig = await Signalling.caller(server.url, body["link"])
    await sig.send({"type": "accept", "notice": sig.welcome["notice"]["version"]})
    await sig.wait_room(status="accepted")
    return body["session"]["id"], sig


async def upload(server: Any, sig: Signalling, data: bytes) -> str:
    async with sig.http.post(server.url + "/api/caller/photos", data=data,
                             headers={"Origin": server.url}) as r:  # fmt: skip
        body = await r.json()
        assert r.status == 201, body
        return str(body["photo"]["id"])


async def record(server: Any, session_id: str, seconds: float, realtime: bool = False) -> str:
    """A real recording of a synthetic camera through the server's recording service
    (`realtime`: paced like a camera, so the wall-clock length is right too)."""
    service = server.app[RECORDING]
    live = server.app[ROOMS].get(session_id)
    state = await service.start_recording(live, ("anna", "agent"))
    camera = SyntheticCamera(live.media.tracks["camera"])
    await camera.run(seconds, realtime=realtime)
    await service.stop_recording(live)
    return str(state["id"])


async def make_subject(
    server: Any, agent: Any, phone: str, colour: str, *, photos: int = 1, video_s: float = 0.0,
    end: bool = True, realtime: bool = False,
) -> Made:  # fmt: skip
    sid, sig = await caller_for(server, agent, phone)
    photo_ids = [await upload(server, sig, jpeg(colour)) for _ in range(photos)]
    video_ids = [await record(server, sid, video_s, realtime)] if video_s else []
    if end:
        status, _ = await agent.post(f"/api/sessions/{sid}/end")
        assert status == 200
    await sig.close()
    return Made(sid, phone, photo_ids, video_ids)
