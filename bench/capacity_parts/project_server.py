"""The project's server process: one server.media.MediaRoom per room with the configured
`media.forwarding` (+ the recorder participant, if recorder/ is there)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.lib.ice_watch import consent_expiries, lag_max, start_lag_probe, watch_consent
from bench.lib.media import FORWARDINGS, MediaRoom, camera_source, loopback
from bench.lib.rpc import serve_rpc


async def run_server_project(
    forwarding: str | None, with_recorder: bool, send_batching: bool = True
) -> None:
    # RTP-level forwarding is the only media path now (media.forwarding was retired); the
    # JSON keeps its `forwarding` field for comparisons with older results.
    config = loopback(send_batching=send_batching)
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # uvloop or asyncio
    watch_consent()
    # why peer connections ended (a soak): (monotonic time, room, participant, state)
    pc_events: list[tuple[float, str, str, str]] = []
    forwarding = forwarding or FORWARDINGS[0]
    rooms: dict[str, MediaRoom] = {}
    recorders: dict[str, Any] = {}
    recorder_status = "off"
    make_recorder: Callable[[MediaRoom], Any] | None = None
    if with_recorder:
        try:
            from bench.lib.recording import local_spool
            from recorder.crypto import new_recording
            from recorder.keys import MasterKeyring
            from recorder.participant import RecorderParticipant

            tmp = Path(tempfile.mkdtemp(prefix="callassist-rec-"))
            ring = MasterKeyring.from_directory(tmp / "keys")
            spool = await local_spool(tmp)

            def make_recorder(room: MediaRoom) -> Any:
                return RecorderParticipant(
                    camera_source(room), new_recording(ring), spool, codec=config.codec
                )

            recorder_status = "included"
        except Exception as exc:  # recorder/ missing or broken: measured without it
            recorder_status = f"unavailable: {type(exc).__name__}: {exc}"

    # Memory diagnosis: CAPACITY_TRACEMALLOC=1 (or "top") in the environment, then the
    # "tracemalloc" request returns (or prints) the largest growth since the last one.
    snapshots: list[Any] = []
    if os.environ.get("CAPACITY_TRACEMALLOC"):
        import tracemalloc

        tracemalloc.start(5)

    async def handle(msg: dict[str, Any]) -> Any:
        if msg["op"] == "tracemalloc":  # debugging memory: top growth since the last call
            import tracemalloc

            if not tracemalloc.is_tracing():
                tracemalloc.start(5)
            snap = tracemalloc.take_snapshot()
            top = []
            if os.environ.get("CAPACITY_TRACEMALLOC") == "top":
                for st in snap.statistics("lineno")[:12]:
                    print(st, file=sys.stderr)
            if snapshots:
                stats = snap.compare_to(snapshots[-1], "traceback")[:8]
                top = [[str(s.size_diff), *s.traceback.format()[-6:]] for s in stats]
            snapshots[:] = [snap]
            return top
        if msg["op"] == "summary":
            out: dict[str, Any] = {"recorder": recorder_status, "forwarding": forwarding,
                                   "event_loop": loop, "send_batching": send_batching,
                                   "send_batches": send_batches(rooms)}  # fmt: skip
            out["pc_ended"] = [e for e in pc_events if e[3] in ("failed", "closed")]
            out["consent_expired"] = consent_expiries()
            out["loop_lag_max_s"] = lag_max()
            if recorders:
                recorded = [r.stats.frames_received for r in recorders.values()]
                out["recorder_frames_received"] = sum(recorded)
                out["recorder_segments"] = sum(r.stats.segments for r in recorders.values())
                out["recorder_frames_lost"] = sum(r.stats.frames_lost for r in recorders.values())
            return out
        name = msg["room"]
        room = rooms.get(name)
        if room is None:
            def on_event(e: Any, room_name: str = name) -> None:
                if e.kind == "pc_state":
                    pc_events.append((time.monotonic(), room_name, e.participant_id, e.value))

            room = rooms[name] = MediaRoom(name, config, on_event=on_event)
            if make_recorder is not None:
                rec = recorders[name] = make_recorder(room)
                await rec.start()
        return await room.handle_offer(msg["participant"], msg["role"], 1, msg["sdp"])

    lag_probe = start_lag_probe()  # noqa: F841 (kept alive for the process's life)
    port = await serve_rpc(handle)
    print(json.dumps({"port": port, "forwarding": forwarding, "event_loop": loop}), flush=True)
    await asyncio.Event().wait()


def send_batches(rooms: dict[str, MediaRoom]) -> dict[str, Any]:
    """How the forwarded packets went out (server/media/send_batch.py's counts, summed
    over the rooms): datagrams sent by the outboxes, the sendmsg calls that carried
    several, datagrams that took the transport's own path when a socket was full."""
    total = {k: sum(room.send_batches[k] for room in rooms.values())
             for k in ("gso", "gso_calls", "single", "to_transport")}  # fmt: skip
    return {"datagrams": total["gso"] + total["single"], "gso_sendmsg": total["gso_calls"],
            "to_transport": total["to_transport"]}  # fmt: skip
