"""The audit log: append-only and hash-chained, so an edited, removed or reordered record is
detected by `callassist audit verify`.

Each record's hash covers its sequence number, its fields and the previous record's hash.
Editing a record breaks its own hash; removing or reordering one breaks the sequence or
the chain. (Cutting records off the END leaves a shorter valid chain: `verify` prints the
head hash so an operator can anchor it elsewhere, e.g. in their SIEM.)

Retention (`retention.audit_days`) removes the OLDEST records only, and writes the last
removed record's sequence number and hash to `audit_checkpoint` first: the chain then
starts from there. A gap anywhere else is still detected.

Views (the DPO's audit page, the admin health) verify incrementally: every ANCHOR_EVERY-th
record, once verified, is stored in `audit_anchor`; `verify_recent` starts from the newest
anchor (checking that record still carries the anchored hash) and reads only the records
after it, in batches, so a request reads at most ANCHOR_EVERY + (records written since) rows.
An edit BEFORE the newest anchor is left to the full `verify` (`callassist audit verify`),
which reads the whole chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from server.core.db import Database, metadata
from server.core.phone import mask_text

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

# One row (id = 1): the last record removed by retention; verification starts after it.
audit_checkpoint = sa.Table(
    "audit_checkpoint",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),  # when that record was written
    sa.Column("pruned_at", sa.Float, nullable=False),
)

# Every ANCHOR_EVERY-th record, once verified (verify_recent), is kept here: the next
# verification starts from the newest one instead of the first record.
audit_anchor = sa.Table(
    "audit_anchor",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("verified_at", sa.Float, nullable=False),
)

ANCHOR_EVERY = 1000
VERIFY_BATCH = 1000  # rows held in memory at a time while verifying

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
    pruned_through: int = 0  # records 1..pruned_through were removed by retention
    rows_read: int = 0  # how many records this verification read (verify_recent)
    from_seq: int = 0  # verified from this record on (an anchor; 0: from the start)


def verify_rows(
    rows: list[dict[str, Any]], start_seq: int = 0, start_hash: str = GENESIS
) -> Verdict:
    """Check a chain given in sequence order (pure: the CLI and the tests share it).
    `start_seq`/`start_hash`: the retention checkpoint (the last removed record)."""
    prev = start_hash
    for expected_seq, row in enumerate(rows, start=start_seq + 1):
        if row["seq"] != expected_seq:
            return Verdict(
                False,
                expected_seq - 1 - start_seq,
                prev,
                f"record {expected_seq} is missing (found {row['seq']} in its place)",
            )
        if row["prev_hash"] != prev:
            return Verdict(
                False,
                expected_seq - 1 - start_seq,
                prev,
                f"record {expected_seq} does not follow record {expected_seq - 1} "
                "(removed or reordered)",
            )
        if record_hash(prev, row) != row["hash"]:
            return Verdict(
                False, expected_seq - 1 - start_seq, prev, f"record {expected_seq} was edited"
            )
        prev = row["hash"]
    return Verdict(True, len(rows), prev, pruned_through=start_seq)


class Audit:
    def __init__(
        self, db: Database, clock: Callable[[], float], phone_region: str | None = "LV"
    ) -> None:
        self.db = db
        self.clock = clock
        # Reasons typed by a DPO or on the CLI may name a number: masked before they are
        # chained (the chain cannot be edited later); local numbers are read in this region.
        self.phone_region = phone_region
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
            # Other processes wait until this record is written: on PostgreSQL for the
            # table lock; on SQLite the transaction holds the write lock from its BEGIN
            # (server/core/db.py), so no other process reads the same last record.
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
            last = (
                await conn.execute(
                    sa.select(audit_log.c.seq, audit_log.c.hash)
                    .order_by(audit_log.c.seq.desc())
                    .limit(1)
                )
            ).first()
            if last is None:
                # Empty log: retention may have removed every record; the chain goes on from
                # the checkpoint, so nothing written later can pass for the first record.
                cp = (
                    await conn.execute(
                        sa.select(audit_checkpoint.c.seq, audit_checkpoint.c.hash).where(
                            audit_checkpoint.c.id == 1
                        )
                    )
                ).first()
                last = (cp[0], cp[1]) if cp else (0, GENESIS)
            seq, prev = last[0] + 1, last[1]
            row = {
                "seq": seq,
                "at": round(self.clock(), 3),
                "actor": actor[:64],
                "role": role[:16],
                "action": action[:64],
                "object": object[:128],
                "reason": mask_text(reason, self.phone_region)[:256],
                "result": result[:16],
            }
            row["prev_hash"] = prev
            row["hash"] = record_hash(prev, row)
            await conn.execute(audit_log.insert().values(**row))

    async def rows(self) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            result = await conn.execute(sa.select(audit_log).order_by(audit_log.c.seq))
            return [dict(r._mapping) for r in result.all()]

    @staticmethod
    async def rows_about(db: Database, objects: set[str]) -> list[dict[str, Any]]:
        """The records about these objects (sessions, recordings), oldest first."""
        query = (
            sa.select(audit_log.c.at, audit_log.c.role, audit_log.c.action, audit_log.c.object,
                      audit_log.c.result)
            .where(audit_log.c.object.in_(sorted(objects)))
            .order_by(audit_log.c.seq)
        )  # fmt: skip
        async with db.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def page(self, limit: int = 100, before_seq: int | None = None) -> list[dict[str, Any]]:
        """The newest `limit` records (before `before_seq`), newest first."""
        query = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
        if before_seq is not None:
            query = query.where(audit_log.c.seq < before_seq)
        async with self.db.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def checkpoint(self) -> tuple[int, str]:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(audit_checkpoint.c.seq, audit_checkpoint.c.hash).where(
                        audit_checkpoint.c.id == 1
                    )
                )
            ).first()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    async def verify(self) -> Verdict:
        start_seq, start_hash = await self.checkpoint()
        return verify_rows(await self.rows(), start_seq, start_hash)

    async def verify_recent(self, anchor_every: int = ANCHOR_EVERY) -> Verdict:
        """Verify from the newest anchor to the head (see the module's docstring)."""
        start_seq, start_hash = await self.checkpoint()
        rows_read = 0
        async with self.db.engine.connect() as conn:
            anchor = (
                await conn.execute(
                    sa.select(audit_anchor.c.seq, audit_anchor.c.hash)
                    .where(audit_anchor.c.seq > start_seq)
                    .order_by(audit_anchor.c.seq.desc())
                    .limit(1)
                )
            ).first()
            seq, prev = start_seq, start_hash
            if anchor is not None:
                row = (
                    await conn.execute(sa.select(audit_log).where(audit_log.c.seq == anchor[0]))
                ).first()
                rows_read += 1
                record = dict(row._mapping) if row is not None else None
                if (
                    record is None
                    or record["hash"] != anchor[1]
                    or record_hash(record["prev_hash"], record) != record["hash"]
                ):
                    problem = f"record {anchor[0]} was edited or removed after it was verified"
                    return Verdict(False, 0, anchor[1], problem, start_seq, rows_read, anchor[0])
                seq, prev = anchor[0], anchor[1]
            from_seq = seq
            while True:
                batch = [
                    dict(r._mapping)
                    for r in (
                        await conn.execute(
                            sa.select(audit_log)
                            .where(audit_log.c.seq > seq)
                            .order_by(audit_log.c.seq)
                            .limit(VERIFY_BATCH)
                        )
                    ).all()
                ]
                if not batch:
                    break
                rows_read += len(batch)
                part = verify_rows(batch, seq, prev)
                if not part.ok:
                    return Verdict(False, seq - start_seq + part.count, part.head, part.problem,
                                   start_seq, rows_read, from_seq)  # fmt: skip
                anchors = [r for r in batch if r["seq"] % anchor_every == 0]
                seq, prev = batch[-1]["seq"], batch[-1]["hash"]
                if anchors:
                    await self._anchor(anchors)
        return Verdict(True, seq - start_seq, prev, "", start_seq, rows_read, from_seq)

    async def _anchor(self, rows: list[dict[str, Any]]) -> None:
        now = self.clock()
        # Another node may anchor the same records at the same moment: then its rows stand.
        with contextlib.suppress(sa.exc.IntegrityError):
            await self._insert_anchors(rows, now)

    async def _insert_anchors(self, rows: list[dict[str, Any]], now: float) -> None:
        async with self.db.engine.begin() as conn:
            known = set(
                (
                    await conn.execute(
                        sa.select(audit_anchor.c.seq).where(
                            audit_anchor.c.seq.in_([r["seq"] for r in rows])
                        )
                    )
                ).scalars()
            )
            new = [
                {"seq": r["seq"], "hash": r["hash"], "verified_at": now}
                for r in rows
                if r["seq"] not in known
            ]
            if new:
                await conn.execute(audit_anchor.insert(), new)

    async def prune(self, written_before: float) -> int:
        """Remove the records written before `written_before` (retention.audit_days), oldest
        first, and move the checkpoint to the last one removed. Every record past the cut-off
        goes, the newest too (the same cut-off as every other category): the checkpoint then
        holds the chain's head, and `record` goes on from it."""
        async with self._lock, self.db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
            last = (
                await conn.execute(
                    sa.select(audit_log.c.seq, audit_log.c.hash, audit_log.c.at)
                    .where(audit_log.c.at < written_before)
                    .order_by(audit_log.c.seq.desc())
                    .limit(1)
                )
            ).first()
            if last is None:
                return 0
            seq, digest, at = last
            gone = await conn.execute(audit_log.delete().where(audit_log.c.seq <= seq))
            await conn.execute(audit_anchor.delete().where(audit_anchor.c.seq <= seq))
            values = {"seq": seq, "hash": digest, "at": at, "pruned_at": self.clock()}
            updated = await conn.execute(
                audit_checkpoint.update().where(audit_checkpoint.c.id == 1).values(**values)
            )
            if not updated.rowcount:
                await conn.execute(audit_checkpoint.insert().values(id=1, **values))
            return int(gone.rowcount or 0)
