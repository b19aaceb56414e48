"""The server's per-packet receive + forward cost, one room, in one process.

A caller and an agent (aiortc peers) join a real `MediaRoom` on loopback; once the agent
gets the camera, the caller's encoder stops and the agent stops reading its socket (the
kernel drops what it would receive: its cost is not the server's). Then N SRTP packets
(1100-byte VP8 payloads, protected beforehand with the caller's own SRTP session) are
handed to the server's ICE socket protocol, `datagram_received`, exactly as the event
loop would hand them over, and the loop runs until the server has taken them all: the
server's whole path for a packet (aioice, DTLS/SRTP, the forwarder, protect, `sendto`)
with nothing else in the process. CPU is `time.process_time()` around that, per packet.

`--recorder` records the camera as the product does (recorder.participant with a local
spool: frame assembly, muxing, encryption and storage are then part of each packet's
cost), and the packets carry the capacity bench's camera clip (bench/lib/clips.py: real
VP8 frames, keyframes included, which the recorder needs) instead of zeros. `--loop`: the
event loop (uvloop, as the server runs by default, or asyncio).

`--tree DIR` imports the server from another checkout (an A/B of two versions: run
them alternately, the machine is shared). One JSON object with `--json`.

    python bench/recvpath.py [--packets N] [--rounds R] [--recorder] [--loop L]
                             [--tree DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


async def _connect(room: Any, role: str, pid: str, send: bool) -> Any:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaBlackhole
    from aiortc.mediastreams import VideoStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(VideoStreamTrack() if send else "video", direction="sendonly")
    pc.addTransceiver("video", direction="recvonly")
    sink = MediaBlackhole()
    pc.on("track", lambda t: sink.addTrack(t))
    await pc.setLocalDescription(await pc.createOffer())
    answer = await room.handle_offer(pid, role, 1, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await sink.start()
    pc._bench_sink = sink
    return pc


def _clip_payloads(size: int) -> list[tuple[bytes, int, int]]:
    """The camera clip as VP8 RTP payloads of at most `size` bytes: (payload, frame, last)."""
    from bench.capacity_parts.room import CAMERA
    from bench.lib.clips import make_clip

    out = []
    for frame, data in enumerate(make_clip(CAMERA)):
        body = size - 4
        parts = [data[i : i + body] for i in range(0, len(data), body)]
        for k, part in enumerate(parts):
            pid = struct.pack("!H", 0x8000 | (frame & 0x7FFF))
            out.append((bytes([0x90 if k == 0 else 0x80, 0x80]) + pid + part, frame,
                        int(k == len(parts) - 1)))  # fmt: skip
    return out


def _packets(caller: Any, seq0: int, n: int, size: int, clip: bool, ts0: int = 0) -> list[bytes]:
    """n protected RTP packets as the caller's sender would send them next (from seq0);
    `clip`: the camera clip's frames from its start, RTP timestamps from ts0 on (the
    caller's, continued: a jump back would read as late frames to the recorder)."""
    sender = caller.getTransceivers()[0].sender
    pt = caller.getTransceivers()[0]._codecs[0].payloadType
    srtp = sender.transport._tx_srtp
    out = []
    if clip:
        payloads = _clip_payloads(size)
        frames = payloads[-1][1] + 1
        for i in range(n):
            cycle, k = divmod(i, len(payloads))
            payload, frame, last = payloads[k]
            ts = ts0 + (cycle * frames + frame) * 3000
            header = struct.pack("!BBHII", 0x80, (last << 7) | pt, (seq0 + i) & 0xFFFF,
                                 ts & 0xFFFFFFFF, sender._ssrc)  # fmt: skip
            out.append(srtp.protect(header + payload))
        return out
    for i in range(n):
        frame, part = divmod(i, 4)  # 4 packets a frame, VP8 descriptor with picture id
        start = part == 0
        vp8 = bytes([0x90 if start else 0x80, 0x80]) + struct.pack("!H", 0x8000 | (frame & 0x7FFF))
        payload = vp8 + (b"\x01" if start else b"") + bytes(size - len(vp8) - 1)
        marker = 0x80 if part == 3 else 0
        header = struct.pack(
            "!BBHII", 0x80, marker | pt, (seq0 + i) & 0xFFFF, (frame * 3000) & 0xFFFFFFFF,
            sender._ssrc,
        )
        out.append(srtp.protect(header + payload))
    return out


async def _drain(server_conn: Any) -> None:
    # aiortc's path: the datagrams wait in the ICE connection's queue for the DTLS task
    for _ in range(10_000):
        if not server_conn._queue.qsize():
            break
        await asyncio.sleep(0)
    await asyncio.sleep(0)


async def run(packets: int, rounds: int, size: int, recorder: bool = False) -> dict[str, Any]:
    from bench.lib.media import MediaConfig, MediaRoom, camera_source

    config = MediaConfig(ice_host_addresses=["127.0.0.1"], allow_loopback_candidates=True)
    room = MediaRoom("bench-recvpath", config, on_event=lambda e: None)
    rec = None
    if recorder:
        import tempfile

        from bench.lib.recording import local_spool, memory_keyring
        from recorder.crypto import new_recording
        from recorder.participant import RecorderParticipant

        tmp = Path(tempfile.mkdtemp(prefix="callassist-recvpath-"))
        spool = await local_spool(tmp)
        rec = RecorderParticipant(camera_source(room), new_recording(memory_keyring()), spool,
                                  codec=config.codec)  # fmt: skip
        await rec.start()
    caller = await _connect(room, "caller", "c", True)
    agent = await _connect(room, "agent", "a", False)
    try:
        leg = room._participants["a"].leg
        for _ in range(200):
            sub = getattr(leg, "subscription", None)
            if sub is not None and sub.packets_sent > 20:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the agent never got the camera")
        caller.getTransceivers()[0].sender.replaceTrack(None)  # the caller's encoder stops
        agent_ice = agent.getTransceivers()[0].receiver.transport.transport
        for pair in agent_ice._connection._nominated.values():
            transport = pair.protocol.transport
            if hasattr(transport, "pause_reading"):
                transport.pause_reading()  # the agent's side costs nothing
            else:  # uvloop's UDP transport cannot pause: its datagrams end here, unread
                pair.protocol.datagram_received = lambda data, addr: None
        server_pc = room._participants["c"].leg.pc
        conn = server_pc.getTransceivers()[0].receiver.transport.transport._connection
        pair = conn._nominated[1]
        protocol, addr = pair.protocol, pair.remote_addr
        await asyncio.sleep(0.2)
        sent_before = sub.packets_sent
        per_packet = []
        publisher = room._participants["c"].leg.rtp
        for _ in range(rounds):
            # continuing the caller's sequence numbers (SRTP refuses replays)
            data = _packets(caller, publisher._max_ext + 1, packets, size, recorder,
                            (publisher._last_ts or 0) + 3000)  # fmt: skip
            t0 = time.process_time()
            for i in range(0, len(data), 32):
                for d in data[i : i + 32]:
                    protocol.datagram_received(d, addr)
                await _drain(conn)
            per_packet.append((time.process_time() - t0) / len(data) * 1e6)
            await asyncio.sleep(0.05)
        forwarded = sub.packets_sent - sent_before
        recorded = {}
        if rec is not None:
            summary = await rec.stop()
            recorded = {"recorded_frames": rec.stats.frames_received,
                        "recorded_segments": rec.stats.segments,
                        "recorded_frames_lost": rec.stats.frames_lost}  # fmt: skip
            del summary
        return {
            **recorded,
            "recorder": recorder,
            "us_per_packet": round(statistics.median(per_packet), 2),
            "us_per_packet_rounds": [round(x, 2) for x in per_packet],
            "packets": packets * rounds,
            "forwarded": forwarded,
            "payload_bytes": size,
        }
    finally:
        await caller.close()
        await agent.close()
        await room.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=1100)
    parser.add_argument("--recorder", action="store_true", help="record the camera too")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--tree", help="import the server from this checkout")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path[:0] = [str(Path(args.tree).resolve() if args.tree else ROOT)]
    from server.core import eventloop

    result = eventloop.run(run(args.packets, args.rounds, args.size, args.recorder), args.loop)
    result["loop"] = args.loop
    result["tree"] = args.tree or str(ROOT)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['us_per_packet']} us of CPU per packet received and forwarded "
              f"({result['forwarded']} of {result['packets']} forwarded)")


if __name__ == "__main__":
    main()
