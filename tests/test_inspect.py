"""Reading codes and text from a still (server/inspect/), the agent's read API, and face
redaction of stored photos (privacy.redact_faces): real zxing-cpp, real tesseract, real
OpenCV, images made here with segno, python-barcode and a real font (DejaVu Sans)."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import barcode
import numpy as np
import pytest
import segno
from barcode.writer import ImageWriter
from PIL import Image, ImageDraw, ImageFont
from skimage import data as skdata

from recorder.recovery import read_photo
from server.core.appkeys import AUDIT
from server.inspect.api import appended
from server.inspect.classify import Match, classify, luhn_ok, shown_text, wifi_ssid
from server.inspect.documents import mrz_like, mrz_lines
from server.inspect.faces import find_faces
from server.inspect.pool import InspectPool, PoolBusy, PoolTimeout
from server.inspect.read import Finding, keep_text, read_codes, read_still, read_text
from server.recording.photos import clean_photo
from server.recording.service import RECORDING
from tests.test_snapshots import caller_session, upload

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MAC = "00:1A:2B:3C:4D:5E"
IMEI = "352099001761481"  # Luhn-valid
WIFI = "WIFI:T:WPA;S:HomeNet_5G;P:s3cret-Pass!;;"


def png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def qr_image(text: str) -> Image.Image:
    out = io.BytesIO()
    segno.make(text, error="m", micro=False).save(out, kind="png", scale=8, border=3)
    return Image.open(out).convert("RGB")


def ean13_image(digits: str) -> Image.Image:
    out = io.BytesIO()
    barcode.get("ean13", digits, writer=ImageWriter()).write(out)
    return Image.open(out).convert("RGB")


def label(width: int = 1280, height: int = 720) -> Image.Image:
    """A router label: MAC, IMEI, serial in DejaVu Sans, a Wi-Fi QR code and an EAN-13."""
    im = Image.new("RGB", (width, height), (236, 236, 230))
    d = ImageDraw.Draw(im)
    font = ImageFont.truetype(FONT, 34)
    d.text((60, 60), f"MAC: {MAC}", font=font, fill=(20, 20, 20))
    d.text((60, 130), f"IMEI: {IMEI}", font=font, fill=(20, 20, 20))
    d.text((60, 200), "S/N: RT7X4K92B1", font=font, fill=(20, 20, 20))
    im.paste(qr_image(WIFI), (900, 60))
    im.paste(ean13_image("590123412345"), (60, 330))
    return im


# --- the pure classifier


def test_luhn() -> None:
    assert luhn_ok(IMEI) and luhn_ok("89371234567890123453")
    assert not luhn_ok("352099001761482") and not luhn_ok("abc") and not luhn_ok("")


@pytest.mark.parametrize(("text", "expected"), [
    ("MAC: 00:1a:2b:3c:4d:5e", [Match("mac", MAC)]),
    ("mac 00-1A-2B-3C-4D-5E", [Match("mac", MAC)]),
    ("MAC 001A2B3C4D5E", [Match("mac", MAC)]),
    ("00:1A:2B-3C:4D:5E", []),  # mixed separators: not a MAC
    (f"IMEI: {IMEI}", [Match("imei", IMEI)]),
    ("IMEI 35 209900 176148 1", [Match("imei", IMEI)]),
    ("IMEI 352099001761482", []),  # Luhn fails: not labelled an IMEI
    ("ICCID 8937 1234 5678 9012 3453", [Match("iccid", "89371234567890123453")]),
    ("see https://example.eu/help?x=1.", [Match("url", "https://example.eu/help?x=1")]),
    ("S/N: rt7x4k92b1", [Match("serial", "RT7X4K92B1")]),
    ("Serial No. AB-12345", [Match("serial", "AB-12345")]),
    ("Model RTX4200A rev B", [Match("serial", "RTX4200A")]),
    ("Welcome home", []),
])  # fmt: skip
def test_classify(text: str, expected: list[Match]) -> None:
    assert classify(text) == expected


def test_wifi_payload_gives_the_ssid_never_the_password() -> None:
    assert wifi_ssid(WIFI) == "HomeNet_5G"
    assert wifi_ssid(r"WIFI:S:My\;Net;T:WPA;P:pw;;") == "My;Net"
    assert wifi_ssid("hello") is None
    assert classify(WIFI) == [Match("wifi", "HomeNet_5G")]
    assert shown_text(WIFI) == "Wi-Fi: HomeNet_5G"


# --- real reads


def test_qr_and_ean13_are_read_back_exactly() -> None:
    im = Image.new("RGB", (900, 500), (255, 255, 255))
    im.paste(qr_image("SN-ABC123-XYZ"), (20, 20))
    im.paste(ean13_image("590123412345"), (420, 60))
    codes = {f.format: f for f in read_codes(np.asarray(im))}
    assert codes["QR Code"].text == "SN-ABC123-XYZ"
    assert codes["EAN-13"].text == "5901234123457"  # the check digit computed by the library
    x, y, w, h = codes["QR Code"].box
    assert 20 <= x < 60 and 20 <= y < 60 and 150 < w < 300 and 150 < h < 300


def test_label_with_a_real_font_is_read_and_classified() -> None:
    reading = read_still(png(label()))
    labels = {(m["label"], m["value"]) for f in reading.findings for m in f.labels}
    assert ("mac", MAC) in labels and ("imei", IMEI) in labels
    assert ("serial", "RT7X4K92B1") in labels and ("wifi", "HomeNet_5G") in labels
    mac_line = next(f for f in reading.findings if any(m["label"] == "mac" for m in f.labels))
    x, y, w, h = mac_line.box  # where it was drawn: (60, 60), ~420 px wide
    assert 50 <= x <= 70 and 55 <= y <= 80 and 380 <= w <= 460 and 20 <= h <= 45
    assert reading.faces == 0
    # The Wi-Fi password is nowhere in what comes out.
    assert "s3cret" not in json.dumps(reading.as_dict())


def test_cli_inspect(tmp_path: Path) -> None:
    path = tmp_path / "label.png"
    path.write_bytes(png(label()))
    run = [sys.executable, "-m", "server", "inspect"]
    out = subprocess.run([*run, str(path), "--json"], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["width"] == 1280 and set(doc["timings_ms"]) >= {"codes", "text", "faces"}
    assert any(m == {"label": "mac", "value": MAC} for f in doc["findings"] for m in f["labels"])
    human = subprocess.run([*run, str(path)], capture_output=True, text=True, check=True,
                           timeout=120).stdout  # fmt: skip
    assert f"[imei {IMEI}]" in human and "s3cret" not in human
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    failed = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "not_an_image" in failed.stderr


def test_without_tesseract_the_codes_are_still_read(tmp_path: Path) -> None:
    # A configuration that names a binary that is not there: the codes, no failure.
    reading = read_still(png(label()), tesseract=str(tmp_path / "no-tesseract"))
    assert reading.notes == ["text_unavailable"]
    assert {f.source for f in reading.findings} == {"code"}
    assert {(m["label"], m["value"]) for f in reading.findings for m in f.labels} == {
        ("wifi", "HomeNet_5G")}
    assert read_still(png(label())).notes == []  # with it: the text, no note
    # The CLI with a PATH that has no tesseract on it.
    path = tmp_path / "label.png"
    path.write_bytes(png(label()))
    out = subprocess.run([sys.executable, "-m", "server", "inspect", str(path), "--json"],
                         capture_output=True, text=True, check=True, timeout=120,
                         env={"PATH": str(tmp_path), "HOME": str(tmp_path)})  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["notes"] == ["text_unavailable"]
    assert [f["format"] for f in doc["findings"]] and all(
        f["source"] == "code" for f in doc["findings"])


def test_a_tesseract_too_slow_gives_the_codes_with_a_note(tmp_path: Path) -> None:
    # A "tesseract" that hangs (a real process, killed by the read's own limit).
    slow = tmp_path / "tesseract"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    reading = read_still(png(label()), timeout_s=2, tesseract=str(slow))
    assert reading.notes == ["text_unavailable"] and reading.timings_ms["total"] < 10_000
    assert any(f.format == "QR Code" for f in reading.findings)


# --- the pool


async def test_the_pool_bounds_concurrency_and_time() -> None:
    pool = InspectPool(workers=2, max_waiting=2, timeout_s=5)
    gate = threading.Event()
    loop_ticks = 0

    def job() -> int:
        gate.wait(10)
        return 1

    tasks = [asyncio.create_task(pool.run(job)) for _ in range(6)]
    for _ in range(20):  # the event loop keeps running while the jobs block their threads
        await asyncio.sleep(0.01)
        loop_ticks += 1
    assert loop_ticks == 20 and pool.running == 2 and pool.admitted == 4
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count(1) == 4
    assert sum(isinstance(r, PoolBusy) for r in results) == 2  # refused at once, not queued
    assert pool.peak_running == 2 and pool.refused == 2 and pool.admitted == 0

    slow = InspectPool(workers=1, max_waiting=0, timeout_s=1)
    release = threading.Event()
    started = asyncio.get_running_loop().time()
    with pytest.raises(PoolTimeout):
        await slow.run(lambda: release.wait(1.5))
    assert asyncio.get_running_loop().time() - started >= 1  # answered after its limit
    assert slow.running == 0  # the slot is given back once the thread ended
    pool.close()
    slow.close()


# --- the agent's read API


async def test_agent_reads_a_photo_audited_without_the_content(server: Any) -> None:
    agent, sig, sid = await caller_session(server)
    status, body = await upload(sig, server, png(label()), **{"Content-Type": "image/png"})
    assert status == 201, body
    photo_id = body["photo"]["id"]

    status, body = await agent.post(f"/api/sessions/{sid}/inspect", {"photo": photo_id})
    assert status == 200, body
    assert body["photo"] == photo_id and body["width"] == 1280 and body["faces"] == 0
    labels = {(m["label"], m["value"]) for f in body["findings"] for m in f["labels"]}
    assert {("mac", MAC), ("imei", IMEI), ("wifi", "HomeNet_5G")} <= labels
    assert "s3cret" not in json.dumps(body)

    rows = [r for r in await server.app[AUDIT].rows() if r["action"] == "inspect.read"]
    assert [(r["object"], r["result"], r["actor"]) for r in rows] == [(photo_id, "ok", "anna")]
    dumped = json.dumps(rows, default=str)
    assert MAC not in dumped and IMEI not in dumped and "HomeNet" not in dumped
    # Nothing read is stored: the session's rows hold no finding.
    assert MAC not in json.dumps(await server.db.list_recordings(sid), default=str)

    assert (await agent.post(f"/api/sessions/{sid}/inspect", {}))[0] == 400
    status, body = await agent.post(f"/api/sessions/{sid}/inspect", {"photo": "nope"})
    assert (status, body["error"]["code"]) == (404, "not_found")
    other = await server.agent("boris")  # not this session's agent
    status, _ = await other.post(f"/api/sessions/{sid}/inspect", {"photo": photo_id})
    assert status == 404

    # What the agent chooses to keep goes into the session's reference, and only that.
    ref = f"/api/sessions/{sid}/inspect/reference"
    status, body = await agent.post(ref, {"value": MAC})
    assert (status, body) == (200, {"reference": f"T-1 · {MAC}"})
    assert (await agent.post(ref, {"value": MAC}))[1] == {"reference": f"T-1 · {MAC}"}  # once
    assert (await server.db.get_session(sid))["reference"] == f"T-1 · {MAC}"
    status, body = await agent.post(ref, {"value": "x" * 65})
    assert (status, body["error"]["code"]) == (400, "bad_value")
    for _ in range(3):
        await agent.post(ref, {"value": "A" * 30 + str(_)})
    status, body = await agent.post(ref, {"value": "B" * 60})
    assert (status, body["error"]["code"]) == (409, "reference_full")
    assert (await other.post(ref, {"value": "x"}))[0] == 404
    rows = [r for r in await server.app[AUDIT].rows() if r["action"] == "session.reference"]
    assert len(rows) == 4 and {r["object"] for r in rows} == {sid}
    await sig.close()


async def test_the_read_api_answers_the_codes_when_tesseract_is_missing(
    make_server: Any, tmp_path: Path,
) -> None:  # fmt: skip
    server = await make_server(inspect={"tesseract": str(tmp_path / "missing")})
    agent, sig, sid = await caller_session(server)
    status, body = await upload(sig, server, png(label()), **{"Content-Type": "image/png"})
    assert status == 201, body
    status, body = await agent.post(f"/api/sessions/{sid}/inspect",
                                    {"photo": body["photo"]["id"]})  # fmt: skip
    assert status == 200, body
    assert body["notes"] == ["text_unavailable"]
    assert [f["text"] for f in body["findings"]] == ["Wi-Fi: HomeNet_5G", "5901234123457"]
    await sig.close()


def test_appended_to_the_reference() -> None:
    assert appended("", "A") == "A" and appended("T-1", "A") == "T-1 · A"
    assert appended("T-1 · A", "A") == "T-1 · A"  # not twice
    assert appended("x" * 120, "ABCDEFGH") is None  # over 128 characters


# --- face redaction


def astronaut_jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(out, "JPEG", quality=95)
    return out.getvalue()


FACE = (177, 67, 93, 93)  # where the detector finds the astronaut's face (x, y, w, h)


def region_diff(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = box
    pa = np.asarray(a.convert("RGB"), dtype=np.int16)[y0:y1, x0:x1]
    pb = np.asarray(b.convert("RGB"), dtype=np.int16)[y0:y1, x0:x1]
    return float(np.abs(pa - pb).mean())


async def test_a_face_in_an_upload_is_blurred_in_the_stored_object(server: Any) -> None:
    agent, sig, sid = await caller_session(server)
    original = astronaut_jpeg()
    status, body = await upload(sig, server, original)
    assert status == 201, body
    service = server.app[RECORDING]
    stored, meta = await read_photo(service.source, service.keys, body["photo"]["id"])
    assert meta["faces_blurred"] == 1
    plain = clean_photo(original, max_pixels=50_000_000, max_side=4096)  # as stored unblurred
    got, want = Image.open(io.BytesIO(stored)), Image.open(io.BytesIO(plain.jpeg))
    assert got.size == want.size == (512, 512)
    x, y, w, h = FACE
    assert region_diff(got, want, (x + 10, y + 10, x + w - 10, y + h - 10)) > 15  # blurred
    # Far from the face (the widened box reaches ~25% past it): as it was, but for JPEG noise.
    assert region_diff(got, want, (0, 300, 512, 512)) < 1.5
    assert region_diff(got, want, (350, 0, 512, 300)) < 1.5

    async with sig.http.get(server.url + "/api/caller/receipt") as r:
        receipt = (await r.json())["receipt"]
    assert receipt["uploads"] == 1 and receipt["faces_blurred"] == 1
    await sig.close()


def test_a_face_seen_from_the_side_is_found() -> None:
    # scikit-image's `camera`: a man seen from the side, which the frontal cascade misses.
    camera = np.stack([skdata.camera()] * 3, -1)
    faces = find_faces(camera)
    assert len(faces) == 1
    x, y, w, h = faces[0]
    assert 150 < x < 330 and 60 < y < 200 and 40 < w < 140  # the head, top middle
    assert find_faces(np.asarray(label())) == []  # and a label is still no face


async def test_redaction_off_stores_the_original(make_server: Any) -> None:
    server = await make_server(privacy={"redact_faces": False})
    _, sig, _ = await caller_session(server)
    original = astronaut_jpeg()
    status, body = await upload(sig, server, original)
    assert status == 201, body
    service = server.app[RECORDING]
    stored, meta = await read_photo(service.source, service.keys, body["photo"]["id"])
    rc = server.config.recording
    plain = clean_photo(original, max_pixels=rc.photo_max_pixels, max_side=rc.photo_max_side_px,
                        quality=rc.photo_jpeg_quality)  # fmt: skip
    assert stored == plain.jpeg and meta["faces_blurred"] == 0
    async with sig.http.get(server.url + "/api/caller/receipt") as r:
        assert (await r.json())["receipt"]["faces_blurred"] == 0
    await sig.close()


# --- ID-document redaction (privacy.redact_documents)

MRZ = ["I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6",
       "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"]  # fmt: skip
MRZ_BOX = (270, 470, 815, 600)  # where id_card() draws the three MRZ lines (x0, y0, x1, y1)


def id_card() -> Image.Image:
    """A TD1 ID card (3 x 30 MRZ characters in DejaVu Sans Mono) on a desk, 1280x720."""
    im = Image.new("RGB", (1280, 720), (90, 100, 110))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((240, 110, 1040, 610), 30, fill=(235, 232, 220))
    bold = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 34)
    d.text((280, 140), "IDENTITY CARD", font=bold, fill=(30, 40, 90))
    d.rectangle((280, 200, 460, 420), fill=(160, 150, 140))  # the photo's place
    font = ImageFont.truetype(FONT, 24)
    d.text((490, 210), "Surname: ERIKSSON", font=font, fill=(20, 20, 20))
    mono = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", 30)
    for i, line in enumerate(MRZ):
        d.text((270, 470 + i * 42), line, font=mono, fill=(10, 10, 10))
    return im


def text_line(text: str, box: list[int]) -> Finding:
    return Finding("text", "line", text, box)


def test_mrz_lines_are_recognised_from_ocr_output() -> None:
    assert all(mrz_like(line) for line in MRZ)
    assert mrz_like("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<")  # TD3, 44
    assert mrz_like("I<UT0D231458907<<<<<<<<<<<<<<")  # OCR: O read as 0, one filler lost
    assert mrz_like("ERIKSSON«ANNA<MARIA<<<<<<<<<<")  # « for <<
    assert not mrz_like("ICCID 8937 1234 5678 9012 3453")  # no filler
    assert not mrz_like("Serial: AB<<12")  # too short
    assert not mrz_like("i<utod231458907<<<<<<<<<<<<<<<x" + "a" * 8)  # 40: not an MRZ length
    stacked = [text_line(t, [273, 476 + 42 * i, 538, 22]) for i, t in enumerate(MRZ)]
    assert mrz_lines(stacked) == [stacked]
    assert mrz_lines(stacked[:1]) == []  # one line alone is not a document
    apart = [stacked[0], text_line(MRZ[1], [273, 676, 538, 22])]  # far below: two things
    assert mrz_lines(apart) == []
    assert mrz_lines([*stacked, text_line("Surname: ERIKSSON", [491, 215, 242, 18])]) == [
        stacked]  # fmt: skip


async def test_an_mrz_is_blurred_in_the_stored_object_when_on(make_server: Any) -> None:
    server = await make_server(privacy={"redact_documents": True})
    _, sig, _ = await caller_session(server)
    original = png(id_card())
    status, body = await upload(sig, server, original, **{"Content-Type": "image/png"})
    assert status == 201, body
    service = server.app[RECORDING]
    stored, meta = await read_photo(service.source, service.keys, body["photo"]["id"])
    assert meta["documents_blurred"] == 1
    rc = server.config.recording
    plain = clean_photo(original, max_pixels=rc.photo_max_pixels, max_side=rc.photo_max_side_px,
                        quality=rc.photo_jpeg_quality)  # fmt: skip
    got, want = Image.open(io.BytesIO(stored)), Image.open(io.BytesIO(plain.jpeg))
    assert region_diff(got, want, MRZ_BOX) > 15  # blurred
    assert region_diff(got, want, (240, 110, 1040, 430)) < 1.5  # the rest of the card as is
    # What is stored can no longer be read as a document.
    assert mrz_lines(read_text(got, 30)) == []
    await sig.close()


async def test_an_mrz_is_stored_untouched_when_off(server: Any) -> None:
    assert server.config.privacy.redact_documents is False  # the default
    _, sig, _ = await caller_session(server)
    original = png(id_card())
    status, body = await upload(sig, server, original, **{"Content-Type": "image/png"})
    assert status == 201, body
    service = server.app[RECORDING]
    stored, meta = await read_photo(service.source, service.keys, body["photo"]["id"])
    rc = server.config.recording
    plain = clean_photo(original, max_pixels=rc.photo_max_pixels, max_side=rc.photo_max_side_px,
                        quality=rc.photo_jpeg_quality)  # fmt: skip
    assert stored == plain.jpeg and meta["documents_blurred"] == 0
    assert len(mrz_lines(read_text(Image.open(io.BytesIO(stored)), 30))) == 1
    await sig.close()


def test_digits_under_a_barcode_are_not_shown_twice() -> None:
    """The human-readable digits printed under an EAN-13 are the code's own text: the
    agent sees the code once (a text line elsewhere with other text stays)."""
    code = Finding("code", "EAN13", "5901234123457", [10, 10, 200, 80])
    under = Finding("text", "line", "5 901234 123457", [10, 95, 200, 20])
    other = Finding("text", "line", "S/N RT7X4K92B1", [10, 140, 200, 20])
    assert not keep_text(under, [code])
    assert keep_text(other, [code])
