"""Why a bench's peer connections end: aioice closes an ICE connection whose consent
checks (RFC 7675: one STUN request every ~5 s, 0.5 s for its answer, no retransmission)
failed 6 times in a row (server/media/aiortc_hooks.py replaces that with 30 s without an
answered check), and says so only in an INFO log line the benches silence
(bench/lib/cli.quiet_logs). `watch_consent()` counts those lines in this process, so a
soak can tell an ICE consent expiry from a dead task or a stalled sender."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

_expired: list[float] = []  # monotonic times of "Consent to send expired" in this process


class _ConsentHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if "Consent to send expired" in str(record.msg):
            _expired.append(time.monotonic())


def watch_consent() -> None:
    """Count consent expiries (idempotent)."""
    for name in ("aioice.ice", "server.media.aiortc_hooks"):
        log = logging.getLogger(name)
        if not any(isinstance(h, _ConsentHandler) for h in log.handlers):
            log.addHandler(_ConsentHandler(logging.INFO))
            # the rest of their INFO stays unprinted, their errors are printed as before
            errors = logging.StreamHandler(sys.stderr)
            errors.setLevel(logging.ERROR)
            log.addHandler(errors)
            log.setLevel(logging.INFO)
            log.propagate = False


def consent_expiries() -> list[float]:
    """The monotonic times this process's ICE connections lost consent."""
    return list(_expired)


_lag = {"max": 0.0}  # the event loop's longest lateness since the last lag_max() (s)


def start_lag_probe(period_s: float = 0.05) -> asyncio.Task[None]:
    """A task that wakes every `period_s` and keeps how late it woke: the event loop's lag
    (a consent check is lost when the loop answers more than 3.5 s late)."""

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + period_s
            await asyncio.sleep(period_s)
            _lag["max"] = max(_lag["max"], loop.time() - due)

    return asyncio.ensure_future(probe())


def lag_max() -> float:
    """The longest event-loop lag since the last call (s), and start over."""
    out, _lag["max"] = _lag["max"], 0.0
    return round(out, 3)
