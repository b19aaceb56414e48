"""Why a bench's peer connections end: aioice closes an ICE connection whose consent
checks (RFC 7675: one STUN request every ~5 s, 0.5 s for its answer, no retransmission)
failed 6 times in a row (server/media/aiortc_hooks.py replaces that with 30 s without an
answered check), and says so only in an INFO log line the benches silence
(bench/lib/cli.quiet_logs). `watch_consent()` counts those lines in this process, so a
soak can tell an ICE consent expiry from a dead task or a stalled sender."""

from __future__ import annotations

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
