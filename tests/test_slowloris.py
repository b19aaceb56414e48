"""Slowloris against a real `callassist serve` (issue 14, item 18): half-sent requests do
not hold the server's file descriptors; one address cannot hold more than its cap."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from tests.conftest import free_port

CLI = [sys.executable, "-m", "server"]


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_half_sent_requests_are_dropped(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[http]\npublic_url = "http://127.0.0.1:{port}"\n'
        "header_timeout_s = 3.0\nmax_connections_per_address = 100\n"
    )
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", str(port), "--data-dir", str(tmp_path / "d"),
        "--config", str(cfg), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    socks: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        base = _fds(proc.pid)
        for _ in range(500):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            s.setblocking(False)
            socks.append(s)
        # Once the burst is accepted, the server holds at most its cap (plus a few)...
        await asyncio.sleep(1.0)
        held = _fds(proc.pid) - base
        closed: set[int] = set()
        deadline = time.monotonic() + 60
        while len(closed) < len(socks) and time.monotonic() < deadline:
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                try:
                    if s.recv(100) == b"":
                        closed.add(i)
                except BlockingIOError:
                    pass
                except ConnectionError:
                    closed.add(i)
            await asyncio.sleep(0.2)
        assert held <= 110, held
        # ... and every half-sent request was closed by the server (header timeout).
        assert len(closed) == len(socks), len(closed)
        assert _fds(proc.pid) <= base + 5
        # A complete request still works.
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as r:
            assert r.status == 200
    finally:
        for s in socks:
            s.close()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
