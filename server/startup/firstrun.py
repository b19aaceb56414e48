"""The first minutes of `callassist serve`: where links point, and the first accounts.

Links and printed URLs follow --host/--port unless the configuration file sets
http.public_url (then that wins, and serve says so). On a data directory without accounts,
`first_accounts_on_terminal` asks for the first administrator and agent when there is a
terminal; otherwise serve offers the one-time setup page (server/http/setup.py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import socket
import time
import tomllib
from pathlib import Path

from server.core.config import Config
from server.core.db import Database
from server.http.auth import hash_password


def database(cfg: Config, data_dir: Path) -> Database:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = cfg.storage.database_url or f"sqlite+aiosqlite:///{data_dir / 'callassist.db'}"
    return Database(url)


def lan_address() -> str:
    # The address a phone on the same network would reach; no packet is sent.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _public_url_set(path: Path | None) -> bool:
    """Whether the configuration file sets http.public_url (even to the default value)."""
    if path is None:
        return False
    with open(path, "rb") as fh:
        return "public_url" in tomllib.load(fh).get("http", {})


def links(cfg: Config, args: argparse.Namespace, scheme: str) -> tuple[Config, str, str]:
    """(config, host for a self-signed certificate, which source wins, in words).

    Links and printed URLs follow --host/--port unless http.public_url is set explicitly."""
    wildcard = args.host in ("0.0.0.0", "::")  # noqa: S104 - a comparison, not a bind
    host = lan_address() if wildcard else args.host
    if _public_url_set(args.config):
        return cfg, host, f"http.public_url in {args.config} wins over --host/--port"
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{args.port}"
    cfg = dataclasses.replace(cfg, http=dataclasses.replace(cfg.http, public_url=url))
    return cfg, host, "from --host/--port; set http.public_url to override"


async def account_count(cfg: Config, data_dir: Path) -> int:
    db = database(cfg, data_dir)
    try:
        await db.create_schema()
        return len(await db.list_users())
    finally:
        await db.close()


def first_accounts_on_terminal(cfg: Config, data_dir: Path) -> bool:
    """Ask for the first administrator and agent; False if the newcomer skips (Ctrl-C/D)."""
    print(
        "callassist: no accounts yet. Create the first administrator and agent now\n"
        "            (Ctrl-C skips: the console then gets a one-time setup link).",
        flush=True,
    )
    try:
        accounts = []
        for role, default in (("admin", "admin"), ("agent", "")):
            while True:
                hint = f" [{default}]" if default else ""
                name = input(f"{role} user name{hint}: ").strip() or default
                if name and name.isprintable() and len(name) <= 64 and name not in accounts:
                    break
                print("callassist: a new name of 1-64 printable characters, please")
            while True:
                password = getpass.getpass("password (at least 10 characters): ")
                if getpass.getpass("again: ") != password:
                    print("callassist: the passwords differ; again")
                    continue
                try:
                    hashed = hash_password(password, name)
                    break
                except ValueError as exc:
                    print(f"callassist: {exc}")
            accounts.append((name, hashed, role))
    except (EOFError, KeyboardInterrupt):
        print()
        return False

    async def add() -> None:
        db = database(cfg, data_dir)
        try:
            for name, hashed, role in accounts:
                await db.add_user(name, hashed, role, time.time())
        finally:
            await db.close()

    asyncio.run(add())
    for name, _, role in accounts:
        print(f"callassist: user '{name}' created with role {role}")
    return True
