"""The command line: every command takes --config and --data-dir and works on an empty data
directory; `callassist subject …` on a real server's data (SQLite and PostgreSQL)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal
import sys
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.cli import main, parser
from server.core.appkeys import AUDIT, SECRETS
from server.privacy.subjects import phone_key, subject_ref
from server.recording.service import RECORDING
from tests.conftest import PASSWORD, free_port
from tests.privacy_helpers import make_subject
from tests.test_cli import CLI

# Every command (the leaves of `callassist`'s parser) on an empty data directory:
# arguments, expected exit code, a piece of what it prints.
EMPTY: dict[tuple[str, ...], tuple[list[str], int, str]] = {
    ("user", "add"): (["anna", "--role", "agent", "--password-stdin"], 0, "created"),
    ("user", "passwd"): (["anna", "--password-stdin"], 1, "no user"),
    ("user", "role"): (["anna", "dpo"], 1, "no user"),
    ("user", "disable"): (["anna"], 1, "no user"),
    ("user", "enable"): (["anna"], 1, "no user"),
    ("user", "list"): ([], 0, "no accounts yet"),
    ("audit", "verify"): ([], 0, "empty and intact"),
    ("ropa",): ([], 0, "Record of processing activities"),
    ("config", "check"): ([], 0, "configuration OK"),
    ("node", "drain"): (["node1"], 2, "node drain needs cluster.router = 'redis'"),
    ("recording", "list"): ([], 0, "no recordings"),
    ("inspect",): (["{tmp}/missing.png"], 2, "cannot read"),
    ("recording", "verify"): (["0" * 32], 2, "no master keys"),
    ("recording", "decrypt"): (["0" * 32, "-o", "{tmp}/x.webm"], 2, "no master keys"),
    ("keys", "rotate"): ([], 0, "rewrapped 0 recording key(s)"),
    ("recording", "migrate"): ([], 0, "migrated 0 format 1 header(s)"),
    ("subject", "find"): (["--phone", "20000012"], 0, "0 session(s)"),
    ("subject", "export"): (["--phone", "20000012", "-o", "{tmp}/a.zip"], 0, "wrote"),
    ("subject", "erase"): (["--phone", "20000012", "--yes"], 0, "erased 0 sessions"),
    ("subject", "rectify"): (
        ["--session", "s-nothing", "--reference", "x", "--reason", "y"],
        1,
        "no such session",
    ),  # fmt: skip
    ("subject", "object"): (["--phone", "20000012"], 0, "will not be recorded"),
    ("retention", "run"): ([], 0, "nothing is past its retention"),
    ("webhooks", "dead"): ([], 0, "no dead letters"),
    ("webhooks", "replay"): (["--all"], 0, "0 events pending again"),
    ("serve",): ([], 0, "serving on"),  # below: a real process, stopped with SIGTERM
    ("demo",): ([], 0, "DEMO mode"),  # a real process: tests/test_demo.py
}


def leaves(p: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix: p}
    out: dict[tuple[str, ...], Any] = {}
    for name, child in subs[0].choices.items():
        out.update(leaves(child, (*prefix, name)))
    return out


def test_every_command_takes_config_and_data_dir() -> None:
    commands = leaves(parser())
    assert set(commands) == set(EMPTY), "a command without an empty-data-directory test"
    for name, p in commands.items():
        options = {o for a in p._actions for o in a.option_strings}
        assert {"--config", "--data-dir"} <= options, name


@pytest.mark.parametrize(
    "command", [c for c in EMPTY if c not in (("serve",), ("demo",))], ids=" ".join
)
def test_on_an_empty_data_directory(
    command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    args, code, text = EMPTY[command]
    data = tmp_path / "data"
    config = tmp_path / "config.toml"
    config.write_text('[session]\nprivacy_contact = "dpo@example.eu"\n')
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    argv = [*command, *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    assert main([*argv, "--config", str(config), "--data-dir", str(data)]) == code
    out, err = capsys.readouterr()
    assert text in out + err, (out, err)
    assert "Traceback" not in err


async def test_serve_on_an_empty_data_directory(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(f'[http]\npublic_url = "http://127.0.0.1:{port}"\n')
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", str(port), "--config", str(config),
        "--data-dir", str(tmp_path / "empty"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("serve did not become ready")
    finally:
        proc.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(proc.communicate(), 20))[0].decode()
    assert proc.returncode == 0 and "serving on" in output and "Traceback" not in output


@pytest.fixture
def cli_config(any_db_server: Any, tmp_path: Path) -> tuple[Any, list[str]]:
    """The server, and the --config/--data-dir that make the CLI use its data."""
    server = any_db_server
    config = tmp_path / "cli.toml"
    url = server.config.storage.database_url
    config.write_text(f'[storage]\ndatabase_url = "{url}"\n' if url else "")
    return server, ["--config", str(config), "--data-dir", str(server.data_dir)]


async def test_subject_commands(cli_config: tuple[Any, list[str]], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    server, common = cli_config
    agent = await server.agent("anna")
    a = await make_subject(server, agent, "+37120000001", "red", photos=1)
    b = await make_subject(server, agent, "+37120000002", "blue", photos=1)
    await server.app[RECORDING].spool.drain(10)

    def cli(*args: str) -> tuple[int, str]:
        code = main([*args, *common])
        out, err = capsys.readouterr()
        return code, out + err

    code, out = await asyncio.to_thread(cli, "subject", "find", "--phone", "20000001")
    assert code == 0 and a.session_id in out and b.session_id not in out
    archive_path = tmp_path / "anna.zip"
    code, out = await asyncio.to_thread(cli, "subject", "export", "--phone", "20000001", "-o",
                                        str(archive_path), "--reason", "REQ-3")  # fmt: skip
    assert code == 0, out
    assert archive_path.stat().st_mode & 0o077 == 0  # plaintext: for its owner only
    with zipfile.ZipFile(archive_path) as archive:
        records = json.loads(archive.read("records.json"))
        assert [s["id"] for s in records["sessions"]] == [a.session_id]
        assert f"media/{a.session_id}/{a.photo_ids[0]}.jpg" in archive.namelist()
    code, out = await asyncio.to_thread(cli, "subject", "export", "--phone", "20000001", "-o",
                                        str(archive_path))  # fmt: skip
    assert code == 2 and "exists" in out

    code, out = await asyncio.to_thread(cli, "subject", "rectify", "--session", a.session_id,
                                        "--reference", "T-5", "--reason", "REQ-4")  # fmt: skip
    assert code == 0 and "changed reference" in out
    assert (await server.db.get_session(a.session_id))["reference"] == "T-5"

    code, out = await asyncio.to_thread(cli, "subject", "object", "--phone", "20000002")
    assert code == 0
    assert await server.db.has_objection(phone_key(server.app[SECRETS].server_key, "+37120000002"))

    code, out = await asyncio.to_thread(cli, "subject", "erase", "--phone", "20000001", "--yes")
    assert code == 0 and "erased 1 sessions" in out
    assert await server.db.get_session(a.session_id) is None
    assert await server.db.get_session(b.session_id) is not None
    assert not list((server.data_dir / "store").rglob(f"*{a.photo_ids[0]}*"))

    rows = await server.app[AUDIT].rows()
    ref = subject_ref(server.app[SECRETS].server_key, "+37120000001")
    cli_events = [(r["action"], r["object"]) for r in rows if r["role"] == "cli"]
    for action in ("subject.search", "subject.export", "subject.erase"):
        assert (action, ref) in cli_events
    assert ("session.rectify", a.session_id) in cli_events
    assert ("recording.export", a.photo_ids[0]) in cli_events
    assert all("2000000" not in str(r) for r in rows)
    assert (await server.app[AUDIT].verify()).ok
