"""Signalling messages are defined once (server/signalling/messages.py) and the protocol
doc lists exactly those messages and error codes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from server.signalling import messages as M

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "protocol.md").read_text()


def test_doc_lists_exactly_the_messages() -> None:
    documented: set[str] = set()
    for line in DOC.splitlines():
        if line.startswith("#### "):
            documented.update(re.findall(r"`([a-z_]+)`", line))
    defined = M.ALL_TYPES | M.SERVER_TYPES
    assert documented - defined == set(), "documented but not defined"
    assert defined - documented == set(), "defined but not documented"


def test_doc_lists_exactly_the_error_codes() -> None:
    table = DOC.split("## Error codes", 1)[1]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert documented == M.ERROR_CODES


# Not signalling: the ops console's server-sent events (docs/ops.md) have a `snapshot` too.
NOT_SIGNALLING = {("server/observe/ops.py", "snapshot"), ("server/cluster/ops_feed.py", "snapshot")}


def test_server_messages_are_built_only_in_messages_py() -> None:
    """No module but messages.py writes a server message as a dict literal."""
    found = []
    for path in (ROOT / "server").rglob("*.py"):
        if path.name == "messages.py" and path.parent.name == "signalling":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Dict):
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "type"
                    and isinstance(value, ast.Constant)
                    and value.value in M.SERVER_TYPES
                    and (str(path.relative_to(ROOT)), value.value) not in NOT_SIGNALLING
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {value.value}")
    assert found == []


def test_constructors_make_documented_messages() -> None:
    assert M.error("bad_json", "x")["type"] == "error"
    assert "ref" not in M.error("bad_json", "x") and M.error("bad_json", "x", "offer")["ref"]
    assert M.snapshot_failed("s1", "x" * 100)["reason"] == "x" * 64
    welcome = M.welcome("caller", "caller", {"id": "r"}, [], notice={"version": "1"})
    assert welcome["v"] == M.VERSION and "toolkit" not in welcome and welcome["notice"]
