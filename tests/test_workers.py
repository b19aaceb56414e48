"""`callassist serve --workers N`: the plan (pure), the refusal with the local router, and
real worker processes sharing one port on the Redis router, as a deployer runs them
(docs/deploy.md, "Workers"): a real redis-server and PostgreSQL on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.lib.procs import SERVER_KEY, RedisServer, free_port_run
from server.cluster import workers
from server.core import config as config_mod
from server.core.config import ConfigError

CLI = [sys.executable, "-m", "server"]


def test_port_slices_cover_the_range_without_overlap() -> None:
    parts = [workers.port_slice((40000, 40999), i, 3) for i in range(3)]
    assert parts == [(40000, 40332), (40333, 40665), (40666, 40999)]
    assert workers.port_slice(None, 0, 2) is None
    with pytest.raises(ConfigError, match="fewer ports"):
        workers.port_slice((40000, 40000), 0, 2)


def test_worker_config_names_the_node_and_slices_ports() -> None:
    cfg = config_mod.from_dict({"media": {"udp_ports": "40000-40009"}})
    w1 = workers.worker_config(cfg, 1, 2, "edge-a")
    assert w1.cluster.node_id == "edge-a-w1" and w1.cluster.workers == 1
    assert w1.media.udp_ports == "40005-40009"
    assert workers.worker_config(config_mod.from_dict({}), 0, 2, "n").media.udp_ports == ""
    # Each worker's own address for forwarded requests: the internal port + 1 + i.
    red = config_mod.from_dict({"cluster": {"router": "redis", "redis_url": "redis://r:1/0",
                                            "internal_url": "http://10.0.0.5:8080"}})  # fmt: skip
    assert workers.worker_config(red, 1, 2, "n").cluster.internal_url == "http://10.0.0.5:8082"
    assert workers.worker_internal_url("https://[fd00::5]/", 0) == "https://[fd00::5]:444/"
    assert workers.worker_internal_url("", 0) == ""


def test_child_argv_drops_workers_only() -> None:
    argv = ["serve", "--workers", "2", "--port", "80", "--workers=3", "--data-dir", "d"]
    assert workers.child_argv(argv) == ["serve", "--port", "80", "--data-dir", "d"]
    assert workers.worker_from_env({"CALLASSIST_WORKER": "1/2", "CALLASSIST_WORKER_NODE": "x"}) \
        == (1, 2, "x")  # fmt: skip
    assert workers.worker_from_env({}) is None


def test_local_router_refuses_more_than_one_worker(tmp_path: Path) -> None:
    r = subprocess.run(
        [*CLI, "serve", "--workers", "2", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert 'cluster.workers = 2 needs cluster.router = "redis"' in r.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text("[cluster]\nworkers = 2\n")
    with pytest.raises(ConfigError, match="needs cluster.router"):
        config_mod.load(cfg)
    with pytest.raises(ConfigError, match="needs cluster.router"):
        workers.check(config_mod.from_dict({}), 2)


# /metrics answers only with its bearer token (docs/ops.md, "Metrics").
METRICS_TOKEN = "workers-test-metrics-token-0123456789abcdef"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


class Box:
    """`callassist serve --workers 2` on the Redis router; its output in a file, so a
    failure shows it at once instead of waiting out a deadline."""

    def __init__(self, tmp_path: Path, redis_url: str, db_url: str) -> None:
        self.port = free_port_run(3)  # the shared port, then each worker's own
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "serve.log"
        cfg = self.config = tmp_path / "c.toml"
        self.data = tmp_path / "data"
        cfg.write_text(
            f'[http]\npublic_url = "{self.url}"\n'
            f'[storage]\ndatabase_url = "{db_url}"\n'
            '[media]\nice_host_addresses = ["127.0.0.1"]\nudp_ports = "41000-41009"\n'
            f'[cluster]\nrouter = "redis"\nredis_url = "{redis_url}"\nnode_id = "box"\n'
            f'internal_url = "{self.url}"\n'
        )
        env = {**os.environ, "CALLASSIST_METRICS_TOKEN": METRICS_TOKEN}
        env["CALLASSIST_SERVER_KEY"] = SERVER_KEY
        self._fh = open(self.log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--workers", "2", "--port", str(self.port), "--config", str(cfg),
             "--data-dir", str(self.data)],
            stdout=self._fh, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip

    @property
    def node(self) -> Any:
        """For bench.lib.procs.add_user (it needs `data` and `config`)."""
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive_or_fail(self, what: str, deadline: float) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited ({self.proc.returncode}) before {what}:\n"
                                 + self.output()[-4000:])  # fmt: skip
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out before {what}:\n" + self.output()[-4000:])

    def both_answer(self, timeout: float = 90) -> set[str]:
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while seen != {"box-w0", "box-w1"}:
            self.alive_or_fail(f"both workers answered (seen: {sorted(seen)})", deadline)
            node = _node_of(self.url)
            if node is None:
                time.sleep(0.2)
            else:
                seen.add(node)
        return seen

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("serve did not stop:\n" + self.output()[-4000:]) from None

    def close(self) -> None:
        """Stop as a deployer does (SIGTERM: the supervisor stops its workers), -9 only
        when that hangs; then no worker of this box may be left (they once outlived the
        kill and stayed until the machine stopped)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        left = _wait_gone(_worker_pids(self.output()), 30)
        assert not left, f"workers {left} outlived their supervisor:\n" + self.output()[-3000:]


@pytest.fixture
def box(tmp_path: Path, redis_server: RedisServer, postgres: Any) -> Iterator[Box]:
    b = Box(tmp_path, redis_server.url, postgres.create_database("w" + uuid.uuid4().hex[:12]))
    yield b
    b.close()


def _node_of(url: str) -> str | None:
    try:
        # A new connection each time: SO_REUSEPORT spreads connections, not requests.
        headers = {"Connection": "close", "Authorization": f"Bearer {METRICS_TOKEN}"}
        req = urllib.request.Request(url + "/metrics", headers=headers)
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback
            m = re.search(r'callassist_node_info\{node="([^"]+)"\} 1', r.read().decode())
            return m.group(1) if m else None
    except OSError:
        return None


def _worker_pids(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"worker \d \(pid (\d+)\) is node", output)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _alive_pids(pids: list[int]) -> list[int]:
    """Those of `pids` still running (a zombie nobody reaps yet counts as gone)."""
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            out.append(pid)
    return out


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Poll until none of `pids` runs or `timeout` passes; those still running."""
    deadline = time.monotonic() + timeout
    while (left := _alive_pids(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _registered(redis_url: str) -> set[str]:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {k.removeprefix("callassist:node:") for k in client.scan_iter("callassist:node:*")}
    finally:
        client.close()


def test_two_workers_share_the_port_and_stop_on_sigterm(
    box: Box, redis_server: RedisServer
) -> None:
    assert box.both_answer() == {"box-w0", "box-w1"}
    # Each worker is a node of the cluster: both in the registry.
    deadline = time.monotonic() + 30
    while _registered(redis_server.url) != {"box-w0", "box-w1"}:
        box.alive_or_fail("both workers registered in Redis", deadline)
        time.sleep(0.2)
    box.proc.send_signal(signal.SIGTERM)
    assert box.wait() == 0, box.output()
    pids = _worker_pids(box.output())
    assert len(pids) == 2 and not any(_alive(p) for p in pids), box.output()


def test_room_bound_requests_reach_the_worker_holding_the_room(box: Box) -> None:
    """Worker i also listens on its own internal port (cluster.internal_url's port + 1 +
    i, docs/deploy.md "Workers"): a request forwarded to the room's worker reaches it,
    not whichever worker the kernel picks on the shared port."""
    from bench.lib.procs import PASSWORD, add_user

    assert box.both_answer() == {"box-w0", "box-w1"}
    add_user(box.node, "anna", "agent", PASSWORD)
    import http.cookiejar
    import json

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def call(method: str, path: str, body: Any = None, csrf: str = "") -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(box.url + path, data=data, method=method, headers={
            "Origin": box.url, "Content-Type": "application/json", "X-CSRF-Token": csrf,
            "Connection": "close"})  # fmt: skip
        try:
            with opener.open(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = call("POST", "/api/login", {"username": "anna", "password": PASSWORD})
    assert status == 200, body
    csrf = body["csrf"]
    made = []
    for _ in range(4):  # placement spreads them over both workers
        status, body = call("POST", "/api/sessions", {"phone": "20000012"}, csrf)
        assert status == 201, body
        made.append(body["session"]["id"])
    for sid in made:
        seen = set()
        for _ in range(6):  # new connections: they land on either worker
            status, body = call("GET", f"/api/sessions/{sid}")
            assert status == 200, body
            seen.add(json.dumps(body, sort_keys=True))
            status, body = call("POST", f"/api/sessions/{sid}/link", {}, csrf)
            assert status == 200, (sid, body, box.output()[-3000:])
        assert len(seen) == 1, seen  # the same live view from both workers


def test_a_dead_worker_stops_the_node_non_zero(box: Box) -> None:
    assert box.both_answer() == {"box-w0", "box-w1"}
    victim, other = _worker_pids(box.output())  # printed before the workers start
    os.kill(victim, signal.SIGKILL)
    assert box.wait() == 1, box.output()
    assert f"(pid {victim}) exited with status -9; stopping the others" in box.output()
    assert not _alive(other)


def test_workers_stop_when_their_supervisor_is_killed(box: Box) -> None:
    """kill -9 of the supervisor forwards nothing: each worker asked the kernel for a
    SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), so none is left serving."""
    assert box.both_answer() == {"box-w0", "box-w1"}
    pids = _worker_pids(box.output())
    assert len(pids) == 2 and _alive_pids(pids) == pids
    box.proc.kill()
    box.proc.wait()
    assert _wait_gone(pids, 30) == [], box.output()[-3000:]
    assert _node_of(box.url) is None  # nothing answers on the shared port any more


def test_a_worker_whose_supervisor_is_already_gone_stops() -> None:
    """The supervisor may die between a worker's start and its prctl: then no signal
    comes, so the worker checks its parent once itself (and stops)."""
    code = (
        "import os, signal, time\n"
        "from server.cluster import workers\n"
        "signal.signal(signal.SIGTERM, lambda *a: os._exit(7))\n"
        "workers.die_with_supervisor({'CALLASSIST_WORKER_PARENT': str(os.getppid() + 1)})\n"
        "time.sleep(30)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert r.returncode == 7
