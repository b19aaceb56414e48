"""Where a reader gets a recording's keys and what it expects of the recording.

`Keys` joins the master keyring with the store of recording keys (`KeyStore`: the database
in the server, `MemoryKeyStore` in tests and tools). `Expected` is what the database row
says about a recording; `check_manifest` compares an opened manifest with it, so authentic
objects of another recording, or a manifest a key holder re-sealed with fewer segments,
are refused (docs/recording-format.md, "Decrypting a recording"). Pure logic, no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from recorder import RecordingMismatch
from recorder.crypto import Manifest, Recording
from recorder.keys import KeyRecord, Keyring


class KeyStore(Protocol):
    async def key_record(self, recording_id: str) -> KeyRecord | None: ...


class MemoryKeyStore:
    """Key records in a dict: for tests, benchmarks and tools without a database."""

    def __init__(self) -> None:
        self.records: dict[str, KeyRecord] = {}

    def add(self, record: KeyRecord) -> None:
        self.records[record.recording_id] = record

    async def key_record(self, recording_id: str) -> KeyRecord | None:
        return self.records.get(recording_id)


class Keys:
    """The master keyring plus the recording keys: everything a reader needs to decrypt."""

    def __init__(self, keyring: Keyring, store: KeyStore | None = None) -> None:
        self.keyring = keyring
        self.store: KeyStore = store if store is not None else MemoryKeyStore()

    def remember(self, rec: Recording) -> Recording:
        """Keep a new recording's key record (memory store only); returns the recording."""
        if not isinstance(self.store, MemoryKeyStore) or rec.key_record is None:
            raise TypeError("remember() is for a MemoryKeyStore and a new recording")
        self.store.add(rec.key_record)
        return rec

    async def record(self, recording_id: str) -> KeyRecord | None:
        return await self.store.key_record(recording_id)


@dataclass(frozen=True)
class Expected:
    """A recording's database row, as far as a reader checks it."""

    session_id: str
    kind: str
    status: str  # recording | complete | incomplete | failed
    segments: int
    bytes: int

    @property
    def finished(self) -> bool:
        """The database says the recorder wrote the final manifest."""
        return self.status == "complete"


def check_manifest(rid: str, manifest: Manifest, expect: Expected | None) -> None:
    """The manifest must describe the recording the database lists (RecordingMismatch)."""
    if expect is None:
        return
    meta = manifest.metadata
    if meta.get("session_id") != expect.session_id:
        raise RecordingMismatch(f"recording {rid}: the manifest is of session "
                                f"{meta.get('session_id')!r}, the database says "
                                f"{expect.session_id!r}")  # fmt: skip
    kind = str(meta.get("kind", "video"))
    if kind != expect.kind:
        raise RecordingMismatch(f"recording {rid}: the manifest says {kind}, the database "
                                f"says {expect.kind}")  # fmt: skip
    if expect.finished and not manifest.complete:
        raise RecordingMismatch(f"recording {rid}: the database says complete, the manifest "
                                "is a recovery manifest")  # fmt: skip
    if expect.status in ("complete", "incomplete") and len(manifest.segments) != expect.segments:
        raise RecordingMismatch(f"recording {rid}: the manifest lists {len(manifest.segments)} "
                                f"segment(s), the database says {expect.segments}")  # fmt: skip


def check_sizes(rid: str, header_size: int, manifest_size: int, manifest: Manifest,
                expect: Expected | None) -> None:  # fmt: skip
    """Header + segments + manifest must add up to the bytes the database recorded."""
    if expect is None or not expect.finished or not expect.bytes:
        return
    total = header_size + manifest_size + sum(e.ciphertext_size for e in manifest.segments)
    if total != expect.bytes:
        raise RecordingMismatch(f"recording {rid}: its objects hold {total} bytes, the "
                                f"database says {expect.bytes}")  # fmt: skip
