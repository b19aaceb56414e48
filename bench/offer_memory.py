"""Server memory per answered offer: a real `callassist serve`, callers making new pcs.

For each of --rooms rooms: a caller (WebSocket + aiortc peer, as docs/protocol.md says)
sends --offers publishing offers, each from a new RTCPeerConnection with a new `pc`
number (what a recovering page does); the server answers each and retires the previous
leg. The server's RSS (/proc/<pid>/status) is read before, after the offers and after
the rooms ended (#14 item 15: old peer connections must not stay alive).

    python bench/offer_memory.py [--rooms 3] [--offers 100] [--settle S] [--json]

Before each RSS reading the server is left alone 1 s (before), 2 s (after the offers) and
3 s (after the rooms ended); `--settle S` waits S seconds each time instead (a smoke run).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import aiohttp  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection  # noqa: E402

from bench.lib import cli  # noqa: E402
from tests.conftest import PASSWORD, free_port  # noqa: E402
from tests.signalling_client import SUBPROTOCOL, open_link  # noqa: E402

CLI = [sys.executable, "-m", "server"]
MB = 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def start_server(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    data, port = work / "data", free_port()
    subprocess.run([*CLI, "user", "add", "anna", "--role", "agent", "--password-stdin",
                    "--data-dir", str(data)], input=(PASSWORD + "\n").encode(), check=True,
                   capture_output=True)  # fmt: skip
    cfg = work / "c.toml"
    cfg.write_text(f'[http]\npublic_url = "http://127.0.0.1:{port}"\n[media]\n'
                   'ice_host_addresses = ["127.0.0.1"]\n'
                   'allow_loopback_candidates = true\n')  # fmt: skip
    args = ["serve", "--port", str(port), "--data-dir", str(data), "--config", str(cfg)]
    log = (work / "serve.log").open("wb")
    return subprocess.Popen([*CLI, *args], stdout=log, stderr=subprocess.STDOUT), (
        f"http://127.0.0.1:{port}"
    )


async def one_room(url: str, agent: aiohttp.ClientSession, csrf: str, offers: int) -> str:
    async with agent.post(url + "/api/sessions", json={"phone": "20000012"},
                          headers={"Origin": url, "X-CSRF-Token": csrf}) as r:  # fmt: skip
        created = await r.json()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert await open_link(http, created["link"]) == 303
        ws = await http.ws_connect(url.replace("http", "ws") + "/ws/caller",
                                   protocols=(SUBPROTOCOL,), origin=url)  # fmt: skip
        welcome = await ws.receive_json()
        await ws.send_json({"type": "accept", "notice": welcome["notice"]["version"]})
        for n in range(1, offers + 1):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTransceiver("video", direction="sendonly")
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            await ws.send_json({"type": "offer", "pc": n, "sdp": pc.localDescription.sdp})
            while (msg := await ws.receive_json(timeout=30))["type"] != "answer":
                if msg["type"] == "error":
                    raise RuntimeError(msg)
            await pc.close()
        await ws.close()
    return str(created["session"]["id"])


async def run(rooms: int, offers: int, settle: float | None = None) -> dict[str, Any]:
    waits = (1.0, 2.0, 3.0) if settle is None else (settle,) * 3
    with tempfile.TemporaryDirectory(prefix="offer-memory-") as tmp:
        proc, url = start_server(Path(tmp))
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as agent:
                for _ in range(1200):  # a loaded machine starts slowly
                    try:
                        async with agent.get(url + "/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                login = {"username": "anna", "password": PASSWORD}
                async with agent.post(url + "/api/login", headers={"Origin": url}, json=login) as r:
                    csrf = (await r.json())["csrf"]
                await one_room(url, agent, csrf, 2)  # warm: aiortc, codecs, the first room
                await asyncio.sleep(waits[0])
                before = rss(proc.pid)
                ids = [await one_room(url, agent, csrf, offers) for _ in range(rooms)]
                await asyncio.sleep(waits[1])
                after_offers = rss(proc.pid)
                headers = {"Origin": url, "X-CSRF-Token": csrf}
                for sid in ids:
                    async with agent.post(f"{url}/api/sessions/{sid}/end", json={},
                                          headers=headers):  # fmt: skip
                        pass
                await asyncio.sleep(waits[2])
                after_end = rss(proc.pid)
        finally:
            proc.terminate()
            proc.wait(15)
    total = rooms * offers
    return {
        "rooms": rooms,
        "offers_per_room": offers,
        "rss_before_mb": round(before / MB, 1),
        "rss_after_offers_mb": round(after_offers / MB, 1),
        "rss_after_end_mb": round(after_end / MB, 1),
        "kb_per_offer_kept": round((after_end - before) / 1024 / total, 1),
    }


def summary(r: dict[str, Any]) -> str:
    return (
        f"{r['rooms']} rooms x {r['offers_per_room']} publishing offers (new pc each), real "
        f"server: RSS {r['rss_before_mb']} MB -> {r['rss_after_offers_mb']} MB after the "
        f"offers -> {r['rss_after_end_mb']} MB after the rooms ended "
        f"({r['kb_per_offer_kept']} KB per offer kept)"
    )


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--rooms", type=int, default=3)
    parser.add_argument("--offers", type=int, default=100)
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds before each RSS reading (default: 1, 2 and 3 s)")  # fmt: skip
    args = parser.parse_args()
    if args.rooms < 1 or args.offers < 1:
        parser.error("--rooms and --offers must be at least 1")
    cli.quiet_logs()
    cli.emit(asyncio.run(run(args.rooms, args.offers, args.settle)), args.json, summary)


if __name__ == "__main__":
    main()
