"""First frame: the caller's tap -> painted at the agent (Chromium); camera -> decoded (aiortc).

Two figures. The media path alone: a new MediaRoom per session, aiortc clients on
loopback, SDP exchanged in-process; the agent connects first and waits (as in the
product), then the caller connects and its camera starts when its sender pulls the first
frame; measured from that moment to the first frame the agent's aiortc client decodes.

The browser (`"browser"` in the JSON, bench/lib/first_frame_browser.py): real Chromium,
the real pages, the caller's tap on "start camera" -> the first frame painted in the
agent's <video>, with the steps in between, with and without the caller's pre-warm
(docs/media-performance.md, "First frame"). Run it in a loopback-only namespace:

    unshare -n sh -c 'ip link set lo up && exec "$@"' sh \
        .venv/bin/python bench/first_frame.py [--runs 10] [--browser-runs N] \
        [--no-browser] [--codec VP8|H264] [--json]
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


async def run(runs: int, codec: str, browser_runs: int) -> dict[str, Any]:
    samples = [await one_session(i, codec) for i in range(runs)]
    browser = None
    if browser_runs:
        from bench.lib import first_frame_browser  # playwright only when it is wanted

        browser = await first_frame_browser.run(browser_runs)
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
        "browser": browser,
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
        + _browser_summary(result["browser"])
    )


def _browser_summary(b: dict[str, Any] | None) -> str:
    if not b:
        return ""
    off = b["without_prewarm"]
    goal = "meets" if b["median_ms"] < 300 else "MISSES"
    lines = [
        f"\nbrowser (Chromium), tap on 'start camera' -> painted at the agent, {b['runs']} "
        f"sessions each:",
        f"  pre-warm: median {b['median_ms']:.0f} ms, p95 {b['p95_ms']:.0f} ms; {goal} the "
        f"300 ms median goal",
        f"  without:  median {off['median_ms']:.0f} ms, p95 {off['p95_ms']:.0f} ms",
        "  step (median ms after the tap; < 0: before it)   pre-warm   without",
    ]
    names = [n for n in first_frame_steps() if n in off["steps"] or n in b["steps"]]
    for name in names:
        on_v, off_v = b["steps"].get(name), off["steps"].get(name)
        fmt = lambda v: f"{v:9.0f}" if v is not None else "        -"  # noqa: E731
        lines.append(f"  {name:<47}{fmt(on_v)} {fmt(off_v)}")
    return "\n".join(lines)


def first_frame_steps() -> list[str]:
    from bench.lib.first_frame_browser import STEPS

    return STEPS


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--codec", choices=["VP8", "H264"], default="VP8")
    parser.add_argument(
        "--browser-runs", type=int, help="Chromium sessions per mode (default: --runs)"
    )
    parser.add_argument("--no-browser", action="store_true", help="the aiortc figure only")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    browser_runs = args.runs if args.browser_runs is None else args.browser_runs
    if args.no_browser:
        browser_runs = 0
    if browser_runs < 0:
        parser.error("--browser-runs must be at least 0")
    cli.quiet_logs()
    cli.emit(asyncio.run(run(args.runs, args.codec, browser_runs)), args.json, summary)


if __name__ == "__main__":
    main()
