"""The server's event loop: the project's room on uvloop against asyncio, same run.

The rooms of bench/capacity.py (the caller's camera forwarded and recorded, the agent's
screen forwarded; the same client processes, `Run.measure`), with the project's server
process on `asyncio`'s selector loop (A) and on uvloop (B, `media.event_loop`'s default),
each cell in fresh processes, A/B interleaved `--rounds` times. Reported: server cores per
room of every cell, the median of the paired ratios B/A, fps, loss and p95 added latency,
and whether every cell held (>= 29 fps, < 1% loss: a starved cell is no comparison).

    python bench/event_loop.py [--rooms 20] [--rounds 3] [--window 10] [--warmup 4]
                               [--no-recorder] [--json]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.capacity_parts.measure import Run  # noqa: E402
from bench.capacity_parts.room import holds  # noqa: E402
from bench.capacity_parts.steps import project_args  # noqa: E402
from bench.lib import cli  # noqa: E402
from bench.lib.clips import make_clip  # noqa: E402
from bench.lib.usage import loadavg  # noqa: E402

LOOPS = ("asyncio", "uvloop")


def _cell(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "cores_per_room": m["cores_per_room"],
        "fps": m["fps_mean"],
        "loss": m["loss"],
        "p95_added_latency_ms": m["latency_ms"]["p95"],
        "mem_mb_per_room": m["mem_mb_per_room"],
        "held": holds(m),
    }


async def compare(
    rooms: int, rounds: int, recorder: bool, window: float, warmup: float = 4.0
) -> dict[str, Any]:
    from bench.capacity_parts.room import CAMERA, SCREEN

    make_clip(CAMERA), make_clip(SCREEN)  # cached before the clocks start
    out: dict[str, Any] = {"rooms": rooms, "rounds": rounds, "recorder": recorder,
                           "load_before": loadavg()}  # fmt: skip
    cells: dict[str, list[dict[str, Any]]] = {loop: [] for loop in LOOPS}
    for _ in range(rounds):
        for loop in LOOPS:
            async with Run(loop, project_args(None, recorder, loop)) as run:
                await run.grow(rooms)
                cells[loop].append(_cell(await run.measure(warmup, window)))
    pairs = [b["cores_per_room"] / a["cores_per_room"]
             for a, b in zip(cells["asyncio"], cells["uvloop"], strict=True)
             if a["cores_per_room"] > 0]  # fmt: skip
    out.update(
        cells=cells,
        ratio_uvloop_vs_asyncio=round(statistics.median(pairs), 3) if pairs else None,
        ratios=[round(r, 3) for r in pairs],
        all_held=all(c["held"] for cs in cells.values() for c in cs),
        load_after=loadavg(),
    )
    return out


def summary(r: dict[str, Any]) -> str:
    lines = [f"{r['rooms']} rooms, recorder {'on' if r['recorder'] else 'off'}, "
             f"load {r['load_before'][0]} -> {r['load_after'][0]}"]  # fmt: skip
    for loop, cs in r["cells"].items():
        cores = ", ".join(f"{c['cores_per_room']:.4f}" for c in cs)
        lines.append(
            f"  {loop:8} cores/room {cores}; p95 "
            + ", ".join(f"{c['p95_added_latency_ms']:.1f}" for c in cs)
            + " ms"
        )
    lines.append(f"uvloop / asyncio CPU per room: median {r['ratio_uvloop_vs_asyncio']} "
                 f"(rounds {r['ratios']}); every cell held: {r['all_held']}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--rooms", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=float, default=10.0, help="seconds measured per cell")
    p.add_argument("--warmup", type=float, default=4.0, help="seconds before each window")
    p.add_argument("--no-recorder", action="store_true")
    args = p.parse_args()
    cli.quiet_logs()
    result = asyncio.run(compare(args.rooms, args.rounds, not args.no_recorder, args.window,
                                 args.warmup))
    cli.emit(result, args.json, summary)


if __name__ == "__main__":
    main()
