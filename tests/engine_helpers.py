"""Helpers of the other-engine tests (Firefox, WebKit, in-app browsers): one real server
for a whole module, since starting those browsers is the slow part."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from server.http.app import create_app
from tests.conftest import FakeClock, Server, free_port, test_config


@contextlib.asynccontextmanager
async def module_server(data_root: Path, **sections: dict[str, Any]) -> AsyncIterator[Server]:
    port = free_port()
    cfg = test_config(port, **sections)
    clock = FakeClock()
    data_dir = data_root / f"data-{port}"
    app = create_app(cfg, data_dir, clock=clock)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Server(f"http://127.0.0.1:{port}", port, app, data_dir, cfg, clock)
    finally:
        await runner.cleanup()


def free_display() -> int:
    """A display number no X server holds (its lock file is absent)."""
    for n in range(99, 400):
        if not os.path.exists(f"/tmp/.X{n}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            return n
    raise RuntimeError("no free X display number")


async def start_xvfb(size: tuple[int, int]) -> tuple[asyncio.subprocess.Process, str]:
    """A private Xvfb screen of `size`; returns the process and its DISPLAY (":N")."""
    display = free_display()
    proc = await asyncio.create_subprocess_exec(
        "Xvfb", f":{display}", "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    socket = Path(f"/tmp/.X11-unix/X{display}")
    while not await asyncio.to_thread(socket.exists):
        if proc.returncode is not None or loop.time() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise RuntimeError("Xvfb did not start")
        await asyncio.sleep(0.1)
    return proc, f":{display}"


class PageError(AssertionError):
    """The page's script threw, or the driver refused a command."""


class PageOps:
    """What the tests do to a page, on top of one method a driver has: `js(body, *args)`
    runs a function body in the page (each argument arrives as a JSON string in
    `arguments[i]`) and returns the JSON value it returns."""

    name = "browser"

    async def js(self, body: str, *args: Any) -> Any:  # pragma: no cover - drivers define it
        raise NotImplementedError

    async def eval(self, expr: str) -> Any:
        return await self.js(f"return ({expr});")

    async def wait(self, expr: str, timeout: float = 20, what: str = "") -> Any:
        """Poll the JS expression until it is truthy; return its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Any = None
        while loop.time() < deadline:
            with contextlib.suppress(PageError):
                last = await self.eval(expr)
                if last:
                    return last
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name}: {what or expr} not true in {timeout}s (last {last!r})")

    async def fill(self, testid: str, text: str) -> None:
        await self.js(
            """const e = document.querySelector(`[data-testid="${JSON.parse(arguments[0])}"]`);
            e.focus(); e.value = JSON.parse(arguments[1]);
            e.dispatchEvent(new Event("input", {bubbles: true}));
            e.dispatchEvent(new Event("change", {bubbles: true})); return true;""",
            testid,
            text,
        )

    async def attr(self, testid: str, name: str) -> str | None:
        return await self.js(  # type: ignore[no-any-return]
            """const e = document.querySelector(`[data-testid="${JSON.parse(arguments[0])}"]`);
            return e ? e.getAttribute(JSON.parse(arguments[1])) : null;""",
            testid,
            name,
        )

    async def wait_attr(self, testid: str, name: str, value: str, timeout: float = 20) -> None:
        await self.wait(
            f"(document.querySelector('[data-testid=\"{testid}\"]') || {{getAttribute(){{}}}})"
            f".getAttribute({json.dumps(name)}) === {json.dumps(value)}",
            timeout,
            what=f"{testid}[{name}={value}]",
        )
