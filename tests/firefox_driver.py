"""Debian's Firefox ESR driven over WebDriver BiDi, its own remote protocol: no geckodriver,
no download, no patched build (Playwright's Firefox support needs its own build).

Firefox is started headless with `--remote-debugging-port` and a throwaway profile whose
prefs give it a fake camera that needs no permission prompt; the test talks JSON over one
WebSocket (aiohttp, already a dependency), asynchronously, so the server under test keeps
running on the same event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from tests.engine_helpers import PageError, PageOps, start_xvfb

FIREFOX = os.environ.get("CALLASSIST_FIREFOX", "/usr/bin/firefox-esr")

# Prefs of the test profile. Why each: a fake camera/microphone with no prompt; WebRTC on
# loopback (the test namespace has only 127.0.0.1, and Firefox would hide host candidates
# behind mDNS); nothing fetched from the network (updates, telemetry, safe browsing).
PREFS: dict[str, Any] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "permissions.default.camera": 1,
    "permissions.default.microphone": 1,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.default_address_only": False,
    # Only loopback exists in the test namespace: Firefox must not go "offline" for it (then
    # ICE gathers nothing).
    "network.manage-offline-status": False,
    "network.offline-mirrors-connectivity": False,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "extensions.update.enabled": False,
    "remote.prefs.recommended": True,
}


class BidiError(PageError):
    pass


class Firefox(PageOps):
    """One Firefox process and its BiDi session."""

    name = "Firefox"

    def __init__(self, **prefs: Any) -> None:
        """`prefs` override PREFS (e.g. no fake camera: a Firefox with no camera at all)."""
        self.prefs = {**PREFS, **prefs}
        self.profile = Path(tempfile.mkdtemp(prefix="callassist-ff-"))
        self.proc: asyncio.subprocess.Process | None = None
        self.xvfb: asyncio.subprocess.Process | None = None
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(
        self, port: int, viewport: tuple[int, int] = (390, 844), xvfb: bool = False
    ) -> None:
        """xvfb: run full screen on a private Xvfb screen of `viewport` instead of headless.
        Headless Firefox has no screen to capture (getDisplayMedia: NotFoundError); on a
        display, with media.navigator.permission.disabled, getDisplayMedia takes that
        screen ("Primary Monitor") without a picker."""
        display = None
        if xvfb:
            self.xvfb, display = await start_xvfb(viewport)
        prefs = "".join(
            f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in self.prefs.items()
        )
        (self.profile / "user.js").write_text(prefs)
        env = dict(os.environ, MOZ_CRASHREPORTER_DISABLE="1")
        if display is None:
            env["MOZ_HEADLESS"] = "1"
            env["MOZ_HEADLESS_WIDTH"], env["MOZ_HEADLESS_HEIGHT"] = map(str, viewport)
        else:
            env["DISPLAY"] = display
            env.pop("WAYLAND_DISPLAY", None)
            env["GDK_BACKEND"] = "x11"
        self.proc = await asyncio.create_subprocess_exec(
            FIREFOX,
            # On a display: full screen, so a capture of the screen is the page.
            *(["--headless"] if display is None else ["--kiosk"]),
            "--no-remote",
            "--profile",
            str(self.profile),
            f"--remote-debugging-port={port}",
            "about:blank",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.http = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            try:
                self.ws = await self.http.ws_connect(
                    f"ws://127.0.0.1:{port}/session", max_msg_size=64 * 2**20
                )
                break
            except aiohttp.ClientError:
                if self.proc.returncode is not None or loop.time() > deadline:
                    raise RuntimeError("Firefox's remote agent did not come up") from None
                await asyncio.sleep(0.3)
        self._reader = asyncio.create_task(self._read())
        await self.send("session.new", {"capabilities": {}})
        tree = await self.send("browsingContext.getTree", {})
        self.context = tree["contexts"][0]["context"]
        await self.send(
            "browsingContext.setViewport",
            {"context": self.context, "viewport": {"width": viewport[0], "height": viewport[1]}},
        )

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id", -1), None)
            if fut is None or fut.done():
                continue  # an event: none subscribed
            if data.get("type") == "error":
                fut.set_exception(BidiError(f"{data.get('error')}: {data.get('message')}"))
            else:
                fut.set_result(data.get("result"))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BidiError("Firefox closed the BiDi socket"))

    async def send(self, method: str, params: dict[str, Any], timeout: float = 30) -> Any:
        assert self.ws is not None
        mid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[mid] = fut
        await self.ws.send_str(json.dumps({"id": mid, "method": method, "params": params}))
        return await asyncio.wait_for(fut, timeout)

    async def goto(self, url: str) -> None:
        await self.send(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}
        )

    async def js(self, body: str, *args: Any) -> Any:
        """Run `body` (a function's body; `args` are its `arguments`) in the page; awaits a
        promise; returns the JSON value (the body returns JSON.stringify'd data)."""
        fn = (
            "async (...args) => JSON.stringify(await (async function () {"
            + body
            + "}).apply(null, args))"
        )
        res = await self.send(
            "script.callFunction",
            {
                "functionDeclaration": fn,
                "arguments": [{"type": "string", "value": json.dumps(a)} for a in args],
                "target": {"context": self.context},
                "awaitPromise": True,
                "userActivation": True,
            },
        )
        if res.get("type") == "exception":
            raise BidiError(res["exceptionDetails"].get("text", "exception"))
        value = res["result"].get("value")
        return None if value in (None, "undefined") else json.loads(value)

    async def click(self, testid: str) -> None:
        """A real pointer click in the middle of the element (a user gesture)."""
        box = await self.wait(
            f"""(() => {{ const e = document.querySelector('[data-testid="{testid}"]');
            if (!e || e.hidden || e.disabled || !e.offsetParent) return null;
            e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""",
            what=f"{testid} clickable",
        )
        x, y = int(box[0]), int(box[1])
        await self.send(
            "input.performActions",
            {
                "context": self.context,
                "actions": [
                    {
                        "type": "pointer",
                        "id": "mouse",
                        "actions": [
                            {"type": "pointerMove", "x": x, "y": y},
                            {"type": "pointerDown", "button": 0},
                            {"type": "pointerUp", "button": 0},
                        ],
                    }
                ],
            },
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.ws is not None and not self.ws.closed:
                await asyncio.wait_for(self.send("browser.close", {}), 10)
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self.http is not None:
            await self.http.close()
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.xvfb is not None and self.xvfb.returncode is None:
            self.xvfb.terminate()
            await self.xvfb.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
