"""The benches still run and print the JSON objects docs/ and README describe (keys, not
numbers: speed is the benches' business, never a test's). Small sizes, real processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def run_json(script: str, *args: str, timeout: float = 110) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(BENCH / script), "--json", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout  # one JSON object, nothing else on stdout
    return json.loads(lines[0])


def test_encrypt_json_keys() -> None:
    result = run_json("encrypt.py", "--mb", "1", "--rounds", "1")
    assert set(result) == {"encrypt_mb_s", "raw_aesgcm_mb_s", "ratio"}
    assert result["encrypt_mb_s"] > 0 and result["raw_aesgcm_mb_s"] > 0


def test_recorder_json_keys() -> None:
    # One second: aiortc's MediaRecorder (the comparison) transcodes every frame, twice
    # (with and without muxing): most of this test's CPU.
    result = run_json(
        "recorder.py", "--seconds", "1", "--segment-s", "0.5", "--rounds", "1",
        "--encrypt-mb", "1",
    )  # fmt: skip
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
    assert result["input"]["frames"] == 30
    assert result["recorder"]["segments"] == 2
    assert set(result["mediarecorder"]) == {"cpu_s", "frames", "stored_bytes"}


def test_recorder_memory_json_keys() -> None:
    result = run_json("recorder_memory.py", "--rooms", "2", "--seconds", "3", "--every", "1",
                      "--segment-s", "1")  # fmt: skip
    assert set(result) == {
        "load_before", "rooms", "seconds", "segment_s", "malloc_mmap_threshold",
        "cold_rss_mb", "base_rss_mb", "rss_mb", "mem_mb_per_room", "mem_mb_per_room_cold",
        "growth_mb_per_room_per_min", "segments_per_room", "frames_per_room_min",
        "frames_lost", "frames_pushed_per_room", "load_after",
    }  # fmt: skip
    assert result["rooms"] == 2 and len(result["rss_mb"]) >= 3
    assert min(result["segments_per_room"]) >= 2  # every room kept recording


def test_first_frame_json_keys() -> None:
    # One aiortc session, and one Chromium session with and one without the pre-warm.
    result = run_json("first_frame.py", "--runs", "1", timeout=400)
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
        "browser",
    }
    assert result["runs"] == 1 and len(result["samples_s"]) == 1
    browser = result["browser"]
    summary = {"median_ms", "p95_ms", "min_ms", "max_ms", "samples_ms", "steps"}
    assert set(browser) == summary | {"runs", "prewarm", "without_prewarm"}
    assert set(browser["without_prewarm"]) == summary
    for mode in (browser, browser["without_prewarm"]):
        assert len(mode["samples_ms"]) == 1 and mode["median_ms"] > 0
        # The tap -> paint chain, each step in ms after the tap.
        assert {"gum_done", "offer_sent", "pc_connected", "painted"} <= set(mode["steps"])
    # Pre-warmed: the connection was up before the tap; without: the tap made it.
    without = browser["without_prewarm"]["steps"]
    assert browser["steps"]["pc_connected"] < 0 < without["pc_connected"]


def test_first_frame_without_browser() -> None:
    result = run_json("first_frame.py", "--runs", "1", "--no-browser")
    assert result["browser"] is None and len(result["samples_s"]) == 1


def test_impairment_json_keys() -> None:
    # A real call (Chromium, coturn, the relay), every condition for a second.
    # A browser call under a loaded machine: more time than the in-process benches.
    result = run_json(
        "impairment.py", "--seconds", "1", "--blackout-s", "1", "--warmup-s", "0", timeout=400
    )
    assert set(result) == {
        "camera",
        "warmup_s",
        "seconds_per_condition",
        "blackout_s",
        "recovery_s",
        "recovery_goal_s",
        "recovery_meets_goal",
        "all_survived",
        "conditions",
    }
    assert [c["condition"] for c in result["conditions"]] == [
        "clean",
        "5% loss",
        "10% loss",
        "20% loss",
        "+150 ms RTT ±30 ms jitter",
        "500 kbps",
        "500 kbps, low mode",
        "blackout",
    ]
    assert set(result["conditions"][-1]["indicators_end"]) == {
        "caller_own",
        "agent_view_of_caller",
        "agent_own",
        "placeholder",
    }


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
    result = reply["result"]
    assert {k: result[k] for k in ("recorder", "forwarding")} == {"recorder": "off",
                                                                  "forwarding": "rtp"}
    # the loop the product's server runs (media.event_loop's default)
    assert info["event_loop"] == result["event_loop"] == "uvloop"
    # what a soak reads from it: nothing ended yet, no consent expired, the loop's lag
    assert result["pc_ended"] == [] and result["consent_expired"] == []
    assert result["loop_lag_max_s"] >= 0


async def test_capacity_project_server_on_asyncio() -> None:
    info, reply = await _server_summary("--server", "project", "--no-recorder",
                                        "--event-loop", "asyncio")  # fmt: skip
    assert info["event_loop"] == reply["result"]["event_loop"] == "asyncio"


async def test_capacity_project_server_with_recorder() -> None:
    info, reply = await _server_summary("--server", "project")
    assert reply["result"]["recorder"] == "included", reply


async def test_capacity_baseline_server_process() -> None:
    info, reply = await _server_summary("--server", "baseline")
    assert set(info) == {"port"}
    assert reply == {"id": 1, "result": {"rooms": 0}}


def _measure(rooms: int, cores_per_room: float) -> dict[str, Any]:
    return {
        "rooms": rooms,
        "window_s": 5.0,
        "server_cores": cores_per_room * rooms,
        "server_user_system": [0.1, 0.02],
        "cores_per_room": cores_per_room,
        "client_cores": {"callers": 0.3, "agents": 0.4},
        "server_rss_mb": 100.0,
        "mem_mb_per_room": 15.2,
        "fps_mean": 29.97,
        "fps_min": 29.5,
        "loss": 0.0,
        "latency_ms": {"p50": 3.5, "p95": 7.8, "p99": 70.0, "samples": 1000},
        "anchored_rooms": rooms,
    }


def test_capacity_summary_keys_and_ratio() -> None:
    from bench.capacity_parts.report import summary_json, table

    result: dict[str, Any] = {
        "load_before": [0.5, 1.0, 2.0],
        "load_after": [1.5, 1.0, 2.0],
        "baseline": {"measure": _measure(1, 1.69)},
        "project": {
            "measure": _measure(10, 0.0186),
            "steps": [_measure(10, 0.0186), _measure(20, 0.0166)],
            "max_rooms_per_process": 20,
            "stopped_by": "max_rooms",
            "server": {"recorder": "included", "forwarding": "rtp"},
        },
        "elapsed_s": 70.3,
        "client_sender": "wire",
    }
    s = summary_json(result)
    # docs/media-performance.md quotes this object: its keys are part of the bench's output.
    assert set(s) == {"baseline", "project", "ratio", "load", "elapsed_s", "ramp",
                      "ramp_columns", "client_sender"}  # fmt: skip
    assert s["client_sender"] == "wire"  # how the clients sent (--client-sender)
    assert set(s["baseline"]) == {
        "cores_per_room",
        "mem_mb_per_room",
        "p95_added_latency_ms",
        "fps",
        "loss",
        "rooms_measured",
    }
    assert set(s["project"]) == {
        "cores_per_room",
        "mem_mb_per_room",
        "p95_added_latency_ms",
        "max_rooms_per_process",
        "rooms_per_core",
        "rooms_measured",
        "fps",
        "loss",
        "forwarding",
        "event_loop",
        "send_batching",
        "send_batches",
        "recorder",
        "stopped_by",
        "client_cores_per_room",
        "p95_added_latency_ms_at_80",
        "held_at_80",
    }
    assert s["ratio"] == 90.9 and s["project"]["rooms_per_core"] == 53.8
    assert "baseline/project CPU per room: 90.9x" in table(result)
    # the ramp did not get to 80 rooms: null, and stopped_by says why
    assert s["project"]["p95_added_latency_ms_at_80"] is None
    assert s["project"]["client_cores_per_room"] == 0.07
    assert s["ramp_columns"][0] == "rooms" and s["ramp_columns"][-1] == "p95_ms"
    assert s["ramp"] == [[10, 0.186, 29.97, 0.0, 3.5, 7.8], [20, 0.332, 29.97, 0.0, 3.5, 7.8]]
    assert "p95 added latency at 80 rooms: not reached" in table(result)
    at80 = _measure(80, 0.012)
    at80["latency_ms"]["p95"] = 14.2
    result["project"]["steps"].append(at80)
    s = summary_json(result)
    assert s["project"]["p95_added_latency_ms_at_80"] == 14.2 and s["project"]["held_at_80"]
    assert "p95 added latency at 80 rooms: 14.2 ms" in table(result)
    del result["baseline"]
    s = summary_json(result)
    assert s["baseline"] is None and s["ratio"] is None
    assert "baseline/project" not in table(result)


def test_no_bench_script_shadows_a_standard_module() -> None:
    """`python bench/X.py` puts bench/ first on sys.path: a bench/inspect.py once broke
    `import asyncio` in every other bench script."""
    import sys

    clashes = [p.name for p in BENCH.glob("*.py") if p.stem in sys.stdlib_module_names]
    assert clashes == []


def test_media_internals_imported_in_one_place() -> None:
    """server/media/ changes are adapted in bench/lib/media.py alone."""
    importers = sorted(
        str(p.relative_to(BENCH))
        for p in BENCH.rglob("*.py")
        if any(
            f"{kw} server.{mod}" in p.read_text()
            for kw in ("from", "import")
            for mod in ("media", "core.config")
        )
    )
    assert importers == ["lib/media.py"]


def test_offer_memory_json_keys() -> None:
    # keys, not the figures: 0.2 s before each RSS reading instead of 1, 2 and 3 s
    result = run_json("offer_memory.py", "--rooms", "1", "--offers", "3", "--settle", "0.2")
    assert set(result) == {"rooms", "offers_per_room", "rss_before_mb", "rss_after_offers_mb",
                           "rss_after_end_mb", "kb_per_offer_kept"}  # fmt: skip
    assert result["rss_before_mb"] > 0


def test_cluster_state_json_keys() -> None:
    result = run_json("cluster_state.py", "--checks", "100", "--nodes", "2", "--rooms", "2")
    assert set(result) == {
        "limit_check_p50_ms", "limit_check_p95_ms", "local_limit_check_p50_us", "ops_nodes",
        "ops_rooms_per_node", "ops_entry_bytes", "ops_publish_p95_ms", "ops_view_p95_ms",
    }  # fmt: skip
    assert result["ops_nodes"] == 2 and result["limit_check_p50_ms"] > 0


@pytest.mark.timeout(420)  # tesseract and the cascades on 2 loaded cores, 4 reads at once
def test_inspect_json_keys() -> None:
    result = run_json("inspect_still.py", "--rounds", "1", timeout=300)
    assert set(result) == {
        "still", "rounds", "findings", "stages_ms", "ocr_child_cpu_ms", "in_process_cpu_ms",
        "cpu_ms_per_read", "redact_1280x720_ms", "redact_faces", "faces", "pool_memory",
        "load",
    }  # fmt: skip
    assert set(result["stages_ms"]) == {"decode", "codes", "text", "faces", "total"}
    assert result["faces"]["lfw_faces"] == 100 and "astronaut" in result["faces"]["pictures"]
    memory = result["pool_memory"]
    assert set(memory) == {"baseline_mb", "parallel_1", "parallel_2", "parallel_4"}
    assert memory["parallel_4"]["tesseracts_at_once"] >= 1
    assert memory["parallel_1"]["peak_total_mb"] > memory["baseline_mb"]


@pytest.mark.timeout(420)  # 36 stills through tesseract on a loaded core
def test_inspect_ocr_set_json_keys() -> None:
    """The OCR comparison with the server's engine (RapidOCR needs its own venv: not here)."""
    result = run_json("inspect_still.py", "--ocr-set", "--engine", "tesseract", timeout=400)
    assert set(result) == {"stills", "fields", "tesseract", "load"}
    assert result["stills"] == 36 and result["fields"] == 48
    t = result["tesseract"]
    assert set(t) == {"fields_exact", "fields_present", "cpu_ms_median", "cpu_ms_max",
                      "stills_not_all_exact"}  # fmt: skip
    assert 0 < t["fields_exact"] <= t["fields_present"] <= 48


@pytest.mark.timeout(540)  # three clusters start on 2 loaded cores: mostly waiting
def test_cluster_json_keys() -> None:
    """bench/cluster.py, tiny: 2 nodes behind haproxy, one room, one-room ramps."""
    result = run_json("cluster.py", "--nodes", "2", "--rooms", "1", "--step", "1",
                      "--max-rooms", "1", "--window", "1.5", "--warmup", "0.5", "--pings", "10",
                      timeout=500)  # fmt: skip
    assert {"nodes", "rooms", "cores_per_room", "signal_bridge_p95_ms", "placement",
            "rooms_per_machine_1_worker", "rooms_per_machine_2_workers"} <= set(result)  # fmt: skip
    assert result["nodes"] == 2 and result["rooms"] == 1
    assert sum(result["placement"].values()) == 1
    assert set(result["machine"]) == {"workers_1", "workers_2"}
    assert result["machine"]["workers_2"]["placement"] in ({"node1-w0": 1}, {"node1-w1": 1})


def test_cluster_failover_flag_without_its_module(capsys: Any) -> None:
    from bench import cluster

    try:
        cluster.load_failover("bench.no_such_failover_measurement")
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("no exit")
    assert "failover measurement not available" in capsys.readouterr().err


def _clip_scenario(
    restarts: tuple[int, ...], latency: float, anchor_n: int, keys_at: frozenset[int]
) -> tuple[dict[str, Any], float, float]:
    """A caller's 330 frames (30 fps, a 150-frame clip restarted at `restarts`), each
    arriving `latency` s later at the agent (RTP timestamps 3000 apart), the agent's
    anchor read from frame `anchor_n`, a 5 s window from 5 s on, and the keyframes the
    agent got (the frames at clip positions `keys_at`)."""
    from bench.capacity_parts.measure import candidates

    start, base = 100.0, 123_456_789
    sent = []
    for n in range(330):
        pos = (n - max(r for r in restarts if r <= n)) % 150
        sent.append((n, pos, start + n / 30))
    got = [((base + 3000 * n) & 0xFFFFFFFF, t + latency) for n, _, t in sent]
    anchor = (base + 3000 * anchor_n, sent[anchor_n][1], sent[anchor_n][2] + latency)
    t0, t1 = start + 5, start + 10
    frames = [f for f in got if t0 <= f[1] <= t1 + 0.5]
    keys = [ts for (ts, t), (_, pos, _) in zip(got, sent, strict=True)
            if pos in keys_at and t0 <= t <= t1 + 0.5]  # fmt: skip
    return {
        "frames": {"r0": frames},
        "sent": {"r0": [s for s in sent if t0 - 2 <= s[2] <= t1]},
        "offsets": {"r0": candidates(anchor, sent)},
        "keys": {"r0": keys},
    }, t0, t1


def test_frame_matching_with_an_ambiguous_anchor() -> None:
    """The caller's clip restarts at every keyframe request, so the anchor's clip
    position (0) was sent at frames 0, 40 and 60; the agent's anchor is frame 40's
    keyframe, arriving 0.8 s late, after frame 60 left. The latest send (60) would put
    every frame 20 off (0.67 s of latency missing); the keyframes the agent got fall on
    the clip's keyframe positions only with 40."""
    from bench.capacity_parts.measure import match_frames

    keys_at = frozenset({0, 92})
    s, t0, t1 = _clip_scenario((0, 40, 60), 0.8, 40, keys_at)
    assert len(s["offsets"]["r0"]) == 3
    expected, delivered, latencies, per_room = match_frames(
        s["frames"], s["sent"], s["offsets"], t0, t1, s["keys"], keys_at
    )
    assert expected > 100 and delivered == expected, per_room
    assert min(latencies) > 790 and max(latencies) < 810
    assert per_room["r0"]["chosen"] == 1 and per_room["r0"]["scores"][0][2] > 0  # bad keys
    # The latest candidate alone (the old calibration): the latency 20 frames short.
    _, _, wrong, _ = match_frames(s["frames"], s["sent"], {"r0": s["offsets"]["r0"][:1]}, t0, t1)
    assert max(wrong) < 200


def test_frame_matching_prefers_the_later_send_that_explains_the_frames() -> None:
    """The +200 ms of issue 18: the server asks for a keyframe when the agent subscribes,
    the clip restarts 6 frames after the caller's first keyframe, and the agent's anchor
    is the restarted keyframe (5 ms on the way). Both sends of position 0 match every
    frame of the window; the tie-break before counted frames that are any sent frame,
    and the frames arriving after the window are sent frames only when shifted back: it
    chose frame 0 and added 6 frames (200 ms) to every latency. Without keyframes to tell
    (the baseline's re-encoding), the lowest latency that is not negative is the later
    send; with them, the keyframes say so too."""
    from bench.capacity_parts.measure import match_frames

    keys_at = frozenset({0, 92})
    s, t0, t1 = _clip_scenario((0, 6), 0.005, 6, keys_at)
    assert len(s["offsets"]["r0"]) == 2
    for keys in (None, s["keys"]):
        expected, delivered, latencies, per_room = match_frames(
            s["frames"], s["sent"], s["offsets"], t0, t1, keys, keys_at
        )
        assert delivered == expected > 100, per_room
        assert min(latencies) > 4 and max(latencies) < 6, per_room
        assert per_room["r0"]["chosen"] == 0 and per_room["r0"]["old_choice"] == 1
        assert per_room["r0"]["p50"] == 5.0
        assert per_room["r0"]["scores"][1][0] == 6  # the other candidate: 6 frames earlier


def test_frame_matching_with_a_real_queue() -> None:
    """A real 250 ms queue: the agent's anchor is frame 0's keyframe, which arrived after
    the restart at frame 6 left, so the later send would explain the frames with 50 ms;
    the keyframes the agent got (positions 0 and 92 of the clip) fall off those positions
    with it, and the 250 ms stand."""
    from bench.capacity_parts.measure import match_frames

    keys_at = frozenset({0, 92})
    s, t0, t1 = _clip_scenario((0, 6), 0.25, 0, keys_at)
    _, _, latencies, per_room = match_frames(
        s["frames"], s["sent"], s["offsets"], t0, t1, s["keys"], keys_at
    )
    assert min(latencies) > 249 and max(latencies) < 251, per_room
    assert per_room["r0"]["scores"][0][2] > 0 and per_room["r0"]["scores"][1][2] == 0


def test_frame_matching_rejects_negative_latencies() -> None:
    """No keyframe in the window to tell: of two sends that match as many frames, the one
    that would have a frame arrive before it was sent is not the one."""
    from bench.capacity_parts.measure import choose

    base = {"matched": 140, "bad_keys": 0, "match": (set(), 0, [])}
    assert choose([{**base, "negative": 3, "p50": 1.0}, {**base, "negative": 0, "p50": 34.0},
                   {**base, "negative": 0, "p50": 68.0}]) == 1  # fmt: skip
    # many fewer frames matched (a clip cycle off) loses whatever its latency
    assert choose([{**base, "matched": 90, "negative": 0, "p50": 1.0},
                   {**base, "negative": 0, "p50": 9.0}]) == 1  # fmt: skip


def test_ramp_room_counts() -> None:
    """The full run's ramp visits 80 rooms (the latency goal) on its way up."""
    from bench.capacity_parts.steps import RAMP_AT, RAMP_ROOMS, next_rooms

    assert next_rooms(10, 4) == 14
    seen, rooms = [], 10
    while (nxt := next_rooms(rooms, RAMP_ROOMS)) is not None:
        seen.append(nxt)
        rooms = nxt
    assert RAMP_AT in seen and seen == sorted(seen) and seen[-1] > RAMP_AT
    assert next_rooms(RAMP_ROOMS[-1], RAMP_ROOMS) is None
async def test_a_clip_track_behind_its_schedule_yields_to_the_event_loop() -> None:
    """A caller whose sender is behind (a starved client process) must still let its event
    loop read sockets: without it the server's ICE consent checks went unanswered and the
    soak's media stopped (#18). aiortc's own tracks always await a sleep."""
    from bench.lib.peers import ClipTrack

    track = ClipTrack([b"\x00" * 10], 30, None)
    track.start = time.monotonic() - 0.5  # 15 frames behind, not "stalled"
    others = 0

    async def other() -> None:
        nonlocal others
        while True:
            others += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(other())
    try:
        await asyncio.sleep(0)
        before = others
        for _ in range(10):  # all due already: none needs to wait
            await track.recv()
        assert others >= before + 10, "recv() ran without giving the loop back"
    finally:
        task.cancel()


def test_ice_watch_counts_consent_expiries() -> None:
    """The soak's `consent_expired`: aioice's log line and the hook's, nothing else."""
    import logging

    from bench.lib.ice_watch import consent_expiries, watch_consent

    watch_consent()
    watch_consent()  # idempotent: one handler
    before = len(consent_expiries())
    logging.getLogger("aioice.ice").info("Connection(%s) Consent to send expired", 1)
    logging.getLogger("server.media.aiortc_hooks").info("Connection(2) Consent to send expired")
    logging.getLogger("aioice.ice").info("Connection(3) state changed")
    assert len(consent_expiries()) == before + 2
