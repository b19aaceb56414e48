"""`media.event_loop`: the loop a server process runs (uvloop by default, asyncio if asked),
as a real `callassist serve` reports it, and the configuration's refusal of anything else."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from server.core import config as config_mod
from tests.conftest import PASSWORD
from tests.serve_helpers import CLI, KEYS, Node, Staff


def test_the_default_is_uvloop_and_others_are_refused() -> None:
    assert config_mod.from_dict({}).media.event_loop == "uvloop"
    assert config_mod.from_dict({"media": {"event_loop": "asyncio"}}).media.event_loop == "asyncio"
    with pytest.raises(config_mod.ConfigError, match="media.event_loop: must be 'uvloop' or"):
        config_mod.from_dict({"media": {"event_loop": "trio"}})


def _admin(node: Node) -> None:
    r = subprocess.run(
        [*CLI, "user", "add", "ada", "--role", "admin", "--password-stdin",
         "--config", str(node.config), "--data-dir", str(node.data_dir)],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
        env={**os.environ, **KEYS},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("configured", [None, "asyncio"])
async def test_a_served_process_runs_the_configured_loop(
    tmp_path: Path, configured: str | None
) -> None:
    node = Node(tmp_path, "n1", {"media": {"event_loop": configured}} if configured else {})
    _admin(node)
    await node.start()
    staff = Staff(node)
    try:
        await staff.login("ada")
        status, body = await staff.get("/api/admin/status")
        assert status == 200, body
        assert body["event_loop"] == (configured or "uvloop")
    finally:
        await staff.close()
        await node.stop()
    # SIGTERM is a clean stop on either loop (aiohttp's signal handlers, runner cleanup)
    assert node.proc is not None and node.proc.returncode == 0, node.log.read_text()[-2000:]
