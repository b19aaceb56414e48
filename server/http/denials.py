"""Refused requests in the audit log, aggregated per client and route.

Every refusal (401 not logged in, 403 wrong role / Origin / CSRF, ...) is an audit event, but
one client hammering one route must not fill the log (issue 14: 20,000 anonymous 401s wrote
20,000 rows in 59 s). So per (who, route, code) and window of DENIAL_WINDOW_S seconds:

- the first refusal (the first USER_ROWS, 20, of a logged-in user: each names an
  accountable account and may be evidence, e.g. of privilege attempts) is written at once,
  as before (actor, role, action "GET /api/x", result `denied`, reason = the code);
- the others in that window are only counted; when the window is over (at the next refusal
  of that key, by the sweeper every DENIAL_WINDOW_S, or at shutdown) ONE more row says how
  many: reason "<code> ×N more in 60 s", result `denied`.

"Who" is the user for a logged-in request, else the client's address. The address is only a
key in memory: the audit row names no address (docs/security.md, the record of processing).
At most MAX_KEYS keys are held; past that, refusals of new keys are counted under one
overflow key per route ("many clients"), so memory and rows stay bounded whatever the
number of addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from server.core.appkeys import AUDIT, CLOCK
from server.core.audit import Audit

log = logging.getLogger(__name__)

DENIAL_WINDOW_S = 60.0
USER_ROWS = 20  # refusals of a logged-in user written one by one per window
MAX_KEYS = 10_000


@dataclass(frozen=True)
class DenialKey:
    who: str  # username, or the client's address (never written)
    actor: str  # what the audit row names: the username, or "-"
    role: str
    action: str  # "GET /api/sessions/{session_id}"
    code: str


@dataclass
class _Window:
    start: float
    obj: str  # the object of the first refusal (a session or room id)
    written: int = 1  # refusals written one by one in this window
    more: int = 0  # refusals after those, only counted


@dataclass(frozen=True)
class Summary:
    key: DenialKey
    obj: str
    more: int


class Denials:
    """Pure bookkeeping: `note` says whether to write this refusal now and which finished
    windows to summarise; `expired` gives the finished windows (the sweeper, shutdown)."""

    def __init__(self, window_s: float = DENIAL_WINDOW_S, max_keys: int = MAX_KEYS) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._open: dict[DenialKey, _Window] = {}

    def note(
        self, key: DenialKey, obj: str, now: float, rows: int = 1
    ) -> tuple[bool, list[Summary]]:
        """`rows`: how many refusals of this key a window writes one by one."""
        done = []
        current = self._open.get(key)
        if current is not None and now - current.start >= self.window_s:
            del self._open[key]
            if current.more:
                done.append(Summary(key, current.obj, current.more))
            current = None
        if current is None and len(self._open) >= self.max_keys:
            key = DenialKey("*", "-", "-", key.action, key.code)  # many clients
            current = self._open.get(key)
        if current is None:
            self._open[key] = _Window(now, obj)
            return True, done
        if current.written < rows and key.who != "*":
            current.written += 1
            return True, done
        current.more += 1
        return False, done

    def expired(self, now: float, everything: bool = False) -> list[Summary]:
        done = []
        for key, w in list(self._open.items()):
            if everything or now - w.start >= self.window_s:
                del self._open[key]
                if w.more:
                    done.append(Summary(key, w.obj, w.more))
        return done


DENIALS = web.AppKey("denials", Denials)


def summary_reason(code: str, more: int, window_s: float) -> str:
    return f"{code} ×{more} more in {window_s:g} s"


async def _write(audit: Audit, key: DenialKey, obj: str, reason: str) -> None:
    await audit.record(actor=key.actor, role=key.role, action=key.action, object=obj,
                       result="denied", reason=reason)  # fmt: skip


async def record_denial(app: web.Application, key: DenialKey, obj: str) -> None:
    denials = app[DENIALS]
    rows = 1 if key.actor == "-" else USER_ROWS
    write, done = denials.note(key, obj, app[CLOCK](), rows)
    await _write_summaries(app, done)
    if write:
        await _write(app[AUDIT], key, obj, key.code)


async def _write_summaries(app: web.Application, done: list[Summary]) -> None:
    window = app[DENIALS].window_s
    for s in done:
        await _write(app[AUDIT], s.key, s.obj, summary_reason(s.key.code, s.more, window))


async def flush(app: web.Application, everything: bool = False) -> None:
    """Write the summaries of finished windows (all open ones with `everything`)."""
    await _write_summaries(app, app[DENIALS].expired(app[CLOCK](), everything))


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    async def sweep() -> None:
        while True:
            await asyncio.sleep(app[DENIALS].window_s)
            try:
                await flush(app)
            except Exception as exc:  # the database is away: those counts are lost, say so
                log.warning("could not write the audit summaries of refusals: %s", exc)

    task = asyncio.create_task(sweep(), name="audit-denials")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # Shutdown: the counts of open windows are written, not lost.
    try:
        await flush(app, everything=True)
    except Exception as exc:
        log.warning("could not write the audit summaries of refusals: %s", exc)


def setup(app: web.Application) -> None:
    app[DENIALS] = Denials()
    app.cleanup_ctx.append(_sweeper)
