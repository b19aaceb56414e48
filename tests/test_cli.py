"""The `callassist` command as a user runs it: real processes, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.conftest import PASSWORD, free_port
from tests.signalling_client import SUBPROTOCOL, open_link

CLI = [sys.executable, "-m", "server"]


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_user_commands(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    r = run(
        "user",
        "add",
        "anna",
        "--role",
        "agent",
        "--password-stdin",
        "--data-dir",
        data,
        stdin=PASSWORD + "\n",
    )
    assert r.returncode == 0, r.stderr
    r = run(
        "user",
        "add",
        "anna",
        "--role",
        "agent",
        "--password-stdin",
        "--data-dir",
        data,
        stdin=PASSWORD + "\n",
    )
    assert r.returncode == 1 and "exists" in r.stderr
    r = run(
        "user",
        "add",
        "bo",
        "--role",
        "agent",
        "--password-stdin",
        "--data-dir",
        data,
        stdin="short\n",
    )
    assert r.returncode == 1 and "at least 10" in r.stderr
    r = run("user", "add", "bo", "--role", "king", "--password-stdin", "--data-dir", data)
    assert r.returncode == 2
    r = run("user", "disable", "anna", "--data-dir", data)
    assert r.returncode == 0
    r = run("user", "list", "--data-dir", data)
    assert r.stdout.split() == ["anna", "agent", "disabled"]


def test_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[session]\nlink_tll_s = 5\n")
    r = run("config", "check", "--config", str(bad))
    assert r.returncode == 2 and "'session.link_tll_s'" in r.stderr
    root = Path(__file__).resolve().parent.parent
    r = run("config", "check", "--config", str(root / "config.toml"))
    assert r.returncode == 0, r.stderr


def test_production_refuses_without_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "prod.toml"
    cfg.write_text('environment = "production"\n')
    env = {k: "" for k in ("CALLASSIST_SERVER_KEY",)}
    r = run(
        "serve",
        "--config",
        str(cfg),
        "--data-dir",
        str(tmp_path / "d"),
        "--port",
        str(free_port()),
        env=env,
    )
    assert r.returncode == 2
    assert "CALLASSIST_SERVER_KEY" in r.stderr
    assert not (tmp_path / "d" / "secrets").exists()


async def test_serve_and_graceful_shutdown(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    assert (
        run(
            "user",
            "add",
            "anna",
            "--role",
            "agent",
            "--password-stdin",
            "--data-dir",
            str(data),
            stdin=PASSWORD + "\n",
        ).returncode
        == 0
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[http]\npublic_url = "http://127.0.0.1:{port}"\n'
        '[media]\nice_host_addresses = ["127.0.0.1"]\nallow_loopback_candidates = true\n'
    )
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--config",
        str(cfg),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            for _ in range(100):
                try:
                    async with http.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            async with http.post(
                url + "/api/login",
                headers={"Origin": url},
                json={"username": "anna", "password": PASSWORD},
            ) as r:
                csrf = (await r.json())["csrf"]
            async with http.post(
                url + "/api/sessions",
                json={"phone": "20000012"},
                headers={"Origin": url, "X-CSRF-Token": csrf},
            ) as r:
                created = await r.json()
            assert await open_link(http, created["link"]) == 303
            ws = await http.ws_connect(
                url.replace("http", "ws") + "/ws/caller", protocols=(SUBPROTOCOL,), origin=url
            )
            await ws.receive_json()  # welcome
            proc.send_signal(signal.SIGTERM)
            codes = []
            while True:
                msg = await asyncio.wait_for(ws.receive(), 10)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    codes.append(msg.json().get("type"))
                    continue
                close_code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else ws.close_code
                break
            # The room is ended with reason "shutdown", or the socket is closed as going away.
            assert close_code in (1001, 4000), (close_code, codes)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        out = (await proc.stdout.read()).decode()  # type: ignore[union-attr]
        assert "callassist user add" in out
        assert created["link"].split("/j/")[1] not in out  # tokens never reach the log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_tls_self_signed(tmp_path: Path) -> None:
    import ssl

    from cryptography import x509

    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "d"),
        "--tls-self-signed",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        ctx = ssl.create_default_context(cafile=None)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"https://127.0.0.1:{port}/healthz", ssl=ctx) as r:
                        assert r.status == 200
                        assert "max-age" in r.headers["Strict-Transport-Security"]
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("https server did not come up")
        cert = x509.load_pem_x509_certificate((tmp_path / "d" / "tls" / "cert.pem").read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in san.get_values_for_type(x509.DNSName)
        assert oct((tmp_path / "d" / "tls" / "key.pem").stat().st_mode)[-3:] == "600"
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)


def test_ropa_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[retention]\nrecordings_days = 14\n[session]\noperator_name = "Tele2"\n')
    r = run("ropa", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# Record of processing activities")
    assert "recordings: 14 days" in r.stdout and "Tele2" in r.stdout
    for category in ("phone number", "device type", "time and duration", "images and video"):
        assert category in r.stdout
