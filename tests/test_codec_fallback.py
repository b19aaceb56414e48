"""A caller whose browser has no VP8 (Safari's rule: offer H264 then) in a VP8 room, in real
Chromium. The server does not transcode, so every leg negotiates VP8 and H264 and a
publisher's packets go to each leg with that leg's payload type for its codec: the H264
camera reaches the agent; the agent's screen, VP8 at first, is switched to H264 by the
agent's page when the server says the caller cannot take VP8. An agent whose browser
cannot take H264 is told so (`codec-warning`), never a silent black video."""

from __future__ import annotations

from typing import Any

import av
from playwright.async_api import Page, expect

from recorder.recovery import ObjectSource, export
from server.recording.service import RECORDING
from server.rooms.manager import ROOMS
from tests.media_helpers import wait_for
from tests.recorder_helpers import QUADRANTS as QUADRANTS_AT
from tests.recorder_helpers import rgb_at
from tests.test_browser_e2e import (
    SAMPLE,
    agent_page,
    caller_page,
    open_link,
    start_session,
    wait_colours,
)
from tests.test_relink import COLOURS, QUADRANTS

# A browser that lists no `mime` codec (the page's own code must then offer the others).
STRIP_CODEC = """(() => {
  const mime = %r;
  for (const cls of [window.RTCRtpSender, window.RTCRtpReceiver]) {
    if (!cls || !cls.getCapabilities) continue;
    const orig = cls.getCapabilities.bind(cls);
    cls.getCapabilities = (kind) => {
      const caps = orig(kind);
      if (caps && kind === "video") {
        caps.codecs = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== mime);
      }
      return caps;
    };
  }
})();"""

# An agent's browser that cannot receive H264 (as Firefox without its OpenH264 plugin):
# every video transceiver it makes offers VP8 only.
AGENT_WITHOUT_H264 = (
    STRIP_CODEC % "video/h264"
    + """
(() => {
  const orig = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (...args) {
    const t = orig.apply(this, args);
    const caps = RTCRtpReceiver.getCapabilities("video").codecs;
    t.setCodecPreferences(caps.filter((c) => /vp8|rtx/i.test(c.mimeType)));
    return t;
  };
})();"""
)

PAINT = """() => { const d = document.createElement('div');
  d.id = 'paint'; d.style.position = 'fixed'; d.style.inset = '0';
  d.style.background = 'rgb(255, 0, 255)'; d.style.zIndex = '99999';
  d.style.pointerEvents = 'none'; document.body.appendChild(d); }"""

CODECS_IN_USE = """async ([dir]) => {
  const pc = window.callassist.pc, stats = await pc.getStats(), out = [];
  stats.forEach((r) => {
    if (r.type === dir && r.kind === "video" && r.codecId && (r.framesDecoded || r.framesEncoded)) {
      out.push(stats.get(r.codecId).mimeType);
    }
  });
  return out; }"""


async def h264_caller(browser: Any, link: str) -> tuple[Any, Page]:
    ctx, caller = await caller_page(browser)
    await ctx.add_init_script(STRIP_CODEC % "video/vp8")
    await open_link(caller, link)
    await caller.get_by_test_id("notice-accept").click()
    await caller.get_by_test_id("start-camera").click()
    return ctx, caller


async def test_caller_without_vp8_reaches_the_agent_both_ways(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await h264_caller(browser, link)
    await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
        "data-status", "live", timeout=15_000
    )
    # The caller's page offered H264 alone; its camera reaches the agent as H264.
    assert await caller.evaluate("window.callassist.codec") == "H264"
    sdp = await caller.evaluate("window.callassist.pc.localDescription.sdp")
    assert "H264/90000" in sdp and "VP8/90000" not in sdp
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS)
    assert await agent.evaluate(CODECS_IN_USE, ["inbound-rtp"]) == ["video/H264"]
    await expect(agent.get_by_test_id("codec-warning")).to_be_hidden()

    # The agent's screen starts as VP8 (Chromium's first codec), which this caller cannot
    # take: the server says so, the agent's page sends it as H264, the caller sees it.
    await agent.evaluate(PAINT)
    await agent.get_by_test_id("share-screen").click()
    await wait_colours(caller, "screen-video", [(0.5, 0.5)], [(255, 0, 255)], timeout=25)
    assert await agent.evaluate("window.callassist.screenCodec") == "video/h264"
    assert await agent.evaluate(CODECS_IN_USE, ["outbound-rtp"]) == ["video/H264"]
    await expect(agent.get_by_test_id("codec-warning")).to_be_hidden(timeout=10_000)
    # The camera still reaches the agent on its new connection.
    await agent.evaluate("() => document.getElementById('paint').remove()")
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS)
    await agent_ctx.close()
    await caller_ctx.close()


async def test_agent_told_when_it_cannot_take_the_callers_codec(browser, server) -> None:  # type: ignore[no-untyped-def]
    agent_ctx, agent = await agent_page(browser, server)
    await agent_ctx.add_init_script(AGENT_WITHOUT_H264)
    await agent.reload()
    await expect(agent.get_by_test_id("new-session-phone")).to_be_visible()
    link = await start_session(agent)
    caller_ctx, caller = await h264_caller(browser, link)
    await expect(caller.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=15_000
    )
    # The server has the caller's H264 camera but cannot send it on a VP8-only leg: the
    # agent's console says which codec and what to do, instead of a black video.
    warning = agent.get_by_test_id("codec-warning")
    await expect(warning).to_be_visible(timeout=15_000)
    await expect(warning).to_have_attribute("data-track", "camera")
    await expect(warning).to_have_attribute("data-codec", "H264")
    await expect(warning).to_contain_text("H264")
    room = await agent.evaluate("window.callassist.room.codec_mismatch")
    assert room == {"camera": "H264", "screen": None}, room
    got = await agent.evaluate(SAMPLE, ["camera-video", [(0.5, 0.5)]])
    assert got is None or got == [[0, 0, 0]], got  # nothing decoded: no picture pretended
    await agent_ctx.close()
    await caller_ctx.close()


async def test_h264_caller_in_a_vp8_room_is_recorded_in_h264(  # type: ignore[no-untyped-def]
    browser, make_server, tmp_path
) -> None:
    # The recording takes the camera's own codec (Matroska/H264 here), not media.codec: a
    # VP8 container of H264 frames would be unreadable.
    server = await make_server(recording={"segment_s": 1.5})
    assert server.config.media.codec == "VP8"
    agent = await server.agent()
    created = await agent.new_session()
    sid = created["session"]["id"]
    ctx, caller = await h264_caller(browser, created["link"])
    await expect(caller.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=15_000
    )
    service = server.app[RECORDING]
    camera = server.app[ROOMS].get(sid).media.tracks["camera"]
    await wait_for(lambda: camera.codec == "H264", 10, "the caller's H264 camera")
    status, body = await agent.post(f"/api/sessions/{sid}/recording", {"action": "start"})
    assert status == 200, body
    recorder = service.active[sid].recorder
    await wait_for(lambda: recorder.stats.frames_received > 30, 15, "recorded frames")
    status, body = await agent.post(f"/api/sessions/{sid}/recording", {"action": "stop"})
    assert status == 200, body
    summary = await recorder.wait()
    await ctx.close()
    assert recorder.codec == "H264" and recorder.stats.frames_other_codec == 0
    assert summary.complete and summary.frames > 30 and summary.frames_lost == 0
    assert await service.spool.drain(10)
    source = ObjectSource(service.storage)
    out = tmp_path / "camera.mkv"
    exported = await export(source, service.keys, summary.recording_id, out)
    assert exported.frames == summary.frames
    with av.open(str(out)) as inp:
        assert inp.streams.video[0].codec_context.name == "h264"
        frames = list(inp.decode(video=0))
    assert len(frames) == summary.frames
    for (fx, fy), want in QUADRANTS_AT.items():
        got = rgb_at(frames[-1], fx, fy)
        assert all(abs(a - b) <= 60 for a, b in zip(got, want, strict=True)), (fx, fy, got)
