"""Part of `server.core.db.Database`: a session's holders (hand-over) and the one-time
staff links for an expert (server/signalling/team.py; docs/protocol.md, "Team")."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.schema import session_holders, staff_links, token_hash


class TeamRepository:
    engine: AsyncEngine

    # --- holders -----------------------------------------------------------------------
    async def hand_over(
        self,
        session_id: str,
        user_id: int,
        username: str,
        now: float,
        first: tuple[int, str, float] | None = None,
    ) -> None:
        """`user_id` holds the session from `now`; the holder before it, until `now`.
        `first` (user id, name, since) is the opening agent's row, written with the first
        hand-over when the session has none yet."""
        h = session_holders
        async with self.engine.begin() as conn:
            has = (
                await conn.execute(sa.select(sa.func.count()).where(h.c.session_id == session_id))
            ).scalar_one()
            if not has and first is not None:
                await conn.execute(
                    h.insert().values(
                        session_id=session_id, user_id=first[0], username=first[1], since=first[2]
                    )
                )
            await conn.execute(
                h.update()
                .where(h.c.session_id == session_id)
                .where(h.c.until.is_(None))
                .values(until=now)
            )
            await conn.execute(
                h.insert().values(
                    session_id=session_id, user_id=user_id, username=username, since=now
                )
            )

    async def holders(self, session_id: str) -> list[dict[str, Any]]:
        """Who held the session when, oldest first (empty: never handed over)."""
        h = session_holders
        query = (
            sa.select(h.c.username, h.c.user_id, h.c.since, h.c.until)
            .where(h.c.session_id == session_id)
            .order_by(h.c.since)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    # --- one-time staff links ----------------------------------------------------------
    async def add_staff_link(
        self, token: str, session_id: str, created_by: int, now: float, ttl: float
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                staff_links.insert().values(
                    token_hash=token_hash(token),
                    session_id=session_id,
                    created_by=created_by,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )

    async def use_staff_link(self, token: str, user_id: int, now: float) -> str | None:
        """Trade an unused, unexpired link for its session id, once: the single conditional
        UPDATE makes it single-use even when two people open it at the same instant."""
        digest = token_hash(token)
        s = staff_links
        async with self.engine.begin() as conn:
            result = await conn.execute(
                s.update()
                .where(s.c.token_hash == digest)
                .where(s.c.used_at.is_(None))
                .where(s.c.expires_at > now)
                .values(used_at=now, used_by=user_id)
            )
            if result.rowcount != 1:
                return None
            return str(
                (
                    await conn.execute(sa.select(s.c.session_id).where(s.c.token_hash == digest))
                ).scalar_one()
            )

    async def staff_link_used_by(self, session_id: str, user_id: int) -> bool:
        """Whether `user_id` redeemed a staff link of this session (may join it as expert)."""
        s = staff_links
        query = (
            sa.select(sa.func.count())
            .where(s.c.session_id == session_id)
            .where(s.c.used_by == user_id)
        )
        async with self.engine.connect() as conn:
            return bool((await conn.execute(query)).scalar_one())
