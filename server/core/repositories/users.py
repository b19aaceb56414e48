"""Staff accounts and their logins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.schema import logins, oidc_states, token_hash, users

# The password hash of a single sign-on row: not an Argon2 hash, so no password ever
# verifies against it (server.http.auth.verify_password) and local login cannot reach it.
SSO_NO_PASSWORD = "!sso"  # noqa: S105 - a marker, not a password


class UsersRepository:
    """Part of `server.core.db.Database` (which holds the engine)."""

    engine: AsyncEngine

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

    async def add_sso_user(self, username: str, subject: str, role: str, now: float) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                users.insert().values(
                    username=username, password_hash=SSO_NO_PASSWORD, role=role,
                    disabled=False, created_at=now, sso_subject=subject,
                )
            )  # fmt: skip
            return int(result.inserted_primary_key[0])

    async def user_by_sso_subject(self, subject: str) -> User | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(users).where(users.c.sso_subject == subject))
            ).first()
        return _user(row)

    # --- single sign-on attempts (server/http/oidc.py) ---------------------------------
    async def add_oidc_state(
        self, state: str, binding: str, nonce: str, code_verifier: str, return_to: str,
        now: float, ttl: float,
    ) -> None:  # fmt: skip
        async with self.engine.begin() as conn:
            await conn.execute(oidc_states.delete().where(oidc_states.c.created_at < now - ttl))
            await conn.execute(
                oidc_states.insert().values(
                    state_hash=token_hash(state), binding_hash=token_hash(binding),
                    nonce=nonce, code_verifier=code_verifier, return_to=return_to,
                    created_at=now,
                )
            )  # fmt: skip

    async def take_oidc_state(self, state: str) -> dict[str, Any] | None:
        """The row of `state` (binding_hash, nonce, code_verifier, return_to, created_at),
        deleted in the same
        transaction: of two callbacks with one state (a replay, two nodes) one gets it."""
        async with self.engine.begin() as conn:
            where = oidc_states.c.state_hash == token_hash(state)
            row = (await conn.execute(sa.select(oidc_states).where(where))).first()
            if row is None:
                return None
            if (await conn.execute(oidc_states.delete().where(where))).rowcount != 1:
                return None
        return dict(row._mapping)

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

    async def end_logins(self, user_id: int) -> None:
        """Every login of the account ends (a role given by single sign-on changed)."""
        async with self.engine.begin() as conn:
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

    # retention of staff logins (server/privacy/retention.py, retention.logins_days)
    async def delete_expired_logins(self, expired_before: float) -> int:
        """Drop the logins that expired before `expired_before`; returns how many."""
        async with self.engine.begin() as conn:
            result = await conn.execute(logins.delete().where(logins.c.expires_at < expired_before))
            return int(result.rowcount or 0)


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    disabled: bool
    password_hash: str
    # Signs in through single sign-on only (users.sso_subject set; no password).
    sso: bool = False


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
        sso=m.get("sso_subject") is not None,
    )
