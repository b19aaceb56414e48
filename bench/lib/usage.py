"""What a process uses: another process's CPU and RSS from /proc (a bench's server
process, all its threads), this process's CPU and wall time over a block, load average."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def loadavg() -> list[float]:
    """The machine's 1, 5 and 15 minute load: benches share 2 cores with other work."""
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Spent:
    cpu_s: float = 0.0  # this process, all threads
    wall_s: float = 0.0


@contextlib.contextmanager
def spent() -> Iterator[Spent]:
    """CPU and wall seconds of this process over the `with` block (filled in at its end)."""
    out = Spent()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        yield out
    finally:
        out.cpu_s, out.wall_s = time.process_time() - cpu0, time.perf_counter() - wall0


def udp_errors() -> dict[str, int]:
    """This network namespace's UDP receive errors so far (/proc/net/snmp): datagrams
    dropped because a socket's receive buffer was full (`RcvbufErrors`) and all input
    errors (`InErrors`). A bench run in its own namespace (unshare -n) sees its own."""
    try:
        with open("/proc/net/snmp") as f:
            lines = [ln.split() for ln in f if ln.startswith("Udp:")]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    row = dict(zip(lines[0][1:], lines[1][1:], strict=False))
    return {k: int(row[k]) for k in ("InErrors", "RcvbufErrors") if k in row}
