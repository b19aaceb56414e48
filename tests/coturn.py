"""Debian's coturn as a real TURN server for tests and benches (tests/test_turn.py,
tests/test_impairment.py, bench/impairment.py): loopback only, `use-auth-secret` with the
secret the service issues its time-limited credentials from (CALLASSIST_TURN_SECRET)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port

TURNSERVER = "/usr/bin/turnserver"


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


def start_coturn(folder: Path) -> tuple[Turn, subprocess.Popen[bytes]]:
    """turnserver on loopback in `folder`: UDP+TCP on one port, TLS on another (a
    self-signed certificate made here), use-auth-secret; returns when both listen."""
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
    except BaseException:
        stop_coturn(proc)
        raise
    return turn, proc


def stop_coturn(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
