"""`callassist` command line: serve, user, …

Over 400 lines because every subcommand's parser is declared here, in one place, so
`callassist --help` and the README stay in step; the recording and privacy commands
have their own modules.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from server.core import config as config_mod
from server.core.config import Config, ConfigError
from server.core.secrets import MissingSecret
from server.http.auth import ROLES, check_new_username, hash_password, normalize_username
from server.startup import firstrun

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


_db = firstrun.database  # the database of the configuration, in data_dir by default


def cmd_serve(args: argparse.Namespace) -> int:
    from server.observe.logs import setup_logging

    setup_logging(args.log_format, os.environ.get("CALLASSIST_LOG_LEVEL", "INFO"))
    cfg = _load(args)
    workers = _workers(args, cfg)
    if workers > 1:
        return _supervise(args, cfg, workers)
    if not args.demo:
        return _serve(args, cfg)
    from server.startup import demo

    cfg = demo.configure(cfg)  # ConfigError in production
    if args.data_dir is not None:  # `callassist demo --data-dir DIR`: kept there
        return _serve(args, cfg)
    # Otherwise a demo keeps nothing: its data directory is removed when it stops.
    with tempfile.TemporaryDirectory(prefix="callassist-demo-") as scratch:
        args.data_dir = Path(scratch)
        return _serve(args, cfg)


def _workers(args: argparse.Namespace, cfg: Config) -> int:
    """How many worker processes to start (1: serve here); a worker itself serves."""
    from server.cluster import workers as workers_mod

    me = workers_mod.worker_from_env(dict(os.environ))
    if me is not None:
        args.worker = me
        workers_mod.die_with_supervisor(dict(os.environ))  # never outlive the supervisor
        return 1
    n = getattr(args, "workers", None)
    n = cfg.cluster.workers if n is None else n
    if n > 1 and args.demo:
        raise ConfigError("--workers: demo mode runs one process")
    workers_mod.check(cfg, n)
    return n


def _supervise(args: argparse.Namespace, cfg: Config, workers: int) -> int:
    from server.cluster.workers import start

    return start(args, cfg, workers)


def _serve(args: argparse.Namespace, cfg: Config) -> int:

    from server.http.app import create_app
    from server.startup.preflight import preflight

    worker = getattr(args, "worker", None)
    if worker is not None:  # worker i of N (server/cluster/workers.py)
        from server.cluster.workers import worker_config

        cfg = worker_config(cfg, *worker)
    scheme = "https" if args.tls_self_signed else "http"
    cfg, cert_host, which = firstrun.links(cfg, args, scheme)
    problems = asyncio.run(preflight(cfg, args.data_dir))
    if problems:
        for problem in problems:
            print(f"callassist: {problem}", file=sys.stderr)
        print("callassist: not starting (`callassist config check` runs these checks)",
              file=sys.stderr)  # fmt: skip
        return 2
    ssl_ctx = None
    if args.tls_self_signed:
        from server.http.tls import self_signed_context

        ssl_ctx = self_signed_context(args.data_dir, [cert_host])
    from recorder import KeyringError, StorageError

    accounts = asyncio.run(firstrun.account_count(cfg, args.data_dir))
    if not accounts and not args.demo and sys.stdin.isatty() and sys.stdout.isatty():
        accounts = int(firstrun.first_accounts_on_terminal(cfg, args.data_dir))
    try:
        app = create_app(cfg, args.data_dir)
    except (MissingSecret, KeyringError) as exc:  # KeyringError: recording master keys
        print(f"callassist: {exc}", file=sys.stderr)
        return 2
    base = cfg.http.public_url.rstrip("/")
    lines = [
        f"callassist: serving on {scheme}://{args.host}:{args.port}",
        f"callassist: links use {base} ({which})",
        f"callassist: agent console: {base}/agent",
        f"callassist: data directory {args.data_dir.resolve()}",
    ]
    if args.demo:
        from server.startup import demo

        demo.install(app, demo.new_password())
        lines.append("callassist: DEMO mode: a built-in test caller, nothing is sent anywhere; "
                     "the data directory is removed at exit")  # fmt: skip
    elif worker is not None and not accounts:
        # The one-time setup link would live in one worker only.
        lines.append("callassist: no accounts yet: create them with callassist user add "
                     f"NAME --role admin --data-dir {args.data_dir}")  # fmt: skip
    elif not accounts:
        from server.http import setup

        token = setup.offer(app)
        lines += [
            "callassist: no accounts yet. On this machine, open within "
            f"{setup.SETUP_TTL_S // 60} minutes (works once):",
            f"    {base}/setup/{token}",
            "callassist: or create them with",
            f"    callassist user add NAME --role agent --data-dir {args.data_dir}",
        ]
    else:
        lines.append(
            f"callassist: more accounts: callassist user add NAME --role agent "
            f"--data-dir {args.data_dir}"
        )
    print("\n".join(lines), flush=True)
    try:
        from server.cluster.workers import internal_port as workers_internal_port
        from server.http.guard import serve  # run_app plus the slowloris guard
        from server.observe.logs import access_log_format

        serve(
            app,
            host=args.host,
            port=args.port,
            ssl_context=ssl_ctx,
            access_log_class=_access_logger_class(cfg.http.access_log_clients),
            access_log_format=access_log_format(cfg.http.access_log_clients),
            per_address=cfg.http.max_connections_per_address,
            header_timeout_s=cfg.http.header_timeout_s,
            reuse_port=worker is not None,  # the workers share the port (SO_REUSEPORT)
            # ... and each has its own, which the other nodes forward to
            # (server/cluster/workers.py, worker_internal_url)
            extra_port=workers_internal_port(cfg) if worker is not None else None,
            event_loop=cfg.media.event_loop,
        )
    except (StorageError, KeyringError) as exc:  # recording storage refused at startup
        print(f"callassist: recording storage: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    args.demo = True
    return cmd_serve(args)


def cmd_serve_demo_flag(args: argparse.Namespace) -> int:
    # `serve --demo`: never the service's real data directory (its default is ./data).
    if args.demo:
        args.data_dir = None
    return cmd_serve(args)


def _access_logger_class(clients: str):  # built lazily: aiohttp's logger base class
    from aiohttp.web_log import AccessLogger

    from server.observe.logs import mask_address, user_agent_product

    class Redacting(AccessLogger):
        def log(self, request, response, time):  # type: ignore[no-untyped-def]
            # One-time link tokens must never reach a log file.
            if request.path.startswith("/j/"):
                request = request.clone(rel_url="/j/<token>")
            elif request.path.startswith("/setup/"):  # the one-time first-run token
                request = request.clone(rel_url="/setup/<token>")
            if clients == "masked":  # docs/ops.md, "Logs": no full address, no device
                headers = request.headers.copy()
                headers["User-Agent"] = user_agent_product(headers.get("User-Agent", ""))
                request = request.clone(remote=mask_address(request.remote), headers=headers)
            super().log(request, response, time)

    return Redacting


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
    from server.startup.preflight import preflight

    cfg = _load(args)  # ConfigError: main() names the key
    problems = asyncio.run(preflight(cfg, args.data_dir))
    for problem in problems:
        print(f"callassist: {problem}", file=sys.stderr)
    if problems:
        print(f"callassist: configuration refused: {len(problems)} problem(s); "
              "`callassist serve` would not start", file=sys.stderr)  # fmt: skip
        return 2
    print(
        f"configuration OK: serve would start (environment = {cfg.environment}, "
        f"public_url = {cfg.http.public_url} unless --host/--port change it)"
    )
    return 0


def _serve_options(s: argparse.ArgumentParser) -> None:
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="callassist", description="Visual support during a phone call."
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the service")
    _common(s)
    _serve_options(s)
    s.add_argument(
        "--demo",
        action="store_true",
        help="demo mode: a built-in test caller, a throwaway data directory (not in production)",
    )
    s.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the port, one per core (default: cluster.workers, 1)",
    )
    s.set_defaults(func=cmd_serve_demo_flag)

    d = sub.add_parser("demo", help="a first look: the service with a built-in test caller")
    d.add_argument("--config", type=Path, help="configuration file (TOML); default: built-in")
    d.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the demo's data here (default: a throwaway directory, removed at exit)",
    )
    _serve_options(d)
    d.set_defaults(func=cmd_demo)

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

    from server.observe.webhooks_cli import add_parsers as add_webhooks_parsers

    add_webhooks_parsers(sub, _common, _load)  # webhooks dead|replay

    from server.cluster.cli import add_parsers as add_cluster_parsers

    add_cluster_parsers(sub, _common, _load)  # node drain

    from server.inspect.cli import add_parsers as add_inspect_parsers

    add_inspect_parsers(sub, _common, _load)  # inspect IMAGE

    c = sub.add_parser("config", help="check a configuration file")
    csub = c.add_subparsers(dest="action", required=True)
    chk = csub.add_parser(
        "check", help="run every start check of `serve` without starting anything"
    )
    _common(chk)
    chk.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("CALLASSIST_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # for --workers' children
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"callassist: configuration error: {exc}", file=sys.stderr)
        return 2
