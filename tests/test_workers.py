"""`callassist serve --workers N`: the plan (pure), the refusal with the local router, and
real worker processes sharing one port (started through the documented test hook that
allows the local router, docs/testing.md)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from server.cluster import workers
from server.core import config as config_mod
from server.core.config import ConfigError
from tests.conftest import free_port

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


def test_child_argv_drops_workers_only() -> None:
    argv = ["serve", "--workers", "2", "--port", "80", "--workers=3", "--data-dir", "d"]
    assert workers.child_argv(argv) == ["serve", "--port", "80", "--data-dir", "d"]
    assert workers.worker_from_env({"CALLASSIST_WORKER": "1/2", "CALLASSIST_WORKER_NODE": "x"}) \
        == (1, 2, "x")  # fmt: skip
    assert workers.worker_from_env({}) is None


def test_local_router_refuses_more_than_one_worker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != workers.LOCAL_ROUTER_TEST_ENV}
    r = subprocess.run(
        [*CLI, "serve", "--workers", "2", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert r.returncode == 2
    assert 'cluster.workers = 2 needs cluster.router = "redis"' in r.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text("[cluster]\nworkers = 2\n")
    with pytest.raises(ConfigError, match="needs cluster.router"):
        config_mod.load(cfg)
    # The test hook is for the embedded environment only.
    prod = config_mod.replace(config_mod.from_dict({}), environment="production")
    with pytest.raises(ConfigError, match="needs cluster.router"):
        workers.check(prod, 2, {workers.LOCAL_ROUTER_TEST_ENV: "1"})


# /metrics answers only with its bearer token (docs/ops.md, "Metrics").
METRICS_TOKEN = "workers-test-metrics-token-0123456789abcdef"


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


def _start(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[http]\npublic_url = "http://127.0.0.1:{port}"\n'
        '[media]\nice_host_addresses = ["127.0.0.1"]\nudp_ports = "41000-41009"\n'
        '[cluster]\nnode_id = "box"\n'
    )
    env = {**os.environ, workers.LOCAL_ROUTER_TEST_ENV: "1"}
    env["CALLASSIST_METRICS_TOKEN"] = METRICS_TOKEN
    return subprocess.Popen(
        [*CLI, "serve", "--workers", "2", "--port", str(port), "--config", str(cfg),
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip


def _both_answer(url: str) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + 90
    while seen != {"box-w0", "box-w1"} and time.monotonic() < deadline:
        node = _node_of(url)
        if node is None:
            time.sleep(0.2)
        else:
            seen.add(node)
    return seen


def _worker_pids(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"worker \d \(pid (\d+)\) is node", output)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_share_the_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = _start(tmp_path, port)
    try:
        assert _both_answer(f"http://127.0.0.1:{port}") == {"box-w0", "box-w1"}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    pids = _worker_pids(out)
    assert len(pids) == 2 and not any(_alive(p) for p in pids), out


def test_a_dead_worker_stops_the_node_non_zero(tmp_path: Path) -> None:
    port = free_port()
    proc = _start(tmp_path, port)
    try:
        assert _both_answer(f"http://127.0.0.1:{port}") == {"box-w0", "box-w1"}
        out = ""
        assert proc.stdout is not None
        while len(_worker_pids(out)) < 2:
            out += proc.stdout.readline()
        victim, other = _worker_pids(out)
        os.kill(victim, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=60)
        out += rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out
    assert f"(pid {victim}) exited with status -9; stopping the others" in out
    assert not _alive(other)
