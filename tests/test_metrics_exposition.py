"""/metrics as one valid exposition: every metric served once (one owner each), and the
recording metrics, owned by server/recording/service.py, move while a real recording runs.

Parsed with prometheus_client's own parser, as Prometheus reads it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from server.observe.metrics import METRICS
from server.recording.service import RECORDING
from tests.conftest import scraper
from tests.media_helpers import wait_for
from tests.test_recorder import caller_with_camera, wait_recording


async def exposition(server: Any) -> str:
    async with (
        aiohttp.ClientSession(headers=scraper(server)) as http,
        http.get(server.url + "/metrics") as r,
    ):
        assert r.status == 200
        return await r.text()


def check_unique(text: str) -> dict[str, dict[tuple, float]]:
    """Fails naming any metric served twice; {sample name: {labels: value}} otherwise."""
    for kind in ("# TYPE ", "# HELP "):
        names = Counter(line.split(" ")[2] for line in text.splitlines() if line.startswith(kind))
        twice = sorted(n for n, k in names.items() if k > 1)
        assert not twice, f"{kind.strip()} line more than once for {twice}"
    families = list(text_string_to_metric_families(text))
    names = Counter(f.name for f in families)
    assert not [n for n, k in names.items() if k > 1], names
    samples: dict[str, dict[tuple, float]] = {}
    for family in families:
        for s in family.samples:
            key = tuple(sorted(s.labels.items()))
            assert key not in samples.get(s.name, {}), f"sample twice: {s.name} {key}"
            samples.setdefault(s.name, {})[key] = s.value
    return samples


def one(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


async def test_every_metric_once_and_recording_metrics_move(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(recording={"segment_s": 1.0})
    before = check_unique(await exposition(server))
    assert one(before, "callassist_recording_bytes_total") == 0
    assert one(before, "callassist_recordings_active") == 0
    # Declared once for a recorder that never fed them; the recording feature owns its own.
    for gone in ("callassist_recording_s3_errors_total", "callassist_recording_s3_retries_total"):
        assert gone not in before

    agent = await server.agent()
    caller, sid = await caller_with_camera(server, agent)
    status, body = await agent.post(f"/api/sessions/{sid}/recording", {"action": "start"})
    assert status == 200, body
    await wait_recording(caller.sig, True)
    recorder = server.app[RECORDING].active[sid].recorder
    await wait_for(lambda: recorder.stats.segments >= 2, 15, "two segments")

    live = check_unique(await exposition(server))  # with a recording running
    assert one(live, "callassist_recordings_active") == 1
    assert one(live, "callassist_recordings_total", outcome="started") == 1
    assert one(live, "callassist_recording_segments_total") >= 2
    assert one(live, "callassist_recording_frames_total") > 0
    written = one(live, "callassist_recording_bytes_total")
    assert written > 0
    assert written <= recorder.stats.bytes_cipher  # read live from the recorder

    status, _ = await agent.post(f"/api/sessions/{sid}/recording", {"action": "stop"})
    assert status == 200
    await wait_recording(caller.sig, False)
    await wait_for(lambda: sid not in server.app[RECORDING].active, 10, "recording to end")
    assert await server.app[RECORDING].spool.drain(10)

    done = check_unique(await exposition(server))
    assert one(done, "callassist_recordings_active") == 0
    assert one(done, "callassist_recordings_total", outcome="completed") == 1
    (row,) = await server.db.list_recordings(sid)
    # Ended recordings keep their bytes: header, every segment and the manifest.
    assert one(done, "callassist_recording_bytes_total") == row["bytes"] > written
    assert one(done, "callassist_recording_uploaded_bytes_total") >= row["bytes"]
    assert one(done, "callassist_recording_spool_bytes") == 0
    assert one(done, "callassist_recording_spool_objects") == 0
    await caller.close()


async def test_a_second_owner_of_a_name_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    """add_collector checks the names when it is called (at create_app), not at a scrape."""

    def again() -> Any:
        g = GaugeMetricFamily("callassist_recording_spool_bytes", "a second owner")
        g.add_metric([], 1)
        yield g

    with pytest.raises(ValueError, match="callassist_recording_spool_bytes"):
        server.app[METRICS].add_collector(again)
    check_unique(await exposition(server))
