"""`callassist webhooks dead|replay`: the dead letters of the webhook outbox.

A dead letter is an event given up after `webhooks.give_up_after_s` (docs/ops.md,
"Webhooks"). `dead` lists them; `replay` makes them pending again, so the node holding the
delivery lease sends them (with their original event id) within `webhooks.poll_s`. Both
read the same configuration and data directory as `serve` and are audit events
(`webhooks.dead`, `webhooks.replay`; actor: the operating-system user, role `cli`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from server.core.audit import Audit
from server.core.config import Config
from server.core.db import SQLITE_BUSY_TIMEOUT_S, locked, unavailable
from server.startup.firstrun import database


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


async def _dead(cfg: Config, args: argparse.Namespace) -> int:
    db = database(cfg, args.data_dir)
    try:
        await db.create_schema()
        rows = await db.outbox_dead()
        await Audit(db, time.time).record(
            actor=getpass.getuser()[:64], role="cli", action="webhooks.dead",
            reason=f"{len(rows)} listed",
        )  # fmt: skip
    finally:
        await db.close()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no dead letters")
        return 0
    for r in rows:
        print(f"{r['id']}  {r['type']:<18} {r['session_id']}  {_when(r['created_at'])}  "
              f"{r['attempts']} attempts  {r['url']}  {r['last_error'] or ''}")  # fmt: skip
    print(f"{len(rows)} dead letters; `callassist webhooks replay --all` sends them again")
    return 0


async def _replay(cfg: Config, args: argparse.Namespace) -> int:
    if not args.all and not args.ids:
        print("callassist: name the event ids to replay, or --all", file=sys.stderr)
        return 2
    db = database(cfg, args.data_dir)
    try:
        await db.create_schema()
        ids = await db.outbox_replay(None if args.all else args.ids)
        audit = Audit(db, time.time)
        for event_id in ids:
            await audit.record(actor=getpass.getuser()[:64], role="cli",
                               action="webhooks.replay", object=event_id)  # fmt: skip
    finally:
        await db.close()
    missing = sorted(set(args.ids) - set(ids))
    print(f"{len(ids)} events pending again")
    if missing:
        print(f"callassist: not dead letters (unknown or already pending/delivered): "
              f"{' '.join(missing)}", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _run(fn: Callable[[Config, argparse.Namespace], Any], load: Callable[..., Config],
         args: argparse.Namespace) -> int:  # fmt: skip
    try:
        return int(asyncio.run(fn(load(args), args)))
    except Exception as exc:
        if locked(exc):
            # Not unreachable: busy. SQLite has one writer at a time, and another process
            # (most likely the running server) kept the write lock past the busy timeout.
            print(f"callassist: the database is locked: another process (a running "
                  f"`callassist serve`?) held its write lock for over "
                  f"{SQLITE_BUSY_TIMEOUT_S:g} s and this command stopped waiting. Try "
                  f"again in a moment; `callassist webhooks dead` lists what is still dead.",
                  file=sys.stderr)  # fmt: skip
            return 1
        if not unavailable(exc):
            raise
        print(f"callassist: the database cannot be reached ({exc}); try again in a moment",
              file=sys.stderr)  # fmt: skip
        return 1


def add_parsers(
    sub: Any, common: Callable[[argparse.ArgumentParser], None],
    load: Callable[[argparse.Namespace], Config],
) -> None:  # fmt: skip
    """Register the subcommands on `callassist`'s subparsers."""
    w = sub.add_parser("webhooks", help="the webhook outbox: dead letters")
    wsub = w.add_subparsers(dest="action", required=True)
    d = wsub.add_parser("dead", help="list the events given up on")
    common(d)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=lambda args: _run(_dead, load, args))
    r = wsub.add_parser("replay", help="send dead letters again (audited)")
    common(r)
    r.add_argument("ids", nargs="*", metavar="EVENT_ID", help="evt_… ids from `dead`")
    r.add_argument("--all", action="store_true", help="every dead letter")
    r.set_defaults(func=lambda args: _run(_replay, load, args))
