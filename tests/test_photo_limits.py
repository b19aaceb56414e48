"""Issue #14 (items 2, 3): photo uploads under hostile load.

- Decompression bombs (a few hundred KB on the wire, hundreds of MB decoded) sent in
  parallel to a REAL `callassist serve` process: its RSS, read from /proc, grows by less
  than 300 MB at its peak and comes back afterwards; a normal photo still works.
- The per-session photo cap holds under 80 concurrent HTTP uploads.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from tests.conftest import PASSWORD, free_port
from tests.signalling_client import SUBPROTOCOL, open_link
from tests.test_snapshots import caller_session, jpeg_with_gps, upload

CLI = [sys.executable, "-m", "server"]
MB = 1024 * 1024


def _png(mode: str, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG", optimize=False)
    return out.getvalue()


def _jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (90, 120, 30)).save(out, "JPEG", quality=50)
    return out.getvalue()


async def test_photo_cap_holds_under_80_parallel_uploads(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(recording={"photo_max_per_session": 50})
    agent, sig, sid = await caller_session(server)
    small = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(small, "PNG")
    # A refused upload gives its place back: it does not count.
    assert (await upload(sig, server, b"not an image"))[0] == 415
    results = await asyncio.gather(*(upload(sig, server, small.getvalue()) for _ in range(80)))
    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == 50, statuses
    assert statuses.count(429) == 30, statuses
    assert all(b["error"]["code"] == "too_many_photos" for s, b in results if s == 429)
    status, body = await agent.get(f"/api/sessions/{sid}/photos")
    assert status == 200 and len(body["photos"]) == 50
    await sig.close()


def _rss(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def _start_serve(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    data, port = tmp_path / "data", free_port()
    subprocess.run([*CLI, "user", "add", "anna", "--role", "agent", "--password-stdin",
                    "--data-dir", str(data)], input=(PASSWORD + "\n").encode(), check=True,
                   capture_output=True)  # fmt: skip
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[http]\npublic_url = "http://127.0.0.1:{port}"\n'
                   '[media]\nice_host_addresses = ["127.0.0.1"]\n'
                   'allow_loopback_candidates = true\n')  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    args = ["serve", "--port", str(port), "--data-dir", str(data), "--config", str(cfg)]
    proc = subprocess.Popen([*CLI, *args], stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


async def _caller(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    for _ in range(300):
        try:
            async with http.get(url + "/healthz") as r:
                if r.status == 200:
                    break
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    async with http.post(url + "/api/login", headers={"Origin": url},
                         json={"username": "anna", "password": PASSWORD}) as r:  # fmt: skip
        csrf = (await r.json())["csrf"]
    async with http.post(url + "/api/sessions", json={"phone": "20000012"},
                         headers={"Origin": url, "X-CSRF-Token": csrf}) as r:  # fmt: skip
        created = await r.json()
    assert await open_link(http, created["link"]) == 303
    ws = await http.ws_connect(url.replace("http", "ws") + "/ws/caller",
                               protocols=(SUBPROTOCOL,), origin=url)  # fmt: skip
    welcome = await ws.receive_json()
    await ws.send_json({"type": "accept", "notice": welcome["notice"]["version"]})
    while True:
        msg = await ws.receive_json(timeout=10)
        if msg.get("type") == "room" and msg["room"]["caller"]["status"] == "accepted":
            return ws


async def test_parallel_decompression_bombs_stay_within_memory(tmp_path: Path) -> None:
    bombs = [
        _png("RGBA", (7000, 7000)),  # 49 MP, 190 KB: 196 MB decoded as RGBA
        _png("RGB", (7000, 7000)),
        _png("LA", (7000, 7000)),
        _png("RGBA", (4000, 12000)),
    ] * 2
    # Under the decode budget, so really decoded, one at a time (the one pool).
    near_cap = [_png("RGBA", (3600, 3600)), _png("RGB", (4000, 3000)), _png("L", (6000, 4000))]
    big_jpeg = _jpeg((8000, 6000))  # 48 MP: decoded at 1/2 scale (DCT scaling)
    proc, url = _start_serve(tmp_path)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            ws = await _caller(http, url)

            async def send(data: bytes) -> tuple[int, dict[str, Any]]:
                async with http.post(url + "/api/caller/photos", data=data,
                                     headers={"Origin": url}) as r:  # fmt: skip
                    return r.status, await r.json()

            assert (await send(jpeg_with_gps()))[0] == 201  # warm: Pillow, the pool, the store
            await asyncio.sleep(0.5)
            baseline = _rss(proc.pid)
            peak = [baseline]

            async def sample() -> None:
                while True:
                    peak[0] = max(peak[0], _rss(proc.pid))
                    await asyncio.sleep(0.01)

            sampler = asyncio.ensure_future(sample())
            results = await asyncio.gather(*(send(b) for b in [*bombs, *near_cap, big_jpeg]))
            await asyncio.sleep(1.0)
            sampler.cancel()
            hwm = _rss(proc.pid, "VmHWM")  # the kernel's own peak (covers between samples)
            after = _rss(proc.pid)
            refused = results[: len(bombs)]
            assert all(s == 413 and b["error"]["code"] == "image_too_large"
                       for s, b in refused), refused  # fmt: skip
            assert "MB allowed" in refused[0][1]["error"]["message"]
            assert [s for s, _ in results[len(bombs):]] == [201] * (len(near_cap) + 1), results
            # The big JPEG: decoded at 1/2 (8000 -> 4000; at full size it needs over the budget).
            assert results[-1][1]["photo"]["width"] == 4000
            growth = max(peak[0], hwm) - baseline
            print(f"RSS baseline {baseline / MB:.0f} MB, peak +{growth / MB:.0f} MB, "
                  f"after +{(after - baseline) / MB:.0f} MB")  # fmt: skip
            assert growth < 300 * MB, f"peak RSS grew by {growth / MB:.0f} MB"
            assert after - baseline < 100 * MB, f"RSS stayed {(after - baseline) / MB:.0f} MB up"
            # A normal phone photo still works afterwards.
            status, body = await send(_jpeg((4032, 3024)))
            assert status == 201 and body["photo"]["width"] == 4032, body
            await ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
