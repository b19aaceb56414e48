"""The first frame as a person sees it (bench/first_frame.py): real Chromium, the real caller
page and agent console against an in-process server, the caller's tap on "start camera"
-> the first frame painted in the agent's `<video>` (requestVideoFrameCallback).

Both pages run in one Chromium and the server in this process, so every timestamp is on
one clock: the pages' `performance.timeOrigin + performance.now()` and the server's
`time.time()` (both the system clock, in ms). Each session is fresh (new agent context,
new support session, new caller context). With pre-warm (the default, web/caller.js) the
caller's connection is up before the tap; without it (`window.callassistPrewarm = false`)
the tap makes it. The two are interleaved, A/B, in one run.

The steps are read from the pages by init scripts (getUserMedia, the offer on the socket,
the answer, ICE, DTLS, connected, the agent told the camera is live, painted) and from the
server by wrapping a few of its methods in this process only (offer in / answer out, first
RTP packet, first keyframe of the camera).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.lib import media
from bench.lib.stats import percentile
from server.http.app import create_app
from tests.conftest import (
    CHROMIUM,
    FakeClock,
    Server,
    chromium_args,
    free_port,
    test_config,
    write_quadrant_y4m,
)
from tests.test_browser_e2e import agent_page, caller_page, open_link, start_session

# Caller page: every step a {name, t} in window.__ff (t in ms on the system clock).
CALLER_PROBE = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const ev = (window.__ff = []);
  const mark = (name) => ev.push({ name, t: now() });
  window.__ffMark = mark;
  const md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    const gum = md.getUserMedia.bind(md);
    md.getUserMedia = async (c) => {
      mark("gum_called");
      const s = await gum(c);
      mark("gum_done");
      return s;
    };
  }
  const Orig = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Orig {
    constructor(...args) {
      super(...args);
      mark("pc_created");
      const on = (what, read) => this.addEventListener(what, () => mark(read()));
      on("iceconnectionstatechange", () => "ice_" + this.iceConnectionState);
      on("connectionstatechange", () => "pc_" + this.connectionState);
    }
    async setRemoteDescription(d) {
      mark("answer_received");
      const r = await super.setRemoteDescription(d);
      mark("answer_applied");
      const tr = this.getSenders()[0] && this.getSenders()[0].transport;
      if (tr) tr.addEventListener("statechange", () => mark("dtls_" + tr.state));
      return r;
    }
  };
  const replace = RTCRtpSender.prototype.replaceTrack;
  RTCRtpSender.prototype.replaceTrack = function (track) {
    if (track) mark("replace_track");
    return replace.call(this, track);
  };
  document.addEventListener("DOMContentLoaded", () => {
    const v = document.getElementById("camera-preview");
    const seen = () => (v.videoWidth ? mark("preview_painted") : v.requestVideoFrameCallback(seen));
    v.requestVideoFrameCallback(seen);
  });
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === "string" && data.includes('"type":"offer"')) mark("offer_sent");
    return send.call(this, data);
  };
})();
"""

# Agent console: when the room message says the camera is live, and the first frame the
# camera <video> presents (requestVideoFrameCallback: `now` is when it is composited).
AGENT_PROBE = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  window.__ff = [];
  const Orig = window.WebSocket;
  window.WebSocket = class extends Orig {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        if (typeof e.data === "string" && e.data.includes('"camera":true') && !window.__ffLive)
          window.__ffLive = now();
      });
    }
  };
  document.addEventListener("DOMContentLoaded", () => {
    const v = document.getElementById("camera-video");
    v.requestVideoFrameCallback((t, meta) => {
      window.__ffPainted = performance.timeOrigin + t;
      window.__ffPresented = performance.timeOrigin + meta.presentationTime;
    });
  });
})();
"""

TAP = """() => {
  window.__ffMark("tap");
  document.getElementById("start-camera").click();
}"""

# Steps in the order they happen without pre-warm (ms after the tap; < 0: before it).
STEPS = [
    "gum_done",
    "replace_track",
    "preview_painted",
    "offer_sent",
    "server_offer_in",
    "server_answer_out",
    "answer_applied",
    "ice_connected",
    "dtls_connected",
    "pc_connected",
    "server_first_rtp",
    "server_first_keyframe",
    "agent_told_live",
    "painted",
]


class ServerProbe:
    """First server-side moments of the caller's camera, per session (reset())."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self._undo: list[Callable[[], None]] = []

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.time() * 1000)

    def reset(self) -> None:
        self.marks = {}

    def install(self) -> None:
        self._undo.append(media.probe_first_moments(self.mark))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()


async def _wait(page: Any, expr: str, timeout_s: float) -> bool:
    try:
        await page.wait_for_function(expr, timeout=timeout_s * 1000, polling=20)
        return True
    except Exception:  # playwright's TimeoutError: the caller decides what it means
        return False


async def one_session(
    browser: Any, server: Server, probe: ServerProbe, prewarm: bool
) -> dict[str, Any]:
    agent_ctx, agent = await agent_page(browser, server)
    caller_ctx = None
    try:
        await agent.add_init_script(AGENT_PROBE)
        await agent.reload()  # the probe is in place before the console's scripts run
        await agent.get_by_test_id("new-session-phone").wait_for()
        link = await start_session(agent)
        caller_ctx, caller = await caller_page(browser)
        await caller_ctx.add_init_script(CALLER_PROBE)
        if not prewarm:
            await caller_ctx.add_init_script("window.callassistPrewarm = false;")
        await open_link(caller, link)
        probe.reset()
        await caller.get_by_test_id("notice-accept").click()
        await caller.get_by_test_id("start-camera").wait_for()
        # A person reads the screen before tapping: let what the page does meanwhile finish.
        agent_up = "() => window.callassist && window.callassist.pcState === 'connected'"
        await _wait(agent, agent_up, 15)
        if prewarm:
            await _wait(caller, agent_up, 15)
        await asyncio.sleep(0.5)
        await caller.evaluate(TAP)
        if not await _wait(agent, "() => window.__ffPainted", 30):
            steps = await caller.evaluate("window.__ff.map((e) => e.name)")
            raise RuntimeError(f"no frame painted at the agent within 30 s (caller: {steps})")
        await _wait(agent, "() => window.__ffLive", 5)  # may come after the paint
        events = await caller.evaluate("window.__ff")
        painted = await agent.evaluate("[window.__ffPainted, window.__ffLive]")
        # The agent ends each call, as after a real one. Left live, the 20 sessions of a
        # run reach session.max_live_rooms_per_agent (20): the console then refuses the
        # next one and still shows the last session's (used) link, which the caller
        # opened and got "link not valid" (seen twice, when no earlier room had ended).
        await agent.get_by_test_id("end-session").click()
        await agent.get_by_test_id("end-session-confirm").click()
        await agent.locator('[data-testid="session-state"][data-state="ended"]').wait_for(
            timeout=10_000
        )
    finally:
        if caller_ctx is not None:
            await caller_ctx.close()
        await agent_ctx.close()
    tap = next(e["t"] for e in events if e["name"] == "tap")
    marks: dict[str, float] = {}
    for e in events:  # the last of each: a pre-warm's connection, not an earlier attempt
        marks[e["name"]] = e["t"]
    marks.update(probe.marks)
    marks["painted"], marks["agent_told_live"] = painted[0], painted[1]
    steps = {name: round(marks[name] - tap, 1) for name in STEPS if marks.get(name)}
    return {"tap_to_painted_ms": steps["painted"], "steps": steps}


def _summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    values = [s["tap_to_painted_ms"] for s in samples]
    steps = {}
    for name in STEPS:
        got = [s["steps"][name] for s in samples if name in s["steps"]]
        if got:
            steps[name] = round(statistics.median(got), 1)
    return {
        "median_ms": round(statistics.median(values), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "min_ms": round(min(values), 1),
        "max_ms": round(max(values), 1),
        "samples_ms": [round(v, 1) for v in values],
        "steps": steps,
    }


async def run(runs: int) -> dict[str, Any]:
    """`runs` fresh sessions with pre-warm and `runs` without, interleaved."""
    from playwright.async_api import async_playwright

    probe = ServerProbe()
    probe.install()
    with tempfile.TemporaryDirectory(prefix="first-frame-") as tmp:
        folder = Path(tmp)
        port = free_port()
        cfg = test_config(port)
        clock = FakeClock()
        app = create_app(cfg, folder / "data", clock=clock)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        server = Server(f"http://127.0.0.1:{port}", port, app, folder / "data", cfg, clock)
        camera = folder / "camera.y4m"
        write_quadrant_y4m(camera)
        got: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=chromium_args(camera)
                )
                browser.callassist_devices = pw.devices  # type: ignore[attr-defined]
                try:
                    for i in range(runs):
                        # A/B, then B/A: neither mode always follows the other.
                        for prewarm in (True, False) if i % 2 == 0 else (False, True):
                            got[prewarm].append(await one_session(browser, server, probe, prewarm))
                finally:
                    await browser.close()
        finally:
            await runner.cleanup()
            probe.uninstall()
    return {
        "runs": runs,
        "prewarm": True,
        **_summarise(got[True]),
        "without_prewarm": _summarise(got[False]),
    }
