"""Recording format: round trips, every kind of tampering, keyrings and key rotation.

Storage here is LocalStorage (a directory), so tampering is done on the real files; the S3
path is covered in test_recording_storage.py.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import pytest

from recorder import (
    ChunkTampered,
    HeaderMissing,
    HeaderTampered,
    KeyErased,
    KeyringError,
    ManifestMissing,
    ManifestTampered,
    RecordingError,
    RecordingIncomplete,
    SegmentMissing,
    SegmentOutOfOrder,
    SegmentTampered,
    Truncated,
    UnknownMasterKey,
    UnsupportedFormat,
    WrappedKeyTampered,
    WrongKey,
    WrongRecording,
)
from recorder.crypto import (
    DEFAULT_CHUNK_SIZE,
    SEGMENT_HEADER_LEN,
    TAG_LEN,
    Recording,
    SegmentEntry,
    header_object,
    manifest_object,
    segment_object,
)
from recorder.crypto import new_recording as _new_recording
from recorder.crypto import open_recording as _open_recording
from recorder.keys import ENV_VAR, KeyRecord, Keyring, MasterKeyring, rewrap_key_record
from recorder.reading import decrypt_recording, decrypt_segment_to_file
from recorder.storage import LocalStorage
from recorder.vault import Keys, MemoryKeyStore

# The database's part, in memory: every recording's key record, by recording id.
RECORDS = MemoryKeyStore()


def new_recording(keyring: Keyring, recording_id: bytes | None = None) -> Recording:
    rec = _new_recording(keyring, recording_id)
    assert rec.key_record is not None
    RECORDS.add(rec.key_record)
    return rec


def open_recording(header: bytes, keyring: Keyring, rid: str | None = None) -> Recording:
    """The reader's way: for an expected recording id, with its key record."""
    rid = rid if rid is not None else bytes(header[5:21]).hex()
    return _open_recording(header, keyring, RECORDS.records.get(rid), expected_id=rid)


def K(keyring: Keyring) -> Keys:  # noqa: N802 - reads like the spec's keys
    return Keys(keyring, RECORDS)

CHUNK = DEFAULT_CHUNK_SIZE
STEP = CHUNK + TAG_LEN  # one sealed chunk
# Several MB over several segments: many chunks, an exact multiple of the chunk size,
# an empty segment, a one-byte segment, and an uneven tail.
SIZES = [2_500_000, 16 * CHUNK, 0, 1, 3 * 1024 * 1024 + 17]


def encrypt(rec: Recording, index: int, data: bytes, pieces: tuple[int, ...] = (7, 70_001, 4096)):
    """Feed the writer like a muxer would: irregular piece sizes, some bigger than a chunk."""
    writer = rec.segment_writer(index)
    out, off, i = [], 0, 0
    while off < len(data):
        n = pieces[i % len(pieces)]
        out.append(writer.write(data[off : off + n]))
        off, i = off + n, i + 1
    out.append(writer.close())
    assert writer.entry is not None
    return b"".join(out), writer.entry


async def store(storage: LocalStorage, keyring: MasterKeyring, plain: list[bytes]) -> Recording:
    rec = new_recording(keyring)
    await storage.put(header_object(rec.id), rec.header)
    entries = []
    for i, data in enumerate(plain):
        blob, entry = encrypt(rec, i, data)
        await storage.put(segment_object(rec.id, i), blob)
        entries.append(entry)
    await storage.put(manifest_object(rec.id), rec.seal_manifest(entries, metadata={"v": 1}))
    return rec


@pytest.fixture
def keyring(tmp_path: Path) -> MasterKeyring:
    return MasterKeyring.from_directory(tmp_path / "keys")


@pytest.fixture(scope="module")
def plain() -> list[bytes]:
    return [os.urandom(n) for n in SIZES]


def files_in(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*")] if directory.exists() else []


async def test_round_trip_multi_segment(tmp_path: Path, keyring: MasterKeyring, plain):
    storage = LocalStorage(tmp_path / "store")
    rec = await store(storage, keyring, plain)
    out = tmp_path / "out"
    paths = await decrypt_recording(storage, rec.id, K(keyring), out)
    assert [p.name for p in paths] == [f"segment-{i:06d}.webm" for i in range(len(SIZES))]
    assert [p.read_bytes() for p in paths] == plain
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    assert sorted(files_in(out)) == sorted(paths)  # no staging leftovers
    # Sizes follow the spec: header + chunks, every chunk plus a 16-byte tag.
    exact = await storage.get(segment_object(rec.id, 1))
    assert len(exact) == SEGMENT_HEADER_LEN + 16 * STEP  # exact multiple: last chunk is full
    empty = await storage.get(segment_object(rec.id, 2))
    assert len(empty) == SEGMENT_HEADER_LEN + TAG_LEN  # one empty final chunk
    manifest = rec.open_manifest(await storage.get(manifest_object(rec.id)))
    assert manifest.complete and manifest.metadata == {"v": 1}
    assert [e.plaintext_size for e in manifest.segments] == SIZES


def test_stream_pieces_and_entries(keyring: MasterKeyring):
    rec = new_recording(keyring)
    data = os.urandom(5 * CHUNK + 3)
    blob, entry = encrypt(rec, 7, data, pieces=(1, CHUNK, 3 * CHUNK + 5))
    assert entry == rec.verify_segment(7, blob)  # a recovery job gets the same entry back
    reader = open_recording(rec.header, keyring)
    pieces = [blob[i : i + 999] for i in range(0, len(blob), 999)]
    assert b"".join(reader.decrypt_segment(7, pieces, expect=entry)) == data
    writer = rec.segment_writer(8)
    assert writer.write(b"x")[:4] == b"CASG"  # the header goes out with the first write
    writer.close()
    with pytest.raises(ValueError):
        writer.write(b"more")


# --- tampering: every case names its precise error and leaves no output file


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def swap(a: Path, b: Path) -> None:
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


def cut(path: Path, n: int) -> None:
    path.write_bytes(path.read_bytes()[:-n])


Tamper = Callable[[Path, str], None]
CASES: dict[str, tuple[Tamper, type[RecordingError], str]] = {
    "swap two segments": (
        lambda d, r: swap(d / segment_object(r, 1), d / segment_object(r, 3)),
        SegmentOutOfOrder, "expected segment 1, the object holds segment 3",
    ),
    "rename a segment": (
        lambda d, r: (d / segment_object(r, 2)).rename(d / segment_object(r, 9)),
        SegmentMissing, "segment 2 listed in the manifest is missing",
    ),
    "drop the last segment": (
        lambda d, r: (d / segment_object(r, 4)).unlink(),
        SegmentMissing, "segment 4 listed",
    ),
    "flip a bit in the header commitment": (
        lambda d, r: flip(d / header_object(r), 30),
        WrappedKeyTampered, "fails authentication under the recording key",
    ),
    "flip a bit in the header's recording id": (
        lambda d, r: flip(d / header_object(r), 8),
        WrongRecording, "header belongs to recording",
    ),
    "flip a bit in the sealed data key": (
        lambda d, r: flip(d / header_object(r), -1),
        WrappedKeyTampered, "data key fails authentication",
    ),
    "flip a bit in the header nonce": (
        lambda d, r: flip(d / header_object(r), 60),
        WrappedKeyTampered, "data key fails authentication",
    ),
    "flip a bit in a chunk": (
        lambda d, r: flip(d / segment_object(r, 0), SEGMENT_HEADER_LEN + 2 * STEP + 100),
        ChunkTampered, "segment 0, chunk 2 fails authentication",
    ),
    "flip a bit in a segment header": (
        lambda d, r: flip(d / segment_object(r, 3), 40),
        HeaderTampered, "segment 3: header fails authentication",
    ),
    "truncate a segment inside a chunk": (
        lambda d, r: cut(d / segment_object(r, 0), 1000),
        Truncated, "segment 0 is truncated",
    ),
    "truncate a segment at a chunk boundary": (
        lambda d, r: cut(d / segment_object(r, 1), STEP),
        Truncated, "segment 1 is truncated",
    ),
    "append to a segment": (
        lambda d, r: (d / segment_object(r, 2)).write_bytes(
            (d / segment_object(r, 2)).read_bytes() + b"\0"),
        SegmentTampered, "manifest says",
    ),
    "flip a bit in the manifest": (
        lambda d, r: flip(d / manifest_object(r), 40),
        ManifestTampered, "manifest fails authentication",
    ),
    "delete the manifest": (
        lambda d, r: (d / manifest_object(r)).unlink(),
        ManifestMissing, "has no manifest",
    ),
    "delete the header": (
        lambda d, r: (d / header_object(r)).unlink(),
        HeaderMissing, "has no header",
    ),
    "erase the key record (crypto-shredding)": (
        lambda d, r: RECORDS.records.pop(r),
        KeyErased, "its key is not in the database",
    ),
    "another recording's header (substitution)": (
        lambda d, r: (d / header_object(r)).write_bytes(new_recording(
            MasterKeyring.from_directory(d.parent / "keys")).header),
        WrongRecording, "header belongs to recording",
    ),
    "a huge manifest (review: 200 MiB took 717 MB)": (
        lambda d, r: (d / manifest_object(r)).write_bytes(b"CAMF\x01" + bytes(5 * 2**20)),
        ManifestTampered, "larger than 4194304 bytes: refused before reading it all",
    ),
    "a huge header": (
        lambda d, r: (d / header_object(r)).write_bytes(b"CARH\x02" + bytes(10**6)),
        HeaderTampered, "too large",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
async def test_tampering_is_detected(tmp_path: Path, keyring: MasterKeyring, plain, case: str):
    tamper, error, message = CASES[case]
    storage = LocalStorage(tmp_path / "store")
    rec = await store(storage, keyring, plain)
    tamper(storage.directory, rec.id)
    out = tmp_path / "out"
    with pytest.raises(error) as info:
        await decrypt_recording(storage, rec.id, K(keyring), out)
    assert message in str(info.value)
    assert files_in(out) == []  # not even a partial file or the staging directory


async def test_wrong_and_unknown_master_key(tmp_path: Path, keyring: MasterKeyring, plain):
    storage = LocalStorage(tmp_path / "store")
    rec = await store(storage, keyring, plain[:2])
    # Same key id, different key (e.g. another installation's keyring).
    other = MasterKeyring.from_directory(tmp_path / "other-keys")
    with pytest.raises(WrongKey, match="key check value differs") as info:
        await decrypt_recording(storage, rec.id, K(other), tmp_path / "out")
    assert type(info.value) is WrongKey
    other.rotate()
    other.retire("mk-0001")
    with pytest.raises(UnknownMasterKey, match="'mk-0001' is not in the keyring"):
        await decrypt_recording(storage, rec.id, K(other), tmp_path / "out")
    assert files_in(tmp_path / "out") == []


async def test_foreign_segment_and_manifest(tmp_path: Path, keyring: MasterKeyring, plain):
    storage = LocalStorage(tmp_path / "store")
    a = await store(storage, keyring, plain[1:3])
    b = await store(storage, keyring, plain[1:3])
    d = storage.directory
    (d / segment_object(a.id, 0)).write_bytes((d / segment_object(b.id, 0)).read_bytes())
    with pytest.raises(HeaderTampered, match=f"belongs to recording {b.id}"):
        await decrypt_recording(storage, a.id, K(keyring), tmp_path / "out")
    (d / manifest_object(b.id)).write_bytes((d / manifest_object(a.id)).read_bytes())
    with pytest.raises(ManifestTampered, match=f"manifest belongs to recording {a.id}"):
        await decrypt_recording(storage, b.id, K(keyring), tmp_path / "out")


def test_rewritten_segment_differs_from_manifest(keyring: MasterKeyring):
    rec = new_recording(keyring)
    data = os.urandom(3 * CHUNK)
    _, entry = encrypt(rec, 0, data)
    again, _ = encrypt(rec, 0, data)  # authentic, but a different salt: not the listed one
    with pytest.raises(SegmentTampered, match="differs from the manifest"):
        b"".join(rec.decrypt_segment(0, [again], expect=entry))


def test_every_header_byte_is_protected(keyring: MasterKeyring):
    rec = new_recording(keyring)
    assert len(rec.header) == 113  # format 2: fixed size, no key id in it
    for pos in range(len(rec.header)):
        for bit in (0x01, 0x80):
            edited = bytearray(rec.header)
            edited[pos] ^= bit
            with pytest.raises(HeaderTampered):
                open_recording(bytes(edited), keyring, rec.id)
    with pytest.raises(HeaderTampered, match="not 113"):
        open_recording(rec.header[:20], keyring, rec.id)
    with pytest.raises(UnsupportedFormat):
        open_recording(b"CARX" + rec.header[4:], keyring, rec.id)


def test_every_key_record_byte_is_protected(keyring: MasterKeyring):
    rec = new_recording(keyring)
    record = rec.key_record
    assert record is not None
    for pos in range(len(record.wrapped)):
        edited = bytearray(record.wrapped)
        edited[pos] ^= 0x01
        bad = KeyRecord(record.recording_id, record.alg, record.key_id, bytes(edited))
        with pytest.raises((WrappedKeyTampered, WrongKey)):
            _open_recording(rec.header, keyring, bad, expected_id=rec.id)
    other = new_recording(keyring)  # another recording's key record, moved over
    assert other.key_record is not None
    moved = KeyRecord(rec.id, *astuple(other.key_record)[1:])
    with pytest.raises(WrappedKeyTampered):
        _open_recording(rec.header, keyring, moved, expected_id=rec.id)
    with pytest.raises(WrongRecording):
        _open_recording(rec.header, keyring, other.key_record, expected_id=rec.id)


def test_an_empty_final_chunk_after_full_chunks_is_refused(keyring: MasterKeyring):
    """Review: a non-canonical encoding was accepted (age rejects it)."""
    rec = new_recording(keyring)
    data = os.urandom(2 * CHUNK)
    canonical, _ = encrypt(rec, 0, data)
    assert rec.verify_segment(0, canonical).plaintext_size == 2 * CHUNK
    # The same plaintext as two non-final full chunks and an empty final one, sealed with
    # the segment's real keys: authentic chunk by chunk, but not canonical.
    from recorder.crypto import _nonce

    writer = rec.segment_writer(0)
    head = writer._header
    cipher, prefix, aad = writer._cipher, writer._prefix, writer._aad
    forged = head + b"".join(
        cipher.encrypt(_nonce(prefix, j, False), data[j * CHUNK : (j + 1) * CHUNK], aad)
        for j in range(2)
    ) + cipher.encrypt(_nonce(prefix, 2, True), b"", aad)
    with pytest.raises(ChunkTampered, match="empty final chunk"):
        rec.verify_segment(0, forged)
    empty, _ = encrypt(rec, 1, b"")  # an empty segment is one empty chunk: still fine
    assert rec.verify_segment(1, empty).plaintext_size == 0


def test_every_segment_header_byte_is_protected(keyring: MasterKeyring):
    rec = new_recording(keyring)
    blob, _ = encrypt(rec, 5, b"payload")
    for pos in range(SEGMENT_HEADER_LEN):
        edited = bytearray(blob)
        edited[pos] ^= 0x04
        with pytest.raises(HeaderTampered):  # before a single chunk is opened
            rec.verify_segment(5, bytes(edited))


def test_streaming_truncation_without_manifest(keyring: MasterKeyring):
    rec = new_recording(keyring)
    blob, _ = encrypt(rec, 0, os.urandom(4 * CHUNK + 10))
    with pytest.raises(Truncated, match="chunk 3 is not the final chunk"):
        rec.verify_segment(0, blob[: SEGMENT_HEADER_LEN + 4 * STEP])
    with pytest.raises(ChunkTampered, match="cut off inside the chunk"):
        rec.verify_segment(0, blob[:-5])
    with pytest.raises(Truncated, match="ends inside its header"):
        rec.verify_segment(0, blob[:50])
    with pytest.raises(Truncated, match="ends inside its header"):
        rec.verify_segment(0, b"")


def test_decrypt_segment_to_file_leaves_nothing_on_failure(tmp_path: Path, keyring):
    rec = new_recording(keyring)
    data = os.urandom(6 * CHUNK)
    blob, entry = encrypt(rec, 0, data)
    bad = bytearray(blob)
    bad[SEGMENT_HEADER_LEN + 4 * STEP + 1] ^= 0x10
    # Streamed, the first four chunks are released (each authentic) before chunk 4 fails:
    # the caller must not treat them as a complete segment, and the file helper does not.
    released = []
    with pytest.raises(ChunkTampered, match="chunk 4"):
        for part in rec.decrypt_segment(
            0, [bytes(bad[i : i + STEP]) for i in range(0, len(bad), STEP)]
        ):
            released.append(part)
    assert b"".join(released) == data[: 4 * CHUNK]
    dest = tmp_path / "out" / "seg.webm"
    with pytest.raises(ChunkTampered):
        decrypt_segment_to_file(rec, 0, [bytes(bad)], dest, entry)
    assert files_in(tmp_path / "out") == []
    assert decrypt_segment_to_file(rec, 0, [blob], dest, entry) == len(data)
    assert dest.read_bytes() == data


async def test_incomplete_recording_needs_consent(tmp_path: Path, keyring: MasterKeyring):
    storage = LocalStorage(tmp_path / "store")
    rec = new_recording(keyring)
    await storage.put(header_object(rec.id), rec.header)
    blob, _ = encrypt(rec, 0, b"frames")
    await storage.put(segment_object(rec.id, 0), blob)
    with pytest.raises(ManifestMissing):
        await decrypt_recording(storage, rec.id, K(keyring), tmp_path / "out")
    # Recovery after a crash: verify what arrived and seal a manifest marked incomplete.
    entry = rec.verify_segment(0, await storage.get(segment_object(rec.id, 0)))
    await storage.put(manifest_object(rec.id), rec.seal_manifest([entry], complete=False))
    with pytest.raises(RecordingIncomplete):
        await decrypt_recording(storage, rec.id, K(keyring), tmp_path / "out")
    paths = await decrypt_recording(
        storage, rec.id, K(keyring), tmp_path / "out", allow_incomplete=True
    )
    assert paths[0].read_bytes() == b"frames"
    with pytest.raises(ValueError, match="list 0..n-1"):
        rec.seal_manifest([SegmentEntry(1, 0, 0, bytes(32))])


# --- keys


async def test_rotation_rewraps_key_records_only(tmp_path: Path, keyring: MasterKeyring, plain):
    storage = LocalStorage(tmp_path / "store")
    rec = await store(storage, keyring, plain[:3])
    media = {k: await storage.get(k) for k in await storage.list(f"recordings/{rec.id}/")}
    assert keyring.rotate() == "mk-0002"
    old = RECORDS.records[rec.id]
    new = rewrap_key_record(old, keyring)
    assert old.key_id == "mk-0001" and new.key_id == "mk-0002"
    RECORDS.add(new)  # the database row; no stored object changes
    keyring.retire("mk-0001")
    assert not (keyring.directory / "mk-0001.key").exists()
    reloaded = MasterKeyring.from_directory(tmp_path / "keys", create=False)
    assert reloaded.key_ids == ["mk-0002"]
    paths = await decrypt_recording(storage, rec.id, K(reloaded), tmp_path / "out")
    assert [p.read_bytes() for p in paths] == plain[:3]
    for key, data in media.items():  # every object untouched, byte for byte
        assert await storage.get(key) == data
    with pytest.raises(UnknownMasterKey):  # an old record (a backup) died with the key
        _open_recording(rec.header, reloaded, old, expected_id=rec.id)
    with pytest.raises(KeyringError, match="current key"):
        reloaded.retire("mk-0002")


def test_key_files_are_private(tmp_path: Path):
    ring = MasterKeyring.from_directory(tmp_path / "keys")
    key_file = tmp_path / "keys" / "mk-0001.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert MasterKeyring.from_directory(tmp_path / "keys").env_value() == ring.env_value()
    key_file.chmod(0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        MasterKeyring.from_directory(tmp_path / "keys")
    with pytest.raises(KeyringError, match="no master keys"):
        MasterKeyring.from_directory(tmp_path / "empty", create=False)


def test_env_keyring(tmp_path: Path, keyring: MasterKeyring):
    keyring.rotate()
    env = {ENV_VAR: keyring.env_value()}
    from_env = MasterKeyring.load(tmp_path / "unused", environ=env)
    assert from_env.key_ids == ["mk-0001", "mk-0002"] and from_env.directory is None
    assert not (tmp_path / "unused").exists()  # the environment wins; no directory made
    rec = new_recording(keyring)
    assert open_recording(rec.header, from_env, rec.id).id == rec.id
    with pytest.raises(KeyringError, match="add a new version"):
        from_env.rotate()
    secret = tmp_path / "keys.env"
    secret.write_text(keyring.env_value())
    secret.chmod(0o600)
    assert MasterKeyring.load(tmp_path / "unused", environ={f"{ENV_VAR}_FILE": str(secret)})
    for bad in ("mk-0001", "key1:AAAA", "mk-0001:not-base64!", "mk-0001:AAAA", ""):
        with pytest.raises(KeyringError):
            MasterKeyring.from_env(environ={ENV_VAR: bad})


def _vector(section: str) -> dict[str, str]:
    doc = (Path(__file__).parent.parent / "docs" / "recording-format.md").read_text()
    block = doc.split(f"## {section}\n", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    fields: dict[str, str] = {}
    label = ""
    for line in block.splitlines():
        if line.endswith(":"):
            label = line.split(" (")[0].rstrip(":")
            fields[label] = ""
        else:
            fields[label] += line
    return fields


def test_vector_in_the_format_doc_decrypts():
    """docs/recording-format.md's test vector: the spec and the code cannot drift apart."""
    fields = _vector("Test vector")
    ring = MasterKeyring({"mk-0001": bytes.fromhex(fields["master key mk-0001"])})
    rid = fields["recording id"]
    record = KeyRecord(rid, 1, "mk-0001", bytes.fromhex(fields["key record"]))
    rec = _open_recording(bytes.fromhex(fields["header"]), ring, record, expected_id=rid)
    assert rec.id == rid and rec._data_key.hex() == fields["data key"]
    from recorder.keys import open_recording_key

    assert open_recording_key(record, ring, rid).hex() == fields["recording key"]
    manifest = rec.open_manifest(bytes.fromhex(fields["manifest"]))
    assert manifest.complete and manifest.metadata == {
        "container": "webm", "kind": "video", "session_id": "s-vector"}  # fmt: skip
    segment = bytes.fromhex(fields["segment 0, chunk size 1024"])
    plain = b"".join(rec.decrypt_segment(0, [segment], expect=manifest.segments[0]))
    assert plain == fields["segment 0 plaintext"].encode()
    with pytest.raises(KeyErased):  # the header alone is useless: the key is in the database
        _open_recording(bytes.fromhex(fields["header"]), ring, None, expected_id=rid)
    with pytest.raises(WrongRecording):
        _open_recording(bytes.fromhex(fields["header"]), ring, record, expected_id="0" * 32)


def test_format_1_vector_still_opens_and_migrates():
    """Recordings written before format 2 read (until migrated) and migrate to format 2
    with their segments and manifest as they are."""
    from recorder.header import migrate_v1_header

    fields = _vector("Format 1 test vector")
    ring = MasterKeyring({"mk-0001": bytes.fromhex(fields["master key mk-0001"])})
    rid = fields["recording id"]
    v1 = bytes.fromhex(fields["header"])
    segment = bytes.fromhex(fields["segment 0, chunk size 1024"])
    manifest_blob = bytes.fromhex(fields["manifest"])
    old = _open_recording(v1, ring, None, expected_id=rid)
    v2, record = migrate_v1_header(v1, ring, rid)
    assert v2[4] == 2 and len(v2) == 113 and record.recording_id == rid
    rec = _open_recording(v2, ring, record, expected_id=rid)
    assert rec._data_key == old._data_key
    manifest = rec.open_manifest(manifest_blob)
    plain = b"".join(rec.decrypt_segment(0, [segment], expect=manifest.segments[0]))
    assert plain == fields["segment 0 plaintext"].encode()
    with pytest.raises(HeaderTampered, match="old format 1 header"):
        _open_recording(v1, ring, record, expected_id=rid)  # an older copy, once migrated
    again, same = migrate_v1_header(v1, ring, rid, record)  # an interrupted run, retried
    assert same == record and _open_recording(again, ring, record, expected_id=rid)


async def test_a_whole_recording_copied_over_another_is_refused(tmp_path: Path, keyring, plain):
    """Review: B's header, segments and manifest copied over A's decrypted as A."""
    storage = LocalStorage(tmp_path / "store")
    a = await store(storage, keyring, plain[1:3])
    b = await store(storage, keyring, plain[3:5])
    d = storage.directory
    for name in ("header", "segment-000000", "segment-000001", "manifest"):
        (d / "recordings" / a.id / name).write_bytes((d / "recordings" / b.id / name).read_bytes())
    with pytest.raises(WrongRecording, match=f"header belongs to recording {b.id}, not {a.id}"):
        await decrypt_recording(storage, a.id, K(keyring), tmp_path / "out")
    assert files_in(tmp_path / "out") == []
    # B's key record copied onto A's row too (database access): its wrap names B.
    RECORDS.add(KeyRecord(a.id, *astuple(RECORDS.records[b.id])[1:]))
    with pytest.raises(WrappedKeyTampered):
        await decrypt_recording(storage, a.id, K(keyring), tmp_path / "out")
