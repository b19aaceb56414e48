"""A call through a bad network: frames at the agent, recovery, indicators on both pages.

The caller's Chromium page is relay only through the impairment relay (tests/impair.py)
in front of a real coturn; the agent's page talks to the server directly. One call, the
conditions one after another (each `--seconds`), then a blackout (`--blackout-s`) and the
time until the agent decodes frames again, nobody tapping anything (the goal: < 5 s).
Indicator values are the pages' `data-score` (0-5): the caller's own bars (`netq`), the
agent's view of the caller (`netq-caller`) and its own (`netq-agent`), at the end of each
condition and the lowest seen during it. Run it in a loopback-only namespace like the tests:

    unshare -n sh -c 'ip link set lo up && exec "$@"' sh \
        .venv/bin/python bench/impairment.py [--seconds 10] [--blackout-s 10] \
        [--warmup-s 15] [--camera busy|quadrants] [--json]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from aiohttp import web  # noqa: E402

from bench.lib import cli  # noqa: E402
from server.http.app import create_app  # noqa: E402
from tests.conftest import (  # noqa: E402
    CHROMIUM,
    FakeClock,
    Server,
    chromium_args,
    free_port,
    test_config,
    write_quadrant_y4m,
)
from tests.coturn import start_coturn, stop_coturn  # noqa: E402
from tests.impair import CLEAN, Impairment, ImpairRelay  # noqa: E402
from tests.impair_call import (  # noqa: E402
    FrameCounter,
    blackout,
    run_condition,
    start_call,
    write_busy_y4m,
)

CONDITIONS = [
    CLEAN,
    Impairment(loss=0.05),
    Impairment(loss=0.10),
    Impairment(loss=0.20),
    Impairment(delay_s=0.075, jitter_s=0.03),
    Impairment(rate_kbps=500),
]
LOW_CAP = Impairment(rate_kbps=500)
RECOVERY_GOAL_S = 5.0


def _row(got: dict[str, Any]) -> dict[str, Any]:
    end = got["indicators_end"]
    return {
        "condition": got["condition"],
        "seconds": got["seconds"],
        "frames_delivered": got["frames_delivered"],
        "fps_at_agent": got["fps_at_agent"],
        "uplink_kbps": got["uplink_kbps"],
        "recovery_s": got.get("recovery_s"),
        "indicators_end": {
            k: end[k] for k in ("caller_own", "agent_view_of_caller", "agent_own", "placeholder")
        },
        "indicators_lowest": got["lowest"],
        "suggest_low_seen": got["suggest_low_seen"],
        "session_survived": end["session"] != "ended" and end["call_state"] != "ended",
        "relay_dropped": {way: got["relay"][way]["dropped"] for way in ("up", "down")},
        **({"indicators_after": got["indicators_after"]} if "indicators_after" in got else {}),
    }


async def run(seconds: float, blackout_s: float, busy: bool, warmup_s: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="impairment-") as tmp:
        folder = Path(tmp)
        turn, proc = start_coturn(folder)
        relay = await ImpairRelay(("127.0.0.1", turn.port)).start()
        os.environ["CALLASSIST_TURN_SECRET"] = turn.secret
        port = free_port()
        cfg = test_config(
            port, media={"turn_urls": [f"turn:127.0.0.1:{relay.port}?transport=udp"]}
        )
        clock = FakeClock()
        app = create_app(cfg, folder / "data", clock=clock)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        server = Server(f"http://127.0.0.1:{port}", port, app, folder / "data", cfg, clock)
        camera = folder / "camera.y4m"
        if busy:
            write_busy_y4m(camera)
        else:
            write_quadrant_y4m(camera)
        rows: list[dict[str, Any]] = []
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=chromium_args(camera)
                )
                browser.callassist_devices = pw.devices  # type: ignore[attr-defined]
                agent_ctx, agent, caller_ctx, caller = await start_call(browser, server)
                counter = FrameCounter()
                await counter.read(agent)
                # The sender's bandwidth estimate ramps up first: not part of "clean".
                await asyncio.sleep(warmup_s)
                for impairment in CONDITIONS:
                    got = await run_condition(relay, agent, caller, counter, impairment, seconds)
                    rows.append(_row(got))
                # The same cap once the agent took the low-bandwidth mode (what suggest-low
                # offers): does the caller's video fit the link then?
                await agent.get_by_test_id("cam-mode").select_option("low")
                got = await run_condition(relay, agent, caller, counter, LOW_CAP, seconds)
                rows.append({**_row(got), "condition": LOW_CAP.describe() + ", low mode"})
                await agent.get_by_test_id("cam-mode").select_option("normal")
                rows.append(
                    _row(await blackout(relay, agent, caller, counter, seconds=blackout_s))
                )
                await agent_ctx.close()
                await caller_ctx.close()
                await browser.close()
        finally:
            relay.close()
            await runner.cleanup()
            stop_coturn(proc)
    recovery = rows[-1]["recovery_s"]
    return {
        "camera": "busy" if busy else "quadrants",
        "warmup_s": warmup_s,
        "seconds_per_condition": seconds,
        "blackout_s": blackout_s,
        "recovery_s": recovery,
        "recovery_goal_s": RECOVERY_GOAL_S,
        "recovery_meets_goal": recovery is not None and recovery < RECOVERY_GOAL_S,
        "all_survived": all(r["session_survived"] for r in rows),
        "conditions": rows,
    }


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"caller through the impairment relay + coturn, {result['camera']} camera, "
        f"{result['seconds_per_condition']:g} s per condition; scores 0-5 at the end "
        "(lowest seen)",
        f"  {'condition':32} {'frames':>6} {'fps':>5} {'up kbps':>7} {'caller':>7} "
        f"{'agent:caller':>12} {'agent':>6} {'suggest':>7} recovery",
    ]
    for r in result["conditions"]:
        end, low = r["indicators_end"], r["indicators_lowest"]

        def score(key: str, end: dict[str, Any] = end, low: dict[str, Any] = low) -> str:
            return f"{end.get(key)}({low.get(key, '-')})"

        rec = "" if r["recovery_s"] is None else f"{r['recovery_s']:.2f} s"
        lines.append(
            f"  {r['condition']:32} {r['frames_delivered']:>6} {r['fps_at_agent']:>5} "
            f"{r['uplink_kbps']:>7} {score('caller_own'):>7} "
            f"{score('agent_view_of_caller'):>12} {score('agent_own'):>6} "
            f"{'yes' if r['suggest_low_seen'] else 'no':>7} {rec}"
        )
    goal = "meets" if result["recovery_meets_goal"] else "MISSES"
    lines.append(
        f"  after a {result['blackout_s']:g} s blackout media is back at the agent in "
        f"{result['recovery_s']} s: {goal} the {result['recovery_goal_s']:g} s goal; "
        f"every session survived: {result['all_survived']}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per condition")
    parser.add_argument("--blackout-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=15.0, help="before the first one")
    parser.add_argument(
        "--camera",
        choices=["busy", "quadrants"],
        default="busy",
        help="busy: quadrants + a noise band (~Mbit/s, the cap bites); quadrants: ~90 kbps",
    )
    args = parser.parse_args()
    if args.seconds < 1 or args.blackout_s < 1:
        parser.error("--seconds and --blackout-s must be at least 1")
    cli.quiet_logs()
    result = asyncio.run(
        run(args.seconds, args.blackout_s, args.camera == "busy", args.warmup_s)
    )
    cli.emit(result, args.json, summary)


if __name__ == "__main__":
    main()
