"""Recordings and photos: one row per object set in storage."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.schema import recording_keys, recordings


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

    # --- recording keys (server/recording/keystore.py) -------------------------------
    async def add_recording_key(self, recording_id: str, session_id: str, alg: int,
                                key_id: str, wrapped: bytes, now: float) -> None:  # fmt: skip
        async with self.engine.begin() as conn:
            await conn.execute(recording_keys.insert().values(
                recording_id=recording_id, session_id=session_id, alg=alg, key_id=key_id,
                wrapped=wrapped, created_at=now))  # fmt: skip

    async def get_recording_key(self, recording_id: str) -> dict[str, Any] | None:
        query = sa.select(recording_keys).where(recording_keys.c.recording_id == recording_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return dict(row._mapping) if row else None

    async def list_recording_keys(self) -> list[dict[str, Any]]:
        query = sa.select(recording_keys).order_by(recording_keys.c.created_at)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def rewrap_recording_key(self, recording_id: str, old_wrapped: bytes, alg: int,
                                   key_id: str, wrapped: bytes) -> bool:  # fmt: skip
        """Replace a wrapped key only if it is still `old_wrapped` (no lost update)."""
        k = recording_keys.c
        async with self.engine.begin() as conn:
            result = await conn.execute(
                recording_keys.update()
                .where(k.recording_id == recording_id, k.wrapped == old_wrapped)
                .values(alg=alg, key_id=key_id, wrapped=wrapped)
            )
            return bool(result.rowcount)
