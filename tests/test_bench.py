"""The benches still run and print the JSON objects docs/ and README describe (keys, not
numbers: speed is the benches' business, never a test's). Small sizes, real processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def run_json(script: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(BENCH / script), "--json", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=110,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout  # one JSON object, nothing else on stdout
    return json.loads(lines[0])


def test_encrypt_json_keys() -> None:
    result = run_json("encrypt.py", "--mb", "1", "--rounds", "1")
    assert set(result) == {"encrypt_mb_s", "raw_aesgcm_mb_s", "ratio"}
    assert result["encrypt_mb_s"] > 0 and result["raw_aesgcm_mb_s"] > 0


def test_recorder_json_keys() -> None:
    result = run_json(
        "recorder.py", "--seconds", "2", "--segment-s", "1", "--rounds", "1", "--encrypt-mb", "1"
    )
    assert set(result) == {
        "recorder_cores_per_stream",
        "mediarecorder_cores_per_stream",
        "ratio",
        "mediarecorder_encode_only_cores_per_stream",
        "ratio_encode_only",
        "recorder_us_per_frame",
        "encrypt_mb_s",
        "raw_aesgcm_mb_s",
        "input",
        "recorder",
        "mediarecorder",
    }
    assert result["input"]["frames"] == 60
    assert result["recorder"]["segments"] == 2
    assert set(result["mediarecorder"]) == {"cpu_s", "frames", "stored_bytes"}


def test_first_frame_json_keys() -> None:
    result = run_json("first_frame.py", "--runs", "1")
    assert set(result) == {
        "runs",
        "codec",
        "median_s",
        "p95_s",
        "min_s",
        "max_s",
        "offer_to_first_frame_median_s",
        "offer_to_first_frame_p95_s",
        "samples_s",
    }
    assert result["runs"] == 1 and len(result["samples_s"]) == 1


def test_first_frame_rejects_zero_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "first_frame.py"), "--runs", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--runs must be at least 1" in out.stderr


async def _server_summary(*args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start one capacity server process, ask it for its summary over its RPC port."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / "capacity.py"),
        "--role",
        "server",
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        reader, writer = await asyncio.open_connection("127.0.0.1", info["port"])
        writer.write(json.dumps({"id": 1, "op": "summary"}).encode() + b"\n")
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 30))
        writer.close()
        return info, reply
    finally:
        proc.terminate()
        await proc.wait()


async def test_capacity_project_server_process() -> None:
    info, reply = await _server_summary("--server", "project", "--no-recorder")
    assert info["forwarding"] == "rtp"  # as shipped
    assert reply == {"id": 1, "result": {"recorder": "off", "forwarding": "rtp"}}


async def test_capacity_project_server_with_recorder() -> None:
    info, reply = await _server_summary("--server", "project")
    assert reply["result"]["recorder"] == "included", reply


async def test_capacity_baseline_server_process() -> None:
    info, reply = await _server_summary("--server", "baseline")
    assert set(info) == {"port"}
    assert reply == {"id": 1, "result": {"rooms": 0}}
