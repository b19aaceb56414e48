"""Real `callassist serve` processes for the tests that kill, stop or share them (durable
webhooks, database down): a config file, an account, the process, an agent's HTTP client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import PASSWORD, free_port

CLI = [sys.executable, "-m", "server"]
KEYS = {"CALLASSIST_SERVER_KEY": "s" * 40, "CALLASSIST_WEBHOOK_KEY": "w" * 40}


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """TOML of plain values (strings, numbers, booleans, lists): JSON spells them alike."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def add_user(config: Path, data_dir: Path, name: str = "anna") -> None:
    r = subprocess.run(
        [*CLI, "user", "add", name, "--role", "agent", "--password-stdin",
         "--config", str(config), "--data-dir", str(data_dir)],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
        env={**os.environ, **KEYS},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


class Node:
    """One `callassist serve` process on a loopback port."""

    def __init__(self, tmp: Path, name: str, sections: dict[str, dict[str, Any]]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp / f"data-{name}"
        merged = {
            "http": {"public_url": self.url},
            "media": {"ice_host_addresses": ["127.0.0.1"], "allow_loopback_candidates": True},
            "cluster": {"node_id": name},
        }
        for section, values in sections.items():
            merged.setdefault(section, {}).update(values)
        self.config = write_config(tmp / f"{name}.toml", merged)
        self.log = tmp / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 60) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *CLI, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
            "--config", str(self.config),
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **KEYS, "CALLASSIST_LOG_LEVEL": "INFO"},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc.returncode is None, self.log.read_text()[-3000:]
                try:
                    async with http.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, self.log.read_text()[-3000:]
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        """kill -9: no shutdown, no lease handed back."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        else:
            await self.proc.wait()


class Staff:
    """An agent logged in on one node, over HTTP."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.http = aiohttp.ClientSession(
            headers={"Origin": node.url}, cookie_jar=aiohttp.CookieJar(unsafe=True)
        )
        self.csrf = ""

    async def login(self, name: str = "anna") -> Staff:
        async with self.http.post(self.node.url + "/api/login",
                                  json={"username": name, "password": PASSWORD}) as r:  # fmt: skip
            assert r.status == 200, await r.text()
            self.csrf = (await r.json())["csrf"]
        return self

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.post(self.node.url + path, json=body or {},
                                  headers={"X-CSRF-Token": self.csrf}) as r:  # fmt: skip
            return r.status, await r.json(content_type=None)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.node.url + path) as r:
            return r.status, await r.json(content_type=None)

    async def close(self) -> None:
        await self.http.close()
