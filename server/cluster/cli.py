"""`callassist node drain NODE_ID [--stop | --undo]`: placement skips a draining node and
the node hands its live rooms over to other nodes (docs/cluster.md, "Failover and drain");
with `--stop` it then exits, as after a SIGTERM. The flag is `drain:<id>` in Redis (value
`1`, or `stop`), read by that node's next heartbeat."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from server.cluster.redis import CLUSTER_ERRORS, STOP, connect, drain_key
from server.core.config import Config


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None],
                load: Callable[[argparse.Namespace], Config]) -> None:  # fmt: skip
    n = sub.add_parser("node", help="cluster nodes (cluster.router = 'redis')")
    nsub = n.add_subparsers(dest="action", required=True)
    d = nsub.add_parser("drain", help="give a node no new rooms; its rooms move elsewhere")
    d.add_argument("node_id", help="the node's cluster.node_id")
    how = d.add_mutually_exclusive_group()
    how.add_argument("--undo", action="store_true", help="let the node take new rooms again")
    how.add_argument("--stop", action="store_true",
                     help="then exit the node (as SIGTERM), within cluster.drain_timeout_s")
    common(d)

    def run(args: argparse.Namespace) -> int:
        cfg = load(args)
        if cfg.cluster.router != "redis":
            print("callassist: node drain needs cluster.router = 'redis'", file=sys.stderr)
            return 2
        try:
            value = None if args.undo else STOP if args.stop else "1"
            asyncio.run(_drain(cfg, args.node_id, value))
        except CLUSTER_ERRORS as exc:
            print(f"callassist: Redis unreachable ({exc})", file=sys.stderr)
            return 1
        state = ("taking new rooms again" if args.undo else
                 "draining: its rooms move, then it exits" if args.stop else
                 "draining: no new rooms, its rooms move")  # fmt: skip
        print(f"node {args.node_id}: {state} (from its next heartbeat)")
        return 0

    d.set_defaults(func=run)


async def _drain(cfg: Config, node_id: str, value: str | None) -> None:
    redis = connect(cfg.cluster)
    try:
        if value is not None:
            await redis.set(drain_key(node_id), value)
        else:
            await redis.delete(drain_key(node_id))
    finally:
        await redis.aclose()
