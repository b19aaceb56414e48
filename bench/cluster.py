"""Cluster: N nodes behind haproxy on this machine, the capacity bench's rooms through it.

Starts PostgreSQL, redis-server, haproxy and `--nodes` `callassist serve` nodes
(docs/cluster.md; the starters are bench/lib/procs.py, the tests' too), then runs
`--rooms` rooms of bench/capacity.py's load (a real aiortc caller and agent per room, in
two client processes, the same clips and frame counting) through haproxy: each client
logs in, creates the session, opens the link and signals over the product's WebSockets,
landing on whatever node haproxy picks (bridged to the room's node over Redis). Reported:

- `cores_per_room`: the nodes' CPU (all processes) per room over the window, to compare
  with bench/capacity.py's `cores_per_room` of one process;
- `signal_bridge_p95_ms`: added p95 round trip of a bridged signalling message over a
  direct one, in the same run, under that load (goal <= 5 ms);
- `placement`: rooms per node (from the room -> node map in Redis);
- `rooms_per_machine_1_worker` / `_2_workers`: one node with `serve --workers 1` and then
  `--workers 2`, rooms added `--step` at a time while >= 29 fps and < 1% loss hold (the
  clients share the machine's cores: a ramp stopped by "client processes" is the clients'
  limit, not the server's), within `--ramp-s` seconds each.

    python bench/cluster.py [--json] [--nodes 3] [--rooms 6] [--step 4] [--max-rooms 40]
                            [--ramp-s 40] [--window 5] [--failover]

`--failover` adds bench/cluster_failover.py's `measure(args)` to the result (exit 2 if
that module is not there). The default run takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.lib import cli  # noqa: E402

# The nodes' limits must not be what a bench meets: one agent holds every room, one
# address opens every link.
BENCH_CONFIG = (
    "[session]\nmax_live_rooms_per_agent = 10000\nlink_opens_per_minute = 1000000\n"
    "[auth]\nlogin_attempts_per_minute = 1000000\n"
    "[sms]\nmax_per_agent_per_hour = 1000000\n"
)


async def run_cluster(args: argparse.Namespace, db_url: str) -> dict[str, Any]:
    from bench.cluster_parts.bridge import bridge_latency
    from bench.cluster_parts.run import ClusterRun, brief
    from bench.lib.procs import Cluster

    cluster = Cluster(db_url, nodes=args.nodes, max_rooms=max(args.rooms, 10), extra=BENCH_CONFIG)
    try:
        cluster.start()
        await cluster.ready()
        async with ClusterRun(cluster) as run:
            await run.grow(args.rooms)
            m = await run.measure(warmup=args.warmup, window=args.window)
            placement = await run.placement()
            bridge = await bridge_latency(cluster, args.pings)  # same run, same load
        return {"measure": m, "brief": brief(m), "placement": placement, "bridge": bridge}
    except BaseException:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.cleanup()


async def run_machine(args: argparse.Namespace, db_url: str, workers: int) -> dict[str, Any]:
    from bench.cluster_parts.run import ClusterRun, ramp
    from bench.lib.procs import Cluster

    cluster = Cluster(db_url, nodes=1, max_rooms=args.max_rooms + 1, workers=workers,
                      extra=BENCH_CONFIG)  # fmt: skip
    try:
        cluster.start()
        await cluster.ready()
        async with ClusterRun(cluster) as run:
            out = await ramp(run, args.step, args.max_rooms, args.ramp_s, args.warmup,
                             args.window)  # fmt: skip
            out["placement"] = await run.placement()
            return out
    except BaseException:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.cleanup()


async def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    from bench.lib.procs import PostgresServer
    from bench.lib.usage import loadavg

    started = time.monotonic()
    load_before = loadavg()
    pg = PostgresServer()
    pg.start()
    try:

        def db() -> str:
            return pg.create_database("bench" + uuid.uuid4().hex[:12])

        cl = await run_cluster(args, db())
        machine = {w: await run_machine(args, db(), w) for w in (1, 2)}
    finally:
        pg.stop()
    m = cl["measure"]
    return {
        "nodes": args.nodes,
        "rooms": args.rooms,
        "cores_per_room": m["cores_per_room"],
        "signal_bridge_p95_ms": cl["bridge"]["added_p95_ms"],
        "placement": cl["placement"],
        "rooms_per_machine_1_worker": machine[1]["rooms"],
        "rooms_per_machine_2_workers": machine[2]["rooms"],
        "fps": m["fps_mean"],
        "loss": m["loss"],
        "anchored_rooms": m["anchored_rooms"],  # rooms the frame matching (loss) covers
        # per room: frames, anchored, expected, matched, off_grid, candidates (measure.py)
        "per_room": m["per_room"],
        "bridge": cl["bridge"],
        "machine": {f"workers_{w}": v for w, v in machine.items()},
        "load": {"before": load_before, "after": loadavg()},
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def summary(r: dict[str, Any]) -> str:
    b = r["bridge"]
    lines = [
        f"{r['nodes']} nodes behind haproxy, {r['rooms']} rooms: {r['cores_per_room']} "
        f"server cores per room, {r['fps']} fps, loss {r['loss'] * 100:.2f} %",
        f"placement: {r['placement']}",
        f"signal bridge: +{r['signal_bridge_p95_ms']} ms p95 (bridged {b['bridged_p95_ms']}, "
        f"direct {b['direct_p95_ms']}, {b['pings']} pings each)",
    ]
    for key, m in r["machine"].items():
        steps = ", ".join(f"{s['rooms']}: {s['fps_mean']} fps {s['loss'] * 100:.1f} % "
                          f"{s['server_cores']} cores" for s in m["steps"])  # fmt: skip
        lines.append(f"one machine, {key.replace('_', ' ')}: {m['rooms']} rooms held "
                     f"(stopped by {m['stopped_by']}; {steps})")  # fmt: skip
    if "failover" in r:
        lines.append(f"failover: {r['failover']}")
    lines.append(f"load average before/after: {r['load']['before']} / {r['load']['after']}, "
                 f"{r['elapsed_s']} s")  # fmt: skip
    return "\n".join(lines)


def load_failover(name: str = "bench.cluster_failover") -> Any:
    """The failover measurement's module (node loss, drain, rolling restart: written
    apart, optional); exits 2 with a clear line when it is not there."""
    if importlib.util.find_spec(name) is None:
        print(f"failover measurement not available (no module {name})", file=sys.stderr)
        sys.exit(2)
    return importlib.import_module(name)


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rooms", type=int, default=6, help="rooms through the cluster")
    parser.add_argument("--step", type=int, default=4, help="rooms added per ramp step")
    parser.add_argument("--max-rooms", type=int, default=40, help="ramp limit per machine run")
    parser.add_argument("--ramp-s", type=float, default=40, help="time budget of each ramp")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--window", type=float, default=5)
    parser.add_argument("--pings", type=int, default=100, help="bridge latency samples")
    parser.add_argument("--failover", action="store_true",
                        help="add bench/cluster_failover.py's measurement")  # fmt: skip
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cli.quiet_logs()
    if args.role in ("callers", "agents"):
        from bench.cluster_parts.clients import run_cluster_clients

        asyncio.run(run_cluster_clients(args.role, args.base))
        return
    failover = load_failover() if args.failover else None
    result = asyncio.run(orchestrate(args))
    if failover is not None:
        measured = failover.measure(args)
        if asyncio.iscoroutine(measured):  # an async measure() is fine too
            measured = asyncio.run(measured)
        result["failover"] = measured
    cli.emit(result, args.json, summary)


if __name__ == "__main__":
    main()
