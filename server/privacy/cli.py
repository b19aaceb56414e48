"""`callassist subject find|export|erase|rectify|object` and `callassist retention run`.

They read the same configuration and data directory as `serve` (`--config`, `--data-dir`):
the database, the server key (the audit log and the do-not-record list name a subject by an
HMAC of the number under it), the recording storage (local or S3) and the spool. Every
command is an audit event (actor: the operating-system user, role `cli`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recorder import KeyringError, StorageError
from server.core.audit import Audit
from server.core.config import Config
from server.core.db import Database
from server.core.phone import region_for
from server.core.secrets import MissingSecret, load_secrets
from server.privacy.subjects import (
    Media,
    SubjectError,
    agent_names,
    audit_subject,
    erase_subject,
    export_subject,
    parse_phone,
    phone_key,
    rectify,
    set_do_not_record,
    subject_sessions,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# `retention run`: the sweep ran, but the storage failed and some media (with their session
# records) are still there; running it again when the storage is back finishes the job.
EXIT_INCOMPLETE = 3


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"callassist: {message}", file=sys.stderr)
    return code


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


class _Ctx:
    def __init__(self, cfg: Config, data_dir: Path) -> None:
        from server.recording.building import build_storage, spool_dir

        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cfg, self.data_dir = cfg, data_dir
        self.server_key = load_secrets(cfg.environment, data_dir, need_sms=False,
                                       need_turn=False).server_key  # fmt: skip
        url = cfg.storage.database_url or f"sqlite+aiosqlite:///{data_dir / 'callassist.db'}"
        self.db = Database(url)
        self.audit = Audit(self.db, time.time, region_for(cfg.session.default_country_code))
        self.actor = (getpass.getuser()[:64], "cli")
        self._media: Media | None = None
        self._build_storage = lambda: build_storage(cfg, data_dir)
        self._spool_dir = spool_dir(cfg, data_dir)

    def media(self, keys: bool = False) -> Media:
        if self._media is None:
            self._media = Media(self._build_storage(), self._spool_dir)
        if keys and self._media.keyring is None:
            from server.recording.building import build_keyring

            self._media.keyring = build_keyring(self.cfg, self.data_dir, create=False)
        return self._media

    def phone(self, raw: str) -> str:
        return parse_phone(raw, self.cfg.session.default_country_code)


def _run(args: argparse.Namespace, load: Callable[[argparse.Namespace], Config],
         body: Callable[[_Ctx, argparse.Namespace], Any]) -> int:  # fmt: skip
    try:
        ctx = _Ctx(load(args), args.data_dir)
    except MissingSecret as exc:
        return _fail(str(exc), EXIT_USAGE)

    async def main() -> int:
        try:
            await ctx.db.create_schema()
            return int(await body(ctx, args))
        finally:
            await ctx.db.close()

    try:
        return asyncio.run(main())
    except SubjectError as exc:
        return _fail(exc.message, EXIT_USAGE if exc.status == 400 else EXIT_FAILED)
    except (KeyringError, MissingSecret) as exc:
        return _fail(f"recording keys: {exc}", EXIT_USAGE)
    except StorageError as exc:
        return _fail(f"storage: {exc}")


# --- subject ----------------------------------------------------------------------------


async def _find(ctx: _Ctx, args: argparse.Namespace) -> int:
    phone = ctx.phone(args.phone)
    rows = await subject_sessions(ctx.db, phone)
    names = await agent_names(ctx.db, rows)
    flag = await ctx.db.has_objection(phone_key(ctx.server_key, phone))
    await audit_subject(ctx.audit, ctx.actor, "subject.search", ctx.server_key, phone,
                        reason=args.reason)  # fmt: skip
    print(f"{phone}: {len(rows)} session(s); do-not-record: {'yes' if flag else 'no'}")
    for r in rows:
        kinds = [x["kind"] for x in r["recordings"]]
        print(f"  {r['id']}  {_when(r['created_at'])}  {r['state']:<7} agent "
              f"{names[r['agent_id']] or '?'}  ref {r['reference'] or '-'}  "
              f"{kinds.count('video')} recording(s), {kinds.count('snapshot')} snapshot(s), "
              f"{kinds.count('upload')} upload(s)")  # fmt: skip
    return EXIT_OK


async def _export(ctx: _Ctx, args: argparse.Namespace) -> int:
    phone = ctx.phone(args.phone)
    out: Path = args.output
    if await asyncio.to_thread(out.exists) and not args.force:
        return _fail(f"{out} exists (use --force to replace it)", EXIT_USAGE)
    if not await asyncio.to_thread(out.parent.is_dir):
        return _fail(f"{out.parent} is not a directory", EXIT_USAGE)
    rows = await ctx.db.sessions_by_phone(phone)
    media = ctx.media(keys=bool(rows))
    try:
        result = await export_subject(
            ctx.db, media, phone, out, server_key=ctx.server_key, now=time.time(),
            requested_by=f"{ctx.actor[0]} (cli)",
        )  # fmt: skip
    except Exception:
        await audit_subject(ctx.audit, ctx.actor, "subject.export", ctx.server_key, phone,
                            "failed")  # fmt: skip
        raise
    for rid in result.recording_ids:
        await ctx.audit.record(actor=ctx.actor[0], role=ctx.actor[1], action="recording.export",
                               object=rid)  # fmt: skip
    reason = f"{result.sessions} sessions, {len(result.files)} files"
    await audit_subject(ctx.audit, ctx.actor, "subject.export", ctx.server_key, phone,
                        reason=f"{reason}; {args.reason}" if args.reason else reason)  # fmt: skip
    print(f"wrote {out}: {result.sessions} session(s), {len(result.files) - 1} media file(s)")
    for item in result.not_exported:
        print(f"  not exported: {item['recording_id']}: {item['reason']}", file=sys.stderr)
    return EXIT_OK


async def _erase(ctx: _Ctx, args: argparse.Namespace) -> int:
    phone = ctx.phone(args.phone)
    if not args.yes:
        print(f"Everything about {phone} will be deleted for good (records and media).")
        again = await asyncio.to_thread(input, "Type the number again to confirm: ")
        try:
            if ctx.phone(again) != phone:
                return _fail("the numbers differ: nothing was deleted", EXIT_USAGE)
        except SubjectError:
            return _fail("the numbers differ: nothing was deleted", EXIT_USAGE)
    try:
        erased = await erase_subject(ctx.db, ctx.media(), phone)
    except SubjectError as exc:
        await audit_subject(ctx.audit, ctx.actor, "subject.erase", ctx.server_key, phone,
                            "refused", exc.code)  # fmt: skip
        raise
    reason = (f"{erased.sessions} sessions, {erased.recordings} recordings/photos, "
              f"{erased.objects} objects")  # fmt: skip
    await audit_subject(ctx.audit, ctx.actor, "subject.erase", ctx.server_key, phone,
                        reason=f"{reason}; {args.reason}" if args.reason else reason)  # fmt: skip
    print(f"erased {reason}")
    return EXIT_OK


async def _rectify(ctx: _Ctx, args: argparse.Namespace) -> int:
    row, changed = await rectify(
        ctx.db, args.session, phone=args.phone, reference=args.reference,
        default_country_code=ctx.cfg.session.default_country_code,
    )  # fmt: skip
    what = ", ".join(changed) or "nothing"
    await ctx.audit.record(
        actor=ctx.actor[0],
        role=ctx.actor[1],
        action="session.rectify",
        object=args.session,
        reason=f"changed: {what}; {args.reason}",
    )
    print(f"session {args.session}: " + (f"changed {', '.join(changed)}" if changed
                                          else "already like that"))  # fmt: skip
    return EXIT_OK


async def _object(ctx: _Ctx, args: argparse.Namespace) -> int:
    phone = ctx.phone(args.phone)
    on = not args.withdraw
    await set_do_not_record(ctx.db, ctx.server_key, phone, on, time.time())
    reason = "do_not_record " + ("on" if on else "off")
    await audit_subject(ctx.audit, ctx.actor, "subject.objection", ctx.server_key, phone,
                        reason=f"{reason}; {args.reason}" if args.reason else reason)  # fmt: skip
    print(f"{phone}: " + ("will not be recorded" if on else "may be recorded again"))
    return EXIT_OK


# --- retention --------------------------------------------------------------------------


async def _retention(ctx: _Ctx, args: argparse.Namespace) -> int:
    from server.privacy.retention import sweep

    try:
        result = await sweep(ctx.db, ctx.audit, ctx.media(), ctx.cfg, time.time())
    except Exception as exc:  # e.g. the database: storage failures are handled in sweep()
        return _fail(f"retention: the sweep stopped ({type(exc).__name__}: {exc}); what it had "
                     "not deleted yet is still there: run it again")  # fmt: skip
    if not result.anything:
        print("retention: nothing is past its retention")
        return EXIT_OK
    print("retention: deleted " + ", ".join(f"{k}={getattr(result, k)}" for k in result.COUNTS))
    if result.complete:
        return EXIT_OK
    print(f"callassist: retention: could not delete {len(result.failed)} recording(s)/photo(s) "
          f"({result.error or 'the storage failed before them'}): "
          f"{' '.join(result.failed)}; they and their session records are kept. Run "
          "`callassist retention run` again when the storage works (the server's sweeper also "
          "retries).", file=sys.stderr)  # fmt: skip
    return EXIT_INCOMPLETE


def add_parsers(
    sub: Any, common: Callable[[argparse.ArgumentParser], None],
    load: Callable[[argparse.Namespace], Config],
) -> None:  # fmt: skip
    def command(fn: Callable[[_Ctx, argparse.Namespace], Any]) -> Callable[..., int]:
        return lambda args: _run(args, load, fn)

    def reason(p: argparse.ArgumentParser, required: bool = False) -> None:
        p.add_argument("--reason", default="", required=required,
                       help="why (e.g. the request's reference), for the audit log")  # fmt: skip

    s = sub.add_parser("subject", help="data-subject rights by phone number (access, "
                       "rectification, erasure, objection)")  # fmt: skip
    ssub = s.add_subparsers(dest="action", required=True)
    f = ssub.add_parser("find", help="list the sessions held about a phone number")
    common(f)
    f.add_argument("--phone", required=True)
    reason(f)
    f.set_defaults(func=command(_find))

    e = ssub.add_parser("export", help="one ZIP archive: records (JSON), decrypted media, "
                        "manifest with hashes")  # fmt: skip
    common(e)
    e.add_argument("--phone", required=True)
    e.add_argument("-o", "--output", type=Path, required=True, help="the .zip to write")
    e.add_argument("--force", action="store_true", help="replace the output file")
    reason(e)
    e.set_defaults(func=command(_export))

    d = ssub.add_parser("erase", help="delete the records and media of a phone number")
    common(d)
    d.add_argument("--phone", required=True)
    d.add_argument("--yes", action="store_true", help="do not ask to type the number again")
    reason(d)
    d.set_defaults(func=command(_erase))

    r = ssub.add_parser("rectify", help="correct a session's phone number or reference")
    common(r)
    r.add_argument("--session", required=True)
    r.add_argument("--phone", help="the correct phone number")
    r.add_argument("--reference", help="the correct reference")
    reason(r, required=True)
    r.set_defaults(func=command(_rectify))

    o = ssub.add_parser("object", help="do-not-record flag: recording is never started for "
                        "this number (--withdraw lifts it)")  # fmt: skip
    common(o)
    o.add_argument("--phone", required=True)
    o.add_argument("--withdraw", action="store_true", help="lift the flag")
    reason(o)
    o.set_defaults(func=command(_object))

    rt = sub.add_parser("retention", help="delete what is past its retention")
    rtsub = rt.add_subparsers(dest="action", required=True)
    run = rtsub.add_parser("run", help="run the retention sweep now (the server runs it every "
                           "retention.sweep_interval_s)")  # fmt: skip
    common(run)
    run.set_defaults(func=command(_retention))
