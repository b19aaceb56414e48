"""Production refuses a short server key and an http:// public URL; the data directory and
the SQLite file are private even when the directory already exists (issue 14, item 9)."""

from __future__ import annotations

import stat
from pathlib import Path

from server.core.secrets import MIN_SERVER_KEY_CHARS
from tests.test_config_check import MASTER, both


def test_production_refuses_a_short_server_key(tmp_path: Path) -> None:
    toml = 'environment = "production"\n[http]\npublic_url = "https://help.example.eu"\n'
    env = {"CALLASSIST_SERVER_KEY": "k", "CALLASSIST_RECORDING_KEYS": MASTER}
    serve, check = both(tmp_path, toml, env)
    assert "CALLASSIST_SERVER_KEY" in check and "too short" in check
    assert f"at least {MIN_SERVER_KEY_CHARS}" in serve


def test_production_refuses_an_http_public_url(tmp_path: Path) -> None:
    toml = 'environment = "production"\n[http]\npublic_url = "http://help.example.eu"\n'
    env = {"CALLASSIST_SERVER_KEY": "x" * 43, "CALLASSIST_RECORDING_KEYS": MASTER}
    serve, check = both(tmp_path, toml, env)
    assert "http.public_url: production needs an https:// public URL" in check


async def test_existing_data_dir_and_sqlite_file_become_private(tmp_path: Path) -> None:
    # An operator's directory may exist already, world-readable, with a world-readable
    # database file in it; a new one is made private too.
    from aiohttp import web

    from server.http.app import create_app
    from tests.conftest import free_port, test_config

    old = tmp_path / "old"
    old.mkdir()
    old.chmod(0o755)
    (old / "callassist.db").touch()
    (old / "callassist.db").chmod(0o644)
    for data in (old, tmp_path / "new" / "data"):
        runner = web.AppRunner(create_app(test_config(free_port()), data))
        await runner.setup()  # the schema is made in the file
        try:
            assert stat.S_IMODE(data.stat().st_mode) == 0o700, data
            db = data / "callassist.db"
            assert stat.S_IMODE(db.stat().st_mode) == 0o600, data
            assert db.stat().st_size > 0
        finally:
            await runner.cleanup()
