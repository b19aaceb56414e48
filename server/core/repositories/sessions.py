"""Sessions (the record of a room), their one-time links, caller devices and kept chat."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.repositories.outbox import OutboxRepository
from server.core.schema import caller_devices, chat_messages, links, sessions, token_hash


class SessionsRepository(OutboxRepository):
    """Part of `server.core.db.Database` (which holds the engine). The writes that are
    webhook events add their outbox rows in their own transaction (repositories/outbox)."""

    engine: AsyncEngine

    async def link_row(self, token: str) -> dict[str, Any] | None:
        """The link of a token, whatever its state (for counting open outcomes)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(links).where(links.c.token_hash == token_hash(token)))
            ).first()
        return dict(row._mapping) if row else None

    async def sessions_created_since(self, since: float) -> list[dict[str, Any]]:
        """When each session since `since` got to each step (the ops console's today)."""
        s = sessions.c
        query = sa.select(
            s.id, s.created_at, s.opened_at, s.accepted_at, s.media_started_at, s.state
        ).where(s.created_at >= since)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    # --- sessions ----------------------------------------------------------------------
    async def add_session(self, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sessions.insert().values(**values))
            await self._outbox_in(conn, "session.created", [values["id"]])

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(sessions).where(sessions.c.id == session_id))
            ).first()
        return dict(row._mapping) if row else None

    async def list_sessions(self, agent_id: int, limit: int = 20) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(sessions)
                    .where(sessions.c.agent_id == agent_id)
                    .order_by(sessions.c.created_at.desc())
                    .limit(limit)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    async def count_open_sessions(self, agent_id: int) -> int:
        """The agent's sessions not ended yet, on every node (the database is shared):
        session.max_live_rooms_per_agent holds across a cluster."""
        async with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(sessions).where(
                sessions.c.agent_id == agent_id, sessions.c.state != "ended"
            )
            return int((await conn.execute(query)).scalar() or 0)

    async def end_open_sessions(
        self, now: float, keep: frozenset[str] | None = frozenset()
    ) -> list[str]:
        """End every session a previous process left open (rooms live in memory), except
        those in `keep` (a cluster's live rooms; None: keep all); returns their ids, so each
        end can be audited like any other (retention counts from it)."""
        if keep is None:
            return []
        async with self.engine.begin() as conn:
            ids = [str(r[0]) for r in (await conn.execute(
                sa.select(sessions.c.id).where(sessions.c.state != "ended"))).all()]  # fmt: skip
            ids = [i for i in ids if i not in keep]
            if ids:
                await conn.execute(
                    sessions.update()
                    .where(sessions.c.id.in_(ids))
                    .values(
                        state="ended", caller_status="ended", ended_at=now, end_reason="restart"
                    )  # fmt: skip
                )
                # Their rooms died with that process: the receivers still hear they ended.
                await self._outbox_in(conn, "session.ended", ids)
            return ids

    async def open_session_ids(self) -> list[str]:
        """The sessions not ended (a cluster's orphan sweep, server/cluster/failover.py)."""
        async with self.engine.connect() as conn:
            query = sa.select(sessions.c.id).where(sessions.c.state != "ended")
            return [str(r[0]) for r in (await conn.execute(query)).all()]

    async def update_session(self, session_id: str, **values: Any) -> None:
        async with self.engine.begin() as conn:
            query = sessions.update().where(sessions.c.id == session_id).values(**values)
            ending = values.get("state") == "ended"
            if ending:  # ended once: one session.ended, even if this is written twice
                query = query.where(sessions.c.state != "ended")
            result = await conn.execute(query)
            if ending and result.rowcount == 1:
                await self._outbox_in(conn, "session.ended", [session_id])

    async def set_session_time_once(self, session_id: str, column: str, now: float) -> None:
        """Record the first time something happened (opened, accepted, media started)."""
        col = sessions.c[column]
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sessions.update()
                .where(sessions.c.id == session_id)
                .where(col.is_(None))
                .values({column: now})
            )
            # The caller's camera reached the server for the first time: once per session,
            # whatever the reconnects (the row changes only once).
            if column == "media_started_at" and result.rowcount == 1:
                await self._outbox_in(conn, "session.connected", [session_id])

    # --- links -------------------------------------------------------------------------
    async def add_link(self, token: str, session_id: str, now: float, ttl: float) -> None:
        async with self.engine.begin() as conn:
            # A new link revokes every earlier one, used or not: only one link per call
            # works, and an opened link no longer lets its browser back in by itself (its
            # device cookie still does, at /c).
            await conn.execute(
                links.update().where(links.c.session_id == session_id).values(revoked=True)
            )
            await conn.execute(
                links.insert().values(
                    token_hash=token_hash(token),
                    session_id=session_id,
                    created_at=now,
                    expires_at=now + ttl,
                    revoked=False,
                )
            )

    async def link_matches(self, token: str, session_id: str, now: float) -> bool:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(links.c.session_id)
                    .where(links.c.token_hash == token_hash(token))
                    .where(links.c.session_id == session_id)
                    .where(links.c.consumed_at.is_(None))
                    .where(links.c.revoked == sa.false())
                    .where(links.c.expires_at > now)
                )
            ).first()
        return row is not None

    async def link_session(self, token: str, now: float, *, usable: bool = True) -> str | None:
        """The session of a link, without using it up: only while the link could still be
        opened (unused, not revoked, unexpired, its session open) unless `usable=False`."""
        query = (
            sa.select(links.c.session_id)
            .join(sessions, sessions.c.id == links.c.session_id)
            .where(links.c.token_hash == token_hash(token))
        )
        if usable:
            query = (
                query.where(links.c.consumed_at.is_(None))
                .where(links.c.revoked == sa.false())
                .where(links.c.expires_at > now)
                .where(sessions.c.state != "ended")
            )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return str(row[0]) if row else None

    async def reopened_link_session(self, token: str) -> str | None:
        """The session of a link that was already opened and is not revoked, its session not
        ended; no expiry check: a caller taps the same SMS link again long into the call.
        Only with the device cookie of that session does it let anyone back in."""
        query = (
            sa.select(links.c.session_id)
            .join(sessions, sessions.c.id == links.c.session_id)
            .where(links.c.token_hash == token_hash(token))
            .where(links.c.consumed_at.is_not(None))
            .where(links.c.revoked == sa.false())
            .where(sessions.c.state != "ended")
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return str(row[0]) if row else None

    async def consume_link(self, token: str, cookie: str, now: float) -> str | None:
        """Atomically trade a valid, unused link for a device cookie; return the session id.

        The single conditional UPDATE is what makes a link single-use even when two
        browsers open it at the same instant: only one of them changes the row.
        """
        digest = token_hash(token)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                links.update()
                .where(links.c.token_hash == digest)
                .where(links.c.consumed_at.is_(None))
                .where(links.c.revoked == sa.false())
                .where(links.c.expires_at > now)
                .values(consumed_at=now)
            )
            if result.rowcount != 1:
                return None
            session_id = (
                await conn.execute(
                    sa.select(links.c.session_id).where(links.c.token_hash == digest)
                )
            ).scalar_one()
            state = (
                await conn.execute(sa.select(sessions.c.state).where(sessions.c.id == session_id))
            ).scalar_one_or_none()
            if state in (None, "ended"):
                return None
            await conn.execute(
                caller_devices.insert().values(
                    cookie_hash=token_hash(cookie), session_id=session_id, created_at=now
                )
            )
            return str(session_id)

    # --- chat (only with toolkit.keep_chat) ----------------------------------------------
    async def add_chat_message(
        self, session_id: str, n: int, sender: str, text: str, at: float
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                chat_messages.insert().values(
                    session_id=session_id, n=n, sender=sender, text=text, at=at
                )
            )

    async def chat_messages(self, session_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(chat_messages)
            .where(chat_messages.c.session_id == session_id)
            .order_by(chat_messages.c.n)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(r._mapping) for r in rows]

    async def session_for_device(self, cookie: str) -> str | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(caller_devices.c.session_id).where(
                        caller_devices.c.cookie_hash == token_hash(cookie)
                    )
                )
            ).first()
        return str(row[0]) if row else None
