"""`callassist serve --workers N`: N worker processes on one machine, one per core.

The parent supervises only: it spawns N copies of the same `serve` command line (marked
as worker i of N through the environment), forwards SIGTERM/SIGINT to them and waits. The
workers share the listening port (SO_REUSEPORT, aiohttp's `reuse_port`); worker i is node
`<node_id>-w<i>` with its own slice of `media.udp_ports`. Nothing is restarted here: a
worker that dies on its own stops the others and the parent exits non-zero, so the
machine's supervisor (systemd, Kubernetes) restarts the node as a whole and sees it.
A worker never outlives its parent: killed with -9 the parent cannot forward anything, so
each worker asks the kernel for a SIGTERM when its parent dies (`die_with_supervisor`).

The planning (`worker_config`, `port_slice`, `child_argv`) is pure; `supervise` is the I/O.
docs/deploy.md, "Workers".
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

from server.core.config import Config, ConfigError, check_workers, parse_port_range
from server.rooms.router import default_node_id
from server.startup import firstrun
from server.startup.preflight import preflight

# Set by the parent for each worker: "i/N" and the base node id.
WORKER_ENV = "CALLASSIST_WORKER"
NODE_ENV = "CALLASSIST_WORKER_NODE"
# The supervisor's pid: a worker whose parent is no longer it stops (die_with_supervisor).
PARENT_ENV = "CALLASSIST_WORKER_PARENT"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_GRACE_S = 20.0


def check(cfg: Config, workers: int) -> None:
    """ConfigError when `workers` processes cannot run with this configuration (more
    than one needs the Redis router: with the local one each would hold its own rooms)."""
    check_workers(cfg, workers)


def port_slice(ports: tuple[int, int] | None, index: int, count: int) -> tuple[int, int] | None:
    """Worker `index`'s part of the range: N equal parts, the last takes the remainder."""
    if ports is None:
        return None
    lo, hi = ports
    size = (hi - lo + 1) // count
    if size < 1:
        raise ConfigError(f"media.udp_ports: {lo}-{hi} has fewer ports than {count} workers")
    first = lo + index * size
    last = hi if index == count - 1 else first + size - 1
    return first, last


def worker_internal_url(url: str, index: int) -> str:
    """Worker `index`'s own address for the other nodes: `url` with port + 1 + index.
    The shared port cannot name a worker (the kernel picks one per connection), so a
    request forwarded to the room's worker must come in on that worker's own port."""
    if not url:
        return url
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return urlunsplit(parts._replace(netloc=f"{host}:{port + 1 + index}"))


def internal_port(cfg: Config) -> int | None:
    """The port a worker listens on besides the shared one (its worker_internal_url)."""
    return urlsplit(cfg.cluster.internal_url).port if cfg.cluster.internal_url else None


def worker_config(cfg: Config, index: int, count: int, base_node_id: str) -> Config:
    """The configuration worker `index` of `count` serves with."""
    ports = port_slice(parse_port_range(cfg.media.udp_ports), index, count)
    internal = worker_internal_url(cfg.cluster.internal_url, index)
    return dataclasses.replace(
        cfg,
        cluster=dataclasses.replace(
            cfg.cluster, node_id=f"{base_node_id}-w{index}", workers=1, internal_url=internal
        ),  # fmt: skip
        media=dataclasses.replace(cfg.media, udp_ports=f"{ports[0]}-{ports[1]}" if ports else ""),
    )


def worker_from_env(env: dict[str, str]) -> tuple[int, int, str] | None:
    """(index, count, base node id) when this process is a worker, else None."""
    raw = env.get(WORKER_ENV)
    if not raw:
        return None
    index, _, count = raw.partition("/")
    return int(index), int(count), env.get(NODE_ENV, "")


def die_with_supervisor(env: dict[str, str]) -> None:
    """In a worker: SIGTERM to ourselves as soon as the supervisor that started us is gone
    (a graceful stop, as if it had forwarded one). Without this, a supervisor killed with
    -9 (OOM killer, `kill -9`, a test's teardown) left its workers serving on the port
    forever, holding their rooms, with nobody to stop them."""
    raw = env.get(PARENT_ENV, "")
    parent = int(raw) if raw.isdigit() else None
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if not armed:  # no prctl (not Linux): watch the parent from a thread instead
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                         name="callassist-parent-watch").start()  # fmt: skip
    # The parent may have died between our fork and the prctl: then no signal comes (we
    # were already re-parented), so check once now.
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent: int | None, every_s: float = 1.0) -> None:
    start = os.getppid() if parent is None else parent
    while os.getppid() == start:
        time.sleep(every_s)
    os.kill(os.getpid(), signal.SIGTERM)


def child_argv(argv: Sequence[str]) -> list[str]:
    """The parent's `callassist …` arguments without `--workers N` (a worker serves)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def start(args: argparse.Namespace, cfg: Config, count: int) -> int:
    """`serve --workers N` in the parent: the start checks and the schema upgrade once,
    before any worker starts (a bad configuration fails here, not N times), then supervise."""
    cfg, cert_host, _ = firstrun.links(cfg, args, "https" if args.tls_self_signed else "http")
    problems = asyncio.run(preflight(cfg, args.data_dir))
    if problems:
        for problem in problems:
            print(f"callassist: {problem}", file=sys.stderr)
        print("callassist: not starting (`callassist config check` runs these checks)",
              file=sys.stderr)  # fmt: skip
        return 2
    asyncio.run(firstrun.account_count(cfg, args.data_dir))  # upgrades the schema
    if args.tls_self_signed:  # made once here, read by every worker
        from server.http.tls import self_signed_context

        self_signed_context(args.data_dir, [cert_host])
    print(f"callassist: {count} workers on port {args.port}", flush=True)
    return supervise(args.argv, count, cfg.cluster.node_id or default_node_id())


def supervise(argv: Sequence[str], count: int, base_node_id: str) -> int:
    """Run `count` workers of `callassist <argv>` until they end; the exit status."""
    cmd = [sys.executable, "-m", "server", *child_argv(argv)]
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i in range(count):
            env = {**os.environ, WORKER_ENV: f"{i}/{count}", NODE_ENV: base_node_id,
                   PARENT_ENV: str(os.getpid())}  # fmt: skip
            # Own process group: a terminal's Ctrl-C reaches the parent only, which
            # forwards it once (twice would cut a worker's graceful shutdown short).
            procs.append(subprocess.Popen(cmd, env=env, process_group=0))  # noqa: S603
            print(f"callassist: worker {i} (pid {procs[-1].pid}) is node {base_node_id}-w{i}",
                  flush=True)  # fmt: skip
        return _wait(procs, lambda: stopping)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _wait(procs: list[subprocess.Popen[bytes]], stopping: object) -> int:
    failed = False
    deadline: float | None = None
    while any(p.poll() is None for p in procs):
        for i, p in enumerate(procs):
            rc = p.poll()
            if rc is None or getattr(p, "_reported", False):
                continue
            p._reported = True  # type: ignore[attr-defined]
            if not stopping() and not failed:  # type: ignore[operator]
                failed = True
                print(f"callassist: worker {i} (pid {p.pid}) exited with status {rc}; "
                      "stopping the others", file=sys.stderr, flush=True)  # fmt: skip
                for other in procs:
                    if other.poll() is None:
                        other.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + STOP_GRACE_S
        if stopping() and deadline is None:  # type: ignore[operator]
            deadline = time.monotonic() + STOP_GRACE_S
        if deadline is not None and time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    print(f"callassist: worker pid {p.pid} did not stop: killed",
                          file=sys.stderr, flush=True)  # fmt: skip
                    p.kill()
        time.sleep(0.1)
    codes = [p.returncode for p in procs]
    if not failed and any(c != 0 for c in codes):
        failed = True
        print(f"callassist: workers exited with {codes}", file=sys.stderr, flush=True)
    return 1 if failed else 0
