"""Where ciphertext lives: `LocalStorage` (a directory) and `S3Storage` (an EU/EEA bucket).

Only ciphertext passes through here (recorder.crypto encrypts first). Both backends share
one small async interface; S3's blocking boto3 calls run in worker threads. `put` returns
only once the stored object has been verified, so a caller may then delete its local copy.
Readers stream (`iter`), so no object is ever held whole in memory.

Over 400 lines because both backends and S3's upload verification, multipart, version and
lifecycle handling belong together; reading recordings back is in recorder.reading.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from recorder import (
    ObjectNotFound,
    RegionNotAllowed,
    StorageError,
    UploadVerificationFailed,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# Copying or hashing a spooled file: small blocks, under glibc's mmap threshold (128 KiB).
COPY_BLOCK = 64 * 1024
# AWS regions inside the EU/EEA. Not London (eu-west-2) nor Zurich (eu-central-2): "eu-" in
# a region name is not "EU". Extend deliberately, e.g. with eu-central-2 after a DPA review.
EU_EEA_REGIONS: tuple[str, ...] = (
    "eu-west-1",  # Ireland
    "eu-west-3",  # Paris
    "eu-central-1",  # Frankfurt
    "eu-north-1",  # Stockholm
    "eu-south-1",  # Milan
    "eu-south-2",  # Spain
)
MIN_PART_SIZE = 5 * MiB  # S3 refuses smaller parts (except the last) with EntityTooSmall
MAX_PARTS = 10_000
_KEY_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # no leading dot: temp files have one


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str  # hex, of the stored bytes


class Storage(Protocol):
    async def put(self, key: str, data: bytes | Path) -> ObjectInfo: ...
    async def get(self, key: str) -> bytes: ...
    # Readers stream (bounded memory, whatever an object's size): blocks of at most `block`.
    def iter(self, key: str, block: int = MiB) -> AsyncIterator[bytes]: ...
    async def delete(self, key: str) -> None: ...
    async def list(self, prefix: str = "") -> list[str]: ...
    async def exists(self, key: str) -> bool: ...


class ObjectTooLarge(StorageError):
    def __init__(self, key: str, limit: int) -> None:
        super().__init__(f"{key} is larger than {limit} bytes: refused before reading it all")
        self.key, self.limit = key, limit


def validate_key(key: str) -> str:
    """Keys are `a/b/c` paths of [A-Za-z0-9._-] names; nothing that could escape a directory."""
    if not key or not all(_KEY_PART.fullmatch(part) for part in key.split("/")):
        raise ValueError(f"invalid object key {key!r}: use a/b/c names of [A-Za-z0-9._-]")
    return key


def check_region(bucket: str, region: str | None, allowed: tuple[str, ...]) -> str:
    """The region if it is allowed; RegionNotAllowed naming it otherwise (None included)."""
    if region is None or region not in allowed:
        raise RegionNotAllowed(bucket, region, allowed)
    return region


def _blocks(data: bytes | Path, size: int) -> Iterator[bytes]:
    if isinstance(data, bytes):
        for off in range(0, len(data), size):
            yield data[off : off + size]
        return
    with open(data, "rb") as fh:
        while block := fh.read(size):
            yield block


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _published(path: Path) -> Iterator[Path]:
    """A temp name beside `path` to fill; on success renamed to `path` and the directory
    fsynced (a reader sees all of it or nothing), on failure removed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.urandom(4).hex()}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_atomic(path: Path, blocks: Iterator[bytes]) -> ObjectInfo:
    """temp file (0600) + fsync + rename + fsync(dir): a reader sees all of it or nothing."""
    digest, size = hashlib.sha256(), 0
    with _published(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            for block in blocks:
                out.write(block)
                digest.update(block)
                size += len(block)
            out.flush()
            os.fsync(out.fileno())
    return ObjectInfo(path.name, size, digest.hexdigest())


class _CannotLink(Exception):
    """The filesystem cannot hard-link here (link_atomic's caller copies instead)."""


def link_atomic(path: Path, source: Path) -> ObjectInfo | None:
    """`source` stored at `path` as a hard link, not a copy: the spool's committed file
    and the storage directory are on one filesystem in the embedded layout, and a copy
    wrote and fsynced every recorded byte a second time, in the recording node's CPU
    (docs/media-performance.md, "The recorder's local storage"). The hash is read back
    from the stored inode; the file is fsynced (a no-op for the spool's, already synced)
    before its name appears, and the directory after. None when the filesystem cannot
    link (another device, no hard links): the caller copies."""
    digest, size = hashlib.sha256(), 0
    try:
        with _published(path) as tmp:
            try:
                os.link(source, tmp)
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise _CannotLink from exc
                raise
            buf = bytearray(COPY_BLOCK)
            view = memoryview(buf)
            with open(tmp, "rb", buffering=0) as fh:
                while n := fh.readinto(buf):
                    digest.update(view[:n])
                    size += n
                os.fsync(fh.fileno())
    except _CannotLink:
        return None
    return ObjectInfo(path.name, size, digest.hexdigest())


class LocalStorage:
    """A directory as object storage (embedded installs, tests). Files are 0600; a file
    handed over by path (the spool's) is linked in when it can be (`link_atomic`)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / validate_key(key)

    def _put(self, key: str, data: bytes | Path) -> ObjectInfo:
        path = self._path(key)
        info = link_atomic(path, data) if isinstance(data, Path) else None
        if info is None:
            info = write_atomic(path, _blocks(data, COPY_BLOCK))
        if path.stat().st_size != info.size:
            raise UploadVerificationFailed(f"{key}: stored size differs from what was written")
        return ObjectInfo(key, info.size, info.sha256)

    async def put(self, key: str, data: bytes | Path) -> ObjectInfo:
        return await asyncio.to_thread(self._put, key, data)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    async def iter(self, key: str, block: int = MiB) -> AsyncIterator[bytes]:
        try:
            fh = await asyncio.to_thread(open, self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        try:
            while data := await asyncio.to_thread(fh.read, block):
                yield data
        finally:
            fh.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)

    async def list(self, prefix: str = "") -> list[str]:
        def walk() -> list[str]:
            keys = (p.relative_to(self.directory).as_posix() for p in self.directory.rglob("*"))
            return sorted(k for k in keys if k.startswith(prefix) and "/." not in f"/{k}"
                          and (self.directory / k).is_file())  # fmt: skip

        return await asyncio.to_thread(walk)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class S3Storage:
    """An S3 bucket that must be in an allowed EU/EEA region (checked before any use)."""

    def __init__(
        self,
        bucket: str,
        region_allow_list: tuple[str, ...] = EU_EEA_REGIONS,
        endpoint_url: str | None = None,
        *,
        region_name: str | None = None,
        session: Any = None,
        max_attempts: int = 5,
        multipart_threshold: int = 16 * MiB,
        part_size: int = 8 * MiB,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        server_side_encryption: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3 minimum)")
        self.bucket = bucket
        self.allowed = tuple(region_allow_list)
        self.multipart_threshold, self.part_size = multipart_threshold, part_size
        self.region: str | None = None  # set by a successful check()
        # SSE on top of our own encryption is harmless; "aws:kms" makes ETags non-MD5.
        self._sse = (
            {"ServerSideEncryption": server_side_encryption} if server_side_encryption else {}
        )
        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self._client = (session or boto3.session.Session()).client(
            "s3", region_name=region_name, endpoint_url=endpoint_url, config=config
        )

    def _check(self) -> str:
        from botocore.exceptions import ClientError

        error: ClientError | None = None
        try:
            meta = self._client.head_bucket(Bucket=self.bucket)["ResponseMetadata"]
        except ClientError as exc:  # 301/403 still carry the region header
            error, meta = exc, exc.response.get("ResponseMetadata", {})
        # HeadBucket's header, not GetBucketLocation (None for us-east-1, "EU" for eu-west-1).
        region = meta.get("HTTPHeaders", {}).get("x-amz-bucket-region")
        if error is not None and region is None:
            code = error.response.get("Error", {}).get("Code", "?")
            raise StorageError(f"S3 bucket {self.bucket!r}: HeadBucket failed ({code})") from error
        check_region(self.bucket, region, self.allowed)
        if error is not None:
            raise StorageError(f"S3 bucket {self.bucket!r} in {region}: {error}") from error
        return str(region)

    async def check(self) -> str:
        """Refuse (RegionNotAllowed) unless the bucket is in an allowed region; returns it."""
        self.region = await asyncio.to_thread(self._check)
        return self.region

    async def _ready(self) -> None:
        if self.region is None:  # defence in depth: nothing is sent before the region check
            await self.check()

    def _verify(self, key: str, size: int, checksum: str, etag: str) -> None:
        head = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        if head["ContentLength"] != size:
            raise UploadVerificationFailed(
                f"{key}: stored {head['ContentLength']} bytes, sent {size}"
            )
        stored = head.get("ChecksumSHA256")
        if stored:  # composite multipart checksums look like "base64-N"
            if stored.split("-")[0] != checksum:
                raise UploadVerificationFailed(f"{key}: stored SHA-256 differs from what was sent")
            return
        if head.get("ETag", "").strip('"') == etag:
            return
        if head.get("ServerSideEncryption") == "aws:kms":
            return  # ETag is not an MD5 under SSE-KMS; S3 already checked our Content-MD5
        raise UploadVerificationFailed(f"{key}: neither checksum nor ETag matches what was sent")

    def _put(self, key: str, data: bytes | Path) -> ObjectInfo:
        validate_key(key)
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        if size > self.multipart_threshold:
            return self._put_multipart(key, data, size)
        sha_h, md5_h = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        for block in _blocks(data, COPY_BLOCK):
            sha_h.update(block)
            md5_h.update(block)
        sha, md5 = sha_h.digest(), md5_h.digest()
        # A spooled file is sent from the file (botocore reads it in small blocks), never
        # read whole into memory (issue 18: MB-sized blocks fragment the heap).
        with contextlib.ExitStack() as stack:
            body = data if isinstance(data, bytes) else stack.enter_context(open(data, "rb"))
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentMD5=_b64(md5),
                ChecksumSHA256=_b64(sha), Metadata={"sha256": sha.hex()}, **self._sse,
            )  # fmt: skip
        self._verify(key, size, _b64(sha), md5.hex())
        return ObjectInfo(key, size, sha.hex())

    def _put_multipart(self, key: str, data: bytes | Path, size: int) -> ObjectInfo:
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        whole = hashlib.sha256()
        for block in _blocks(data, MiB):
            whole.update(block)
        upload = self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256",
            Metadata={"sha256": whole.hexdigest()}, **self._sse,
        )  # fmt: skip
        ref = {"Bucket": self.bucket, "Key": key, "UploadId": upload["UploadId"]}
        shas, md5s, parts = [], [], []
        try:
            for number, block in enumerate(_blocks(data, part_size), start=1):
                sha = hashlib.sha256(block).digest()
                md5 = hashlib.md5(block, usedforsecurity=False).digest()
                r = self._client.upload_part(
                    **ref, PartNumber=number, Body=block, ContentMD5=_b64(md5),
                    ChecksumSHA256=_b64(sha),
                )  # fmt: skip
                shas.append(sha)
                md5s.append(md5)
                parts.append({"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": _b64(sha)})
            self._client.complete_multipart_upload(**ref, MultipartUpload={"Parts": parts})
        except BaseException:
            try:  # parts of an abandoned upload are billed until aborted (or a lifecycle rule)
                self._client.abort_multipart_upload(**ref)
            except Exception:
                log.warning("could not abort multipart upload of %s", key, exc_info=True)
            raise
        composite = _b64(hashlib.sha256(b"".join(shas)).digest())
        etag = f"{hashlib.md5(b''.join(md5s), usedforsecurity=False).hexdigest()}-{len(parts)}"
        self._verify(key, size, composite, etag)
        return ObjectInfo(key, size, whole.hexdigest())

    async def put(self, key: str, data: bytes | Path) -> ObjectInfo:
        await self._ready()
        return await asyncio.to_thread(self._put, key, data)

    def _get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from None
            raise

    async def get(self, key: str) -> bytes:
        await self._ready()
        return await asyncio.to_thread(self._get, validate_key(key))

    def _open_body(self, key: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from None
            raise

    async def iter(self, key: str, block: int = MiB) -> AsyncIterator[bytes]:
        await self._ready()
        body = await asyncio.to_thread(self._open_body, validate_key(key))
        try:
            while data := await asyncio.to_thread(body.read, block):
                yield data
        finally:
            body.close()

    def _purge_noncurrent(self, key: str) -> int:
        pages = self._client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=key
        )
        old = [
            {"Key": key, "VersionId": v["VersionId"]}
            for page in pages
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            if v["Key"] == key and not v.get("IsLatest")
        ]
        for start in range(0, len(old), 1000):
            r = self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": old[start : start + 1000], "Quiet": True}
            )
            if r.get("Errors"):
                raise StorageError(f"{key}: could not delete old versions: {r['Errors'][0]}")
        return len(old)

    async def purge_noncurrent(self, key: str) -> int:
        """Delete every older version of `key` (versioned bucket), keep the current one:
        a replaced header must leave no older, still decryptable copy behind."""
        await self._ready()
        return await asyncio.to_thread(self._purge_noncurrent, validate_key(key))

    def _delete(self, key: str) -> None:
        # Every version and delete marker: on a versioned bucket a plain DeleteObject only
        # hides the data, and crypto-shredding a header must really destroy it.
        pages = self._client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=key
        )
        doomed = [
            {"Key": key, "VersionId": v["VersionId"]}
            for page in pages
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            if v["Key"] == key
        ]
        for start in range(0, len(doomed), 1000):
            r = self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
            )
            if r.get("Errors"):
                raise StorageError(f"{key}: could not delete every version: {r['Errors'][0]}")

    async def delete(self, key: str) -> None:
        await self._ready()
        await asyncio.to_thread(self._delete, validate_key(key))

    def _list(self, prefix: str) -> list[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    async def list(self, prefix: str = "") -> list[str]:
        await self._ready()
        return await asyncio.to_thread(self._list, prefix)

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def exists(self, key: str) -> bool:
        await self._ready()
        return await asyncio.to_thread(self._exists, validate_key(key))

    LIFECYCLE_RULE_ID = "callassist-abort-incomplete-multipart"

    def _ensure_abort_rule(self, days: int) -> bool:
        from botocore.exceptions import ClientError

        try:
            rules = self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                raise
            rules = []
        ours = {
            "ID": self.LIFECYCLE_RULE_ID,
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
        }
        if any(r.get("ID") == ours["ID"] and r.get("AbortIncompleteMultipartUpload") ==
               ours["AbortIncompleteMultipartUpload"] and r.get("Status") == "Enabled"
               for r in rules):  # fmt: skip
            return False
        # Keep every other rule of the bucket: the configuration is replaced as a whole.
        rules = [r for r in rules if r.get("ID") != ours["ID"]] + [ours]
        self._client.put_bucket_lifecycle_configuration(
            Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
        )
        return True

    async def ensure_abort_multipart_rule(self, days: int) -> bool:
        """Make sure a lifecycle rule aborts multipart uploads left unfinished for `days`
        (their parts are billed until then). Returns whether the rule had to be written."""
        await self._ready()
        return await asyncio.to_thread(self._ensure_abort_rule, days)
