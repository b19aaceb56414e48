"""bench/event_loop.py runs both loops' cells and reports their ratio (a smoke run: one
room, one round, short warm-ups and windows; the figures are the bench's, never asserted here)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def test_event_loop_bench_compares_both_loops() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "event_loop.py"),
        "--rooms", "1", "--rounds", "1", "--window", "2", "--warmup", "1", "--no-recorder",
        "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 110)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = out.decode().splitlines()
    assert len(lines) == 1, lines  # one JSON object, nothing else on stdout
    result = json.loads(lines[0])
    assert set(result["cells"]) == {"asyncio", "uvloop"}
    for cells in result["cells"].values():
        assert len(cells) == 1 and cells[0]["cores_per_room"] > 0
        assert set(cells[0]) >= {"fps", "loss", "p95_added_latency_ms", "held"}
    assert result["ratio_uvloop_vs_asyncio"] > 0 and len(result["ratios"]) == 1
