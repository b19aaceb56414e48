"""Data-subject rights and retention: what is held about one phone number, what has
expired, and do-not-record objections."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.schema import (
    caller_devices,
    chat_messages,
    links,
    recording_keys,
    recording_objections,
    recordings,
    session_holders,
    sessions,
    staff_links,
    webhook_outbox,
)


class SubjectsRepository:
    """Part of `server.core.db.Database` (which holds the engine)."""

    engine: AsyncEngine

    # --- data-subject rights and retention (server/privacy/subjects.py, retention.py) ---
    async def sessions_by_phone(self, phone: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(sessions)
                    .where(sessions.c.phone == phone)
                    .order_by(sessions.c.created_at)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    async def delete_sessions(self, session_ids: list[str]) -> int:
        """Delete sessions with everything that hangs on them (links, device cookies, chat,
        recording rows) in one transaction. The media objects are the caller's business."""
        if not session_ids:
            return 0
        async with self.engine.begin() as conn:
            # The recording keys too, in this transaction: media gone beyond use with the rows.
            # Undelivered webhook events go as well: they carry the reference and the masked
            # number, and an erased session is not reported afterwards.
            for table in (recording_keys, chat_messages, recordings, caller_devices, links,
                          webhook_outbox, session_holders, staff_links):  # fmt: skip
                await conn.execute(table.delete().where(table.c.session_id.in_(session_ids)))
            result = await conn.execute(sessions.delete().where(sessions.c.id.in_(session_ids)))
            return int(result.rowcount or 0)

    async def delete_recording_rows(self, recording_ids: list[str]) -> None:
        if recording_ids:
            async with self.engine.begin() as conn:
                keys = recording_keys.c.recording_id.in_(recording_ids)
                await conn.execute(recording_keys.delete().where(keys))  # crypto-shredding
                await conn.execute(recordings.delete().where(recordings.c.id.in_(recording_ids)))

    async def expired_recordings(
        self, kinds: tuple[str, ...], ended_before: float
    ) -> list[dict[str, Any]]:
        """Recordings of `kinds` whose session ended before `ended_before`."""
        query = (
            sa.select(recordings)
            .join(sessions, sessions.c.id == recordings.c.session_id)
            .where(recordings.c.kind.in_(kinds))
            .where(sessions.c.ended_at.is_not(None))
            .where(sessions.c.ended_at < ended_before)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(r._mapping) for r in rows]

    async def expired_session_ids(self, ended_before: float) -> list[str]:
        query = (
            sa.select(sessions.c.id)
            .where(sessions.c.ended_at.is_not(None))
            .where(sessions.c.ended_at < ended_before)
        )
        async with self.engine.connect() as conn:
            return [str(r[0]) for r in (await conn.execute(query)).all()]

    async def forget_devices(self, ended_before: float) -> int:
        """Drop the device cookies and links of sessions that ended before `ended_before`:
        nothing needs them any more (the privacy receipt is read right after the end)."""
        ended = sa.select(sessions.c.id).where(sessions.c.ended_at < ended_before)
        async with self.engine.begin() as conn:
            n = await conn.execute(
                caller_devices.delete().where(caller_devices.c.session_id.in_(ended))
            )
            await conn.execute(links.delete().where(links.c.session_id.in_(ended)))
            await conn.execute(staff_links.delete().where(staff_links.c.session_id.in_(ended)))
            return int(n.rowcount or 0)

    async def has_objection(self, phone_key: str) -> bool:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(recording_objections.c.phone_key).where(
                        recording_objections.c.phone_key == phone_key
                    )
                )
            ).first()
        return row is not None

    async def set_objection(self, phone_key: str, on: bool, now: float) -> bool:
        """Set or lift the do-not-record flag; True when that changed anything."""
        obj = recording_objections
        async with self.engine.begin() as conn:
            if not on:
                result = await conn.execute(obj.delete().where(obj.c.phone_key == phone_key))
                return bool(result.rowcount)
            query = sa.select(obj.c.phone_key).where(obj.c.phone_key == phone_key)
            if (await conn.execute(query)).first() is not None:
                return False
            await conn.execute(obj.insert().values(phone_key=phone_key, created_at=now))
            return True
