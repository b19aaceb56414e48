"""`callassist recording list|verify|decrypt` and `callassist keys rotate`.

They read the same configuration and data directory as `serve` (`--config`, `--data-dir`):
the keyring, the storage (local directory or S3, region-checked) and the spool, so
objects not uploaded yet are found too. Exporting plaintext is an audit event.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recorder import KeyringError, RecordingError, StorageError
from recorder.crypto import header_object
from recorder.keys import ENV_VAR, MasterKeyring, header_key_id, rewrap_header
from recorder.recovery import ObjectSource, export, verify
from recorder.storage import write_atomic
from server.core.config import Config
from server.core.db import Database

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"callassist: {message}", file=sys.stderr)
    return code


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


class _Ctx:
    def __init__(self, cfg: Config, data_dir: Path) -> None:
        from server.recording.service import build_storage, spool_dir

        self.cfg, self.data_dir = cfg, data_dir
        self._keyring: Any = None
        self.create_keys = False  # `keys rotate` on a fresh install makes the first key
        self.storage = build_storage(cfg, data_dir)
        self.spool_dir = spool_dir(cfg, data_dir)
        self.source = ObjectSource(self.storage, self.spool_dir)

    @property
    def keyring(self) -> Any:
        """Built on first use: `recording list` works without keys (a fresh install)."""
        from server.recording.service import build_keyring

        if self._keyring is None:
            create = self.create_keys and self.cfg.environment != "production"
            self._keyring = build_keyring(self.cfg, self.data_dir, create=create)
        return self._keyring

    def db(self) -> Database:
        default = f"sqlite+aiosqlite:///{self.data_dir / 'callassist.db'}"
        return Database(self.cfg.storage.database_url or default)


def _run(args: argparse.Namespace, load: Callable[[argparse.Namespace], Config],
         body: Callable[[_Ctx], Any]) -> int:  # fmt: skip
    from server.core.secrets import MissingSecret

    try:
        ctx = _Ctx(load(args), args.data_dir)
        return int(asyncio.run(body(ctx)))
    except (KeyringError, MissingSecret) as exc:
        return _fail(f"recording keys: {exc}", EXIT_USAGE)
    except StorageError as exc:
        return _fail(f"storage: {exc}")


# --- recording list / verify / decrypt


async def _list(ctx: _Ctx, args: argparse.Namespace) -> int:
    db = ctx.db()
    try:
        await db.create_schema()
        rows = await db.list_recordings(args.session)
    finally:
        await db.close()
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return EXIT_OK
    if not rows:
        print("no recordings")
        return EXIT_OK
    print("id                                session           kind      status      "
          "started              ended                segs  frames   bytes")  # fmt: skip
    for r in rows:
        print(f"{r['id']:<33} {r['session_id']:<17} {r['kind']:<9} {r['status']:<11} "
              f"{_when(r['started_at']):<20} {_when(r['ended_at']):<20} {r['segments']:>4} "
              f"{r['frames']:>7} {r['bytes']:>8}")  # fmt: skip
    return EXIT_OK


async def _verify(ctx: _Ctx, args: argparse.Namespace) -> int:
    report = await verify(ctx.source, ctx.keyring, args.id)
    if args.json:
        print(json.dumps(report.as_dict(), indent=1, default=str))
    else:
        print("\n".join(report.lines()))
    if not report.ok:
        return EXIT_FAILED
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


async def _decrypt(ctx: _Ctx, args: argparse.Namespace) -> int:
    out: Path = args.output
    if await asyncio.to_thread(out.exists) and not args.force:
        return _fail(f"{out} exists (use --force to replace it)", EXIT_USAGE)
    if not await asyncio.to_thread(out.parent.is_dir):
        return _fail(f"{out.parent} is not a directory", EXIT_USAGE)
    result = "failed"
    try:
        exported = await export(ctx.source, ctx.keyring, args.id, out,
                                allow_incomplete=args.allow_incomplete)  # fmt: skip
        result = "ok"
    except RecordingError as exc:
        print(f"callassist: recording {args.id} not decrypted: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    finally:
        await _audit(ctx, "recording.export", args.id, result)
    if exported.kind == "video":
        print(f"wrote {out} ({exported.segments} segments, {exported.frames} frames, "
              f"{exported.bytes} bytes)")  # fmt: skip
    else:
        print(f"wrote {out} ({exported.kind} photo, {exported.bytes} bytes)")
    return EXIT_OK


async def _audit(ctx: _Ctx, action: str, obj: str, result: str) -> None:
    from server.core.audit import Audit

    db = ctx.db()
    try:
        await db.create_schema()
        await Audit(db, time.time).record(actor=getpass.getuser()[:64], role="cli",
                                          action=action, object=obj, result=result)  # fmt: skip
    finally:
        await db.close()


# --- keys rotate


async def _rotate(ctx: _Ctx, args: argparse.Namespace) -> int:
    ctx.create_keys = not args.rewrap_only
    ring = ctx.keyring
    if not args.rewrap_only:
        if not isinstance(ring, MasterKeyring) or ring.directory is None:
            where = ENV_VAR if isinstance(ring, MasterKeyring) else "AWS KMS"
            return _fail(f"the master keys come from {where}: add the new key there, restart "
                         "the service, then run 'callassist keys rotate --rewrap-only'",
                         EXIT_USAGE)  # fmt: skip
        new_id = ring.rotate()
        print(f"new master key {new_id} in {ring.directory}")
    current = ring.current_key_id if isinstance(ring, MasterKeyring) else ring.key_id  # type: ignore[attr-defined]
    done = skipped = failed = 0
    for rid in await ctx.source.recording_ids():
        key = header_object(rid)
        try:
            header = await ctx.source.get(key)
        except RecordingError:
            continue
        except StorageError:
            continue  # shredded: nothing to rewrap
        if header_key_id(header) == current:
            skipped += 1
            continue
        try:
            new = await asyncio.to_thread(rewrap_header, header, ring)
        except RecordingError as exc:
            print(f"  {rid}: NOT rewrapped: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        spooled = ctx.spool_dir / key
        if await asyncio.to_thread(spooled.is_file):  # not uploaded yet: replace it in the spool
            await asyncio.to_thread(write_atomic, spooled, iter([new]))
        else:
            await ctx.storage.put(key, new)
        done += 1
    print(f"rewrapped {done} header(s) under {current}; {skipped} already current"
          + (f"; {failed} FAILED" if failed else ""))  # fmt: skip
    if isinstance(ring, MasterKeyring) and len(ring.key_ids) > 1 and not failed:
        print(f"older keys ({', '.join(k for k in ring.key_ids if k != current)}) now wrap no "
              "header; delete them once no backup needs them. Restart the service so new "
              "recordings use the new key.")  # fmt: skip
    return EXIT_FAILED if failed else EXIT_OK


def add_parsers(
    sub: Any, common: Callable[[argparse.ArgumentParser], None],
    load: Callable[[argparse.Namespace], Config],
) -> None:  # fmt: skip
    """Register the subcommands on `callassist`'s subparsers."""

    def command(fn: Callable[[_Ctx, argparse.Namespace], Any]) -> Callable[..., int]:
        return lambda args: _run(args, load, lambda ctx: fn(ctx, args))

    r = sub.add_parser("recording", help="encrypted recordings and photos")
    rsub = r.add_subparsers(dest="action", required=True)
    ls = rsub.add_parser("list", help="recordings and photos in the database")
    common(ls)
    ls.add_argument("--session", help="only this session's")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=command(_list))
    v = rsub.add_parser("verify", help="check a recording end to end (exit 0 ok, 1 damaged, "
                        "3 incomplete)")  # fmt: skip
    common(v)
    v.add_argument("id")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=command(_verify))
    d = rsub.add_parser("decrypt", help="decrypt a recording into one playable file")
    common(d)
    d.add_argument("id")
    d.add_argument(
        "-o", "--output", type=Path, required=True,
        help="the file to write (.webm for VP8, .mkv for H264, .jpg for a photo)",
    )  # fmt: skip
    d.add_argument("--allow-incomplete", action="store_true",
                   help="also export a recording recovered after a crash")  # fmt: skip
    d.add_argument("--force", action="store_true", help="replace the output file")
    d.set_defaults(func=command(_decrypt))

    k = sub.add_parser("keys", help="recording master keys")
    ksub = k.add_subparsers(dest="action", required=True)
    rot = ksub.add_parser("rotate", help="new master key; re-wrap every data key under it")
    common(rot)
    rot.add_argument(
        "--rewrap-only", action="store_true",
        help="no new key: re-wrap data keys under the newest key there is",
    )  # fmt: skip
    rot.set_defaults(func=command(_rotate))

