"""A Janus process for a comparison: Debian's `janus` (1.1.2) with only its HTTP transport
and the VideoRoom plugin, ICE on 127.0.0.1, configs generated into a temp dir.

Every change from the configuration Debian ships is in `janus_configs` (and listed in
docs/media-performance.md, "Janus as compared"); everything else stays at its default.
On a loopback-only machine Janus gathers no ICE candidate (it skips IFF_LOOPBACK
interfaces), so it runs with bench/janus/loopback_shim.c preloaded, compiled here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import aiohttp

SHIM = Path(__file__).resolve().parent.parent / "janus" / "loopback_shim.c"
JANUS = "janus"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
KEEP_PLUGIN = "libjanus_videoroom.so"
KEEP_TRANSPORT = "libjanus_http.so"


def available() -> bool:
    """Janus installed (scripts/test.sh installs it: the comparison always runs then)."""
    return shutil.which(JANUS) is not None


def _libs(kind: str, keep: str | None) -> str:
    """The comma-separated module names of `kind` Janus would load, but `keep`."""
    names = sorted({p.name.split(".so")[0] + ".so" for p in (LIBDIR / kind).glob("*.so*")})
    return ",".join(n for n in names if n != keep)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def janus_configs(port: int, event_loops: int = 0) -> dict[str, str]:
    """File name -> content for `janus -F <dir>`: the changes from Debian's janus.jcfg."""
    general = [
        'configs_folder = "{dir}"',
        f'plugins_folder = "{LIBDIR}/plugins"',
        f'transports_folder = "{LIBDIR}/transports"',
        f'events_folder = "{LIBDIR}/events"',
        f'loggers_folder = "{LIBDIR}/loggers"',
        "debug_level = 4",  # as shipped
        # 127.0.0.1 in the SDP: the clients are on the same machine
        'interface = "127.0.0.1"',
    ]
    if event_loops:
        # the one tuning measured as a second cell: handles share N loops, not a thread each
        general.append(f"event_loops = {event_loops}")
    jcfg = "\n".join(
        [
            "general: {",
            *(f"\t{line}" for line in general),
            "}",
            "media: {",
            # a free range well away from the clients' ephemeral ports
            '\trtp_port_range = "20000-40000"',
            "}",
            "nat: {",
            "\tnice_debug = false",
            '\tice_enforce_list = "127.0.0.1"',
            "}",
            f'plugins: {{\n\tdisable = "{_libs("plugins", KEEP_PLUGIN)}"\n}}',
            f'transports: {{\n\tdisable = "{_libs("transports", KEEP_TRANSPORT)}"\n}}',
            f'loggers: {{\n\tdisable = "{_libs("loggers", None)}"\n}}',
            "events: {\n\tbroadcast = false\n}",
        ]
    )
    http = "\n".join(
        [
            "general: {",
            '\tjson = "plain"',  # less to format per event; the API is the same
            '\tbase_path = "/janus"',
            "\thttp = true",
            f"\tport = {port}",
            '\tip = "127.0.0.1"',
            "\thttps = false",
            "}",
            "admin: {\n\tadmin_http = false\n\tadmin_https = false\n}",
            "cors: {\n}",
        ]
    )
    # no static rooms: the clients create theirs through the API
    videoroom = "general: {\n}\n"
    return {
        "janus.jcfg": jcfg,
        "janus.transport.http.jcfg": http,
        "janus.plugin.videoroom.jcfg": videoroom,
    }


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench that started it dies (a killed
    bench or test must not leave a Janus behind holding ports and CPU)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def build_shim(into: Path) -> Path:
    """bench/janus/loopback_shim.c compiled into `into` (gcc: scripts/test.sh)."""
    out = into / "loopback_shim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(out), str(SHIM), "-ldl"], check=True)
    return out


class JanusProcess:
    """A fresh Janus with the comparison's configuration, its HTTP API at `url`."""

    def __init__(self, event_loops: int = 0) -> None:
        self.event_loops = event_loops
        self.dir = Path(tempfile.mkdtemp(prefix="callassist-janus-"))
        self.rec_dir = self.dir / "recordings"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/janus"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> asyncio.subprocess.Process:
        conf = self.dir / "conf"
        conf.mkdir()
        self.rec_dir.mkdir()
        for name, text in janus_configs(self.port, self.event_loops).items():
            (conf / name).write_text(text.replace("{dir}", str(conf)))
        env = {**os.environ, "LD_PRELOAD": str(build_shim(self.dir))}
        log = (self.dir / "janus.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            JANUS, "-F", str(conf), "-C", str(conf / "janus.jcfg"), "-o",
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=self.rec_dir,  # VideoRoom records into its working directory
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()
        await self._ready()
        return self.proc

    async def _ready(self, timeout: float = 30) -> None:
        """Until the HTTP API answers `info` (or Janus exits: its log says why)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/info") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        tail = (self.dir / "janus.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"janus did not start: {tail}")

    def recorded_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.rec_dir.glob("*.mjr"))

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
