"""`callassist config check` refuses what `callassist serve` refuses (issue 20): for each
refusal of serve, both commands run as a user runs them (real processes, a real moto S3
server, a real closed port for the database) and must stop with the same problem, naming
the key or environment variable to change."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.s3_server import S3TestServer

CLI = [sys.executable, "-m", "server"]
MASTER = "mk-0001:" + base64.b64encode(b"k" * 32).decode()
PROD = {"CALLASSIST_SERVER_KEY": "x" * 43, "CALLASSIST_RECORDING_KEYS": MASTER}
# The variables a case may set: cleared first, so the outer environment cannot leak in.
CLEARED = (
    "CALLASSIST_SERVER_KEY", "CALLASSIST_SERVER_KEY_FILE", "CALLASSIST_SMS_HMAC_KEY",
    "CALLASSIST_TURN_SECRET", "CALLASSIST_WEBHOOK_KEY", "CALLASSIST_RECORDING_KEYS",
    "CALLASSIST_RECORDING_KEYS_FILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
)  # fmt: skip


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**base, **env})  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=90)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return finish(start(args, env))


def both(tmp_path: Path, toml: str, env: dict[str, str]) -> tuple[str, str]:
    conf = tmp_path / "c.toml"
    conf.write_text(toml)
    data = tmp_path / "data"
    common = ["--config", str(conf), "--data-dir", str(data)]
    # Side by side (they share nothing but the inputs): half the wall time.
    procs = [start(["config", "check", *common], env),
             start(["serve", *common, "--port", str(free_port())], env)]  # fmt: skip
    check, serve = (finish(p) for p in procs)
    assert serve.returncode == 2, serve.stdout + serve.stderr
    assert check.returncode == 2, check.stdout + check.stderr
    assert "configuration OK" not in check.stdout
    # The same problem line, word for word, from both.
    problems = [ln for ln in serve.stderr.splitlines() if ln.startswith("callassist: ")]
    assert problems and problems[0] in check.stderr, (serve.stderr, check.stderr)
    return serve.stderr, check.stderr


def _secret_case(tmp_path: Path, toml: str, env: dict[str, str], name: str) -> None:
    serve, check = both(tmp_path, 'environment = "production"\n' + toml, env)
    assert name in serve and name in check


def test_unknown_key(tmp_path: Path) -> None:
    serve, check = both(tmp_path, "[session]\nlink_tll_s = 5\n", {})
    assert "'session.link_tll_s'" in check


def test_invalid_value(tmp_path: Path) -> None:
    serve, check = both(tmp_path, '[recording]\nstorage = "s3"\n', {})
    assert "recording.s3.bucket: required" in check


def test_production_without_server_key(tmp_path: Path) -> None:
    _secret_case(tmp_path, "", {}, "CALLASSIST_SERVER_KEY")
    assert not (tmp_path / "data" / "secrets").exists()  # nothing generated


def test_production_sms_gateway_without_its_key(tmp_path: Path) -> None:
    toml = '[sms]\nsender = "http"\nhttp_url = "http://127.0.0.1:9/sms"\n'
    _secret_case(tmp_path, toml, PROD, "CALLASSIST_SMS_HMAC_KEY")


def test_production_turn_without_its_secret(tmp_path: Path) -> None:
    toml = '[media]\nturn_urls = ["turn:127.0.0.1:3478"]\n'
    _secret_case(tmp_path, toml, PROD, "CALLASSIST_TURN_SECRET")


def test_production_webhooks_without_their_key(tmp_path: Path) -> None:
    toml = '[webhooks]\nurls = ["http://127.0.0.1:9/hook"]\n'
    _secret_case(tmp_path, toml, PROD, "CALLASSIST_WEBHOOK_KEY")


def test_production_without_recording_master_keys(tmp_path: Path) -> None:
    env = {"CALLASSIST_SERVER_KEY": "x" * 43}
    _secret_case(tmp_path, "", env, "CALLASSIST_RECORDING_KEYS")


def test_unreadable_secret_file(tmp_path: Path) -> None:
    env = {"CALLASSIST_SERVER_KEY_FILE": str(tmp_path / "missing.key")}
    serve, check = both(tmp_path, "", env)
    assert "CALLASSIST_SERVER_KEY_FILE" in check and "cannot read" in check


def test_malformed_recording_keys(tmp_path: Path) -> None:
    serve, check = both(tmp_path, "", {"CALLASSIST_RECORDING_KEYS": "mk-1:abc"})
    assert "CALLASSIST_RECORDING_KEYS: " in check and "mk-NNNN:BASE64" in check


def test_readable_master_key_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "mk-0001.key").write_text(base64.b64encode(b"k" * 32).decode())
    (keys / "mk-0001.key").chmod(0o644)  # others can read it: a leaked key
    serve, check = both(tmp_path, f'[recording]\nkeys_dir = "{keys}"\n', {})
    assert "recording.keys_dir: " in check and "chmod 600" in check


def test_production_keys_dir_without_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    toml = f'environment = "production"\n[recording]\nkeys_dir = "{keys}"\n'
    serve, check = both(tmp_path, toml, {"CALLASSIST_SERVER_KEY": "x" * 43})
    assert "no master keys" in check


def test_kms_without_a_region(tmp_path: Path) -> None:
    toml = '[recording]\nkeyring = "kms"\n[recording.kms]\nkey_id = "arn:aws:kms:k"\n'
    serve, check = both(tmp_path, toml, {})
    assert "recording.kms.region" in check


def test_database_that_does_not_answer(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://callassist:pw@127.0.0.1:{free_port()}/callassist"
    serve, check = both(tmp_path, f'[storage]\ndatabase_url = "{url}"\n', {})
    assert "storage.database_url" in check and "pw@" not in check


@pytest.fixture(scope="module")
def s3() -> Any:
    with S3TestServer() as server:
        yield server


AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _bucket_toml(s3: S3TestServer, bucket: str) -> str:
    return (f'[recording]\nstorage = "s3"\n[recording.s3]\nbucket = "{bucket}"\n'
            f'endpoint_url = "{s3.endpoint_url}"\nregion = "eu-north-1"\n')  # fmt: skip


def test_bucket_outside_the_eu(tmp_path: Path, s3: S3TestServer) -> None:
    bucket = s3.create_bucket("eu-west-2")  # London: "eu-" but not EU
    serve, check = both(tmp_path, _bucket_toml(s3, bucket), AWS)
    assert "recording.s3.bucket: " in check and "region 'eu-west-2'" in check
    assert "refusing to store recordings" in check


def test_bucket_that_does_not_exist(tmp_path: Path, s3: S3TestServer) -> None:
    serve, check = both(tmp_path, _bucket_toml(s3, "no-such-bucket"), AWS)
    assert "recording.s3.bucket: " in check and "HeadBucket failed" in check


def test_what_serve_accepts_config_check_accepts(tmp_path: Path, s3: S3TestServer) -> None:
    bucket = s3.create_bucket("eu-north-1")
    conf = tmp_path / "c.toml"
    conf.write_text(_bucket_toml(s3, bucket))
    data = tmp_path / "data"
    r = run(["config", "check", "--config", str(conf), "--data-dir", str(data)], AWS)
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout
    # Nothing was written: no data directory, no lifecycle rule on the bucket.
    assert not data.exists()
    rules: Callable[[], Any] = lambda: s3.client().get_bucket_lifecycle_configuration(  # noqa: E731
        Bucket=bucket
    )
    with pytest.raises(Exception, match="NoSuchLifecycleConfiguration"):
        rules()
