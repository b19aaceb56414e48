"""Media relay: RoomTrack rules on synthetic frames, then MediaRoom with real aiortc peers
on loopback (clients shaped like the browser pages, their own VP8/H264 encoders)."""

from __future__ import annotations

import asyncio
import base64
import fractions
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator

import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from media_helpers import (
    BLUE,
    GREEN,
    RED,
    Client,
    EventLog,
    SolidTrack,
    close_to,
    loopback_config,
    wait_for,
)

from server.core.config import MediaConfig
from server.media import rtp_hooks
from server.media.peers import MediaError, MediaRoom, ice_servers_for_client
from server.media.relay import ForwardedTrack, RoomTrack

TB = fractions.Fraction(1, 90000)


def packet(pts: int, size: int = 100) -> av.Packet:
    p = av.Packet(bytes(size))
    p.pts = pts
    p.time_base = TB
    return p


class Requests:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def drain(track: ForwardedTrack, into: list[av.Packet]) -> None:
    while True:
        into.append(await track.recv())


async def started(track: ForwardedTrack) -> asyncio.Task[None]:
    """Start a subscriber the way an RTCRtpSender does: by waiting in recv()."""
    frames: list[av.Packet] = []
    task = asyncio.ensure_future(drain(track, frames))
    await asyncio.sleep(0)
    task.frames = frames  # type: ignore[attr-defined]
    return task


# --- RoomTrack on synthetic frames ----------------------------------------------------


async def test_subscriber_starts_at_keyframe_and_asks_for_one() -> None:
    rt = RoomTrack("camera")
    req = Requests()
    up = rt.attach_upstream(req)
    sub = rt.subscribe()
    up.push(packet(0), True)  # before the subscriber's sender runs: not queued
    assert sub.queued == 0
    task = await started(sub)
    assert req.count == 1  # starting asked the source for a keyframe
    for i in range(1, 4):
        up.push(packet(i * 3000), False)
    assert task.frames == [] and sub.waiting_keyframe  # type: ignore[attr-defined]
    up.push(packet(4 * 3000), True)
    up.push(packet(5 * 3000), False)
    await asyncio.sleep(0)
    assert len(task.frames) == 2  # type: ignore[attr-defined]
    task.cancel()


async def test_a_delivering_subscriber_gets_each_frame_at_once_from_a_keyframe() -> None:
    # The recorder's path (issue 18): no queue, no av.Packet, no task wake-up per frame.
    rt = RoomTrack("camera")
    req = Requests()
    up = rt.attach_upstream(req)
    got: list[tuple[bytes, int]] = []
    sink = rt.subscribe()
    sink.deliver(lambda data, pts, keyframe: got.append((data, pts)))
    assert req.count == 1  # delivering starts at once, at a keyframe it asks for
    queued = rt.subscribe()  # a queueing subscriber beside it
    task = await started(queued)
    up.push(packet(0), False)  # before any keyframe: neither takes it
    assert got == [] and sink.waiting_keyframe and rt.frames_dropped >= 1
    for i in range(1, 4):
        up.push(packet(i * 3000), i == 1)
    # synchronously, in order, as bytes with the rewritten pts
    assert [pts for _, pts in got] == [3000, 6000, 9000]
    assert all(isinstance(data, bytes) and data == bytes(packet(0)) for data, _ in got)
    await asyncio.sleep(0)
    assert [p.pts for p in task.frames] == [3000, 6000, 9000]  # type: ignore[attr-defined]
    assert sink.frames_forwarded == 3 and sink.queued == 0
    # its recv() only waits for the end
    waiting = asyncio.ensure_future(sink.recv())
    await asyncio.sleep(0)
    assert not waiting.done()
    sink.stop()
    with pytest.raises(MediaStreamError):
        await waiting
    up.push(packet(4 * 3000), False)
    assert len(got) == 3  # stopped: unsubscribed
    task.cancel()
    with pytest.raises(RuntimeError):  # a queue that started cannot switch to delivery
        queued.deliver(lambda data, pts, keyframe: None)


async def test_keyframe_requests_coalesced_and_rate_limited() -> None:
    rt = RoomTrack("camera", keyframe_min_interval_s=0.2)
    req = Requests()
    up = rt.attach_upstream(req)
    for _ in range(10):
        rt.request_keyframe()
    assert req.count == 1
    await asyncio.sleep(0.25)
    assert req.count == 2  # the nine others became one, after the interval
    rt.request_keyframe()
    up.push(packet(0), True)  # a keyframe arrived: the pending request is dropped
    await asyncio.sleep(0.25)
    assert req.count == 2
    assert rt.keyframe_requests_sent == 2


async def test_slow_subscriber_is_bounded_and_does_not_stall_others() -> None:
    rt = RoomTrack("camera", queue_frames=10, keyframe_min_interval_s=0.05)
    req = Requests()
    up = rt.attach_upstream(req)
    fast, slow = rt.subscribe(), rt.subscribe()
    fast_task = await started(fast)
    slow_task = await started(slow)
    await asyncio.sleep(0)
    slow_task.cancel()  # took nothing more: a stuck sender
    await asyncio.sleep(0)
    n = 1000
    for i in range(n):
        up.push(packet(i * 3000), i % 100 == 0)
        await asyncio.sleep(0)  # the fast sender keeps up
    assert len(fast_task.frames) == n  # type: ignore[attr-defined]
    assert slow.queued <= 10
    assert slow.resets >= 5 and rt.frames_dropped > 500
    assert req.count < 20  # it asked for keyframes, rate-limited
    # ... and restarts at the next one
    up.push(packet(n * 3000), True)
    assert slow.queued == 1 and slow._queue[0].pts == n * 3000
    fast_task.cancel()


async def test_pts_monotonic_across_upstream_switch() -> None:
    rt = RoomTrack("camera")
    sub = rt.subscribe()
    task = await started(sub)
    up1 = rt.attach_upstream(lambda: None)
    for i in range(5):
        up1.push(packet(i * 3000), i == 0)
    await asyncio.sleep(0.05)
    up2 = rt.attach_upstream(lambda: None)  # a reconnect: timestamps restart at 0
    up1.push(packet(5 * 3000), False)  # a late frame of the old one: ignored
    up2.push(packet(0), False)  # not a keyframe: subscriber waits for one
    for i in range(1, 5):
        up2.push(packet(i * 3000), i == 1)
    await asyncio.sleep(0)
    pts = [p.pts for p in task.frames]  # type: ignore[attr-defined]
    assert len(pts) == 9
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
    # the gap reflects the wall-clock pause (~50 ms = 4500 ticks), not a jump back
    assert 4000 < pts[5] - pts[4] < 30000
    assert rt.upstreams_attached == 2
    task.cancel()


async def test_unsubscribe_on_stop_and_close() -> None:
    rt = RoomTrack("screen")
    a, b = rt.subscribe(), rt.subscribe()
    a.stop()  # what RTCRtpSender does when its pc closes
    assert rt.subscribers == [b]
    rt.close()
    assert b.readyState == "ended" and rt.subscribers == []
    with pytest.raises(RuntimeError):
        rt.subscribe()


# --- MediaRoom with real peers ------------------------------------------------------------


@pytest.fixture
async def room() -> AsyncIterator[MediaRoom]:
    log = EventLog()
    r = MediaRoom("r-test", loopback_config(), on_event=log)
    r.log = log  # type: ignore[attr-defined]
    yield r
    await r.close()


async def test_camera_and_screen_flow_with_the_right_colours(room: MediaRoom) -> None:
    caller, agent = Client("caller", RED), Client("agent", BLUE)
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await agent.wait_frames(10, 5)
        await caller.wait_frames(10, 5)
        assert agent.last_rgb is not None and close_to(agent.last_rgb, RED)
        assert caller.last_rgb is not None and close_to(caller.last_rgb, BLUE)
        log = room.log  # type: ignore[attr-defined]
        assert log.has("c", "track_live", "camera") and log.has("a", "track_live", "screen")
        assert log.has("c", "pc_state", "connected") and log.has("a", "pc_state", "connected")
        stats = room.stats()
        assert stats["tracks"]["camera"]["frames_forwarded"] >= 10
        assert stats["participants"]["a"]["connection_state"] == "connected"
        # Publishing: the configured codec alone (it was offered). Receiving: H264 too, for
        # a publisher without VP8.
        answer = agent.pc.remoteDescription.sdp
        assert video_codecs(answer, 0) == ["VP8"]
        assert video_codecs(answer, 1) == ["VP8", "H264", "H264"]
    finally:
        await caller.close()
        await agent.close()


async def test_late_agent_first_frame_within_1s(room: MediaRoom) -> None:
    caller, agent = Client("caller", RED), Client("agent", None, send=False)
    try:
        await caller.connect(room, "c", 1)
        await wait_for(lambda: room.tracks["camera"].frames_in > 0, 3, "caller media")
        await asyncio.sleep(3.0)  # the caller's encoder is far past its only keyframe
        t0 = time.monotonic()
        await agent.connect(room, "a", 1)
        await agent.wait_frames(1, 1.0)
        assert agent.first_frame_at is not None and agent.first_frame_at - t0 < 1.0
        assert room.tracks["camera"].keyframe_requests_sent >= 1
        await agent.wait_frames(5, 2)
        assert agent.last_rgb is not None and close_to(agent.last_rgb, RED)
    finally:
        await caller.close()
        await agent.close()


async def test_caller_recovers_on_new_pc_agent_keeps_its_track(room: MediaRoom) -> None:
    caller, agent = Client("caller", RED), Client("agent", BLUE)
    caller2 = Client("caller", GREEN)
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await agent.wait_frames(5, 5)
        agent_track = agent.remote_tracks[0]
        await caller.close()  # the phone lost its connection
        log = room.log  # type: ignore[attr-defined]
        await wait_for(lambda: log.has("c", "track_ended", "camera"), 3, "track_ended")
        assert not room.tracks["camera"].live
        await asyncio.sleep(0.3)
        await caller2.connect(room, "c", 2)
        await wait_for(
            lambda: agent.last_rgb is not None and close_to(agent.last_rgb, GREEN),
            5,
            "the new camera at the agent",
        )
        assert agent.remote_tracks == [agent_track] and agent_track.readyState == "live"
        assert room.tracks["camera"].upstreams_attached == 2
        assert room.stats()["participants"]["c"]["pc_id"] == 2
    finally:
        await caller.close()
        await caller2.close()
        await agent.close()


async def test_new_pc_id_closes_previous_pc(room: MediaRoom) -> None:
    first, second = Client("caller", RED), Client("caller", GREEN)
    try:
        await first.connect(room, "c", 1)
        await wait_for(lambda: first.pc.connectionState == "connected", 5, "first pc")
        await second.connect(room, "c", 2)
        # the server closed pc 1; aiortc notices the DTLS close on its side
        await wait_for(lambda: first.pc.connectionState == "closed", 5, "first pc closed")
        await wait_for(lambda: room.tracks["camera"].frames_in > 0, 5, "second pc media")
        await room.add_candidate("c", 1, None)  # stale pc: ignored, no error
    finally:
        await first.close()
        await second.close()


async def test_agent_pli_reaches_the_callers_encoder(room: MediaRoom) -> None:
    caller, agent = Client("caller", RED), Client("agent", None, send=False)
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await agent.wait_frames(5, 5)
        cam = room.tracks["camera"]
        await asyncio.sleep(0.4)  # past the rate-limit interval
        keyframes, sent = cam.keyframes_in, cam.keyframe_requests_sent
        receiver = agent.pc.getReceivers()[0]
        ssrc = max(receiver.getSynchronizationSources(), key=lambda s: s.timestamp).source
        assert await rtp_hooks.send_pli(receiver, ssrc)  # the agent's PLI
        await wait_for(lambda: cam.keyframes_in > keyframes, 2, "a keyframe from the caller")
        assert cam.keyframe_requests_sent == sent + 1
    finally:
        await caller.close()
        await agent.close()


async def test_agent_adds_screen_by_renegotiating(room: MediaRoom) -> None:
    caller, agent = Client("caller", RED), Client("agent", None, send=False)
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await agent.wait_frames(3, 5)
        assert not room.tracks["screen"].live
        agent.pc.addTransceiver(SolidTrack(BLUE), direction="sendonly")
        await agent.connect(room, "a", 1)  # same pc number: renegotiation
        await caller.wait_frames(5, 5)
        assert caller.last_rgb is not None and close_to(caller.last_rgb, BLUE)
        await agent.wait_frames(5, 2)  # the camera kept flowing on the same pc
    finally:
        await caller.close()
        await agent.close()


async def test_h264_leg() -> None:
    room = MediaRoom("r-h264", loopback_config(codec="H264"), on_event=lambda e: None)
    caller, agent = Client("caller", GREEN), Client("agent", None, send=False)
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await agent.wait_frames(5, 5)
        assert agent.last_rgb is not None and close_to(agent.last_rgb, GREEN)
        assert video_codecs(agent.pc.remoteDescription.sdp, 0)[0] == "H264"  # recvonly only
    finally:
        await caller.close()
        await agent.close()
        await room.close()


def video_codecs(sdp: str, index: int) -> list[str]:
    """The media codecs of the index-th video m-section, in the answer's order."""
    section = sdp.split("m=video")[index + 1].split("m=", 1)[0]
    names = re.findall(r"a=rtpmap:\d+ ([A-Za-z0-9]+)/", section)
    return [n for n in names if n.lower() != "rtx"]


def only(client: Client, codec: str) -> Client:
    """A peer that can only do `codec` (e.g. Safari without VP8)."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    keep = [c for c in caps if c.mimeType.lower() in (f"video/{codec.lower()}", "video/rtx")]
    for t in client.pc.getTransceivers():
        t.setCodecPreferences(keep)
    return client


async def test_h264_caller_in_a_vp8_room() -> None:
    # No transcoding: the caller's H264 goes to the agent's leg, which negotiated VP8 and
    # H264, with that leg's H264 payload type; a VP8-only agent is told nothing arrives.
    events: list[tuple[str, str, str]] = []
    room = MediaRoom(
        "r-fallback",
        loopback_config(),
        on_event=lambda e: events.append((e.participant_id, e.kind, e.value)),
    )
    caller = only(Client("caller", GREEN), "H264")
    agent = Client("agent", BLUE)
    vp8_watcher = only(Client("supervisor", None, send=False), "VP8")
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await agent.wait_frames(5, 10)
        assert agent.last_rgb is not None and close_to(agent.last_rgb, GREEN)
        assert room.tracks["camera"].codec == "H264"
        # The agent's VP8 screen cannot go to the H264-only caller: reported, not sent.
        await wait_for(lambda: ("c", "codec_mismatch", "screen=VP8") in events, 10, "mismatch")
        assert caller.frames == 0
        # A VP8-only receiver of the camera: reported for its leg, nothing sent to it.
        await vp8_watcher.connect(room, "s", 1)
        await wait_for(lambda: ("s", "codec_mismatch", "camera=H264") in events, 10, "mismatch")
        assert vp8_watcher.frames == 0
    finally:
        for c in (caller, agent, vp8_watcher):
            await c.close()
        await room.close()


async def test_audio_is_rejected_and_bad_offers_fail(room: MediaRoom) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendrecv")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        answer = await room.handle_offer("a", "agent", 1, pc.localDescription.sdp)
        audio = answer.split("m=audio")[1].split("m=video")[0]
        assert "a=inactive" in audio
        with pytest.raises(MediaError):
            await room.handle_offer("a", "agent", 2, "not sdp")
        with pytest.raises(MediaError):
            await room.handle_offer("x", "spectator", 1, pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_close_closes_every_pc() -> None:
    room = MediaRoom("r-close", loopback_config(), on_event=lambda e: None)
    caller, agent = Client("caller", RED), Client("agent", BLUE)
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await agent.wait_frames(3, 5)
        await room.close()
        await room.close()  # idempotent
        assert room.stats()["participants"] == {}
        assert not room.tracks["camera"].live and room.tracks["camera"].subscribers == []
        for client in (caller, agent):
            await wait_for(lambda c=client: c.pc.connectionState == "closed", 5, "client closed")
        with pytest.raises(MediaError):
            await room.handle_offer("c", "caller", 2, caller.pc.localDescription.sdp)
    finally:
        await caller.close()
        await agent.close()


async def test_drop_detaches_the_participant(room: MediaRoom) -> None:
    caller, agent = Client("caller", RED), Client("agent", BLUE)
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await agent.wait_frames(3, 5)
        await room.drop("c")
        assert not room.tracks["camera"].live
        assert room.tracks["screen"].subscribers == []
        assert "c" not in room.stats()["participants"]
        assert room.log.has("c", "track_ended", "camera")  # type: ignore[attr-defined]
    finally:
        await caller.close()
        await agent.close()


def test_ice_servers_for_client() -> None:
    assert ice_servers_for_client(MediaConfig(), None, 0) == []
    cfg = MediaConfig(
        stun_urls=["stun:stun.example.eu:3478"],
        turn_urls=["turn:turn.example.eu:3478", "turns:turn.example.eu:5349"],
        turn_ttl_s=600,
    )
    servers = ice_servers_for_client(cfg, "s3cret", 1_000_000.7)
    assert servers[0] == {"urls": ["stun:stun.example.eu:3478"]}
    turn = servers[1]
    assert turn["urls"] == ["turn:turn.example.eu:3478", "turns:turn.example.eu:5349"]
    assert turn["username"] == "1000600:callassist"
    expected = hmac.new(b"s3cret", b"1000600:callassist", hashlib.sha1).digest()
    assert base64.b64decode(turn["credential"]) == expected
    # TURN without a secret cannot authenticate: left out
    assert ice_servers_for_client(cfg, None, 0) == [{"urls": ["stun:stun.example.eu:3478"]}]


async def test_pc_that_never_connects_fails_and_is_dropped() -> None:
    log = EventLog()
    room = MediaRoom("r-fail", loopback_config(), on_event=log, connect_timeout_s=0.5)
    client = Client("caller", RED)
    try:
        await client.pc.setLocalDescription(await client.pc.createOffer())
        await room.handle_offer("c", "caller", 1, client.pc.localDescription.sdp)
        await client.pc.close()  # gone before it ever applied the answer
        await wait_for(lambda: log.has("c", "pc_state", "failed"), 3, "pc_state failed")
        assert room.stats()["participants"]["c"]["pc_id"] is None
        assert not room.tracks["camera"].live and room.tracks["screen"].subscribers == []
    finally:
        await client.close()
        await room.close()


async def test_trickled_candidates(room: MediaRoom) -> None:
    client = Client("caller", RED)
    try:
        await client.connect(room, "c", 1)
        browser_style = {
            "candidate": "candidate:842163049 1 udp 1677729535 127.0.0.1 50000 typ srflx "
            "raddr 0.0.0.0 rport 0 generation 0 ufrag abcd network-cost 999",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        }
        await room.add_candidate("c", 1, browser_style)
        await room.add_candidate("c", 1, {"candidate": "", "sdpMid": "0"})  # end
        await room.add_candidate("c", 1, None)
        with pytest.raises(MediaError):
            await room.add_candidate("c", 1, {"candidate": "candidate:garbage", "sdpMid": "0"})
        await room.add_candidate("c", 7, {"candidate": "candidate:garbage"})  # stale: ignored
        await room.add_candidate("nobody", 1, browser_style)
        await client.wait_frames(0, 1)
        await wait_for(lambda: client.pc.connectionState == "connected", 5, "still connected")
    finally:
        await client.close()


async def test_camera_added_later_with_replace_track(room: MediaRoom) -> None:
    # The page creates both transceivers up front and calls replaceTrack when the camera
    # starts: no renegotiation, the server just starts receiving.
    caller, agent = Client("caller", None), Client("agent", None, send=False)
    try:
        await caller.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await wait_for(lambda: agent.pc.connectionState == "connected", 5, "agent connected")
        await asyncio.sleep(0.3)
        assert agent.frames == 0 and not room.log.has("c", "track_live", "camera")  # type: ignore[attr-defined]
        caller.pc.getTransceivers()[0].sender.replaceTrack(SolidTrack(RED))
        await agent.wait_frames(5, 3)
        assert agent.last_rgb is not None and close_to(agent.last_rgb, RED)
        assert room.log.has("c", "track_live", "camera")  # type: ignore[attr-defined]
    finally:
        await caller.close()
        await agent.close()


async def test_reloaded_page_reusing_its_pc_number_gets_a_new_pc(room: MediaRoom) -> None:
    before, after = Client("caller", RED), Client("caller", GREEN)
    agent = Client("agent", None, send=False)
    try:
        await before.connect(room, "c", 1)
        await agent.connect(room, "a", 1)
        await agent.wait_frames(3, 5)
        await after.connect(room, "c", 1)  # same participant, same number, new page
        await wait_for(
            lambda: agent.last_rgb is not None and close_to(agent.last_rgb, GREEN), 5, "green"
        )
        await wait_for(lambda: before.pc.connectionState == "closed", 5, "old pc closed")
    finally:
        await before.close()
        await after.close()
        await agent.close()
