"""A real call whose caller goes through the impairment relay (tests/impair.py), and what
to read from it per condition: frames the agent decoded, how long media took to come back,
and the quality indicators on both pages. Shared by tests/test_impairment.py (survival
checks) and bench/impairment.py (the numbers)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.impair import CLEAN, Impairment, ImpairRelay
from tests.test_browser_e2e import (
    agent_page,
    caller_page,
    frames,
    open_link,
    start_session,
    wait_colours,
)

QUADRANTS = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]

# What both pages show: the caller's own bars, the agent's view of the caller and of itself,
# the agent's placeholder / no-frame hint / low-bandwidth suggestion, the caller's banner.
INDICATORS_AGENT = """
() => {
  const q = (id) => document.querySelector(`[data-testid="${id}"]`);
  const score = (id) => { const n = q(id); return n && !n.hidden && n.dataset.score !== ""
    ? Number(n.dataset.score) : null; };
  const ph = q("camera-placeholder");
  return { agent_view_of_caller: score("netq-caller"), agent_own: score("netq-agent"),
           placeholder: ph && !ph.hidden ? ph.dataset.reason : null,
           no_frames_hint: !!(q("camera-noframes") && !q("camera-noframes").hidden),
           suggest_low: !!(q("suggest-low") && !q("suggest-low").hidden),
           session: q("session-state") && q("session-state").dataset.state };
}
"""
INDICATORS_CALLER = """
() => {
  const q = (id) => document.querySelector(`[data-testid="${id}"]`);
  const n = q("netq");
  return { caller_own: n && !n.hidden && n.dataset.score !== "" ? Number(n.dataset.score) : null,
           call_state: q("call-state") && q("call-state").dataset.state,
           pc: window.callassist ? window.callassist.pcNum : null };
}
"""


def write_busy_y4m(path: Path, width: int = 640, height: int = 480, frames: int = 60) -> None:
    """The quadrant camera (tests/conftest.py) with a band of fresh noise across the middle
    in every frame: the encoder then wants far more than the plain quadrants' ~90 kbps, so
    a rate cap and loss bite as they would on a real scene. The quadrants' centres, where
    the pixel checks sample, stay clean."""
    from tests.conftest import write_quadrant_y4m

    write_quadrant_y4m(path, width, height, frames=1)
    data = path.read_bytes()
    header, first = data.split(b"\n", 1)
    frame = bytearray(first[len(b"FRAME\n") :])
    rng = random.Random(15)
    band = range(height * 2 // 5 * width, height * 3 // 5 * width)  # luma rows 40-60 %
    with open(path, "wb") as fh:
        fh.write(header + b"\n")
        for _ in range(frames):
            frame[band.start : band.stop] = rng.randbytes(len(band))
            fh.write(b"FRAME\n" + frame)


async def indicators(agent: Page, caller: Page) -> dict[str, Any]:
    return {**await agent.evaluate(INDICATORS_AGENT), **await caller.evaluate(INDICATORS_CALLER)}


async def start_call(browser: Any, server: Any) -> tuple[Any, Page, Any, Page]:
    """Agent (direct) and caller (relay only: through the TURN URL the server offers, which
    is the impairment relay in front of coturn), live, pixels checked at the agent."""
    agent_ctx, agent = await agent_page(browser, server)
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    await caller_ctx.add_init_script("window.callassistIceTransportPolicy = 'relay';")
    await open_link(caller, link)
    await caller.get_by_test_id("notice-accept").click()
    await caller.get_by_test_id("start-camera").click()
    await expect(caller.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=30_000
    )
    await wait_colours(agent, "camera-video", QUADRANTS, COLOURS, timeout=30)
    return agent_ctx, agent, caller_ctx, caller


class FrameCounter:
    """Frames the agent decoded, across its peer connections (a new pc restarts getStats)."""

    def __init__(self) -> None:
        self.total = 0
        self.last = 0

    async def read(self, agent: Page) -> int:
        n = await frames(agent)
        self.total += n - self.last if n >= self.last else n
        self.last = n
        return self.total


async def run_condition(
    relay: ImpairRelay,
    agent: Page,
    caller: Page,
    counter: FrameCounter,
    impairment: Impairment,
    seconds: float,
) -> dict[str, Any]:
    """Hold one condition `seconds`; frames delivered meanwhile and the indicators at its
    end (plus the lowest scores seen: a bar that never moved is suspicious)."""
    relay.set(impairment)
    start = await counter.read(agent)
    began = time.monotonic()
    lowest: dict[str, int] = {}
    seen: dict[str, Any] = {}
    suggested = False
    while time.monotonic() - began < seconds:
        await asyncio.sleep(1)
        seen = await indicators(agent, caller)
        suggested = suggested or seen["suggest_low"]
        for key in ("caller_own", "agent_view_of_caller", "agent_own"):
            if seen.get(key) is not None:
                lowest[key] = min(lowest.get(key, 5), seen[key])
    delivered = await counter.read(agent) - start
    elapsed = time.monotonic() - began
    return {
        "condition": impairment.describe(),
        "seconds": round(elapsed, 1),
        "frames_delivered": delivered,
        "fps_at_agent": round(delivered / elapsed, 1),
        # What the caller's uplink carried (shows whether a rate cap was reached).
        "uplink_kbps": round(relay.up.bytes_passed * 8 / elapsed / 1000, 1),
        "indicators_end": seen,
        "lowest": lowest,
        "suggest_low_seen": suggested,
        "relay": relay.counters(),
    }


async def blackout(
    relay: ImpairRelay,
    agent: Page,
    caller: Page,
    counter: FrameCounter,
    seconds: float = 10,
    give_up_s: float = 60,
    settled: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Nothing passes for `seconds`; then how long until the agent decodes frames again
    (nobody taps anything), and the indicators during and after: 3 s after, or as soon as
    `settled(indicators)` within those 3 s (a test waiting for what it asserts)."""
    during = await run_condition(
        relay, agent, caller, counter, Impairment(blackout=True), seconds
    )
    relay.set(CLEAN)
    ended = time.monotonic()
    base = await counter.read(agent)
    recovery = None
    while time.monotonic() - ended < give_up_s:
        if await counter.read(agent) >= base + 5:  # a few frames: media flows again
            recovery = time.monotonic() - ended
            break
        await asyncio.sleep(0.1)
    # the indicators catch up (once a second on both pages)
    settle_until = time.monotonic() + 3
    if settled is None:
        await asyncio.sleep(3)
    while settled is not None and time.monotonic() < settle_until:
        if settled(await indicators(agent, caller)):
            break
        await asyncio.sleep(0.25)
    return {
        **during,
        "recovery_s": None if recovery is None else round(recovery, 2),
        "indicators_after": await indicators(agent, caller),
    }
