"""Storage, spool and KMS against a real HTTP endpoint (moto's server on 127.0.0.1).

No boto3 mocks: S3Storage and KmsKeyring talk HTTP to ThreadedMotoServer. The outage test
stops that server and starts it again on the same port (moto keeps its state in-process).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from recorder import (
    ObjectNotFound,
    RegionNotAllowed,
    SpoolFull,
    UnknownMasterKey,
    WrappedKeyTampered,
    WrongKey,
)
from recorder.crypto import (
    Recording,
    header_object,
    manifest_object,
    new_recording,
    open_recording,
    segment_object,
)
from recorder.keys import KeyRecord, KmsKeyring, MasterKeyring, rewrap_key_record
from recorder.reading import decrypt_recording
from recorder.spool import Spool
from recorder.storage import (
    EU_EEA_REGIONS,
    LocalStorage,
    MiB,
    S3Storage,
    check_region,
)
from recorder.vault import Keys
from tests.s3_server import S3TestServer


@pytest.fixture(scope="module")
def s3() -> Iterator[S3TestServer]:
    with S3TestServer() as server:
        yield server


def s3_storage(s3: S3TestServer, bucket: str, **kwargs) -> S3Storage:
    kwargs.setdefault("max_attempts", 1)  # the spool retries; keep botocore's own retries short
    return S3Storage(
        bucket, endpoint_url=s3.endpoint_url, region_name="eu-north-1", session=s3.session(),
        **kwargs,
    )  # fmt: skip


def encrypted_segments(rec: Recording, sizes: list[int]) -> list[tuple[bytes, bytes]]:
    """(plaintext, ciphertext) per segment, written in muxer-sized pieces."""
    out = []
    for i, size in enumerate(sizes):
        plain, writer = os.urandom(size), rec.segment_writer(i)
        blob = b"".join(writer.write(plain[o : o + 30_000]) for o in range(0, size, 30_000))
        out.append((plain, blob + writer.close()))
    return out


# --- region guard


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-2", "eu-central-2", "ap-southeast-1"])
async def test_region_outside_eu_eea_is_refused(s3: S3TestServer, region: str):
    bucket = s3.create_bucket(region)
    storage = s3_storage(s3, bucket)
    with pytest.raises(RegionNotAllowed, match=f"is in region '{region}'") as info:
        await storage.check()
    assert info.value.region == region and storage.region is None
    with pytest.raises(RegionNotAllowed):  # nothing is written before the check passes
        await storage.put("recordings/x/header", b"ciphertext")
    assert "Contents" not in s3.client(region=region).list_objects_v2(Bucket=bucket)


def test_unknown_region_is_refused():
    with pytest.raises(RegionNotAllowed, match="is in region None"):
        check_region("bucket", None, EU_EEA_REGIONS)
    assert "eu-west-2" not in EU_EEA_REGIONS and "eu-central-2" not in EU_EEA_REGIONS


async def test_eu_north_1_is_accepted(s3: S3TestServer):
    storage = s3_storage(s3, s3.create_bucket("eu-north-1"))
    assert await storage.check() == "eu-north-1"


# --- S3 and local object operations


async def test_s3_object_operations(s3: S3TestServer):
    storage = s3_storage(s3, s3.create_bucket())
    info = await storage.put("recordings/a/header", b"one")
    assert info.size == 3 and info.sha256 == hashlib.sha256(b"one").hexdigest()
    await storage.put("recordings/a/segment-000000", b"two")
    await storage.put("recordings/b/header", b"three")
    assert await storage.get("recordings/a/header") == b"one"
    assert await storage.list("recordings/a/") == [
        "recordings/a/header",
        "recordings/a/segment-000000",
    ]
    assert await storage.exists("recordings/b/header")
    await storage.delete("recordings/b/header")
    assert not await storage.exists("recordings/b/header")
    with pytest.raises(ObjectNotFound, match="recordings/b/header"):
        await storage.get("recordings/b/header")
    with pytest.raises(ValueError, match="invalid object key"):
        await storage.put("../escape", b"x")


async def test_multipart_upload_of_11_mib(s3: S3TestServer, tmp_path: Path):
    bucket = s3.create_bucket()
    storage = s3_storage(s3, bucket, multipart_threshold=8 * MiB, part_size=5 * MiB)
    source = tmp_path / "segment.bin"
    source.write_bytes(os.urandom(11 * MiB))
    info = await storage.put("recordings/big/segment-000000", source)
    assert info.size == 11 * MiB
    head = s3.client().head_object(Bucket=bucket, Key="recordings/big/segment-000000")
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 1 MiB parts
    assert head["Metadata"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert await storage.get("recordings/big/segment-000000") == source.read_bytes()
    assert not s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads")
    with pytest.raises(ValueError, match="at least 5242880"):
        s3_storage(s3, bucket, part_size=1 * MiB)


async def test_delete_destroys_every_version(s3: S3TestServer):
    bucket = s3.create_bucket()
    client = s3.client()
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    storage = s3_storage(s3, bucket)
    await storage.put("recordings/r/header", b"v1")
    await storage.put("recordings/r/header", b"v2")
    await storage.delete("recordings/r/header")
    versions = client.list_object_versions(Bucket=bucket, Prefix="recordings/r/header")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")


async def test_local_storage_is_atomic_and_private(tmp_path: Path):
    storage = LocalStorage(tmp_path / "store")
    await storage.put("recordings/a/header", b"x" * 10)
    path = tmp_path / "store" / "recordings" / "a" / "header"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (path.parent / ".header.tmp-dead").write_bytes(b"interrupted")  # a crashed writer's temp
    assert await storage.list() == ["recordings/a/header"]
    for bad in ("/abs", "a//b", "a/../b", ".hidden", "", "a/b/"):
        with pytest.raises(ValueError):
            await storage.put(bad, b"x")
    await storage.delete("recordings/a/header")
    await storage.delete("recordings/a/header")  # idempotent
    assert not await storage.exists("recordings/a/header")


async def test_a_spooled_file_is_linked_into_local_storage_not_copied(tmp_path: Path):
    """The spool's committed file becomes the stored object (one inode, no second write);
    the object outlives the spool's name and its hash is the bytes stored."""
    storage = LocalStorage(tmp_path / "store")
    spool = Spool(tmp_path / "spool", storage)
    data = os.urandom(300_000)
    await spool.put("recordings/r/segment-000000", data)
    source = tmp_path / "spool" / "recordings" / "r" / "segment-000000"
    ino = source.stat().st_ino
    info = await storage.put("recordings/r/segment-000000", source)
    stored = tmp_path / "store" / "recordings" / "r" / "segment-000000"
    assert stored.stat().st_ino == ino and stored.stat().st_nlink == 2  # linked, not copied
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert not list(stored.parent.glob(".*tmp-*"))  # no temp name left behind
    source.unlink()  # what the spool does once the upload is verified
    assert stored.read_bytes() == data and stored.stat().st_nlink == 1


async def test_a_file_on_another_filesystem_is_copied_into_local_storage(tmp_path: Path):
    """Across devices (here tmpfs /dev/shm and the test's directory) a link is impossible
    (EXDEV): the object is copied, as before."""
    source_dir = Path("/dev/shm") / f"callassist-{os.getpid()}-{os.urandom(3).hex()}"
    source_dir.mkdir()
    try:
        source = source_dir / "segment"
        data = os.urandom(200_000)
        source.write_bytes(data)
        assert os.stat(source).st_dev != os.stat(tmp_path).st_dev  # two filesystems
        storage = LocalStorage(tmp_path / "store")
        info = await storage.put("recordings/r/segment-000000", source)
        stored = tmp_path / "store" / "recordings" / "r" / "segment-000000"
        assert stored.read_bytes() == data and stored.stat().st_ino != source.stat().st_ino
        assert info.sha256 == hashlib.sha256(data).hexdigest()
    finally:
        for f in source_dir.iterdir():
            f.unlink()
        source_dir.rmdir()


# --- recording -> spool -> S3 -> decrypt, including an outage


async def test_outage_spools_then_uploads_everything(s3: S3TestServer, tmp_path: Path):
    keyring = MasterKeyring.from_directory(tmp_path / "keys")
    storage = s3_storage(s3, s3.create_bucket())
    await storage.check()
    errors: list[str] = []
    spool = Spool(tmp_path / "spool", storage, backoff_initial=0.05, backoff_max=0.4,
                  on_error=lambda key, exc: errors.append(type(exc).__name__))  # fmt: skip
    await spool.start()
    rec = new_recording(keyring)
    await spool.put(header_object(rec.id), rec.header)
    assert await spool.drain(within_s=10)
    s3.stop()  # S3 goes away in the middle of the recording
    try:
        segments = encrypted_segments(rec, [300_000, 65_536, 0, 250_001, 1_000_000])
        entries = []
        for i, (_, blob) in enumerate(segments):
            async with spool.open(segment_object(rec.id, i)) as writer:
                for off in range(0, len(blob), 50_000):  # as the muxer produces it
                    writer.write(blob[off : off + 50_000])
            entries.append(rec.verify_segment(i, blob))
        await spool.put(manifest_object(rec.id), rec.seal_manifest(entries))
        for _ in range(100):
            if spool.stats.failures >= 2:
                break
            await asyncio.sleep(0.05)
        assert spool.stats.failures >= 2 and "EndpointConnectionError" in errors
        assert len(spool.pending) == len(segments) + 1
        assert spool.size_bytes == sum(len(b) for _, b in segments) + len(await_manifest(spool))
    finally:
        s3.start()  # same port, same state
    assert await spool.drain(within_s=20)
    assert spool.pending == [] and spool.size_bytes == 0
    assert [p for p in (tmp_path / "spool").rglob("*") if p.is_file()] == []
    await spool.stop()
    keys = await storage.list(f"recordings/{rec.id}/")
    assert len(keys) == len(segments) + 2
    keys = Keys(keyring)
    keys.remember(rec)
    paths = await decrypt_recording(storage, rec.id, keys, tmp_path / "out")
    assert [p.read_bytes() for p in paths] == [plain for plain, _ in segments]


def await_manifest(spool: Spool) -> bytes:
    """The spooled manifest's bytes (read straight from the spool directory)."""
    (path,) = [p for p in spool.directory.rglob("manifest")]
    return path.read_bytes()


async def test_spool_limits_and_callbacks_never_break_writes(tmp_path: Path):
    events: list[tuple[bool, int]] = []

    def on_limit(over: bool, size: int, limit: int) -> None:
        events.append((over, size))
        raise RuntimeError("a broken metrics hook")  # must not break the recording

    storage = LocalStorage(tmp_path / "store")
    spool = Spool(tmp_path / "spool", storage, limit_bytes=1_000_000,
                  hard_limit_bytes=1_500_000, on_limit=on_limit)  # fmt: skip
    for i in range(3):  # the uploader is not running yet: everything stays spooled
        await spool.put(f"recordings/r/segment-{i:06d}", b"x" * 400_000)
    assert events == [(True, 1_200_000)] and spool.over_limit
    assert spool.stats.limit_crossings == 1 and spool.size_bytes == 1_200_000
    writer = spool.open("recordings/r/segment-000003")
    with pytest.raises(SpoolFull, match="hard limit of 1500000"):
        writer.write(b"y" * 400_000)
    await writer.abort()
    await spool.start()
    assert await spool.drain(within_s=10)
    assert events[1:] == [(False, 800_000)]  # reported once, as soon as it is back under
    assert not spool.over_limit and spool.size_bytes == 0
    assert spool.stats.uploaded == 3 and spool.stats.uploaded_bytes == 1_200_000
    assert await storage.list("recordings/r/") == [
        f"recordings/r/segment-{i:06d}" for i in range(3)
    ]
    await spool.stop()


async def test_spool_resumes_after_restart(tmp_path: Path):
    storage = LocalStorage(tmp_path / "store")
    first = Spool(tmp_path / "spool", storage)
    await first.put("recordings/r/header", b"h")
    await first.put("recordings/r/segment-000000", b"s")
    half = first.open("recordings/r/segment-000001")
    half.write(b"interrupted by a crash")  # never committed
    second = Spool(tmp_path / "spool", storage)  # the process restarted
    await second.start()
    assert await second.drain(within_s=10)
    assert second.stats.discarded_partials == 1
    await half.abort()  # only closes the dead process's file handle; the file is gone
    assert await storage.list("recordings/r/") == [
        "recordings/r/header",
        "recordings/r/segment-000000",
    ]
    await second.stop()


# --- AWS KMS keyring (moto serves KMS at the same endpoint)


async def test_kms_keyring(s3: S3TestServer, tmp_path: Path):
    kms = s3.client("kms")
    key1 = kms.create_key()["KeyMetadata"]["Arn"]
    key2 = kms.create_key()["KeyMetadata"]["Arn"]

    def ring(key: str) -> KmsKeyring:
        return KmsKeyring(key, session=s3.session(), endpoint_url=s3.endpoint_url, max_attempts=1)

    rec = await asyncio.to_thread(new_recording, ring(key1))
    record = rec.key_record
    assert record is not None and rec.key_id == key1 and record.key_id == key1
    assert key1.encode() not in rec.header  # the ARN (account id) is in the database only
    storage = LocalStorage(tmp_path / "store")
    await storage.put(header_object(rec.id), rec.header)
    ((plain, blob),) = encrypted_segments(rec, [100_000])
    await storage.put(segment_object(rec.id, 0), blob)
    await storage.put(manifest_object(rec.id), rec.seal_manifest([rec.verify_segment(0, blob)]))
    # Rotation to another KMS key: ReEncrypt of the key record; no object changes.
    rewrapped = await asyncio.to_thread(rewrap_key_record, record, ring(key2))
    assert rewrapped.key_id == key2
    keys = Keys(ring(key2))
    keys.store.add(rewrapped)  # type: ignore[attr-defined]
    (path,) = await decrypt_recording(storage, rec.id, keys, tmp_path / "out")
    assert path.read_bytes() == plain
    edited = bytearray(record.wrapped)
    edited[-1] ^= 1
    tampered = KeyRecord(rec.id, record.alg, key1, bytes(edited))
    with pytest.raises(WrappedKeyTampered):
        await asyncio.to_thread(partial(open_recording, rec.header, ring(key1), tampered,
                                        expected_id=rec.id))  # fmt: skip
    other = await asyncio.to_thread(new_recording, ring(key1))
    assert other.key_record is not None  # another recording's record: KMS context differs
    moved = KeyRecord(rec.id, other.key_record.alg, key1, other.key_record.wrapped)
    with pytest.raises(WrappedKeyTampered):
        await asyncio.to_thread(partial(open_recording, rec.header, ring(key1), moved,
                                        expected_id=rec.id))  # fmt: skip
    with pytest.raises(WrongKey, match="wrapped by AWS KMS"):
        open_recording(rec.header, MasterKeyring.from_directory(tmp_path / "keys"), record,
                       expected_id=rec.id)  # fmt: skip
    assert not issubclass(WrongKey, UnknownMasterKey)
