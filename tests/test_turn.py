"""TURN with Debian's coturn (issue 15, "Networks"): the caller's page relay only
(`window.callassistIceTransportPolicy = "relay"`, docs/testing.md) over UDP, over TCP and
over TLS on a 443-style port; the server gathers a relay candidate from the same TURN
server (media.server_turn_url). Media both ways in each case, pixels checked.

One turnserver for the module, on loopback: UDP+TCP on one port, TLS on another, a
self-signed certificate made here, `use-auth-secret` with the secret the service issues
its time-limited credentials from (CALLASSIST_TURN_SECRET)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.async_api import expect

from tests.conftest import CHROMIUM, chromium_args, free_port
from tests.test_browser_e2e import agent_page, caller_page, open_link, start_session, wait_colours

TURNSERVER = "/usr/bin/turnserver"

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


@dataclass
class Turn:
    port: int  # UDP and TCP
    tls_port: int
    secret: str
    ca_file: Path
    log: Path
    spki: str  # base64 SHA-256 of the certificate's public key (Chromium's pin format)

    def url(self, transport: str) -> str:
        if transport == "tls":
            return f"turns:127.0.0.1:{self.tls_port}?transport=tcp"
        return f"turn:127.0.0.1:{self.port}?transport={transport}"


def self_signed(folder: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "turn.crt", folder / "turn.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return cert_path, key_path, base64.b64encode(hashlib.sha256(der).digest()).decode()


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"turnserver exited: {log.read_text()[-2000:]}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"turnserver not listening on {port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    folder = tmp_path_factory.mktemp("coturn")
    cert, key, spki = self_signed(folder)
    (folder / "turnserver.conf").write_text("")
    turn = Turn(
        free_port(), free_port(), secrets.token_urlsafe(24), cert, folder / "turn.log", spki
    )
    relay_lo = 49152 + secrets.randbelow(10_000)
    args = [
        TURNSERVER,
        "-c", str(folder / "turnserver.conf"),
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={turn.port}",
        f"--tls-listening-port={turn.tls_port}",
        f"--min-port={relay_lo}",
        f"--max-port={relay_lo + 200}",
        "--use-auth-secret",
        f"--static-auth-secret={turn.secret}",
        "--realm=callassist.test",
        f"--cert={cert}",
        f"--pkey={key}",
        f"--db={folder / 'turndb'}",
        f"--pidfile={folder / 'turn.pid'}",
        # The peers (the server, the browser) are on loopback too: coturn refuses those
        # by default.
        "--allow-loopback-peers",
        "--no-cli",
        "--no-dtls",
        "--no-multicast-peers",
        "--fingerprint",
        "--simple-log",
        f"--log-file={turn.log}",
        "-v",
    ]  # fmt: skip
    with open(folder / "turn.out", "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(turn.port, proc, folder / "turn.out")
        wait_listening(turn.tls_port, proc, folder / "turn.out")
        yield turn
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
