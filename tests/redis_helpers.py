"""A real redis-server (Debian's /usr/bin/redis-server) on a free loopback port, in a
temp directory, nothing persisted; tests start and stop it themselves
(bench/lib/procs.py has it: the benches start it too)."""

from __future__ import annotations

from bench.lib.procs import REDIS_SERVER, RedisServer

__all__ = ["REDIS_SERVER", "RedisServer"]
