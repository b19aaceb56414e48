"""TURN with Debian's coturn (issue 15, "Networks"): the caller's page relay only
(`window.callassistIceTransportPolicy = "relay"`, docs/testing.md) over UDP, over TCP and
over TLS on a 443-style port; the server gathers a relay candidate from the same TURN
server (media.server_turn_url). Media both ways in each case, pixels checked.

One turnserver for the module, on loopback: UDP+TCP on one port, TLS on another, a
self-signed certificate made here, `use-auth-secret` with the secret the service issues
its time-limited credentials from (CALLASSIST_TURN_SECRET)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import CHROMIUM, chromium_args
from tests.coturn import Turn, start_coturn, stop_coturn
from tests.test_browser_e2e import agent_page, caller_page, open_link, start_session, wait_colours

# The caller page's chosen ICE pair: the local candidate's type and TURN transport.
SELECTED = """
async () => {
  const pc = window.callassist && window.callassist.pc;
  if (!pc || pc.connectionState !== "connected") return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) {
      pair = stats.get(r.selectedCandidatePairId);
    }
  });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  const answer = pc.remoteDescription ? pc.remoteDescription.sdp : "";
  return { local: local.candidateType, relayProtocol: local.relayProtocol || null,
           remote: remote.candidateType, answerHasRelay: / typ relay /.test(answer) };
}
"""


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    turn, proc = start_coturn(tmp_path_factory.mktemp("coturn"))
    yield turn
    stop_coturn(proc)


@pytest.fixture(scope="module")
async def caller_browser(browser: Any, coturn: Turn, fake_camera: Path) -> AsyncIterator[Any]:
    """The caller's Chromium: Chromium verifies a turns: server's certificate (a
    self-signed one fails the TLS handshake), so this one pins the test's certificate."""
    own = await browser.browser_type.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=chromium_args(fake_camera, f"--ignore-certificate-errors-spki-list={coturn.spki}"),
    )
    own.callassist_devices = browser.callassist_devices
    yield own
    await own.close()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_caller_relay_only_through_coturn(  # type: ignore[no-untyped-def]
    transport, coturn, browser, caller_browser, make_server, monkeypatch
) -> None:
    monkeypatch.setenv("CALLASSIST_TURN_SECRET", coturn.secret)
    # aioice verifies a turns: server against the default CAs: ours is the test's own.
    monkeypatch.setenv("SSL_CERT_FILE", str(coturn.ca_file))
    url = coturn.url(transport)
    server = await make_server(media={"turn_urls": [url], "server_turn_url": url})

    agent_ctx, agent = await agent_page(browser, server)
    # Paint the agent's tab one colour before sharing it: the caller's pixels are known.
    await agent.evaluate(
        """() => { const d = document.createElement('div');
        d.id = 'paint'; d.style.position = 'fixed'; d.style.inset = '0';
        d.style.background = 'rgb(255, 0, 255)'; d.style.zIndex = '99999';
        d.style.pointerEvents = 'none'; document.body.appendChild(d); }"""
    )
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(caller_browser)
    await caller_ctx.add_init_script("window.callassistIceTransportPolicy = 'relay';")
    await open_link(caller, link)
    await caller.get_by_test_id("notice-accept").click()
    await caller.get_by_test_id("start-camera").click()
    await expect(caller.get_by_test_id("call-state")).to_have_attribute(
        "data-state", "live", timeout=30_000
    )

    # The caller's camera reaches the agent ...
    await wait_colours(
        agent,
        "camera-video",
        [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)],
        [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)],
        timeout=30,
    )
    # ... and the agent's screen reaches the caller, both through the TURN relay.
    await agent.get_by_test_id("share-screen").click()
    await wait_colours(caller, "screen-video", [(0.5, 0.5)], [(255, 0, 255)], timeout=30)

    chosen = await caller.evaluate(SELECTED)
    assert chosen is not None
    assert chosen["local"] == "relay", chosen
    assert chosen["relayProtocol"] == transport, chosen
    assert chosen["answerHasRelay"], chosen  # the server gathered from coturn as well
    await agent_ctx.close()
    await caller_ctx.close()
