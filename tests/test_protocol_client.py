"""A Python aiortc client written from docs/protocol.md alone, against the real server.

Nothing here imports the server's media code: the client knows only the WebSocket
messages, the transceiver order the document asks for, and `iceServers` from `welcome`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from tests.media_helpers import BLUE, RED, SolidTrack, center_rgb, close_to
from tests.signalling_client import Signalling


class Watcher:
    """Reads a received track and notes when frames of which colour arrived."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.frames: list[tuple[float, tuple[int, int, int]]] = []
        self.task = asyncio.ensure_future(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                self.frames.append((time.monotonic(), center_rgb(frame)))
        except MediaStreamError:
            pass

    async def wait_colour(
        self, rgb: tuple[int, int, int], after: float = 0.0, timeout: float = 10
    ) -> float:
        """Wait for a frame of colour `rgb` arriving after `after`; return its arrival time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, got in self.frames:
                if t > after and close_to(got, rgb):
                    return t
            await asyncio.sleep(0.02)
        seen = {c for _, c in self.frames[-5:]}
        raise AssertionError(f"no {rgb} frame within {timeout}s (last colours {seen})")

    def stop(self) -> None:
        self.task.cancel()


class DocClient:
    """One participant: a signalling socket and, per docs/protocol.md, one video
    transceiver to send and one to receive (caller: send first; agent: receive first)."""

    def __init__(self, sig: Signalling, role: str) -> None:
        self.sig = sig
        self.role = role
        self.pc: RTCPeerConnection | None = None
        self.pc_id = 0
        self.sender_transceiver: Any = None
        self.watcher: Watcher | None = None

    async def connect(self, track: MediaStreamTrack | None, warm: bool = False) -> None:
        if self.pc is not None:
            await self.pc.close()
        self.pc_id += 1
        servers = [RTCIceServer(**s) for s in self.sig.welcome["iceServers"]]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.pc = pc

        @pc.on("track")
        def on_track(remote: MediaStreamTrack) -> None:
            if self.watcher:
                self.watcher.stop()
            self.watcher = Watcher(remote)

        if self.role == "caller":
            self.sender_transceiver = pc.addTransceiver(track or "video", direction="sendonly")
            pc.addTransceiver("video", direction="recvonly")
        else:
            pc.addTransceiver("video", direction="recvonly")
            self.sender_transceiver = pc.addTransceiver(track or "video", direction="sendonly")
        await self.negotiate(warm)

    async def negotiate(self, warm: bool = False) -> None:
        assert self.pc is not None
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"type": "offer", "pc": self.pc_id, "sdp": self.pc.localDescription.sdp}
        if warm:
            offer["warm"] = True
        await self.sig.send(offer)
        answer = await self.sig.expect("answer", pc=self.pc_id)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def close(self) -> None:
        if self.watcher:
            self.watcher.stop()
        if self.pc:
            await self.pc.close()
        await self.sig.close()


async def _start(server) -> tuple[Any, DocClient, str]:  # type: ignore[no-untyped-def]
    agent_http = await server.agent()
    created = await agent_http.new_session()
    caller = DocClient(await Signalling.caller(server.url, created["link"]), "caller")
    await caller.sig.send({"type": "accept", "notice": caller.sig.welcome["notice"]["version"]})
    await caller.sig.wait_room(status="accepted")
    return agent_http, caller, created["session"]["id"]


async def test_media_both_ways(server) -> None:  # type: ignore[no-untyped-def]
    agent_http, caller, room = await _start(server)
    camera = SolidTrack(RED)
    await caller.connect(camera)
    agent = DocClient(await Signalling.agent(server.url, agent_http.http, room), "agent")
    await agent.connect(None)
    assert agent.watcher is not None
    await agent.watcher.wait_colour(RED)
    room_state = await agent.sig.wait_room(status="live")
    assert room_state["state"] == "active" and room_state["tracks"]["camera"]

    # The agent starts sharing: the track goes on the pre-negotiated sending transceiver.
    agent.sender_transceiver.sender.replaceTrack(SolidTrack(BLUE))
    await agent.sig.send({"type": "media", "track": "screen", "state": "live"})
    for _ in range(50):
        if caller.watcher is not None:
            break
        await asyncio.sleep(0.1)
    assert caller.watcher is not None
    await caller.watcher.wait_colour(BLUE)
    shared = await caller.sig.expect("room")
    while not shared["room"]["tracks"]["screen"]:
        shared = await caller.sig.expect("room")

    # Renegotiation on the same connection (same pc number) keeps media flowing.
    await agent.negotiate()
    await agent.watcher.wait_colour(RED, after=time.monotonic())

    await agent.sig.send({"type": "end"})
    assert (await caller.sig.expect("ended"))["reason"] == "agent_ended"
    await caller.close()
    await agent.close()


async def test_late_agent_gets_frames_within_one_second(server) -> None:  # type: ignore[no-untyped-def]
    agent_http, caller, room = await _start(server)
    await caller.connect(SolidTrack(RED))
    # aiortc's own VP8 encoder makes a keyframe only every 3000 frames: a late receiver
    # sees video only if the server asks the source for one.
    await asyncio.sleep(3)
    agent = DocClient(await Signalling.agent(server.url, agent_http.http, room), "agent")
    joined = time.monotonic()
    await agent.connect(None)
    assert agent.watcher is not None
    first = await agent.watcher.wait_colour(RED, timeout=5)
    assert first - joined < 1.0, f"first frame {first - joined:.2f}s after joining"
    await caller.close()
    await agent.close()


async def test_caller_recovers_on_new_peer_connection(server) -> None:  # type: ignore[no-untyped-def]
    agent_http, caller, room = await _start(server)
    camera = SolidTrack(RED)
    await caller.connect(camera)
    agent = DocClient(await Signalling.agent(server.url, agent_http.http, room), "agent")
    await agent.connect(None)
    assert agent.watcher is not None
    await agent.watcher.wait_colour(RED)
    agent_pc = agent.pc

    # The caller's connection breaks; the page makes a new one (no new link, no ICE restart).
    assert caller.pc is not None
    await caller.pc.close()
    caller.pc = None
    await agent.sig.wait_room(status="reconnecting")
    broke = time.monotonic()
    await caller.connect(SolidTrack(BLUE))
    assert caller.pc_id == 2
    back = await agent.watcher.wait_colour(BLUE, after=broke, timeout=8)
    assert back - broke < 5.0
    assert agent.pc is agent_pc  # the agent's side did not have to do anything
    await agent.sig.wait_room(status="live")
    await caller.close()
    await agent.close()


async def test_warm_offer_connects_before_the_camera(server) -> None:  # type: ignore[no-untyped-def]
    """Pre-warm (docs/protocol.md, "offer"): the caller connects with an empty sender and
    `warm`; the agent still sees "accepted" (no "connecting" for a camera not started);
    replaceTrack alone then brings the camera to the agent, and the status to "live"."""
    agent_http, caller, room = await _start(server)
    agent = DocClient(await Signalling.agent(server.url, agent_http.http, room), "agent")
    await agent.connect(None)
    await caller.connect(None, warm=True)
    for _ in range(100):
        if caller.pc is not None and caller.pc.connectionState == "connected":
            break
        await asyncio.sleep(0.1)
    assert caller.pc is not None and caller.pc.connectionState == "connected"
    await caller.sig.send({"type": "ping"})
    await caller.sig.expect("pong")  # the offer's status change, if any, was sent before
    assert caller.sig.rooms[-1]["caller"]["status"] == "accepted", caller.sig.rooms[-1]
    assert not caller.sig.rooms[-1]["tracks"]["camera"]

    caller.sender_transceiver.sender.replaceTrack(SolidTrack(RED))
    assert agent.watcher is not None
    await agent.watcher.wait_colour(RED)
    assert (await agent.sig.wait_room(status="live"))["tracks"]["camera"]
    assert caller.pc_id == 1  # the same connection: no second offer
    await caller.close()
    await agent.close()


async def test_warm_must_be_a_boolean(server) -> None:  # type: ignore[no-untyped-def]
    agent_http, caller, _ = await _start(server)
    await caller.sig.send({"type": "offer", "pc": 1, "sdp": "v=0\r\n", "warm": "yes"})
    err = await caller.sig.expect("error", ref="offer")
    assert err["code"] == "bad_message" and "warm" in err["message"]
    assert caller.sig.rooms[-1]["caller"]["status"] == "accepted"
    await caller.close()
