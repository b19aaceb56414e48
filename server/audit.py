"""The audit log: append-only and hash-chained, so an edited, removed or reordered record is
detected by `callassist audit verify`.

Each record's hash covers its sequence number, its fields and the previous record's hash.
Editing a record breaks its own hash; removing or reordering one breaks the sequence or
the chain. (Cutting records off the END leaves a shorter valid chain: `verify` prints the
head hash so an operator can anchor it elsewhere, e.g. in their SIEM.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .db import Database, metadata

log = logging.getLogger(__name__)

GENESIS = "0" * 64

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(256), nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

FIELDS = ("seq", "at", "actor", "role", "action", "object", "reason", "result")


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    body = json.dumps(
        {k: record[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(prev_hash.encode() + b"\n" + body.encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    count: int
    head: str
    problem: str = ""


def verify_rows(rows: list[dict[str, Any]]) -> Verdict:
    """Check a chain given in sequence order (pure: the CLI and the tests share it)."""
    prev = GENESIS
    for expected_seq, row in enumerate(rows, start=1):
        if row["seq"] != expected_seq:
            return Verdict(
                False,
                expected_seq - 1,
                prev,
                f"record {expected_seq} is missing (found {row['seq']} in its place)",
            )
        if row["prev_hash"] != prev:
            return Verdict(
                False,
                expected_seq - 1,
                prev,
                f"record {expected_seq} does not follow record {expected_seq - 1} "
                "(removed or reordered)",
            )
        if record_hash(prev, row) != row["hash"]:
            return Verdict(False, expected_seq - 1, prev, f"record {expected_seq} was edited")
        prev = row["hash"]
    return Verdict(True, len(rows), prev)


class Audit:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock
        # One writer at a time in this process; the transaction below serialises processes.
        self._lock = asyncio.Lock()

    async def record(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        object: str = "",
        result: str = "ok",
        reason: str = "",
    ) -> None:
        async with self._lock, self.db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
            last = (
                await conn.execute(
                    sa.select(audit_log.c.seq, audit_log.c.hash)
                    .order_by(audit_log.c.seq.desc())
                    .limit(1)
                )
            ).first()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            row = {
                "seq": seq,
                "at": round(self.clock(), 3),
                "actor": actor[:64],
                "role": role[:16],
                "action": action[:64],
                "object": object[:128],
                "reason": reason[:256],
                "result": result[:16],
            }
            row["prev_hash"] = prev
            row["hash"] = record_hash(prev, row)
            await conn.execute(audit_log.insert().values(**row))

    async def rows(self) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            result = await conn.execute(sa.select(audit_log).order_by(audit_log.c.seq))
            return [dict(r._mapping) for r in result.all()]

    async def verify(self) -> Verdict:
        return verify_rows(await self.rows())
