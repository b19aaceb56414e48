"""Debian's WebKitGTK driven by its own WebDriver (`WebKitWebDriver`, classic W3C WebDriver
over HTTP) with MiniBrowser under a private Xvfb display, all started and stopped here.

MiniBrowser runs full screen on a 390x844 Xvfb screen, so the page's viewport is exactly
a phone's (a window cannot be made narrower than MiniBrowser's toolbar), with mock capture
devices (a "camera" that needs no permission). Debian's build has getUserMedia but no
RTCPeerConnection, even with --enable-webrtc: a WebKit view without WebRTC.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from tests.engine_helpers import PageError, PageOps, start_xvfb

DRIVER = os.environ.get("CALLASSIST_WEBKIT_DRIVER", "/usr/bin/WebKitWebDriver")
MINIBROWSER = next(iter(sorted(glob.glob("/usr/lib/*/webkit2gtk-4.*/MiniBrowser"))), "")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class WebKit(PageOps):
    name = "WebKit"

    def __init__(self) -> None:
        self.xvfb: asyncio.subprocess.Process | None = None
        self.driver: asyncio.subprocess.Process | None = None
        self.http: aiohttp.ClientSession | None = None
        self.base = ""

    async def start(self, port: int, size: tuple[int, int] = (390, 844)) -> None:
        self.xvfb, display = await start_xvfb(size)
        env = dict(os.environ, DISPLAY=display)
        self.driver = await asyncio.create_subprocess_exec(
            DRIVER, f"--port={port}", "--host=127.0.0.1", env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.http = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "webkitgtk:browserOptions": {
                        "binary": MINIBROWSER,
                        "args": [
                            "--automation",
                            "--full-screen",
                            "--enable-mock-capture-devices=true",
                            "--enable-media-stream=true",
                        ],
                    }
                }
            }
        }
        while True:
            try:
                async with self.http.post(f"http://127.0.0.1:{port}/session", json=caps) as r:
                    body = await r.json()
                break
            except aiohttp.ClientError:
                if self.driver.returncode is not None or loop.time() > deadline:
                    raise RuntimeError("WebKitWebDriver did not come up") from None
                await asyncio.sleep(0.2)
        if "sessionId" not in body.get("value", {}):
            raise RuntimeError(f"WebKitWebDriver gave no session: {body}")
        self.base = f"http://127.0.0.1:{port}/session/{body['value']['sessionId']}"
        # Full screen on a screen of this size: the whole window is the page's viewport.
        rect = {"x": 0, "y": 0, "width": size[0], "height": size[1]}
        await self.cmd("POST", "/window/rect", rect)
        await self.cmd("POST", "/window/fullscreen", {})

    async def cmd(self, method: str, path: str, body: Any = None) -> Any:
        assert self.http is not None
        async with self.http.request(method, self.base + path, json=body) as r:
            data = await r.json()
        value = data.get("value") if isinstance(data, dict) else None
        if r.status != 200:
            raise PageError(f"WebDriver {path}: {r.status} {data}")
        return value

    async def goto(self, url: str) -> None:
        await self.cmd("POST", "/url", {"url": url})

    async def js(self, body: str, *args: Any) -> Any:
        script = (
            "const done = arguments[arguments.length - 1];"
            "(async function () {" + body + "}).apply(null, Array.from(arguments).slice(0, -1))"
            ".then((v) => done(JSON.stringify(v === undefined ? null : v)),"
            " (e) => done({__error: String(e)}));"
        )
        value = await self.cmd(
            "POST", "/execute/async", {"script": script, "args": [json.dumps(a) for a in args]}
        )
        if isinstance(value, dict) and "__error" in value:
            raise PageError(value["__error"])
        return json.loads(value) if isinstance(value, str) else value

    async def element(self, testid: str) -> str:
        value = await self.cmd(
            "POST", "/element", {"using": "css selector", "value": f'[data-testid="{testid}"]'}
        )
        return str(value[ELEMENT])

    async def click(self, testid: str) -> None:
        """WebDriver's element click: scrolled into view, a real pointer click."""
        await self.wait(
            f"""(e => !!(e && !e.disabled && e.offsetParent))(
            document.querySelector('[data-testid="{testid}"]'))""",
            what=f"{testid} clickable",
        )
        await self.cmd("POST", f"/element/{await self.element(testid)}/click", {})

    async def type_into(self, testid: str, text: str) -> None:
        """Real key input (WebDriver element send keys)."""
        el = await self.element(testid)
        await self.cmd("POST", f"/element/{el}/value", {"text": text})

    async def set_file(self, testid: str, path: Path) -> None:
        """A file input gets `path`, as if chosen in the file dialog (which the page opens
        with a click; a test cannot use that native dialog)."""
        await self.cmd("POST", f"/element/{await self.element(testid)}/value", {"text": str(path)})

    async def screenshot(self, path: Path) -> None:
        data = await self.cmd("GET", "/screenshot")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(data))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.base:
                await asyncio.wait_for(self.cmd("DELETE", ""), 15)
        if self.http is not None:
            await self.http.close()
        for proc in (self.driver, self.xvfb):
            if proc is None or proc.returncode is not None:
                continue
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
