"""The webhook outbox and leases (server/observe/webhooks.py delivers; docs/ops.md).

Session changes that are webhook events (`session.created`, `session.connected`,
`session.ended`) add their outbox rows inside the transaction of the change itself
(`_outbox_in`, called by the sessions repository): the change and its event are written
together or not at all, so a crash can neither lose an event nor send one for a change
that did not happen. What an event carries is decided by the webhooks feature through
`OutboxHook` (set on the `Database`); without a hook nothing is written.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core.schema import leases, sessions, users, webhook_outbox

PENDING, DEAD = "pending", "dead"


@dataclass
class OutboxHook:
    """What the webhooks feature tells the data layer: the receivers, how an event's data
    is made from its session row (+ `agent`, the agent's username), and whom to wake."""

    urls: Sequence[str]
    build: Callable[[str, dict[str, Any]], dict[str, Any]]
    wake: Callable[[], None]
    clock: Callable[[], float] = time.time


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


class OutboxRepository:
    """Part of `server.core.db.Database` (which holds the engine)."""

    engine: AsyncEngine
    outbox_hook: OutboxHook | None

    # --- writing (inside the transaction of the change) --------------------------------
    async def _outbox_in(
        self, conn: AsyncConnection, event_type: str, session_ids: Sequence[str]
    ) -> int:
        hook = self.outbox_hook
        if hook is None or not hook.urls or not session_ids:
            return 0
        query = (
            sa.select(sessions, users.c.username.label("agent"))
            .join(users, users.c.id == sessions.c.agent_id, isouter=True)
            .where(sessions.c.id.in_(list(session_ids)))
        )
        rows = [dict(r._mapping) for r in (await conn.execute(query)).all()]
        now, wall = hook.clock(), time.time()
        values = []
        for row in sorted(rows, key=lambda r: session_ids.index(r["id"])):
            data = json.dumps(hook.build(event_type, row), ensure_ascii=False)
            event_id = new_event_id()  # the same id for every receiver
            values += [
                {"id": event_id, "url": url, "session_id": row["id"], "type": event_type,
                 "created_at": now, "queued_at": wall, "data": data, "status": PENDING,
                 "attempts": 0, "next_attempt_at": wall}
                for url in hook.urls
            ]  # fmt: skip
        if values:
            await conn.execute(webhook_outbox.insert(), values)
            hook.wake()
        return len(values)

    async def outbox_add(self, event_type: str, session_id: str, data: dict[str, Any]) -> str:
        """An event with no database change of its own: its rows, at once. Returns its id."""
        hook = self.outbox_hook
        event_id = new_event_id()
        if hook is None or not hook.urls:
            return event_id
        wall = time.time()
        text = json.dumps(data, ensure_ascii=False)
        async with self.engine.begin() as conn:
            await conn.execute(
                webhook_outbox.insert(),
                [{"id": event_id, "url": url, "session_id": session_id, "type": event_type,
                  "created_at": hook.clock(), "queued_at": wall, "data": text,
                  "status": PENDING, "attempts": 0, "next_attempt_at": wall}
                 for url in hook.urls],
            )  # fmt: skip
        hook.wake()
        return event_id

    # --- delivering ----------------------------------------------------------------------
    async def outbox_heads(self, now: float, limit: int = 200) -> list[dict[str, Any]]:
        """The first pending event of each (receiver, session) that is due: only a head is
        ever sent, so a session's events go out in the order they were written."""
        o = webhook_outbox.c
        heads = (
            sa.select(sa.func.min(o.seq))
            .where(o.status == PENDING)
            .group_by(o.url, o.session_id)
            .scalar_subquery()
        )
        query = (
            sa.select(webhook_outbox)
            .where(o.seq.in_(heads))
            .where(o.next_attempt_at <= now)
            .order_by(o.seq)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def outbox_freeze_body(self, seq: int, body: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                webhook_outbox.update().where(webhook_outbox.c.seq == seq).values(body=body)
            )

    async def outbox_delivered(self, seq: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(webhook_outbox.delete().where(webhook_outbox.c.seq == seq))

    async def outbox_failed(
        self, seq: int, *, attempts: int, next_attempt_at: float, error: str, dead: bool
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                webhook_outbox.update()
                .where(webhook_outbox.c.seq == seq)
                .values(
                    attempts=attempts,
                    next_attempt_at=next_attempt_at,
                    last_error=error[:256],
                    status=DEAD if dead else PENDING,
                )
            )

    async def outbox_counts(self) -> dict[str, int]:
        o = webhook_outbox.c
        query = sa.select(o.status, sa.func.count()).group_by(o.status)
        async with self.engine.connect() as conn:
            counts = {str(s): int(n) for s, n in (await conn.execute(query)).all()}
        return {PENDING: counts.get(PENDING, 0), DEAD: counts.get(DEAD, 0)}

    # --- dead letters (callassist webhooks dead|replay) ----------------------------------
    async def outbox_dead(self, limit: int = 1000) -> list[dict[str, Any]]:
        o = webhook_outbox.c
        query = (
            sa.select(o.seq, o.id, o.url, o.session_id, o.type, o.created_at, o.attempts,
                      o.last_error)
            .where(o.status == DEAD).order_by(o.seq).limit(limit)
        )  # fmt: skip
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def outbox_replay(self, event_ids: Sequence[str] | None = None) -> list[str]:
        """Make dead events pending again (all, or those ids); returns the ids replayed."""
        o = webhook_outbox.c
        where = [o.status == DEAD]
        if event_ids is not None:
            where.append(o.id.in_(list(event_ids)))
        async with self.engine.begin() as conn:
            ids = sorted({str(r[0]) for r in (await conn.execute(sa.select(o.id).where(*where)))})
            if ids:
                # A replayed event counts its give-up time afresh.
                await conn.execute(
                    webhook_outbox.update().where(*where).values(
                        status=PENDING, attempts=0, next_attempt_at=time.time(),
                        queued_at=time.time())
                )  # fmt: skip
        return ids

    async def outbox_list(self, status: str, limit: int = 200) -> list[dict[str, Any]]:
        """The oldest rows of one status (pending or dead), for the admin page."""
        o = webhook_outbox.c
        query = (
            sa.select(o.seq, o.id, o.url, o.session_id, o.type, o.status, o.created_at,
                      o.attempts, o.next_attempt_at, o.last_error)
            .where(o.status == status).order_by(o.seq).limit(limit)
        )  # fmt: skip
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def outbox_replay_event(self, event_id: str) -> int:
        """Make one event's dead rows pending again; returns how many this call changed.
        The count comes from the UPDATE itself, so of two replays racing only one sees
        rows (and is audited): the other gets 0 and the event is sent once."""
        o = webhook_outbox.c
        async with self.engine.begin() as conn:
            result = await conn.execute(
                webhook_outbox.update().where(o.status == DEAD, o.id == event_id).values(
                    status=PENDING, attempts=0, next_attempt_at=time.time(),
                    queued_at=time.time())
            )  # fmt: skip
        return int(result.rowcount or 0)

    async def outbox_has_event(self, event_id: str) -> bool:
        o = webhook_outbox.c
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(o.seq).where(o.id == event_id).limit(1))).first()
        return row is not None

    # --- leases --------------------------------------------------------------------------
    async def lease_acquire(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take or renew the lease `name`: True while `holder` has it until now + ttl. One
        conditional UPDATE, so of two nodes racing for an expired lease only one wins."""
        l_ = leases.c
        async with self.engine.begin() as conn:
            result = await conn.execute(
                leases.update()
                .where(l_.name == name)
                .where(sa.or_(l_.holder == holder, l_.expires_at < now))
                .values(holder=holder, expires_at=now + ttl)
            )
            if result.rowcount == 1:
                return True
            exists = (await conn.execute(sa.select(l_.name).where(l_.name == name))).first()
            if exists is not None:
                return False
        try:
            async with self.engine.begin() as conn:
                await conn.execute(leases.insert().values(name=name, holder=holder,
                                                          expires_at=now + ttl))  # fmt: skip
        except IntegrityError:  # another node inserted it first
            return False
        return True

    async def lease_release(self, name: str, holder: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                leases.update()
                .where(leases.c.name == name)
                .where(leases.c.holder == holder)
                .values(expires_at=0.0)
            )
