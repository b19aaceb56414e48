"""`callassist recording list|verify|decrypt|migrate` and `callassist keys rotate`.

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
from recorder.header import HEADER_V1, header_version, migrate_v1_header
from recorder.keys import ENV_VAR, KeyRecord, MasterKeyring, rewrap_key_record
from recorder.recovery import ObjectSource, Report, export, verify
from recorder.storage import S3Storage, write_atomic
from recorder.vault import Expected, Keys
from server.core.config import Config
from server.core.db import Database
from server.recording.keystore import database_keys, expected

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
        from server.recording.building import build_storage, spool_dir

        self.cfg, self.data_dir = cfg, data_dir
        self._keyring: Any = None
        self.create_keys = False  # `keys rotate` on a fresh install makes the first key
        self.storage = build_storage(cfg, data_dir)
        self.spool_dir = spool_dir(cfg, data_dir)
        self.source = ObjectSource(self.storage, self.spool_dir)

    @property
    def keyring(self) -> Any:
        """Built on first use: `recording list` works without keys (a fresh install)."""
        from server.recording.building import build_keyring

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


async def _checked(ctx: _Ctx, db: Database, rid: str) -> tuple[Keys, Expected]:
    """The keys and the database row every read is checked against (KeyErased if the
    database does not list the recording: erased, or not recorded here)."""
    keys = database_keys(db, ctx.keyring)  # the keyring first: missing keys are exit 2
    await db.create_schema()
    return keys, await expected(db, rid)


async def _verify(ctx: _Ctx, args: argparse.Namespace) -> int:
    db = ctx.db()
    try:
        try:
            keys, expect = await _checked(ctx, db, args.id)
        except RecordingError as exc:
            report = Report(args.id)
            report.errors.append(f"{type(exc).__name__}: {exc}")
        else:
            report = await verify(ctx.source, keys, args.id, expect=expect)
    finally:
        await db.close()
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
    db = ctx.db()
    try:
        keys, expect = await _checked(ctx, db, args.id)
        exported = await export(ctx.source, keys, args.id, out, expect=expect,
                                allow_incomplete=args.allow_incomplete)  # fmt: skip
        result = "ok"
    except RecordingError as exc:
        print(f"callassist: recording {args.id} not decrypted: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    finally:
        await db.close()
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


# --- keys rotate, recording migrate


async def _check_bucket(ctx: _Ctx) -> None:
    """Before anything is created or changed: an S3 bucket outside the allow-list refuses
    (RegionNotAllowed, a StorageError: exit 1 naming the region)."""
    if isinstance(ctx.storage, S3Storage):
        await ctx.storage.check()


async def _replace_header(ctx: _Ctx, rid: str, new: bytes) -> None:
    key = header_object(rid)
    spooled = ctx.spool_dir / key
    if await asyncio.to_thread(spooled.is_file):  # not uploaded yet: replace it in the spool
        await asyncio.to_thread(write_atomic, spooled, iter([new]))
        return
    await ctx.storage.put(key, new)
    if isinstance(ctx.storage, S3Storage):
        # A versioned bucket keeps the format 1 header as a noncurrent version, wrapped
        # under a master key that still exists: delete it, or it would decrypt.
        await ctx.storage.purge_noncurrent(key)


async def _migrate(ctx: _Ctx, db: Database, ring: Any) -> tuple[int, int]:
    """Format 1 headers (data key wrapped by the master key) to format 2 (recording key in
    the database). Idempotent: a key record left by an interrupted run is reused."""
    done = failed = 0
    for rid in await ctx.source.recording_ids():
        try:
            header = await ctx.source.get(header_object(rid))
            if header_version(header) != HEADER_V1:
                continue
        except (RecordingError, StorageError):
            continue  # shredded or not ours: nothing to migrate
        row = await db.get_recording(rid)
        if row is None:
            print(f"  {rid}: NOT migrated: not in the database", file=sys.stderr)
            failed += 1
            continue
        keys = database_keys(db, ring)
        try:
            new, record = await asyncio.to_thread(
                migrate_v1_header, header, ring, rid, await keys.record(rid)
            )
        except RecordingError as exc:
            print(f"  {rid}: NOT migrated: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if await db.get_recording_key(rid) is None:  # first the key, then the header
            await db.add_recording_key(rid, row["session_id"], record.alg, record.key_id,
                                       record.wrapped, time.time())  # fmt: skip
        await _replace_header(ctx, rid, new)
        if row["bytes"]:
            await db.update_recording(rid, bytes=row["bytes"] + len(new) - len(header))
        done += 1
    return done, failed


async def _rewrap(db: Database, ring: Any, current: str) -> tuple[int, int, int]:
    done = skipped = failed = 0
    for row in await db.list_recording_keys():
        record = KeyRecord(row["recording_id"], row["alg"], row["key_id"], bytes(row["wrapped"]))
        if record.key_id == current:
            skipped += 1
            continue
        try:
            new = await asyncio.to_thread(rewrap_key_record, record, ring)
        except RecordingError as exc:
            print(f"  {record.recording_id}: NOT rewrapped: {type(exc).__name__}: {exc}",
                  file=sys.stderr)  # fmt: skip
            failed += 1
            continue
        if await db.rewrap_recording_key(record.recording_id, record.wrapped, new.alg,
                                         new.key_id, new.wrapped):  # fmt: skip
            done += 1
    return done, skipped, failed


async def _rotate(ctx: _Ctx, args: argparse.Namespace) -> int:
    await _check_bucket(ctx)
    ctx.create_keys = not args.rewrap_only
    ring = ctx.keyring
    if not args.rewrap_only and (not isinstance(ring, MasterKeyring) or ring.directory is None):
        where = ENV_VAR if isinstance(ring, MasterKeyring) else "AWS KMS"
        return _fail(f"the master keys come from {where}: add the new key there, restart "
                     "the service, then run 'callassist keys rotate --rewrap-only'",
                     EXIT_USAGE)  # fmt: skip
    db = ctx.db()
    try:
        await db.create_schema()
        if not args.rewrap_only:
            new_id = ring.rotate()
            print(f"new master key {new_id} in {ring.directory}")
        current = ring.current_key_id if isinstance(ring, MasterKeyring) else ring.key_id
        done, skipped, failed = await _rewrap(db, ring, current)
        migrated, not_migrated = await _migrate(ctx, db, ring)
    finally:
        await db.close()
    failed += not_migrated
    # Only database rows change: no stored object is rewritten, so a versioned bucket keeps
    # no older copy wrapped under the old key.
    print(f"rewrapped {done} recording key(s) under {current}; {skipped} already current"
          + (f"; migrated {migrated} format 1 header(s)" if migrated else "")
          + (f"; {failed} FAILED" if failed else ""))  # fmt: skip
    if isinstance(ring, MasterKeyring) and len(ring.key_ids) > 1 and not failed:
        print(f"older keys ({', '.join(k for k in ring.key_ids if k != current)}) now wrap no "
              "recording key; delete them once no database backup needs them. Restart the "
              "service so new recordings use the new key.")  # fmt: skip
    return EXIT_FAILED if failed else EXIT_OK


async def _migrate_cmd(ctx: _Ctx, args: argparse.Namespace) -> int:
    await _check_bucket(ctx)
    # The keys only when there is something to migrate (a fresh install has none).
    ring = ctx.keyring if await ctx.source.recording_ids() else None
    db = ctx.db()
    try:
        await db.create_schema()
        migrated, failed = await _migrate(ctx, db, ring) if ring is not None else (0, 0)
    finally:
        await db.close()
    print(f"migrated {migrated} format 1 header(s) to format 2"
          + (f"; {failed} FAILED" if failed else ""))  # fmt: skip
    if migrated:
        print("copies of the old headers in backups are still wrapped under the current "
              "master key: run 'callassist keys rotate' and delete the old key file once "
              "those backups have expired.")  # fmt: skip
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
    mig = rsub.add_parser("migrate", help="move format 1 recordings to format 2 (recording "
                          "keys in the database)")  # fmt: skip
    common(mig)
    mig.set_defaults(func=command(_migrate_cmd))

    k = sub.add_parser("keys", help="recording master keys")
    ksub = k.add_subparsers(dest="action", required=True)
    rot = ksub.add_parser("rotate", help="new master key; re-wrap every data key under it")
    common(rot)
    rot.add_argument(
        "--rewrap-only", action="store_true",
        help="no new key: re-wrap data keys under the newest key there is",
    )  # fmt: skip
    rot.set_defaults(func=command(_rotate))
