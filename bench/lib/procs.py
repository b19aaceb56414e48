"""Real server processes on loopback, each on a free port and in a temp directory, all
stopped afterwards: PostgreSQL (Debian's binaries), redis-server, haproxy and N
`callassist serve` nodes (docs/cluster.md). The cluster tests (tests/cluster_procs.py,
tests/pg.py, tests/redis_helpers.py re-export these) and bench/cluster.py both start them,
so nothing here imports pytest or the tests.

Over 400 lines because the four starters belong together: the cluster starts and stops
them as one, and a split would only spread that order over modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

CLI = [sys.executable, "-m", "server"]
# The tests' password (tests/conftest.py has the same): every user made here has it.
PASSWORD = "correct horse battery"  # noqa: S105 - a test account's
SERVER_KEY = "cluster-test-shared-server-key-0123456789abcdef"
# /metrics answers only with this bearer token (docs/ops.md, "Metrics").
METRICS_TOKEN = "cluster-test-metrics-token-0123456789abcdef"  # noqa: S105
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(count: int) -> int:
    """A port P with P .. P+count-1 all free (a node with workers listens on P and each
    worker i also on P+1+i: server/cluster/workers.py)."""
    for _ in range(200):
        base = free_port()
        if base + count > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for p in range(base, base + count):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def wait_port(port: int, timeout: float = 20, proc: subprocess.Popen[bytes] | None = None,
              log: Path | None = None) -> None:  # fmt: skip
    """Until something listens on 127.0.0.1:port; fails at once (with the log's tail)
    when `proc` exits first, instead of waiting out the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process {proc.args!r} exited ({proc.returncode})\n{tail}")
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: scripts/test.sh installs 'postgresql'")
    return Path(found[-1]).parent


class PostgresServer:
    """initdb + pg_ctl start on 127.0.0.1; runs as 'postgres' when we are root (the server
    refuses to run as root)."""

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="callassist-pg-"))
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                  "--auth=trust", "--encoding=UTF8", "--no-sync")  # fmt: skip
        self.start_server()

    def start_server(self) -> None:
        """Start the cluster made by `start` (again, after `stop_server`), on the same port."""
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c fsync=off "
            f"-c unix_socket_directories={self.dir} -c max_connections=200"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
                  str(self.dir / "log"), "-o", opts, "-w", "start")  # fmt: skip

    def create_database(self, name: str) -> str:
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", name)  # fmt: skip
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def stop_server(self) -> None:
        """Stop the server, keeping its data (the "database down" tests start it again)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast",
                  "-w", "stop")  # fmt: skip

    def stop(self) -> None:
        try:
            self.stop_server()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- Redis ---------------------------------------------------------------------------------


class RedisServer:
    """redis-server on a free loopback port, nothing persisted. `start` returns self once
    it answers PING; `stop` keeps the port (it can start again: the Redis-down tests),
    `cleanup` (alias `close`) also removes its directory."""

    def __init__(self, port: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="callassist-redis-"))
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(  # noqa: S603
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    close = cleanup


# --- callassist nodes and haproxy ----------------------------------------------------------


class Node:
    """One `callassist serve` node of a Redis-router cluster (`workers` > 1: that many
    worker processes sharing its port, nodes `<name>-w<i>`). `extra` is appended to its
    config file (TOML)."""

    def __init__(self, name: str, root: Path, redis_url: str, db_url: str, public_url: str,
                 max_rooms: int, *, workers: int = 1, extra: str = "",
                 port: int | None = None) -> None:  # fmt: skip
        self.name = name
        self.workers = workers
        # With workers, worker i also listens on port + 1 + i (its internal address).
        self.port = port or (free_port_run(workers + 1) if workers > 1 else free_port())
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
            f"max_rooms_per_node = {max_rooms}\n" + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def node_ids(self) -> list[str]:
        """The ids this node registers under (one per worker)."""
        if self.workers == 1:
            return [self.name]
        return [f"{self.name}-w{i}" for i in range(self.workers)]

    def start(self) -> None:
        env = {**os.environ, "CALLASSIST_SERVER_KEY": SERVER_KEY}
        env["CALLASSIST_METRICS_TOKEN"] = METRICS_TOKEN
        self._fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        workers = ["--workers", str(self.workers)] if self.workers > 1 else []
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
                *workers,
            ],  # fmt: skip
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )

    def wait_listening(self, timeout: float = 120) -> None:
        wait_port(self.port, timeout, self.proc, self.log)

    def signal_stop(self) -> None:
        """SIGTERM without waiting: `Cluster.stop` tells every node first, then waits for
        all, so their graceful stops overlap instead of queueing."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.signal_stop()
        if self.proc is not None:
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
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # WebSockets stay open for the whole call
    timeout tunnel 1h
    option forwardfor
    # A request that reaches no node (refused, reset, no answer) is sent to another one
    # instead of failing: the pages do not see a dead node before the checks take it out.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout

frontend callassist
    bind 127.0.0.1:{port}
    default_backend nodes

backend nodes
    # plain round robin, no stickiness: any node answers any request
    balance roundrobin
    # A node that stops answering /healthz twice, 0.5 s apart, gets no new requests.
    option httpchk GET /healthz
    default-server check inter 500 fall 2 rise 1
    # Only what reached no node is retried for a POST/PUT/DELETE: never done twice.
    http-request disable-l7-retry if !METH_GET !METH_HEAD
{servers}
"""


def _user_add(node: Node, name: str, role: str, password: str) -> subprocess.Popen[bytes]:
    """`callassist user add`, started (not waited for: `_user_added`). Its stderr goes to
    a file, so nothing can fill a pipe while it runs."""
    err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _user_added
    proc = subprocess.Popen(  # noqa: S603
        [*CLI, "user", "add", name, "--role", role, "--password-stdin",
         "--data-dir", str(node.data), "--config", str(node.config)],  # fmt: skip
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
        env={**os.environ, "CALLASSIST_SERVER_KEY": SERVER_KEY},
    )  # fmt: skip
    proc.err_file = err  # type: ignore[attr-defined]
    assert proc.stdin is not None
    proc.stdin.write(password.encode() + b"\n")
    proc.stdin.close()
    return proc


def _user_added(proc: subprocess.Popen[bytes], name: str) -> None:
    err = proc.err_file  # type: ignore[attr-defined]
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"user add {name}: no answer in 120 s") from None
    finally:
        err.seek(0)
        text = err.read().decode(errors="replace")
        err.close()
    if proc.returncode != 0:
        raise RuntimeError(f"user add {name}: {text}")


def add_user(node: Node, name: str, role: str, password: str) -> None:
    _user_added(_user_add(node, name, role, password), name)


class Cluster:
    """Redis + a PostgreSQL database + N nodes + haproxy; `url` is haproxy's. Users: the
    agent `anna` and the supervisor `sue`, both with `password`."""

    def __init__(self, db_url: str, nodes: int = 3, max_rooms: int = 3, *,
                 password: str = PASSWORD, workers: int = 1, extra: str = "") -> None:  # fmt: skip
        self.root = Path(tempfile.mkdtemp(prefix="callassist-cluster-"))
        self.password = password
        self.max_rooms = max_rooms
        self.redis = RedisServer()
        self.lb_port = free_port()
        self.url = f"http://127.0.0.1:{self.lb_port}"
        self.nodes = [
            Node(
                f"node{i + 1}",
                self.root,
                self.redis.url,
                db_url,
                self.url,
                max_rooms,
                workers=workers,
                extra=extra,
            )  # fmt: skip
            for i in range(nodes)
        ]
        self.haproxy: subprocess.Popen[bytes] | None = None

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> None:
        self.redis.start()
        first = self.nodes[0]
        # An agent and a supervisor (the ops console, silent watch), same password. The
        # first `user add` upgrades the schema alone (two upgrades at once would race);
        # the second runs while the nodes start (each a Python start: seconds when loaded).
        add_user(first, "anna", "agent", self.password)
        sue = _user_add(first, "sue", "supervisor", self.password)
        for node in self.nodes:
            node.start()
        _user_added(sue, "sue")
        servers = "\n".join(f"    server {n.name} 127.0.0.1:{n.port}" for n in self.nodes)
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=self.lb_port, servers=servers))
        self.haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for node in self.nodes:
            node.wait_listening(120)
        wait_port(self.lb_port, 20, self.haproxy)

    async def ready(self, timeout: float = 120) -> None:
        """Every node answers /healthz, every node id is in the registry and haproxy routes
        to them; fails at once (with the logs) when a node process exits."""
        import redis.asyncio as aioredis

        deadline = time.monotonic() + timeout
        want = {f"callassist:node:{i}" for n in self.nodes for i in n.node_ids}

        def check(what: str) -> None:
            for n in self.nodes:
                if n.proc is None or n.proc.poll() is not None:
                    raise RuntimeError(f"{n.name} exited while {what}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out: {what}\n{self.logs()}")

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
                        check(f"{node.name} starts")
                        await asyncio.sleep(0.2)
            while not want <= {k async for k in client.scan_iter(match="callassist:node:*")}:
                check("the nodes register")
                await asyncio.sleep(0.2)
            # haproxy's health checks (`fall 2 rise 1`, every 0.5 s) may still hold nodes
            # it saw down while they started: until a check passes it answers 503 "No
            # server is available". Ready = it routes, several times in a row.
            async with aiohttp.ClientSession() as http:
                routed = 0
                while routed < 2 * len(self.nodes):
                    try:
                        async with http.get(f"{self.url}/healthz") as r:
                            routed = routed + 1 if r.status == 200 else 0
                    except aiohttp.ClientError:
                        routed = 0
                    if routed == 0:
                        check("haproxy routes to the nodes")
                        await asyncio.sleep(0.2)
        finally:
            await client.aclose()

    def pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes if n.proc is not None]

    def stop(self) -> None:
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
        for node in self.nodes:  # all at once: their graceful stops overlap
            node.signal_stop()
        for node in self.nodes:
            node.stop()
        if self.haproxy is not None:
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
                self.haproxy.wait()
        self.redis.cleanup()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log.read_text(errors='replace')[-3000:]}"
                         for n in self.nodes if n.log.exists())  # fmt: skip
