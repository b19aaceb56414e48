"""Capacity: server CPU, memory and added latency per room, against aiortc's relay and Janus.

A room is the caller's camera (640x480, 30 fps, ~1 Mbps VP8) forwarded to the agent and
recorded, plus the agent's screen (1280x720, 5 fps, ~300 kbps) forwarded to the caller.
The same load runs, in one invocation, through

1. the baseline: aiortc's MediaRelay + MediaRecorder (decode once, re-encode for the
   agent, re-encode for the recording), the way aiortc's examples relay media;
2. the project's media path as shipped (server.media.MediaRoom with the configured
   `media.forwarding`, and the recorder participant when recorder/ is there);
3. Janus (Debian's `janus`, VideoRoom), a C SFU, with the same clients, in cells
   interleaved A/B with the project's (bench/capacity_parts/janus.py): always when janus
   is installed (`--peer auto`), `--peer janus` requires it, `--peer none` leaves it out;

each in its own server process. Clients are aiortc peers in two other processes
(callers, agents) on loopback, sending a clip encoded once with libvpx in a loop (aiortc
packetizes it; no encoding in the clients) and counting what arrives at the RTP level (no
decoding, except one keyframe per room to read the frame number drawn into the picture).

Measured per path, over a steady window: server CPU (user+system of the server process,
all threads) per room, memory (RSS growth / rooms), delivered frame rate and frame loss
of the camera at the agent, and the latency from the caller's sender handing a frame to
aiortc to the agent receiving its last packet (the two clients' own processing included:
an upper bound of what the server adds). Frames are matched by RTP timestamp, anchored
once per room by the frame number in the picture (measure.choose picks among the sends of
that picture). Then rooms are added in steps (20, 40, 60, 80, ... 160) until fewer than
29 fps or 1% loss arrive (or the client processes, on the same 2 cores, the server's one
core or the time budget are the limit): the largest step that held is
`max_rooms_per_process`; the summary has every step (`ramp`: rooms, server cores, fps,
loss, p50, p95) and `p95_added_latency_ms_at_80` (null when the ramp stopped before).
The client processes run uvloop (`--client-loop asyncio`: the standard loop) and write
their clips' RTP packets themselves (bench/lib/wire_sender.py: packetized once, as aiortc
would; the server receives the same packets), at about half the CPU of aiortc's
RTCRtpSender (`--client-sender aiortc`); the summary's `client_sender` says which.

    python bench/capacity.py [--quick] [--json] [--forwarding rtp]
                             [--skip-baseline] [--max-rooms N] [--soak SECONDS]
                             [--peer auto|janus|none] [--client-loop uvloop|asyncio]
                             [--client-sender wire|aiortc]
                             [--warmup S] [--window S]
    python bench/capacity.py --viewers N [--json]   # forwarding cost per extra viewer

`--soak SECONDS` (with `--soak-rooms N`, 10 by default) is a memory soak instead: N
rooms for SECONDS, the server's RSS sampled every 30 s. A flat RSS only counts while media
flows, so each of `soak.samples` also has the camera fps at the agents since the sample
before (mean and min over the rooms), the screen fps at the callers, the recorder's frames
so far, the peer connections by state at each end, the ICE consent expiries so far and
the longest event-loop lag in each process, the clips' keyframe requests and frames sent,
and the namespace's UDP receive errors; then one measurement (`soak.final`), `mem_mb_per_room`,
`growth_mb_per_room_per_min` (from a quarter of the samples on) and the server's peer
connections that ended (`server_pc_ended`: seconds, room, participant, state).

`--warmup S` / `--window S` replace every measurement's warm-up and window (a smoke run:
the JSON's keys in less time; the figures of a short window are noisier).

Every process is this script: the orchestrator starts it again as a server (`--role
server`) and as the two client processes; the parts are in bench/capacity_parts/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.lib import cli  # noqa: E402
from bench.lib.media import FORWARDINGS  # noqa: E402


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rooms, shorter windows")
    parser.add_argument("--full", action="store_true", help="with --json: every measurement")
    parser.add_argument("--forwarding", choices=FORWARDINGS, default=None,
                        help="media path: rtp (media.forwarding was retired)")  # fmt: skip
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--max-rooms", type=int, default=120)
    parser.add_argument("--soak", type=float, default=0, help="memory soak for SECONDS")
    parser.add_argument("--soak-rooms", type=int, default=10)
    parser.add_argument("--profile",
                        help="py-spy record the project server into this file (.perf: perf)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-recorder", action="store_true", help="project room without it")
    parser.add_argument("--no-send-batching", action="store_true",
                        help="project server with media.send_batching = false")  # fmt: skip
    parser.add_argument("--peer", choices=("auto", "janus", "none"), default="auto",
                        help="compare with Janus (auto: when installed)")  # fmt: skip
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default=None,
                        help="the project server's loop (default: media.event_loop's)")  # fmt: skip
    parser.add_argument("--client-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the client processes' loop")  # fmt: skip
    parser.add_argument("--client-sender", choices=("wire", "aiortc"), default="wire",
                        help="how the clients send their clips (aiortc: RTCRtpSender)")  # fmt: skip
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before every measurement (default: 3-4)")  # fmt: skip
    parser.add_argument("--window", type=float, default=None,
                        help="seconds of every measurement (default: 5-12)")  # fmt: skip
    parser.add_argument("--viewers", type=int, default=0,
                        help="cost per extra viewer, 0..N (bench/lib/viewers.py)")  # fmt: skip
    args = parser.parse_args()
    cli.quiet_logs()
    if args.viewers:
        from bench.capacity_parts.room import CAMERA
        from bench.lib.viewers import measure

        out = asyncio.run(measure(args.viewers, CAMERA))
        print(json.dumps(out) if args.json else json.dumps(out, indent=1))
        return
    # Each role imports only what it runs.
    if args.role == "server":
        if args.server == "baseline":
            from bench.capacity_parts.baseline_server import run_server_baseline

            asyncio.run(run_server_baseline())
        else:
            from bench.capacity_parts.project_server import run_server_project
            from bench.lib.media import run_server

            run_server(run_server_project(args.forwarding, not args.no_recorder,
                                          not args.no_send_batching),
                       args.event_loop)  # fmt: skip
        return
    if args.role in ("callers", "agents"):
        # The client processes share the 2 cores with the server: uvloop there too (the
        # per-datagram readiness and read in C), whatever loop the server runs.
        from bench.lib.media import run_clients_loop

        if args.server == "janus":
            from bench.capacity_parts.janus import run_janus_clients

            run_clients_loop(run_janus_clients(args.role, args.port, not args.no_recorder,
                                               args.client_sender), args.client_loop)  # fmt: skip
            return
        from bench.capacity_parts.clients import run_clients

        run_clients_loop(run_clients(args.role, args.port, args.client_sender),
                         args.client_loop)  # fmt: skip
        return
    from bench.capacity_parts.report import summary_json, table
    from bench.capacity_parts.steps import orchestrate

    result = asyncio.run(orchestrate(args))
    if args.json:
        obj = summary_json(result) if "soak" not in result else result
        if args.full:
            obj = {"summary": obj, "detail": result} if "soak" not in result else result
        print(json.dumps(obj))
    elif "soak" in result:
        print(json.dumps(result, indent=1))
    else:
        print(table(result))


if __name__ == "__main__":
    main()
