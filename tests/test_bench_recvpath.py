"""bench/recvpath.py with the recorder: the server's per-packet path with the camera
recorded as in the product, one JSON object (a smoke run; figures never asserted)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def test_recvpath_with_the_recorder_records_every_frame() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "recvpath.py"),
        "--packets", "1500", "--rounds", "1", "--recorder", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 110)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = out.decode().splitlines()
    assert len(lines) == 1, lines
    result = json.loads(lines[0])
    assert result["recorder"] is True and result["loop"] == "uvloop"
    assert result["forwarded"] == result["packets"] == 1500
    assert result["us_per_packet"] > 0
    # 1500 packets of the clip are ~360 frames (12 s): the recorder took them all, in
    # at least one committed segment, and lost none
    assert result["recorded_frames"] >= 300 and result["recorded_frames_lost"] == 0
    assert result["recorded_segments"] >= 1
