"""Recording the real browser's camera (Chromium's fake camera playing red/green/blue/white
quadrants at 30 fps), to local storage and to S3 (moto on loopback, eu-north-1); the
recording is decrypted, decoded with PyAV and checked frame by frame."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import av
import pytest
from playwright.async_api import expect

from recorder.recovery import ObjectSource, export, verify
from server.recording.service import RECORDING
from tests.media_helpers import wait_for
from tests.recorder_helpers import QUADRANTS, rgb_at
from tests.s3_server import S3TestServer
from tests.test_browser_e2e import caller_page, open_link

RECORD_S = 3.0
FPS = 30


@pytest.fixture(scope="module")
def s3() -> Any:
    with S3TestServer() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "eu-north-1")):  # fmt: skip
        monkeypatch.setenv(name, value)


def close(rgb: tuple[int, int, int], want: tuple[int, int, int], tol: int = 60) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, want, strict=True))


@pytest.mark.parametrize("storage", ["local", "s3"])
async def test_browser_camera_is_recorded_and_decrypts_to_the_same_picture(
    browser: Any, make_server: Any, s3: S3TestServer, aws_env: None, storage: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    section: dict[str, Any] = {"segment_s": 1.5}
    if storage == "s3":
        bucket = s3.create_bucket("eu-north-1")
        section.update(storage="s3", s3={"bucket": bucket, "endpoint_url": s3.endpoint_url,
                                         "region": "eu-north-1"})  # fmt: skip
    server = await make_server(recording=section)
    agent = await server.agent()
    created = await agent.new_session()
    sid = created["session"]["id"]

    ctx, page = await caller_page(browser)
    await open_link(page, created["link"])
    await page.get_by_test_id("notice-accept").click()
    await page.get_by_test_id("start-camera").click()
    await expect(page.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=15_000
    )

    status, body = await agent.post(f"/api/sessions/{sid}/recording", {"action": "start"})
    assert status == 200, body
    service = server.app[RECORDING]
    recorder = service.active[sid].recorder
    await wait_for(lambda: recorder.stats.frames_received > 0, 10, "the first recorded frame")
    started = time.monotonic()
    await asyncio.sleep(RECORD_S)
    status, body = await agent.post(f"/api/sessions/{sid}/recording", {"action": "stop"})
    wall = time.monotonic() - started
    assert status == 200 and not body["recording"]["active"]
    summary = await recorder.wait()
    assert summary.complete and summary.frames_lost == 0 and summary.segments >= 2
    await ctx.close()

    assert await service.spool.drain(10)
    # Read back from the storage alone (the spool is empty now).
    source = ObjectSource(service.storage)
    if storage == "s3":
        keys = s3.client().list_objects_v2(Bucket=section["s3"]["bucket"])["Contents"]
        assert len(keys) == summary.segments + 2
    report = await verify(source, service.keys, summary.recording_id)
    assert report.complete, report.lines()
    out = tmp_path / "camera.webm"
    exported = await export(source, service.keys, summary.recording_id, out)
    assert exported.frames == summary.frames

    with av.open(str(out)) as inp:
        frames = list(inp.decode(video=0))
    assert len(frames) == summary.frames == recorder.stats.frames_received
    span = frames[-1].time - frames[0].time
    print(f"\n{storage}: {len(frames)} frames over {span:.2f} s of video ({wall:.2f} s wall), "
          f"{summary.segments} segments")  # fmt: skip
    # ≈ duration × fps, by the file's own clock and by the wall clock of the test.
    assert abs(len(frames) - (span * FPS + 1)) <= 0.1 * len(frames), (len(frames), span)
    assert abs(len(frames) - wall * FPS) <= 0.25 * wall * FPS, (len(frames), wall)
    assert (frames[0].width, frames[0].height) == (640, 480)
    for frame in frames[:: max(1, len(frames) // 8)]:
        for (fx, fy), want in QUADRANTS.items():
            got = rgb_at(frame, fx, fy)
            assert close(got, want), (frame.time, (fx, fy), got, want)


async def test_console_records_and_takes_snapshots_and_the_caller_sees_it(
    browser: Any, server: Any, tmp_path: Path
) -> None:
    """The agent console's buttons and the caller page's indicator, snapshot and upload."""
    from PIL import Image

    from tests.test_browser_e2e import agent_page, start_session
    from tests.test_snapshots import jpeg_with_gps

    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await open_link(caller, link)
    await caller.get_by_test_id("notice-accept").click()
    await expect(caller.get_by_test_id("upload-photo")).to_be_visible()  # after the reminder
    await expect(caller.get_by_test_id("recording-indicator")).to_be_hidden()
    await caller.get_by_test_id("start-camera").click()
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "live", timeout=15_000
    )

    # Recording: the caller is told at once and for as long as it runs.
    await agent.get_by_test_id("record-start").click()
    await expect(caller.get_by_test_id("recording-indicator")).to_be_visible()
    await expect(agent.get_by_test_id("recording-state")).to_have_attribute("data-state", "on")
    await expect(agent.get_by_test_id("record-stop")).to_be_visible()

    # Snapshot: the caller's page takes the still and uploads it; the console shows it.
    await agent.get_by_test_id("take-snapshot").click()
    photo = agent.get_by_test_id("photo").first
    await expect(photo).to_have_attribute("data-kind", "snapshot", timeout=10_000)
    await expect(caller.get_by_test_id("photo-status")).to_have_attribute("data-state", "snapshot")
    url = await photo.locator("img").get_attribute("src")
    assert url
    response = await agent.request.get(server.url + url)
    assert response.ok and response.headers["content-type"] == "image/jpeg"
    still = Image.open(io.BytesIO(await response.body())).convert("RGB")
    w, h = still.size
    for (fx, fy), want in QUADRANTS.items():
        got = still.getpixel((int(fx * w), int(fy * h)))
        assert close(got, want), ((fx, fy), got, want)

    # Upload from the gallery, after the reminder; GPS is gone when the agent sees it.
    picture = tmp_path / "gallery.jpg"
    picture.write_bytes(jpeg_with_gps())
    await caller.get_by_test_id("upload-photo").click()
    await expect(caller.get_by_test_id("photo-reminder")).to_be_visible()
    async with caller.expect_file_chooser() as chooser:
        await caller.get_by_test_id("photo-choose").click()
    await (await chooser.value).set_files(str(picture))
    await expect(caller.get_by_test_id("photo-status")).to_have_attribute("data-state", "sent")
    uploaded = agent.locator('[data-testid="photo"][data-kind="upload"]')
    await expect(uploaded).to_have_count(1, timeout=10_000)
    src = await uploaded.locator("img").get_attribute("src")
    body = await (await agent.request.get(server.url + str(src))).body()
    assert b"GPS" not in body and b"SecretPhone" not in body

    # A text file named .jpg: refused with the server's reason, nothing shown to the agent.
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a picture")
    await caller.get_by_test_id("upload-photo").click()
    async with caller.expect_file_chooser() as chooser:
        await caller.get_by_test_id("photo-choose").click()
    await (await chooser.value).set_files(str(fake))
    status = caller.get_by_test_id("photo-status")
    await expect(status).to_have_attribute("data-state", "error")
    await expect(status).to_have_attribute("data-code", "not_an_image")
    await expect(agent.get_by_test_id("photo")).to_have_count(2)

    await agent.get_by_test_id("record-stop").click()
    await expect(caller.get_by_test_id("recording-indicator")).to_be_hidden()
    await expect(agent.get_by_test_id("recording-state")).to_have_attribute("data-state", "off")
    rows = await server.db.list_recordings()
    assert sorted(r["kind"] for r in rows) == ["snapshot", "upload", "video"]
    assert all(r["status"] == "complete" for r in rows)
    await agent_ctx.close()
    await caller_ctx.close()
