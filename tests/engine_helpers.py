"""Helpers of the other-engine tests (Firefox, WebKit, in-app browsers): one real server
for a whole module, since starting those browsers is the slow part."""

from __future__ import annotations

import contextlib
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
