"""Real processes for the cluster tests: redis-server, N `callassist serve` nodes and
haproxy in front, all on loopback with free ports, all stopped afterwards."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.conftest import PASSWORD, free_port

CLI = [sys.executable, "-m", "server"]
SERVER_KEY = "cluster-test-shared-server-key-0123456789abcdef"
# /metrics answers only with this bearer token (docs/ops.md, "Metrics").
METRICS_TOKEN = "cluster-test-metrics-token-0123456789abcdef"


def _wait_port(port: int, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


class RedisServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="callassist-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Node:
    def __init__(self, name: str, root: Path, redis_url: str, db_url: str, public_url: str,
                 max_rooms: int) -> None:  # fmt: skip
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = root / name
        self.config = root / f"{name}.toml"
        self.log = root / f"{name}.log"
        self.config.write_text(
            f'[http]\npublic_url = "{public_url}"\n'
            f'[storage]\ndatabase_url = "{db_url}"\n'
            '[media]\nice_host_addresses = ["127.0.0.1"]\nallow_loopback_candidates = true\n'
            # the bridge tests send 200 frames at once: above the default rate limit
            "[signalling]\nrate_per_s = 2000.0\nburst = 2000\n"
            f'[cluster]\nrouter = "redis"\nredis_url = "{redis_url}"\nnode_id = "{name}"\n'
            f'internal_url = "{self.url}"\nheartbeat_s = 0.5\nnode_ttl_s = 3.0\n'
            f"max_rooms_per_node = {max_rooms}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "CALLASSIST_SERVER_KEY": SERVER_KEY}
        env["CALLASSIST_METRICS_TOKEN"] = METRICS_TOKEN
        self._fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data),
                "--config",
                str(self.config),
            ],  # fmt: skip
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if hasattr(self, "_fh"):
            self._fh.close()


HAPROXY_CFG = """\
global
    maxconn 2000

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # WebSockets stay open for the whole call
    timeout tunnel 1h
    option forwardfor

frontend callassist
    bind 127.0.0.1:{port}
    default_backend nodes

backend nodes
    # plain round robin, no stickiness: any node answers any request
    balance roundrobin
{servers}
"""


class Cluster:
    """Redis + PostgreSQL database + N nodes + haproxy; `url` is haproxy's."""

    def __init__(self, db_url: str, nodes: int = 3, max_rooms: int = 3) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="callassist-cluster-"))
        self.redis = RedisServer()
        self.lb_port = free_port()
        self.url = f"http://127.0.0.1:{self.lb_port}"
        self.nodes = [
            Node(f"node{i + 1}", self.root, self.redis.url, db_url, self.url, max_rooms)
            for i in range(nodes)
        ]
        self.haproxy: subprocess.Popen[bytes] | None = None

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> None:
        self.redis.start()
        first = self.nodes[0]
        # An agent and a supervisor (the ops console, silent watch), same password.
        for name, role in (("anna", "agent"), ("sue", "supervisor")):
            r = subprocess.run(
                [*CLI, "user", "add", name, "--role", role, "--password-stdin",
                 "--data-dir", str(first.data), "--config", str(first.config)],  # fmt: skip
                input=PASSWORD + "\n", text=True, capture_output=True, timeout=120,
                env={**os.environ, "CALLASSIST_SERVER_KEY": SERVER_KEY},
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
        for node in self.nodes:
            node.start()
        servers = "\n".join(f"    server {n.name} 127.0.0.1:{n.port}" for n in self.nodes)
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=self.lb_port, servers=servers))
        self.haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for node in self.nodes:
            _wait_port(node.port, 120)
        _wait_port(self.lb_port)

    async def ready(self, timeout: float = 120) -> None:
        """Every node answers /healthz and is in the registry."""
        import redis.asyncio as aioredis

        deadline = time.monotonic() + timeout
        client = aioredis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            async with aiohttp.ClientSession() as http:
                for node in self.nodes:
                    while True:
                        try:
                            async with http.get(node.url + "/healthz") as r:
                                if r.status == 200:
                                    break
                        except aiohttp.ClientError:
                            pass
                        assert time.monotonic() < deadline, f"{node.name} did not start"
                        await asyncio.sleep(0.2)
            while len([k async for k in client.scan_iter(match="callassist:node:*")]) < len(
                self.nodes
            ):
                assert time.monotonic() < deadline, "the nodes did not register"
                await asyncio.sleep(0.2)
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(10)
        for node in self.nodes:
            node.stop()
        self.redis.cleanup()

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log.read_text()[-3000:]}" for n in self.nodes
                         if n.log.exists())  # fmt: skip
