"""Recording keys and expectations from the database: what every reader of a recording
(server, `callassist recording ...`, `subject export`) uses, so that each read is for one
recording id and is checked against that recording's row (docs/recording-format.md).

- `DatabaseKeyStore`: recorder.vault.KeyStore over the `recording_keys` table.
- `expected(db, rid)`: the row as recorder.vault.Expected; a recording the database does
  not list is refused as KeyErased (erased with its subject, or never recorded here), so a
  restored copy of its objects decrypts for nobody, whatever the header's format.
- `store_key(db, rec, session_id, now)`: a new recording's key record, stored before any
  of its objects.
"""

from __future__ import annotations

from recorder import KeyErased
from recorder.crypto import Recording
from recorder.keys import KeyRecord, Keyring
from recorder.vault import Expected, Keys
from server.core.db import Database


class DatabaseKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def key_record(self, recording_id: str) -> KeyRecord | None:
        row = await self.db.get_recording_key(recording_id)
        if row is None:
            return None
        return KeyRecord(row["recording_id"], row["alg"], row["key_id"], bytes(row["wrapped"]))


def database_keys(db: Database, keyring: Keyring) -> Keys:
    return Keys(keyring, DatabaseKeyStore(db))


async def expected(db: Database, recording_id: str) -> Expected:
    row = await db.get_recording(recording_id)
    if row is None:
        raise KeyErased(f"recording {recording_id} is not in the database (erased, or never "
                        "recorded here): nothing of it can be decrypted")  # fmt: skip
    return Expected(session_id=row["session_id"], kind=row["kind"], status=row["status"],
                    segments=int(row["segments"] or 0), bytes=int(row["bytes"] or 0))  # fmt: skip


async def store_key(db: Database, rec: Recording, session_id: str, now: float) -> None:
    record = rec.key_record
    if record is None:
        raise ValueError("a new recording (new_recording) has a key record to store")
    await db.add_recording_key(record.recording_id, session_id, record.alg, record.key_id,
                               record.wrapped, now)  # fmt: skip
