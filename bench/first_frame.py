"""Time to first frame through a MediaRoom: caller camera start -> first frame decoded at
the agent, aiortc clients on loopback, SDP exchanged in-process.

Each session: a new MediaRoom; the agent connects first and waits (as in the product);
then the caller connects and its camera starts when its sender pulls the first frame. We
measure from that moment to the first frame the agent's aiortc client decodes.

    python bench/first_frame.py [--runs 10] [--codec VP8|H264] [--json]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.lib import cli  # noqa: E402
from bench.lib.media import MediaRoom, loopback  # noqa: E402
from bench.lib.stats import percentile  # noqa: E402

# The clients are the same browser-shaped aiortc peers the media tests use (they decode).
from tests.media_helpers import BLUE, RED, Client, wait_for  # noqa: E402


async def one_session(index: int, codec: str) -> dict[str, float]:
    room = MediaRoom(f"bench-{index}", loopback(codec=codec), on_event=lambda e: None)
    agent, caller = Client("agent", BLUE), Client("caller", RED)
    try:
        await agent.connect(room, "agent", 1)
        await wait_for(lambda: agent.pc.connectionState == "connected", 10, "agent connected")
        offered = time.monotonic()
        await caller.connect(room, "caller", 1)
        await agent.wait_frames(1, 10)
        assert caller.track is not None and caller.track.started_at is not None
        assert agent.first_frame_at is not None
        return {
            "camera_to_agent_s": agent.first_frame_at - caller.track.started_at,
            "offer_to_agent_s": agent.first_frame_at - offered,
        }
    finally:
        await caller.close()
        await agent.close()
        await room.close()


async def run(runs: int, codec: str) -> dict[str, Any]:
    samples = [await one_session(i, codec) for i in range(runs)]
    first = [s["camera_to_agent_s"] for s in samples]
    offer = [s["offer_to_agent_s"] for s in samples]
    return {
        "runs": runs,
        "codec": codec,
        "median_s": round(statistics.median(first), 4),
        "p95_s": round(percentile(first, 0.95), 4),
        "min_s": round(min(first), 4),
        "max_s": round(max(first), 4),
        "offer_to_first_frame_median_s": round(statistics.median(offer), 4),
        "offer_to_first_frame_p95_s": round(percentile(offer, 0.95), 4),
        "samples_s": [round(v, 4) for v in first],
    }


def summary(result: dict[str, Any]) -> str:
    goal = "meets" if result["median_s"] < 0.3 else "MISSES"
    return (
        f"first frame at the agent, {result['runs']} sessions, {result['codec']}, loopback:\n"
        f"  camera start -> decoded: median {result['median_s'] * 1000:.0f} ms, "
        f"p95 {result['p95_s'] * 1000:.0f} ms "
        f"(min {result['min_s'] * 1000:.0f}, max {result['max_s'] * 1000:.0f}); "
        f"{goal} the 300 ms median goal\n"
        f"  caller offer -> decoded: median "
        f"{result['offer_to_first_frame_median_s'] * 1000:.0f} ms, "
        f"p95 {result['offer_to_first_frame_p95_s'] * 1000:.0f} ms"
    )


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--codec", choices=["VP8", "H264"], default="VP8")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    cli.quiet_logs()
    cli.emit(asyncio.run(run(args.runs, args.codec)), args.json, summary)


if __name__ == "__main__":
    main()
