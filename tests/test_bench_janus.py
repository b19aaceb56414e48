"""bench/capacity.py's Janus comparison: a tiny cell with Debian's janus for real (keys, not
numbers), the generated configuration, and the summary it adds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.test_bench import BENCH, _measure, run_json


@pytest.mark.timeout(660)  # six server processes one after another on 2 loaded cores
def test_capacity_with_janus_json_keys() -> None:
    """One room a cell: the project and Janus (recorded, forwarding only, event_loops=2),
    each cell a fresh server process, the same clients. 1 s + 2 s measurements instead of
    --quick's 3 s + 5 s (six of them): keys, not numbers; Janus' cells wait for their
    agents' anchors before measuring (JanusRun.grow), so 2 s still count frames both ways."""
    result = run_json("capacity.py", "--quick", "--skip-baseline", "--max-rooms", "1",
                      "--peer", "janus", "--warmup", "1", "--window", "2",
                      timeout=600)  # fmt: skip
    janus = result["janus"]
    assert {"cores_per_room", "mem_mb_per_room", "p95_added_latency_ms", "fps", "loss",
            "screen_fps", "forwarding_only", "event_loops_2", "project_same_cells",
            "recorded_mb", "rooms_measured", "held"} <= set(janus)  # fmt: skip
    assert set(janus["event_loops_2"]) >= {"cores_per_room", "mem_mb_per_room",
                                           "p95_added_latency_ms"}  # fmt: skip
    assert {"ratio_vs_janus", "ratio_vs_janus_forwarding",
            "ratio_vs_janus_event_loops_2"} <= set(result)  # fmt: skip
    assert janus["rooms_measured"] == 1
    # Media went through Janus both ways (4 peer connections), and VideoRoom recorded.
    assert janus["fps"] > 0 and janus["screen_fps"] > 0, janus
    assert janus["forwarding_only"]["fps"] > 0 and janus["event_loops_2"]["fps"] > 0
    assert janus["loss"] < 1 and janus["p95_added_latency_ms"] == janus["p95_added_latency_ms"]
    assert janus["recorded_mb"] > 0
    assert result["ratio_vs_janus"] > 0


def test_peer_janus_without_janus_is_a_clear_error() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "capacity.py"), "--json", "--peer", "janus"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": "/nonexistent"},
    )  # fmt: skip
    assert out.returncode != 0
    assert "janus is not installed" in out.stderr
    assert out.stdout == ""


def test_janus_configs_keep_only_what_the_comparison_uses() -> None:
    from bench.lib.janus_server import janus_configs

    conf = janus_configs(8123)
    assert set(conf) == {"janus.jcfg", "janus.transport.http.jcfg",
                         "janus.plugin.videoroom.jcfg"}  # fmt: skip
    jcfg = conf["janus.jcfg"]
    assert 'interface = "127.0.0.1"' in jcfg and 'ice_enforce_list = "127.0.0.1"' in jcfg
    assert "libjanus_echotest.so" in jcfg and "libjanus_websockets.so" in jcfg
    assert "libjanus_videoroom.so" not in jcfg and "libjanus_http.so," not in jcfg
    assert "event_loops" not in jcfg  # as Debian ships it: a thread per handle
    assert "event_loops = 2" in janus_configs(8123, event_loops=2)["janus.jcfg"]
    http = conf["janus.transport.http.jcfg"]
    assert "port = 8123" in http and 'ip = "127.0.0.1"' in http


def _cell(cores: float) -> dict[str, Any]:
    return {**_measure(4, cores), "screen_fps": 5.0, "cores_per_room_runs": [cores]}


def test_capacity_summary_with_janus() -> None:
    from bench.capacity_parts.report import summary_json, table

    m = _measure(4, 0.012)
    result: dict[str, Any] = {
        "load_before": [0.5, 1.0, 2.0],
        "load_after": [1.5, 1.0, 2.0],
        "project": {"measure": m, "steps": [m], "max_rooms_per_process": 4,
                    "stopped_by": "max_rooms",
                    "server": {"recorder": "included", "forwarding": "rtp"}},  # fmt: skip
        "janus": {"rooms": 4, "rounds": 1, "project": _cell(0.012),
                  "janus": {**_cell(0.006), "recorded_mb": 2.0},
                  "project_forwarding": _cell(0.009), "janus_forwarding": _cell(0.005),
                  "janus_event_loops_2": _cell(0.004)},  # fmt: skip
        "elapsed_s": 70.3,
    }
    s = summary_json(result)
    assert s["janus"]["cores_per_room"] == 0.006
    assert s["janus"]["event_loops_2"]["cores_per_room"] == 0.004
    assert s["ratio_vs_janus"] == 2.0  # project / Janus, the recorded cells
    assert s["ratio_vs_janus_forwarding"] == 1.8
    assert s["ratio_vs_janus_event_loops_2"] == 3.0
    assert s["janus"]["held"] and s["janus"]["project_same_cells"]["recorded"]["held"]
    assert "vs Janus (VideoRoom, 4 rooms" in table(result)
    result["janus"]["project"]["fps_mean"] = 6.7  # a starved project process
    assert not summary_json(result)["janus"]["project_same_cells"]["recorded"]["held"]
    assert "project did NOT hold" in table(result)


def test_janus_dies_with_the_bench_that_started_it(tmp_path: Any) -> None:
    """A bench killed outright (a test's timeout) leaves no Janus behind."""
    script = tmp_path / "start.py"
    script.write_text(
        "import asyncio, sys\n"
        f"sys.path.insert(0, {str(BENCH.parent)!r})\n"
        "from bench.lib.janus_server import JanusProcess\n"
        "async def main():\n"
        "    janus = JanusProcess()\n"
        "    proc = await janus.start()\n"
        "    print(proc.pid, janus.dir, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    bench = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert bench.stdout is not None
    pid_text, janus_dir = bench.stdout.readline().split()
    pid = int(pid_text)
    bench.kill()
    bench.wait()
    shutil.rmtree(janus_dir, ignore_errors=True)  # the killed bench could not
    for _ in range(200):
        if not os.path.exists(f"/proc/{pid}") or "Z" in _state(pid):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        raise AssertionError("janus outlived the bench")


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"


def test_ratio_vs_janus_is_the_median_of_paired_rounds() -> None:
    """Each round's project cell over its own Janus cell, then the median: one round on a
    busy minute (both cells slow) does not move it, the spread shows it."""
    from bench.capacity_parts.janus import summary

    c: dict[str, Any] = {"rooms": 10, "rounds": 3, "project": _cell(0.02),
                         "janus": {**_cell(0.01), "recorded_mb": 2.0},
                         "project_forwarding": _cell(0.018), "janus_forwarding": _cell(0.009),
                         "janus_event_loops_2": _cell(0.008),
                         "pairs": {"recorded": [1.2, 2.0, 1.3], "forwarding": [1.1, 1.0, 1.4],
                                   "event_loops_2": [2.5, 2.4, 3.0]}}  # fmt: skip
    s = summary(c)
    assert s["ratio_vs_janus"] == 1.3 and s["ratio_vs_janus_spread"]["recorded"] == [1.2, 2.0]
    assert s["ratio_vs_janus_forwarding"] == 1.1 and s["ratio_vs_janus_event_loops_2"] == 2.5
    assert s["ratio_vs_janus_rounds"]["recorded"] == [1.2, 2.0, 1.3]
    del c["pairs"]  # no rounds to pair: the cells' medians
    assert summary(c)["ratio_vs_janus"] == 2.0
