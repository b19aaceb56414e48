"""`callassist node drain NODE_ID [--undo]`: placement skips a draining node (its live rooms
go on; stopping it once empty is issue #12). The flag is `drain:<id>` in Redis, read by
that node's next heartbeat."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from server.cluster.redis import CLUSTER_ERRORS, connect, drain_key
from server.core.config import Config


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None],
                load: Callable[[argparse.Namespace], Config]) -> None:  # fmt: skip
    n = sub.add_parser("node", help="cluster nodes (cluster.router = 'redis')")
    nsub = n.add_subparsers(dest="action", required=True)
    d = nsub.add_parser("drain", help="give a node no new rooms (its live rooms go on)")
    d.add_argument("node_id", help="the node's cluster.node_id")
    d.add_argument("--undo", action="store_true", help="let the node take new rooms again")
    common(d)

    def run(args: argparse.Namespace) -> int:
        cfg = load(args)
        if cfg.cluster.router != "redis":
            print("callassist: node drain needs cluster.router = 'redis'", file=sys.stderr)
            return 2
        try:
            asyncio.run(_drain(cfg, args.node_id, not args.undo))
        except CLUSTER_ERRORS as exc:
            print(f"callassist: Redis unreachable ({exc})", file=sys.stderr)
            return 1
        state = "draining: no new rooms" if not args.undo else "taking new rooms again"
        print(f"node {args.node_id}: {state} (from its next heartbeat)")
        return 0

    d.set_defaults(func=run)


async def _drain(cfg: Config, node_id: str, on: bool) -> None:
    redis = connect(cfg.cluster)
    try:
        if on:
            await redis.set(drain_key(node_id), "1")
        else:
            await redis.delete(drain_key(node_id))
    finally:
        await redis.aclose()
