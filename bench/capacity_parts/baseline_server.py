"""The baseline's server process: aiortc's MediaRelay + MediaRecorder (decode once,
re-encode for the agent, re-encode for the recording), the way aiortc's examples relay
media. Nothing of the project's runs in it (bench.lib.media is imported by capacity.py
for --forwarding's choices: ~3 MB of modules, in the RSS before the first room)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.lib.rpc import serve_rpc


async def run_server_baseline() -> None:
    """aiortc MediaRelay + MediaRecorder, as aiortc's examples relay media."""
    import aioice.ice
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc import sdp as aiortc_sdp
    from aiortc.contrib.media import MediaRecorder, MediaRelay
    from aiortc.mediastreams import MediaStreamTrack

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    relay = MediaRelay()
    tmp = Path(tempfile.mkdtemp(prefix="callassist-baseline-"))

    class Slot(MediaStreamTrack):
        """A stable track for a peer that connects before the source exists."""

        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.source: asyncio.Future[MediaStreamTrack] = (
                asyncio.get_running_loop().create_future()
            )
            self.relayed: MediaStreamTrack | None = None

        async def recv(self) -> Any:
            if self.relayed is None:
                self.relayed = relay.subscribe(await self.source)
            return await self.relayed.recv()

    rooms: dict[str, dict[str, Any]] = {}

    def room(name: str) -> dict[str, Any]:
        if name not in rooms:
            rooms[name] = {"camera": Slot(), "screen": Slot(), "pcs": [], "recorder": None}
        return rooms[name]

    async def handle(msg: dict[str, Any]) -> Any:
        if msg["op"] != "offer":
            return {"rooms": len(rooms)}
        r = room(msg["room"])
        role = msg["role"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        r["pcs"].append(pc)
        publishes, receives = ("camera", "screen") if role == "caller" else ("screen", "camera")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if not r[publishes].source.done():
                r[publishes].source.set_result(track)
            if publishes == "camera":
                recorder = MediaRecorder(str(tmp / f"{msg['room']}.webm"))
                recorder.addTrack(relay.subscribe(track))
                r["recorder"] = recorder
                asyncio.ensure_future(recorder.start())

        await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
        # The client's receive-only m-section gets the other side's (relayed) track.
        offer = aiortc_sdp.SessionDescription.parse(msg["sdp"])
        for media, t in zip(offer.media, pc.getTransceivers(), strict=False):
            if media.kind == "video" and media.direction == "recvonly":
                t.sender.replaceTrack(r[receives])
                t.direction = "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    port = await serve_rpc(handle)
    print(json.dumps({"port": port}), flush=True)
    await asyncio.Event().wait()
