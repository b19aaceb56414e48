"""Demo mode (`callassist demo`, `callassist serve --demo`): a first look with nothing sent
anywhere.

The service runs as usual on a throwaway data directory, with a demo agent account and a
built-in test caller: an aiortc peer in this process that films a generated pattern (colour
bars over a moving block). The caller is an ordinary client of the service: it opens the
session's one-time link over HTTP (cookie flow), accepts the notice and connects over
`/ws/caller` like a phone does; rooms know nothing of it. The demo opens one session at
start, and the SMS sender is replaced by one that hands each link to a new test caller, so
"Send SMS" in the console is answered too. `/api/demo` says the service is a demo; the
console shows a banner (web/demo-banner.js). Refused with environment = "production".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fractions
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
from aiohttp import web
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.contrib.media import MediaBlackhole

from server.core.appkeys import CLOCK, CONFIG, DB
from server.core.config import Config, ConfigError
from server.http.auth import hash_password
from server.sessions.sms import SMS

log = logging.getLogger(__name__)

DEMO_AGENT = "demo"
DEMO_PHONE = "+37120000000"
SUBPROTOCOL = "callassist.v1"
# Colour bars, left to right (RGB): what the agent's video shows in the top three quarters.
BARS = [
    (235, 235, 235),
    (235, 235, 16),
    (16, 235, 235),
    (16, 235, 16),
    (235, 16, 235),
    (235, 16, 16),
    (16, 16, 235),
    (16, 16, 16),
]
WIDTH, HEIGHT = 480, 272


def configure(cfg: Config) -> Config:
    """The configuration of a demo: nothing leaves the machine, nothing is kept."""
    if cfg.environment == "production":
        raise ConfigError("demo mode is off in production (environment = 'production')")
    r = dataclasses.replace
    return r(
        cfg,
        sms=r(cfg.sms, sender="console"),
        webhooks=r(cfg.webhooks, urls=[]),
        storage=r(cfg.storage, database_url=""),
        recording=r(
            cfg.recording, storage="local", local_dir="", spool_dir="", keyring="local",
            keys_dir="",
        ),
        # The built-in caller runs on this machine: its candidates are local addresses.
        media=r(cfg.media, allow_private_candidates=True, allow_loopback_candidates=True),
    )  # fmt: skip


class PatternTrack(VideoStreamTrack):
    """A camera filming colour bars above a dark band with a white block moving across it."""

    def __init__(self) -> None:
        super().__init__()
        bar_w = WIDTH // len(BARS)
        self._bars = b"".join(bytes(BARS[min(x // bar_w, len(BARS) - 1)]) for x in range(WIDTH))
        self._frames = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._frames += 1
        band_top = HEIGHT * 3 // 4
        block = 32
        x0 = (self._frames * 4) % (WIDTH - block)
        band = bytes((40, 40, 40)) * x0 + b"\xff" * 3 * block
        band += bytes((40, 40, 40)) * (WIDTH - x0 - block)
        frame = av.VideoFrame(WIDTH, HEIGHT, "rgb24")
        plane = frame.planes[0]
        pad = b"\x00" * (plane.line_size - WIDTH * 3)
        plane.update((self._bars + pad) * band_top + (band + pad) * (HEIGHT - band_top))
        # A new frame object every time: aiortc marks frames it made keyframes.
        frame = frame.reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


async def _expect(ws: aiohttp.ClientWebSocketResponse, mtype: str, **match: Any) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=30)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"signalling closed while waiting for {mtype}")
        data = json.loads(msg.data)
        if data.get("type") == mtype and all(data.get(k) == v for k, v in match.items()):
            return data


async def run_caller(base_url: str, link: str) -> None:
    """One test caller: link, notice, camera, until the room ends."""
    jar = aiohttp.CookieJar(unsafe=True)  # unsafe: cookies for an IP-address host
    headers = {"User-Agent": "callassist demo caller"}
    async with aiohttp.ClientSession(cookie_jar=jar, headers=headers) as http:
        # Like a phone: GET shows the link page (uses nothing up), the tap POSTs from it.
        async with http.get(link, allow_redirects=False) as r:
            status = r.status
        if status == 200:
            async with http.post(link, allow_redirects=False, headers={"Origin": base_url}) as r:
                status = r.status
        if status != 303:
            log.warning("demo caller: the link was refused (HTTP %d)", status)
            return
        ws = await http.ws_connect(
            base_url.replace("http", "ws", 1) + "/ws/caller",
            protocols=(SUBPROTOCOL,),
            origin=base_url,
            ssl=False,  # the demo's own self-signed certificate, on this machine
        )
        pc: RTCPeerConnection | None = None
        sink = MediaBlackhole()
        try:
            welcome = await _expect(ws, "welcome")
            await ws.send_json({"type": "accept", "notice": welcome["notice"]["version"]})
            servers = [RTCIceServer(**s) for s in welcome.get("iceServers", [])]
            pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
            pc.on("track", sink.addTrack)  # the agent's screen, when shared: drained
            pc.addTransceiver(PatternTrack(), direction="sendonly")
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            await ws.send_json({"type": "offer", "pc": 1, "sdp": pc.localDescription.sdp})
            answer = await _expect(ws, "answer", pc=1)
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            await sink.start()
            log.info("demo caller: camera pattern is live")
            async for msg in ws:  # until the room ends or the server stops
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
        finally:
            await sink.stop()
            if pc is not None:
                await pc.close()
            await ws.close()


class DemoSender:
    """The SMS sender of the demo: the 'phone' is a new test caller in this process."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.tasks: set[asyncio.Task[None]] = set()

    def call(self, link: str) -> None:
        base = self.app[CONFIG].http.public_url.rstrip("/")
        task = asyncio.create_task(_guarded(run_caller(base, link)), name="demo-caller")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send(self, phone: str, text: str) -> None:
        found = re.search(r"https?://\S+/j/[A-Za-z0-9_-]+", text)
        if found:
            self.call(found.group(0))

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _guarded(coro: Any) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:  # one failed demo caller must not take the service down
        log.exception("demo caller failed")


async def _open_session(base: str, password: str) -> tuple[str, str]:
    """Log in as the demo agent and start a session, over the REST API like the console."""
    headers = {"Origin": base}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for _ in range(100):  # the listening socket opens right after startup
            try:
                async with http.post(
                    base + "/api/login", json={"username": DEMO_AGENT, "password": password},
                    headers=headers, ssl=False,
                ) as r:  # fmt: skip
                    csrf = (await r.json())["csrf"]
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        else:
            raise ConnectionError("the demo server did not come up")
        async with http.post(
            base + "/api/sessions", json={"phone": DEMO_PHONE, "reference": "DEMO"},
            headers={**headers, "X-CSRF-Token": csrf}, ssl=False,
        ) as r:  # fmt: skip
            created = await r.json()
        async with http.post(base + "/api/logout", headers={**headers, "X-CSRF-Token": csrf},
                             ssl=False):  # fmt: skip
            pass
    return created["session"]["id"], created["link"]


def install(app: web.Application, password: str) -> None:
    """Make `app` a demo: the demo agent, one session answered by a test caller, the SMS
    sender, and /api/demo. Call after create_app, before the app starts."""
    sender = DemoSender(app)
    app[SMS] = sender

    async def demo_ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[DB]
        if await db.user_by_name(DEMO_AGENT) is None:
            await db.add_user(DEMO_AGENT, hash_password(password), "agent", app[CLOCK]())
        base = app[CONFIG].http.public_url.rstrip("/")

        async def first_call() -> None:
            session_id, link = await _open_session(base, password)
            print(
                f"callassist demo: session {session_id} is live with the test caller; open\n"
                f"    {base}/agent#session={session_id}\n"
                f"and log in as '{DEMO_AGENT}' with the password '{password}'. New sessions "
                "are answered too: use 'Send SMS'.",
                flush=True,
            )
            sender.call(link)

        starter = asyncio.create_task(_guarded(first_call()), name="demo-start")
        yield
        starter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starter
        await sender.close()

    app.cleanup_ctx.append(demo_ctx)
    app.router.add_get("/api/demo", _demo_info)


async def _demo_info(request: web.Request) -> web.StreamResponse:
    return web.json_response({"demo": True, "agent": DEMO_AGENT})


def new_password() -> str:
    return secrets.token_urlsafe(9)  # 12 characters: typed once by the newcomer
