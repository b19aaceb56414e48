"""What one part of the server costs, measured inside one server process: the part is
switched on and off every few seconds while the capacity bench's rooms run, and the
process's CPU is compared between the phases.

Why: a fresh server process's CPU per room varies by 10-20% from one process to the next
on this machine (docs/media-performance.md, "Janus as compared"), more than most single
changes are worth, so A/B between processes needs many rounds. Within one process the
phases share the process, its memory layout and whatever else the machine runs that
minute; alternating phases a few seconds long cancel the drift.

Parts (bench/inprocess_ab_site/sitecustomize.py switches them; an experiment, not an
option of the product):
- `recorder`: off, frame assembly does nothing, so the recorder gets no frames (the
  recorder's whole cost per frame: assembly, hand-over, muxing, encryption, spool);
- `batching`: off, server/media/assembly_batch.ASSEMBLY_BATCH_S is 0 (the kept packets
  are assembled in the next pass of the event loop, about as before batching).

    python bench/inprocess_ab.py [--part recorder|batching] [--rooms N] [--seconds S]
                                 [--period P] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(part: str, rooms: int, seconds: int, period: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="callassist-inprocess-ab-") as tmp:
        out = Path(tmp) / "phases.txt"
        env = {
            **os.environ,
            # no empty entry: one would put the working directory on sys.path
            "PYTHONPATH": os.pathsep.join(
                p for p in [str(ROOT / "bench" / "inprocess_ab_site"), str(ROOT),
                            os.environ.get("PYTHONPATH", "")] if p
            ),
            "CALLASSIST_BENCH_TOGGLE": f"{part}:{period}:{out}",
        }  # fmt: skip
        load_before = os.getloadavg()
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "capacity.py"), "--max-rooms", str(rooms),
             "--skip-baseline", "--peer", "none", "--window", str(seconds), "--json"],
            env=env, capture_output=True, text=True, timeout=seconds + 300,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"bench/capacity.py failed: {done.stderr[-2000:]}")
        phases = [line.split() for line in out.read_text().splitlines() if line.strip()]
    summary = json.loads(done.stdout)["project"]
    on = [float(c) for flag, c in phases if flag == "1"]
    off = [float(c) for flag, c in phases if flag == "0"]
    pairs = min(len(on), len(off))
    if pairs < 2:
        raise SystemExit(f"only {pairs} pairs of phases: give it more --seconds")
    diffs = [on[i] - off[i] for i in range(pairs)]
    return {
        "part": part,
        "rooms": rooms,
        "period_s": period,
        "pairs": pairs,
        "cores_on": round(statistics.mean(on), 5),
        "cores_off": round(statistics.mean(off), 5),
        "cores_per_room_on_minus_off": round(statistics.mean(diffs) / rooms, 5),
        "ratio_on_off": round(statistics.mean(on) / statistics.mean(off), 3),
        "pairs_on_higher": sum(d > 0 for d in diffs),
        "phases_on": on,
        "phases_off": off,
        "fps": summary.get("fps"),
        "loss": summary.get("loss"),
        "load": {"before": [round(x, 2) for x in load_before],
                 "after": [round(x, 2) for x in os.getloadavg()]},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["recorder", "batching"], default="recorder")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=150, help="the measured window")
    parser.add_argument("--period", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = run(args.part, args.rooms, args.seconds, args.period)
    if args.json:
        print(json.dumps(r))
        return
    print(f"{r['part']}: on {r['cores_on']} cores, off {r['cores_off']} ({r['rooms']} rooms, "
          f"{r['pairs']} pairs of {r['period_s']} s phases; on higher in "
          f"{r['pairs_on_higher']}): {r['cores_per_room_on_minus_off']:+} cores per room, "
          f"ratio {r['ratio_on_off']}; load {r['load']['before'][0]} -> "
          f"{r['load']['after'][0]}")  # fmt: skip


if __name__ == "__main__":
    main()
