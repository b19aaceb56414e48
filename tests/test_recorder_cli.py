"""`callassist recording list|verify|decrypt` and `callassist keys rotate`, and SIGTERM to a
serving process in the middle of a recording."""

from __future__ import annotations

import asyncio
import hashlib
import io
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web
from PIL import Image

from server.cli import main
from server.core.appkeys import DB
from server.http.app import create_app
from server.recording.photos import clean_photo
from server.recording.service import RECORDING
from server.rooms.manager import ROOMS
from server.rooms.state import Room
from tests.conftest import PASSWORD, free_port
from tests.conftest import test_config as config_for
from tests.media_helpers import RED, SolidTrack, wait_for
from tests.recorder_helpers import SyntheticCamera, quadrants_ok
from tests.signalling_client import Signalling
from tests.test_protocol_client import DocClient

CLI = [sys.executable, "-m", "server"]


async def _make_data(data_dir: Path) -> dict[str, Any]:
    """A data directory holding a finished recording, an interrupted one and a photo."""
    cfg = config_for(free_port(), recording={"segment_s": 1.0})
    app = create_app(cfg, data_dir)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    service, db, now = app[RECORDING], app[DB], time.time()
    await db.add_user("anna", "x", "agent", now)
    await db.add_session(id="s-cli", agent_id=1, phone="+37120000012", state="active",
                         caller_status="live", created_at=now)  # fmt: skip
    live = await app[ROOMS].open(Room("s-cli", 1, "anna", now, now))
    live.media.tracks["camera"].keyframe_min_interval_s = 0.0  # media runs faster than real time
    await service.start_recording(live, ("anna", "agent"))
    recorder = service.active["s-cli"].recorder
    await SyntheticCamera(live.media.tracks["camera"]).run(2.5, realtime=False)
    await service.stop_recording(live)
    summary = await recorder.wait()

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 200, 0)).save(buf, "PNG")
    photo = await service.store_photo(live, clean_photo(buf.getvalue(), max_pixels=10**7,
                                                        max_side=4096), "upload")  # fmt: skip

    await service.start_recording(live, ("anna", "agent"))
    crashed = service.active["s-cli"].recorder
    await SyntheticCamera(live.media.tracks["camera"]).run(2.2, realtime=False)
    await wait_for(lambda: crashed.stats.segments >= 1, 5, "a segment")
    crashed._pump_task.cancel()  # type: ignore[union-attr]  # the process "dies"
    await crashed.wait()
    service.active.clear()
    await service.spool.drain(5)
    await runner.cleanup()
    return {"video": summary.recording_id, "frames": summary.frames, "photo": photo["id"],
            "crashed": crashed.id}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    return data_dir, asyncio.run(_make_data(data_dir))


def cli(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_verify_decrypt(data, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data_dir, ids = data
    code, out, _ = cli(capsys, data_dir, "recording", "list")
    assert code == 0
    for rid in (ids["video"], ids["photo"], ids["crashed"]):
        assert rid in out
    assert "complete" in out and "upload" in out

    code, out, _ = cli(capsys, data_dir, "recording", "verify", ids["video"])
    assert code == 0 and f"recording {ids['video']}: OK" in out, out

    target = tmp_path / "out.webm"
    code, out, err = cli(capsys, data_dir, "recording", "decrypt", ids["video"], "-o", str(target))
    assert code == 0, err
    with av.open(str(target)) as inp:
        frames = list(inp.decode(video=0))
    assert len(frames) == ids["frames"] and all(quadrants_ok(f) for f in frames[::10])
    code, _, err = cli(capsys, data_dir, "recording", "decrypt", ids["video"], "-o", str(target))
    assert code == 2 and "exists" in err  # never overwrites silently

    jpg = tmp_path / "photo.jpg"
    code, out, err = cli(capsys, data_dir, "recording", "decrypt", ids["photo"], "-o", str(jpg))
    assert code == 0, err
    assert Image.open(jpg).size == (64, 48)

    # Exports are audited.
    db = sqlite3.connect(data_dir / "callassist.db")
    actions = [r[0] for r in db.execute("SELECT action FROM audit_log")]
    db.close()
    assert actions.count("recording.export") == 2


def test_interrupted_and_tampered_recordings(data, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data_dir, ids = data
    # The crash recording was recovered at the restart? Not here: no server ran since, so
    # verify reports the gap itself (exit 3 = incomplete but not damaged).
    code, out, _ = cli(capsys, data_dir, "recording", "verify", ids["crashed"])
    assert code == 3, out
    assert "INCOMPLETE" in out and "interrupted" in out
    code, _, err = cli(capsys, data_dir, "recording", "decrypt", ids["crashed"], "-o",
                       str(tmp_path / "c.webm"))  # fmt: skip
    assert code == 1 and "ManifestMissing" in err and not (tmp_path / "c.webm").exists()

    # A flipped bit in the stored media: detected, named, nothing written.
    store = data_dir / "store" / "recordings" / ids["video"]
    seg = store / "segment-000001"
    original = seg.read_bytes()
    flipped = bytearray(original)
    flipped[300] ^= 0x01
    seg.write_bytes(bytes(flipped))
    try:
        code, out, _ = cli(capsys, data_dir, "recording", "verify", ids["video"])
        assert code == 1 and "FAILED" in out and "ChunkTampered" in out, out
        code, _, err = cli(capsys, data_dir, "recording", "decrypt", ids["video"], "-o",
                           str(tmp_path / "t.webm"))  # fmt: skip
        assert code == 1 and "segment 1" in err
        assert list(tmp_path.iterdir()) == []  # not even a partial file
    finally:
        seg.write_bytes(original)


def test_keys_rotate_rewraps_without_touching_media(data, capsys) -> None:  # type: ignore[no-untyped-def]
    data_dir, ids = data
    store = data_dir / "store" / "recordings"
    media = {p: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in store.rglob("*") if p.is_file()}  # fmt: skip
    code, out, err = cli(capsys, data_dir, "keys", "rotate")
    assert code == 0, err
    assert "mk-0002" in out and "rewrapped 3 recording key(s)" in out, out
    keys = data_dir / "recording-keys"
    db = sqlite3.connect(data_dir / "callassist.db")
    wrapped_by = dict(db.execute("SELECT recording_id, key_id FROM recording_keys"))
    db.close()
    for rid in (ids["video"], ids["photo"], ids["crashed"]):
        assert wrapped_by[rid] == "mk-0002"
    # Only database rows changed: every object, headers included, is byte for byte the same
    # (a versioned bucket keeps no older copy wrapped under the old key).
    assert media == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in media}
    # The old key can go: everything still decrypts with the new one alone.
    (keys / "mk-0001.key").unlink()
    code, out, _ = cli(capsys, data_dir, "recording", "verify", ids["video"])
    assert code == 0, out
    code, out, _ = cli(capsys, data_dir, "recording", "verify", ids["photo"])
    assert code == 0, out
    code, out, _ = cli(capsys, data_dir, "keys", "rotate", "--rewrap-only")
    assert code == 0 and "rewrapped 0" in out


async def test_sigterm_finishes_the_recording(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "d"
    conf = tmp_path / "c.toml"
    conf.write_text(f'[http]\npublic_url = "{url}"\n[media]\nice_host_addresses = ["127.0.0.1"]\n'
                    'allow_loopback_candidates = true\n[recording]\nsegment_s = 1.0\n')  # fmt: skip
    add = await asyncio.create_subprocess_exec(
        *CLI, "user", "add", "anna", "--role", "agent", "--password-stdin", "--data-dir",
        str(data_dir), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await add.communicate((PASSWORD + "\n").encode())
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", str(port), "--data-dir", str(data_dir), "--config", str(conf),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    caller = None
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            for _ in range(150):
                try:
                    async with http.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            hdr = {"Origin": url}
            async with http.post(url + "/api/login", headers=hdr,
                                 json={"username": "anna", "password": PASSWORD}) as r:  # fmt: skip
                hdr["X-CSRF-Token"] = (await r.json())["csrf"]
            async with http.post(url + "/api/sessions", json={"phone": "20000012"},
                                 headers=hdr) as r:  # fmt: skip
                created = await r.json()
            sid = created["session"]["id"]
            caller = DocClient(await Signalling.caller(url, created["link"]), "caller")
            await caller.sig.send({"type": "accept",
                                   "notice": caller.sig.welcome["notice"]["version"]})  # fmt: skip
            await caller.connect(SolidTrack(RED))
            await caller.sig.wait_room(status="live")
            async with http.post(f"{url}/api/sessions/{sid}/recording", headers=hdr,
                                 json={"action": "start"}) as r:  # fmt: skip
                assert r.status == 200
                rid = (await r.json())["recording"]["id"]
            await asyncio.sleep(2.2)
            proc.send_signal(signal.SIGTERM)  # mid-segment
            await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if caller is not None:
            await caller.close()
    verify = await asyncio.create_subprocess_exec(
        *CLI, "recording", "verify", rid, "--data-dir", str(data_dir), "--config", str(conf),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await verify.communicate())[0].decode()
    assert verify.returncode == 0, out  # complete: the manifest was written at SIGTERM
    assert "manifest: complete" in out
    frames = int(out.split(" frames")[0].rsplit(" ", 1)[1])
    assert frames > 40, out  # ~2 s at 30 fps, the last partial segment included
    db = sqlite3.connect(data_dir / "callassist.db")
    query = "SELECT status, started_at, ended_at FROM recordings WHERE id = ?"
    status, started, ended = db.execute(query, (rid,)).fetchone()
    db.close()
    assert status == "complete" and ended > started


def test_serve_refuses_a_bucket_outside_the_eu(tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.s3_server import S3TestServer

    with S3TestServer() as s3:
        bucket = s3.create_bucket("eu-west-2")  # London: "eu-" but not EU
        conf = tmp_path / "c.toml"
        conf.write_text(f'[recording]\nstorage = "s3"\n[recording.s3]\nbucket = "{bucket}"\n'
                        f'endpoint_url = "{s3.endpoint_url}"\nregion = "eu-north-1"\n')  # fmt: skip
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        r = subprocess.run(
            [*CLI, "serve", "--config", str(conf), "--data-dir", str(tmp_path / "d"),
             "--port", str(free_port())],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    assert "region 'eu-west-2'" in r.stderr and "refusing to store recordings" in r.stderr
