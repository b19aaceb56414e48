"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temp cluster,
loopback (bench/lib/procs.py has it: the benches start it too)."""

from __future__ import annotations

from bench.lib.procs import PostgresServer, wait_port

__all__ = ["PostgresServer", "wait_port"]
