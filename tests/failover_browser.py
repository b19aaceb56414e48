"""Real Chromium pages (agent console, caller) in a cluster through haproxy, for
tests/test_failover.py: logged in, a session made and its camera live; each page keeps a
timeline (page clock, ms) of its sockets (connect, open, close code, welcome/moved/answer
messages), its peer connections (new, state) and the agent's presented video frames, so a
failover can be printed step by step. The Redis side (who holds the room, when) is
watched from the test (`watch_owner`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from bench.lib.procs import PASSWORD, Cluster

# In every page of the context: the timeline. Subclassing keeps WebSocket.OPEN & co.
TIMELINE = """
window.__timeline = [];
const T = (what) => window.__timeline.push([Date.now(), what]);
const NativeWS = window.WebSocket;
window.WebSocket = class extends NativeWS {
  constructor(url, protocols) {
    super(url, protocols);
    T("socket connect");
    this.addEventListener("open", () => T("socket open"));
    this.addEventListener("close", (e) => T("socket close " + e.code));
    this.addEventListener("message", (e) => {
      try {
        const m = JSON.parse(e.data);
        if (["welcome", "moved", "answer", "reopened", "error"].includes(m.type))
          T(m.type + (m.code ? " " + m.code : ""));
      } catch { /* not JSON */ }
    });
  }
};
const NativePC = window.RTCPeerConnection;
window.RTCPeerConnection = class extends NativePC {
  constructor(config) {
    super(config);
    T("pc new");
    this.addEventListener("connectionstatechange", () => {
      T("pc " + this.connectionState);
      if (this.connectionState === "connected") window.__framed = false;
    });
  }
};
"""
# Every frame the agent's <video> presents (requestVideoFrameCallback survives a new
# srcObject): the time of the last one, page clock; the first after each new connection
# goes into the timeline (after TIMELINE, in the same script: it uses T).
FRAME_CLOCK = """
setInterval(() => {
  const v = document.querySelector('[data-testid="camera-video"]');
  if (!v || v.__clocked) return;
  v.__clocked = true;
  const tick = () => {
    window.__lastFrame = Date.now();
    if (window.__framed === false) { window.__framed = true; T("first frame on the new pc"); }
    v.requestVideoFrameCallback(tick);
  };
  v.requestVideoFrameCallback(tick);
}, 100);
"""
QUADRANTS = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]


@dataclass
class BrowserCall:
    agent: Any
    caller: Any
    room: str
    contexts: list[Any] = field(default_factory=list)

    async def events(self, since_ms: float) -> list[tuple[float, str]]:
        """Both pages' timelines from `since_ms` on, as (ms after it, "who: what")."""
        out: list[tuple[float, str]] = []
        for who, page in (("agent", self.agent), ("caller", self.caller)):
            for at, what in await page.evaluate("window.__timeline"):
                if at >= since_ms:
                    out.append((at - since_ms, f"{who}: {what}"))
        return out

    async def count(self, page: Any, what: str, since_ms: float) -> int:
        return sum(1 for at, w in await page.evaluate("window.__timeline")
                   if at >= since_ms and w == what)  # fmt: skip

    async def close(self) -> None:
        for ctx in self.contexts:
            await ctx.close()


async def start_call(cluster: Cluster, browser: Any) -> BrowserCall:
    """Agent logged in through haproxy, a session made, the caller's camera live at the
    agent (pixels checked)."""
    from playwright.async_api import expect

    from tests.test_browser_e2e import caller_page, open_link, start_session, wait_colours

    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, permissions=["camera"])
    await ctx.add_init_script(TIMELINE + FRAME_CLOCK)
    agent = await ctx.new_page()
    await agent.goto(cluster.url + "/agent")
    await agent.get_by_test_id("login-username").fill("anna")
    await agent.get_by_test_id("login-password").fill(PASSWORD)
    await agent.get_by_test_id("login-submit").click()
    await expect(agent.get_by_test_id("new-session-phone")).to_be_visible()
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await caller_ctx.add_init_script(TIMELINE)
    call = BrowserCall(agent, caller, "", [ctx, caller_ctx])
    try:
        await open_link(caller, link)
        await caller.get_by_test_id("notice-accept").click()
        await caller.get_by_test_id("start-camera").click()
        await wait_colours(agent, "camera-video", QUADRANTS, COLOURS, timeout=30)
        call.room = str(await caller.evaluate("window.callassist.room.id"))
    except BaseException:
        await call.close()
        raise
    return call


async def frame_after(page: Any, since_ms: float, timeout_ms: float = 60_000) -> float:
    """The page-clock time of the first frame the agent's video presents after `since_ms`
    and after a gap (frames already on their way when the node went are not it)."""
    await page.wait_for_function("(t) => Date.now() - window.__lastFrame > 700", arg=since_ms,
                                 timeout=20_000)  # fmt: skip
    stalled = await page.evaluate("window.__lastFrame")
    await page.wait_for_function("(t) => window.__lastFrame > t", arg=max(stalled, since_ms),
                                 timeout=timeout_ms, polling=50)  # fmt: skip
    return float(await page.evaluate("window.__lastFrame"))


async def frame_after_reconnect(page: Any, since_ms: float, timeout_ms: float = 60_000) -> float:
    """The page-clock time of the first frame presented after the agent's peer connection
    made since `since_ms` connected (a drain may leave no visible gap)."""
    await page.wait_for_function(
        """(t) => {
          const c = window.__timeline.filter(([at, w]) => at >= t && w === "pc connected");
          return c.length > 0 && window.__lastFrame > c[c.length - 1][0];
        }""", arg=since_ms, timeout=timeout_ms, polling=50,
    )  # fmt: skip
    return float(await page.evaluate("window.__lastFrame"))


@contextlib.asynccontextmanager
async def watch_owner(cluster: Cluster, room: str, since_ms: float) -> Any:
    """Who holds `room:<id>` in Redis, each change as (ms after `since_ms`, "redis: …"),
    polled every 50 ms while the block runs."""
    seen: list[tuple[float, str]] = []
    client = aioredis.Redis.from_url(cluster.redis.url, decode_responses=True)

    async def poll() -> None:
        last: str | None = "?"
        while True:
            owner = await client.get(f"callassist:room:{room}")
            if owner != last:
                what = f"room key -> {owner}" if owner else "room key gone"
                seen.append((time.time() * 1000 - since_ms, "redis: " + what))
                last = owner
            await asyncio.sleep(0.05)

    task = asyncio.create_task(poll())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()


def format_timeline(title: str, events: list[tuple[float, str]]) -> str:
    lines = [title] + [f"  {at / 1000:7.2f} s  {what}" for at, what in sorted(events)]
    return "\n".join(lines)
