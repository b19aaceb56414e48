"""Data access: the only module that speaks SQL.

SQLAlchemy Core (async) keeps one code path for SQLite (embedded default) and PostgreSQL.
Tokens and cookies are stored only as SHA-256 hashes: a copy of the database gives no
usable link, login or caller cookie.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.paths import MIGRATIONS

log = logging.getLogger(__name__)
# Alembic says "Context impl SQLiteImpl." at INFO on every start; what was upgraded is
# logged here instead.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

metadata = sa.MetaData()
# The revision a database made by metadata.create_all (before migrations existed) is at.
BASELINE_REVISION = "0001"

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

logins = sa.Table(
    "logins",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

# One row per support session (one phone call). The live part is the room with the same id.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("agent_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("phone", sa.String(32), nullable=False, index=True),  # E.164
    sa.Column("reference", sa.String(128), nullable=False, default=""),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("caller_status", sa.String(16), nullable=False),
    sa.Column("device_type", sa.String(128), nullable=False, default=""),
    sa.Column("notice_version", sa.String(32), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("link_sent_at", sa.Float),
    sa.Column("opened_at", sa.Float),
    sa.Column("accepted_at", sa.Float),
    sa.Column("media_started_at", sa.Float),
    sa.Column("media_ended_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("end_reason", sa.String(32)),
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("consumed_at", sa.Float),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

# The device-bound cookie a caller's browser got when it opened the link.
caller_devices = sa.Table(
    "caller_devices",
    metadata,
    sa.Column("cookie_hash", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


# Recordings of a session's camera and its photos (snapshots, uploads), all stored encrypted
# under `storage_key` (recorder/, docs/recording-format.md). The media itself is never here.
recordings = sa.Table(
    "recordings",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # the recording id (hex)
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id"), nullable=False,
              index=True),  # fmt: skip
    sa.Column("kind", sa.String(16), nullable=False),  # video | snapshot | upload
    # recording (in progress) | complete | incomplete (recovered after a crash) | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
    sa.Column("storage_key", sa.String(128), nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False, default=0),  # ciphertext, all objects
    sa.Column("segments", sa.Integer, nullable=False, default=0),
    sa.Column("frames", sa.Integer, nullable=False, default=0),
    sa.Column("container", sa.String(16), nullable=False, default=""),  # webm | mkv | jpeg
    sa.Column("error", sa.String(256)),
)

# Chat of a session, kept only when `toolkit.keep_chat` is true (server/toolkit/service.py).
chat_messages = sa.Table(
    "chat_messages",
    metadata,
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id"), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),  # the message's number in the session
    sa.Column("sender", sa.String(16), nullable=False),  # caller | agent
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)


# Objections to recording (GDPR Art. 21), one row per phone number that must not be
# recorded. The number itself is not stored: `phone_key` is an HMAC of it under the server
# key (server/privacy/subjects.py), so the list names nobody to whoever reads the database.
recording_objections = sa.Table(
    "recording_objections",
    metadata,
    sa.Column("phone_key", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)


def token_hash(token: str) -> str:
    # Tokens carry >= 128 random bits, so a plain (unsalted) SHA-256 is enough to make the
    # stored value useless while still allowing an indexed lookup.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    disabled: bool
    password_hash: str


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # One file, many coroutines: SQLite serialises writers; a timeout avoids
            # spurious "database is locked" under a short burst.
            kwargs["connect_args"] = {"timeout": 15}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)

    async def create_schema(self) -> None:
        """Bring the schema to the newest revision: `alembic upgrade head` on this engine
        (server/migrations; SQLite and PostgreSQL alike)."""
        async with self.engine.begin() as conn:
            before, after = await conn.run_sync(_upgrade)
        if before != after:
            log.info("database schema upgraded from %s to %s", before or "nothing", after)

    async def revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def close(self) -> None:
        await self.engine.dispose()

    # --- users -------------------------------------------------------------------------
    async def add_user(self, username: str, password_hash: str, role: str, now: float) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                users.insert().values(
                    username=username,
                    password_hash=password_hash,
                    role=role,
                    disabled=False,
                    created_at=now,
                )
            )
            return int(result.inserted_primary_key[0])

    async def user_by_name(self, username: str) -> User | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.username == username))).first()
        return _user(row)

    async def user_by_id(self, user_id: int) -> User | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        return _user(row)

    async def list_users(self) -> list[User]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(users).order_by(users.c.username))).all()
        return [u for u in (_user(r) for r in rows) if u]

    async def update_user(self, user_id: int, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(users.update().where(users.c.id == user_id).values(**values))
            if values.get("disabled") or "password_hash" in values:
                # A disabled account or a new password ends every open login.
                await conn.execute(logins.delete().where(logins.c.user_id == user_id))

    # --- logins ------------------------------------------------------------------------
    async def add_login(self, token: str, user_id: int, now: float, ttl: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(logins.delete().where(logins.c.expires_at < now))
            await conn.execute(
                logins.insert().values(
                    token_hash=token_hash(token),
                    user_id=user_id,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )

    async def login_user(self, token: str, now: float) -> User | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(users)
                    .join(logins, logins.c.user_id == users.c.id)
                    .where(logins.c.token_hash == token_hash(token))
                    .where(logins.c.expires_at > now)
                    .where(users.c.disabled == sa.false())
                )
            ).first()
        return _user(row)

    async def live_logins(self, hashes: set[str], now: float) -> set[str]:
        """Which of these login token hashes still belong to an unexpired login of an
        enabled account."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(logins.c.token_hash)
                    .join(users, logins.c.user_id == users.c.id)
                    .where(logins.c.token_hash.in_(sorted(hashes)))
                    .where(logins.c.expires_at > now)
                    .where(users.c.disabled == sa.false())
                )
            ).all()
        return {str(r[0]) for r in rows}

    async def delete_login(self, token: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(logins.delete().where(logins.c.token_hash == token_hash(token)))

    # --- sessions ----------------------------------------------------------------------
    async def add_session(self, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sessions.insert().values(**values))

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

    async def end_open_sessions(self, now: float) -> int:
        """End every session a previous process left open (rooms live in memory)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sessions.update()
                .where(sessions.c.state != "ended")
                .values(state="ended", caller_status="ended", ended_at=now, end_reason="restart")
            )
            return int(result.rowcount or 0)

    async def update_session(self, session_id: str, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sessions.update().where(sessions.c.id == session_id).values(**values)
            )

    async def set_session_time_once(self, session_id: str, column: str, now: float) -> None:
        """Record the first time something happened (opened, accepted, media started)."""
        col = sessions.c[column]
        async with self.engine.begin() as conn:
            await conn.execute(
                sessions.update()
                .where(sessions.c.id == session_id)
                .where(col.is_(None))
                .values({column: now})
            )

    # --- links -------------------------------------------------------------------------
    async def add_link(self, token: str, session_id: str, now: float, ttl: float) -> None:
        async with self.engine.begin() as conn:
            # A new link revokes every earlier unused one: only one link per call works.
            await conn.execute(
                links.update()
                .where(links.c.session_id == session_id)
                .where(links.c.consumed_at.is_(None))
                .values(revoked=True)
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
            for table in (chat_messages, recordings, caller_devices, links):
                await conn.execute(table.delete().where(table.c.session_id.in_(session_ids)))
            result = await conn.execute(sessions.delete().where(sessions.c.id.in_(session_ids)))
            return int(result.rowcount or 0)

    async def delete_recording_rows(self, recording_ids: list[str]) -> None:
        if recording_ids:
            async with self.engine.begin() as conn:
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


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection  # server/migrations/env.py runs on it
    return cfg


def _current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: sa.Connection) -> tuple[str | None, str | None]:
    from alembic import command

    before = _current_revision(connection)
    cfg = alembic_config(connection)
    if before is None and sa.inspect(connection).has_table("sessions"):
        # Made by create_all before there were migrations: complete it the same way, then
        # it is at the first revision.
        metadata.create_all(connection)
        command.stamp(cfg, BASELINE_REVISION)
    command.upgrade(cfg, "head")
    return before, _current_revision(connection)


def _user(row: Any) -> User | None:
    if row is None:
        return None
    m = row._mapping
    return User(
        id=m["id"],
        username=m["username"],
        role=m["role"],
        disabled=bool(m["disabled"]),
        password_hash=m["password_hash"],
    )
