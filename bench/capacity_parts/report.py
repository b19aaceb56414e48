"""A capacity run's summary: one JSON object (`--json`; docs/media-performance.md quotes
it) or a table with the baseline/project ratio."""

from __future__ import annotations

from typing import Any

from bench.capacity_parts.room import HOLD_FPS, holds
from bench.capacity_parts.steps import RAMP_AT
from bench.lib.stats import ratio

# the summary's "ramp": one row a step
RAMP_COLUMNS = ["rooms", "server_cores", "fps", "loss", "p50_ms", "p95_ms"]


def ramp_rows(steps: list[dict[str, Any]]) -> list[list[Any]]:
    """The project's steps (the 10-room measurement first), compact."""
    return [[m["rooms"], m["server_cores"], m["fps_mean"], m["loss"],
             m["latency_ms"]["p50"], m["latency_ms"]["p95"]] for m in steps]  # fmt: skip


def client_cores_per_room(m: dict[str, Any]) -> float:
    """Both client processes' CPU (callers + agents) per room of a measured step."""
    return round(sum(m["client_cores"].values()) / max(m["rooms"], 1), 4)


def summary_json(result: dict[str, Any]) -> dict[str, Any]:
    p = result["project"]
    pm = p["measure"]
    obj: dict[str, Any] = {
        "baseline": None,
        "project": {
            "cores_per_room": pm["cores_per_room"],
            "mem_mb_per_room": pm["mem_mb_per_room"],
            "p95_added_latency_ms": pm["latency_ms"]["p95"],
            "max_rooms_per_process": p["max_rooms_per_process"],
            "rooms_per_core": ratio(1, pm["cores_per_room"]),
            "rooms_measured": pm["rooms"],
            "fps": pm["fps_mean"],
            "loss": pm["loss"],
            "forwarding": p["server"].get("forwarding"),
            "event_loop": p["server"].get("event_loop"),
            "send_batching": p["server"].get("send_batching"),
            "send_batches": p["server"].get("send_batches"),
            "recorder": p["server"].get("recorder"),
            "stopped_by": p["stopped_by"],
            "client_cores_per_room": client_cores_per_room(pm),
            **_at(p["steps"], RAMP_AT),
        },
        "ramp": ramp_rows(p["steps"]),
        "ramp_columns": RAMP_COLUMNS,
        "ratio": None,
        "load": {"before": result["load_before"], "after": result["load_after"]},
        # how the clients sent their clips (bench/capacity.py --client-sender)
        "client_sender": result.get("client_sender"),
        "elapsed_s": result.get("elapsed_s"),
    }
    if "baseline" in result:
        bm = result["baseline"]["measure"]
        obj["baseline"] = {
            "cores_per_room": bm["cores_per_room"],
            "mem_mb_per_room": bm["mem_mb_per_room"],
            "p95_added_latency_ms": bm["latency_ms"]["p95"],
            "fps": bm["fps_mean"],
            "loss": bm["loss"],
            "rooms_measured": bm["rooms"],
        }
        obj["ratio"] = ratio(bm["cores_per_room"], pm["cores_per_room"])
    if "janus" in result:  # `janus`, `ratio_vs_janus` (bench/capacity_parts/janus.py)
        from bench.capacity_parts.janus import summary

        obj.update(summary(result["janus"]))
    return obj


def _at(steps: list[dict[str, Any]], rooms: int) -> dict[str, Any]:
    """The p95 at `rooms` (null when the ramp stopped before: `stopped_by` says why) and
    whether that step held."""
    m = next((m for m in steps if m["rooms"] == rooms), None)
    return {
        f"p95_added_latency_ms_at_{rooms}": None if m is None else m["latency_ms"]["p95"],
        f"held_at_{rooms}": None if m is None else holds(m),
    }


def table(result: dict[str, Any]) -> str:
    rows = [("path", "rooms", "cores", "cores/room", "client cores", "MB/room", "fps",
             "loss %", "p50 ms", "p95 ms")]  # fmt: skip

    def row(label: str, m: dict[str, Any]) -> None:
        rows.append(
            (
                label,
                str(m["rooms"]),
                f"{m['server_cores']:.3f}",
                f"{m['cores_per_room']:.4f}",
                "+".join(f"{c:.2f}" for c in m["client_cores"].values()),
                f"{m['mem_mb_per_room']:.2f}",
                f"{m['fps_mean']:.1f}",
                f"{m['loss'] * 100:.2f}",
                f"{m['latency_ms']['p50']:.1f}",
                f"{m['latency_ms']['p95']:.1f}",
            )
        )

    if "baseline" in result:
        row("baseline (MediaRelay+MediaRecorder)", result["baseline"]["measure"])
    p = result["project"]
    fw = p["server"].get("forwarding")
    for i, m in enumerate(p["steps"]):
        row(
            f"project ({fw}, recorder {p['server'].get('recorder', '?')[:8]})"
            if i == 0
            else "  ramp",
            m,
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    s = summary_json(result)
    lines.append("")
    if s["ratio"] is not None:
        lines.append(f"baseline/project CPU per room: {s['ratio']}x")
    lines.append(
        f"max rooms in one server process at >= {HOLD_FPS:.0f} fps and < 1% loss: "
        f"{p['max_rooms_per_process']} (stopped by: {p['stopped_by']})"
    )
    at = s["project"][f"p95_added_latency_ms_at_{RAMP_AT}"]
    lines.append(f"p95 added latency at {RAMP_AT} rooms: "
                 + (f"{at:.1f} ms" if at is not None else "not reached"))  # fmt: skip
    if "janus" in result:
        from bench.capacity_parts.janus import summary_line

        lines.append(summary_line(result["janus"]))
    lines.append(f"load average before/after: {result['load_before']} / {result['load_after']}")
    return "\n".join(lines)
