"""Janus (Debian's `janus`, VideoRoom) as a comparison: the same rooms, the same clients
(bench/capacity_parts/clients.py, bench/lib/peers.py), measured the same way (`Run`).

VideoRoom has one peer connection per direction: per room the caller publishes the camera
and subscribes to the agent's screen, the agent the reverse (4 peer connections where the
project has 2). In the recorded cells the caller's camera is recorded by VideoRoom's own
`record` (.mjr files), as the project records the camera.

Cells, interleaved A/B (every other round B/A), each in a fresh server process: project
recorded, Janus recorded,
project forwarding only, Janus forwarding only, Janus recorded with `event_loops = 2`.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from bench.capacity_parts.measure import SCRIPT, Run
from bench.capacity_parts.room import HOLD_FPS, holds
from bench.lib.janus_client import JanusError, JanusSession, feed_id, room_id
from bench.lib.janus_server import JanusProcess
from bench.lib.media import rtp_hooks
from bench.lib.peers import ClipTrack, FrameCounter, add_clip_sender
from bench.lib.rpc import Child
from bench.lib.stats import ratio
from bench.lib.usage import rss_mb

ANCHOR_AFTER_S = 1.0


async def run_janus_clients(role: str, port: int, record: bool, sender: str = "wire") -> None:
    """A client process (callers or agents) of a Janus cell: `serve_clients` with VideoRoom
    peer connections instead of one peer connection a room, the clip sent by the same
    sender as the project's cells (`sender`: a fair A/B)."""
    from bench.capacity_parts.clients import serve_clients

    session = await JanusSession(f"http://127.0.0.1:{port}/janus").start()
    caller = role == "callers"
    mine, theirs = ("camera", "screen") if caller else ("screen", "camera")
    background: list[asyncio.Task[None]] = []

    async def connect(
        name: str, track: ClipTrack, counter: FrameCounter
    ) -> tuple[list[RTCPeerConnection], int]:
        room = room_id(name)
        # Anchored later (`subscribe`): the agent's first keyframe is ambiguous here.
        anchor, counter.want_anchor = counter.want_anchor, False
        handle = await session.attach()
        await session.create_room(handle, room)
        pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        add_clip_sender(pub, track, sender)
        await pub.setLocalDescription(await pub.createOffer())
        answer = await session.publish(handle, room, feed_id(name, mine),
                                       pub.localDescription.sdp, record and caller)  # fmt: skip
        await pub.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        pcs = [pub]
        background.append(asyncio.ensure_future(subscribe(room, feed_id(name, theirs),
                                                          counter, pcs, anchor)))  # fmt: skip
        return pcs, 2

    async def subscribe(room: int, feed: int, counter: FrameCounter,
                        pcs: list[RTCPeerConnection], anchor: bool) -> None:  # fmt: skip
        """Once the other side publishes (agents join first: their callers are not there
        yet), subscribe to its feed; the peer connection joins the room's list.

        The agent anchors on a keyframe from ANCHOR_AFTER_S after its subscription on:
        the caller already sent its first keyframe, Janus asks for another when the
        subscriber joins, so the clip restarts a few frames apart and the first keyframe
        the agent gets matches either (measure.candidates: the frames of the window cannot
        tell, and the wrong one adds 2-4 frames of latency). A keyframe seconds later (the
        clip's next cycle) leaves one candidate within reach."""
        handle = await session.attach()
        for _ in range(300):
            try:
                offer = await session.subscribe(handle, room, feed)
                break
            except JanusError:
                await asyncio.sleep(0.1)
        else:
            return
        sub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await sub.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        rtp_hooks.tap_rtp(sub.getTransceivers()[0].receiver, counter)
        await sub.setLocalDescription(await sub.createAnswer())
        pcs.append(sub)
        await session.start_subscriber(handle, room, sub.localDescription.sdp)
        if anchor:
            await asyncio.sleep(ANCHOR_AFTER_S)
            counter.want_anchor = True

    async def close() -> None:
        for task in background:
            task.cancel()
        await session.close()

    await serve_clients(role, None, close=close, connect=connect, sender=sender)


class JanusRun(Run):
    """A fresh Janus process and its two client processes."""

    def __init__(self, label: str, record: bool, event_loops: int = 0) -> None:
        super().__init__(label, [])
        self.record = record
        self.janus = JanusProcess(event_loops)

    async def __aenter__(self) -> JanusRun:
        self.server = Child(await self.janus.start())
        args = ["--server", "janus", "--port", str(self.janus.port), *self.client_args]
        if not self.record:
            args.append("--no-recorder")
        self.callers = await Child.start(SCRIPT, "--role", "callers", *args)
        self.agents = await Child.start(SCRIPT, "--role", "agents", *args)
        await asyncio.sleep(1.0)
        self.base_rss = rss_mb(self.server.pid)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await super().__aexit__(*exc)
        finally:
            self.janus.cleanup()

    async def grow(self, rooms: int) -> None:
        await super().grow(rooms)
        # the subscribers: the agents' wait for their callers' cameras
        for p in (self.agents, self.callers):
            await p.call(op="wait")
        # every agent's anchor (`subscribe`: the clip's next cycle, within its 5 s)
        deadline = asyncio.get_running_loop().time() + 12
        while asyncio.get_running_loop().time() < deadline:
            if len(await self.agents.call(op="anchors")) >= rooms:
                break
            await asyncio.sleep(0.25)

    async def measure(self, warmup: float, window: float) -> dict[str, Any]:
        m = await super().measure(warmup, window)
        m["recorded_mb"] = round(self.janus.recorded_bytes() / 1e6, 2)
        return m


# project cell / Janus cell of the same round: the paired ratios (`compare`)
PAIRS = {
    "recorded": ("project", "janus"),
    "forwarding": ("project_forwarding", "janus_forwarding"),
    "event_loops_2": ("project", "janus_event_loops_2"),
}


async def compare(
    quick: bool, project_args: dict[str, list[str]], max_rooms: int
) -> dict[str, Any]:
    """The five cells (module doc), `rounds` times each, A/B interleaved, every other
    round in reverse order (A B B A: a load that drifts over the minutes of the run
    weighs on both sides alike); per cell the run with the median CPU per room, and per
    pair (PAIRS) the ratio of each round's two cells. `project_args`: "recorded" and
    "forwarding".

    The ratio is the median of the rounds' ratios, not the ratio of the cells' medians: a
    fresh process' CPU per room varies by up to 2x from run to run on the shared 2 cores
    (Janus 0.0137-0.0269 in 3 rounds), mostly with what else runs on the machine at that
    minute, which the two cells of a round, a few seconds apart, share."""
    rooms, rounds = (4, 1) if quick else (10, 3)
    rooms = min(rooms, max_rooms)
    warmup, window = (3, 5) if quick else (4, 12)
    window = window if Run.timing[1] is None else Run.timing[1]  # `--window` (measure)
    makers = {
        "project": lambda: Run("project", project_args["recorded"]),
        "janus": lambda: JanusRun("janus", record=True),
        "project_forwarding": lambda: Run("project", project_args["forwarding"]),
        "janus_forwarding": lambda: JanusRun("janus", record=False),
        "janus_event_loops_2": lambda: JanusRun("janus", record=True, event_loops=2),
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in makers}
    for r in range(rounds):
        order = list(makers) if r % 2 == 0 else list(reversed(makers))
        for key in order:
            async with makers[key]() as run:
                await run.grow(rooms)
                runs[key].append(await run.measure(warmup, window))
    out: dict[str, Any] = {"rooms": rooms, "rounds": rounds, "window_s": window}
    for key, ms in runs.items():
        ordered = sorted(ms, key=lambda m: m["cores_per_room"])
        out[key] = {**ordered[len(ordered) // 2],
                    "cores_per_room_runs": [m["cores_per_room"] for m in ms]}  # fmt: skip
    out["pairs"] = {
        name: [ratio(p["cores_per_room"], j["cores_per_room"], 3)
               for p, j in zip(runs[a], runs[b], strict=True)]
        for name, (a, b) in PAIRS.items()
    }  # fmt: skip
    return out


def paired_ratio(c: dict[str, Any], name: str) -> tuple[float, list[float]]:
    """The median of the rounds' ratios of pair `name` and its spread (min, max); the
    ratio of the two cells' medians when the result has no pairs (an older result)."""
    pairs = c.get("pairs", {}).get(name)
    if not pairs:
        a, b = PAIRS[name]
        r = ratio(c[a]["cores_per_room"], c[b]["cores_per_room"], 2)
        return r, [r, r]
    return round(statistics.median(pairs), 2), [round(min(pairs), 2), round(max(pairs), 2)]


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "cores_per_room": m["cores_per_room"],
        "mem_mb_per_room": m["mem_mb_per_room"],
        "p95_added_latency_ms": m["latency_ms"]["p95"],
        "fps": m["fps_mean"],
        "loss": m["loss"],
        "screen_fps": m.get("screen_fps"),
        "kernel_share": _kernel_share(m),
        # a cell that does not hold (< 29 fps or >= 1% loss: a starved process) used less
        # CPU than the load needs: a ratio with it is no comparison
        "held": holds(m),
        "runs": m["cores_per_room_runs"],
    }


def _kernel_share(m: dict[str, Any]) -> float:
    user, system = m["server_user_system"]
    return round(system / max(user + system, 1e-9), 2)


def summary(c: dict[str, Any]) -> dict[str, Any]:
    """`janus` and `ratio_vs_janus` (project/Janus CPU per room) of the summary JSON."""
    janus = {
        **_brief(c["janus"]),
        "rooms_measured": c["rooms"],
        "rounds": c["rounds"],
        "peer_connections_per_room": 4,
        "recorded_mb": c["janus"].get("recorded_mb"),
        "forwarding_only": _brief(c["janus_forwarding"]),
        "event_loops_2": _brief(c["janus_event_loops_2"]),
        "project_same_cells": {
            "recorded": _brief(c["project"]),
            "forwarding_only": _brief(c["project_forwarding"]),
        },
    }
    rec, fw, el2 = (paired_ratio(c, k) for k in ("recorded", "forwarding", "event_loops_2"))
    return {
        "janus": janus,
        # project/Janus CPU per room: the median of the rounds' paired ratios
        "ratio_vs_janus": rec[0],
        "ratio_vs_janus_forwarding": fw[0],
        "ratio_vs_janus_event_loops_2": el2[0],
        # (min, max) of the rounds' ratios, and each round's
        "ratio_vs_janus_spread": {"recorded": rec[1], "forwarding": fw[1],
                                  "event_loops_2": el2[1]},  # fmt: skip
        "ratio_vs_janus_rounds": c.get("pairs"),
    }


def summary_line(c: dict[str, Any]) -> str:
    s = summary(c)
    j = s["janus"]
    held = {k: "held" if holds(c[k]) else f"did NOT hold (< {HOLD_FPS:.0f} fps or >= 1% loss)"
            for k in ("project", "janus")}  # fmt: skip
    spread = s["ratio_vs_janus_spread"]
    return (
        f"vs Janus (VideoRoom, {c['rooms']} rooms, {c['rounds']} round(s)): project/janus CPU "
        f"per room {s['ratio_vs_janus']}x recorded (median of the rounds' ratios, "
        f"{spread['recorded'][0]}-{spread['recorded'][1]}; "
        f"{c['project']['cores_per_room']:.4f} vs "
        f"{j['cores_per_room']:.4f}), {s['ratio_vs_janus_forwarding']}x forwarding only, "
        f"{s['ratio_vs_janus_event_loops_2']}x vs event_loops=2 "
        f"({j['event_loops_2']['cores_per_room']:.4f}); Janus {j['mem_mb_per_room']:.2f} "
        f"MB/room, p95 {j['p95_added_latency_ms']:.1f} ms, {j['fps']:.1f} fps; project "
        f"{held['project']}, Janus {held['janus']}"
    )
