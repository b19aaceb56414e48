"""`callassist` command line: serve, user, …"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import logging
import os
import socket
import sys
import time
from pathlib import Path

from server.core import config as config_mod
from server.core.config import Config, ConfigError
from server.core.db import Database
from server.core.secrets import MissingSecret
from server.http.auth import ROLES, check_new_username, hash_password, normalize_username

DEFAULT_DATA_DIR = "data"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="configuration file (TOML); default: built-in")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CALLASSIST_DATA_DIR", DEFAULT_DATA_DIR)),
        help="where the database and generated secrets live (default: ./data)",
    )


def _load(args: argparse.Namespace) -> Config:
    return config_mod.load(args.config)


def _db(cfg: Config, data_dir: Path) -> Database:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = cfg.storage.database_url or f"sqlite+aiosqlite:///{data_dir / 'callassist.db'}"
    return Database(url)


def _lan_address() -> str:
    # The address a phone on the same network would reach; no packet is sent.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.http.app import create_app
    from server.observe.logs import setup_logging

    setup_logging(args.log_format, os.environ.get("CALLASSIST_LOG_LEVEL", "INFO"))
    cfg = _load(args)
    ssl_ctx = None
    if args.tls_self_signed:
        from server.http.tls import self_signed_context

        wildcard = args.host in ("0.0.0.0", "::")  # noqa: S104 - a comparison, not a bind
        lan = _lan_address() if wildcard else args.host
        if cfg.http.public_url == config_mod.HttpConfig().public_url:
            cfg = dataclasses.replace(
                cfg, http=dataclasses.replace(cfg.http, public_url=f"https://{lan}:{args.port}")
            )
        ssl_ctx = self_signed_context(args.data_dir, [lan])
    from recorder import KeyringError, StorageError

    try:
        app = create_app(cfg, args.data_dir)
    except (MissingSecret, KeyringError) as exc:  # KeyringError: recording master keys
        print(f"callassist: {exc}", file=sys.stderr)
        return 2
    scheme = "https" if ssl_ctx else "http"
    print(
        f"callassist: serving on {scheme}://{args.host}:{args.port} (links use "
        f"{cfg.http.public_url}); agent console: {cfg.http.public_url.rstrip('/')}/agent\n"
        f"callassist: data directory {args.data_dir.resolve()}; create an account with\n"
        f"    callassist user add NAME --role agent --data-dir {args.data_dir}",
        flush=True,
    )
    try:
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            ssl_context=ssl_ctx,
            print=None,
            shutdown_timeout=5,
            access_log_class=_RedactingAccessLogger,
        )
    except (StorageError, KeyringError) as exc:  # recording storage refused at startup
        print(f"callassist: recording storage: {exc}", file=sys.stderr)
        return 2
    return 0


def _redacting_logger_class():  # built lazily: aiohttp's logger base class
    from aiohttp.web_log import AccessLogger

    class Redacting(AccessLogger):
        def log(self, request, response, time):  # type: ignore[no-untyped-def]
            # One-time link tokens must never reach a log file.
            if request.path.startswith("/j/"):
                request = request.clone(rel_url="/j/<token>")
            super().log(request, response, time)

    return Redacting


_RedactingAccessLogger = _redacting_logger_class()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password (10-64 characters, not a common one): ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("callassist: the passwords differ")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    """Accounts. The only way to grant `dpo`/`admin` or reset their passwords
    (docs/security.md); every change is an audit event (actor: the OS user, role `cli`)."""
    from server.core.audit import Audit

    cfg = _load(args)
    db = _db(cfg, args.data_dir)
    audit = Audit(db, time.time)

    async def record(action: str, name: str, reason: str) -> None:
        await audit.record(actor=getpass.getuser()[:64], role="cli", action=action,
                           object=name, reason=reason)  # fmt: skip

    async def run() -> int:
        await db.create_schema()
        try:
            if args.action == "add":
                try:
                    existing = [u.username for u in await db.list_users()]
                    name = check_new_username(args.name, existing)
                except ValueError as exc:
                    print(f"callassist: {exc}", file=sys.stderr)
                    return 1
                password = _read_password(args)
                try:
                    hashed = hash_password(password, name)
                except ValueError as exc:
                    print(f"callassist: {exc}", file=sys.stderr)
                    return 1
                await db.add_user(name, hashed, args.role, time.time())
                await record("user.create", name, f"role {args.role}")
                print(f"user '{name}' created with role {args.role}")
            elif args.action == "list":
                accounts = await db.list_users()
                if not accounts:
                    print("no accounts yet: callassist user add NAME --role agent")
                for u in accounts:
                    print(f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'active'}")
            else:
                user = await db.user_by_name(normalize_username(args.name)) or (
                    await db.user_by_name(args.name)
                )
                if user is None:
                    print(f"callassist: no user '{args.name}'", file=sys.stderr)
                    return 1
                if args.action == "passwd":
                    try:
                        hashed = hash_password(_read_password(args), user.username)
                    except ValueError as exc:
                        print(f"callassist: {exc}", file=sys.stderr)
                        return 1
                    await db.update_user(user.id, password_hash=hashed)
                    await record("user.update", user.username, "changed: password")
                    print(f"password of '{user.username}' changed; their logins ended")
                elif args.action == "role":
                    # Rewriting the hash ends the logins made under the old role.
                    await db.update_user(user.id, role=args.role, password_hash=user.password_hash)
                    await record("user.update", user.username, f"changed: role {args.role}")
                    print(f"user '{user.username}' now has role {args.role}; their logins ended")
                elif args.action in ("disable", "enable"):
                    await db.update_user(user.id, disabled=args.action == "disable")
                    await record("user.update", user.username, f"changed: {args.action}d")
                    print(f"user '{user.username}' {args.action}d")
            return 0
        finally:
            await db.close()

    return asyncio.run(run())


def cmd_audit(args: argparse.Namespace) -> int:
    from server.core.audit import Audit

    cfg = _load(args)
    db = _db(cfg, args.data_dir)

    async def run() -> int:
        await db.create_schema()
        try:
            verdict = await Audit(db, time.time).verify()
        finally:
            await db.close()
        if verdict.count == 0 and verdict.ok:
            print("audit log is empty and intact")
            return 0
        if verdict.ok:
            pruned = verdict.pruned_through
            since = f" (records 1-{pruned} removed by retention)" if pruned else ""
            print(f"audit log intact: {verdict.count} records{since}, head {verdict.head}")
            return 0
        print(
            f"callassist: audit log BROKEN: {verdict.problem} "
            f"(the first {verdict.count} records are intact)",
            file=sys.stderr,
        )
        return 1

    return asyncio.run(run())


def cmd_ropa(args: argparse.Namespace) -> int:
    from server.privacy.ropa import ropa_markdown

    print(ropa_markdown(_load(args)))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    cfg = _load(args)
    print(f"configuration OK (environment = {cfg.environment}, public_url = {cfg.http.public_url})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="callassist", description="Visual support during a phone call."
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the service")
    _common(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument(
        "--tls-self-signed",
        action="store_true",
        help="serve HTTPS with a generated self-signed certificate",
    )
    s.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("CALLASSIST_LOG_FORMAT", "text"),
        help="log lines as text or as one JSON object per line (default: text)",
    )
    s.set_defaults(func=cmd_serve)

    u = sub.add_parser("user", help="manage console accounts")
    usub = u.add_subparsers(dest="action", required=True)
    for action, helptext in (
        ("add", "create an account"),
        ("passwd", "set a new password"),
        ("role", "give an account another role"),
        ("disable", "disable an account"),
        ("enable", "enable an account"),
        ("list", "list accounts"),
    ):
        a = usub.add_parser(action, help=helptext)
        _common(a)
        if action != "list":
            a.add_argument("name")
        if action == "add":
            a.add_argument("--role", choices=ROLES, required=True)
        if action == "role":
            a.add_argument("role", choices=ROLES)
        if action in ("add", "passwd"):
            a.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password from standard input (for scripts)",
            )
        a.set_defaults(func=cmd_user)

    au = sub.add_parser("audit", help="the hash-chained audit log")
    ausub = au.add_subparsers(dest="action", required=True)
    v = ausub.add_parser("verify", help="detect edited, removed or reordered records")
    _common(v)
    v.set_defaults(func=cmd_audit)

    rp = sub.add_parser("ropa", help="print the record of processing activities (Markdown)")
    _common(rp)
    rp.set_defaults(func=cmd_ropa)

    from server.recording.cli import add_parsers as add_recording_parsers

    add_recording_parsers(sub, _common, _load)  # recording list|verify|decrypt, keys rotate

    from server.privacy.cli import add_parsers as add_privacy_parsers

    add_privacy_parsers(sub, _common, _load)  # subject find|export|erase|rectify|object, retention

    c = sub.add_parser("config", help="check a configuration file")
    csub = c.add_subparsers(dest="action", required=True)
    chk = csub.add_parser("check", help="load and validate the configuration")
    _common(chk)
    chk.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("CALLASSIST_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"callassist: configuration error: {exc}", file=sys.stderr)
        return 2
