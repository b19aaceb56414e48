"""Real processes for the cluster tests: redis-server, N `callassist serve` nodes and
haproxy in front, all on loopback with free ports, all stopped afterwards. The starters
live in bench/lib/procs.py (bench/cluster.py runs the same ones); these names stay for
the tests."""

from __future__ import annotations

from bench.lib import procs
from bench.lib.procs import CLI, HAPROXY_CFG, METRICS_TOKEN, SERVER_KEY, Node, RedisServer
from tests.conftest import PASSWORD

__all__ = ["CLI", "HAPROXY_CFG", "METRICS_TOKEN", "SERVER_KEY", "Cluster", "Node",
           "RedisServer"]  # fmt: skip


class Cluster(procs.Cluster):
    """bench.lib.procs.Cluster with the tests' password (tests/conftest.py)."""

    def __init__(self, db_url: str, nodes: int = 3, max_rooms: int = 3, **kw: object) -> None:
        kw.setdefault("password", PASSWORD)
        super().__init__(db_url, nodes, max_rooms, **kw)  # type: ignore[arg-type]
