"""The dummy hash behind equal login times (server.http.auth.dummy_hash) is made by the
server that answers logins, not by every `callassist` command at import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_the_cli_does_not_hash_at_import_and_the_app_hashes_before_any_login(
    tmp_path: Path,
) -> None:
    code = (
        "import server.cli\n"
        "from server.http import auth\n"
        "print(auth.dummy_hash.cache_info().currsize)\n"
        "from tests.conftest import test_config\n"
        "from server.http.app import create_app\n"
        f"create_app(test_config(8080), __import__('pathlib').Path({str(tmp_path)!r}))\n"
        "print(auth.dummy_hash.cache_info().currsize)\n"
        "print(auth.verify_password(None, 'correct horse battery'))\n"
    )
    assert _run(code).splitlines() == ["0", "1", "False"]
