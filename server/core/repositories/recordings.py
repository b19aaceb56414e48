"""Recordings and photos: one row per object set in storage."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.schema import recordings


class RecordingsRepository:
    """Part of `server.core.db.Database` (which holds the engine)."""

    engine: AsyncEngine

    # --- recordings --------------------------------------------------------------------
    async def add_recording(self, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(recordings.insert().values(**values))

    async def update_recording(self, recording_id: str, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                recordings.update().where(recordings.c.id == recording_id).values(**values)
            )

    async def get_recording(self, recording_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(recordings).where(recordings.c.id == recording_id))
            ).first()
        return dict(row._mapping) if row else None

    async def list_recordings(
        self, session_id: str | None = None, *, kinds: tuple[str, ...] | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        query = sa.select(recordings).order_by(recordings.c.started_at)
        if session_id is not None:
            query = query.where(recordings.c.session_id == session_id)
        if kinds is not None:
            query = query.where(recordings.c.kind.in_(kinds))
        if status is not None:
            query = query.where(recordings.c.status == status)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(r._mapping) for r in rows]
