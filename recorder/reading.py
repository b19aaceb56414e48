"""Reading a recording back from a Storage, in bounded memory: small objects (header,
manifest) with a size limit, segments streamed block by block and decrypted chunk by chunk.
Plaintext files appear only when everything verified (temp file + rename).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from recorder import (
    HeaderMissing,
    HeaderTampered,
    ManifestMissing,
    ManifestTampered,
    ObjectNotFound,
    RecordingIncomplete,
    SegmentMissing,
)
from recorder.crypto import (
    MAX_MANIFEST_SIZE,
    Recording,
    SegmentEntry,
    header_object,
    manifest_object,
    open_recording,
    segment_object,
)
from recorder.header import MAX_HEADER_LEN
from recorder.storage import ObjectTooLarge, Storage, validate_key, write_atomic
from recorder.vault import Keys


class ObjectSource:
    """Reads objects from the spool directory (if given and present) or else the storage."""

    def __init__(self, storage: Storage, spool_dir: Path | None = None) -> None:
        self.storage = storage
        self.spool_dir = spool_dir

    def _spooled(self, key: str) -> Path | None:
        if self.spool_dir is None:
            return None
        path = self.spool_dir / validate_key(key)
        return path if path.is_file() else None

    async def iter(self, key: str, block: int = 1024 * 1024) -> AsyncIterator[bytes]:
        """The object in blocks (bounded memory), from the spool or else the storage."""
        path = await asyncio.to_thread(self._spooled, key)
        fh = None
        if path is not None:
            # FileNotFoundError: uploaded (and removed) meanwhile, the storage has it.
            with contextlib.suppress(FileNotFoundError):
                fh = await asyncio.to_thread(open, path, "rb")
        if fh is None:
            async for data in self.storage.iter(key, block):
                yield data
            return
        try:
            while data := await asyncio.to_thread(fh.read, block):
                yield data
        finally:
            fh.close()

    async def get_limited(self, key: str, limit: int) -> bytes:
        """A small object, refused (ObjectTooLarge) once it passes `limit` bytes."""
        out = bytearray()
        async with contextlib.aclosing(self.iter(key)) as blocks:
            async for block in blocks:
                out += block
                if len(out) > limit:
                    raise ObjectTooLarge(key, limit)
        return bytes(out)

    async def get(self, key: str) -> bytes:
        """A header or manifest (never a segment: use iter)."""
        return await self.get_limited(key, max(MAX_HEADER_LEN, MAX_MANIFEST_SIZE))

    async def exists(self, key: str) -> bool:
        if await asyncio.to_thread(self._spooled, key) is not None:
            return True
        return await self.storage.exists(key)

    async def recording_ids(self) -> list[str]:
        ids = {k.split("/")[1] for k in await self.storage.list("recordings/") if k.count("/") == 2}
        if self.spool_dir is not None and (self.spool_dir / "recordings").is_dir():
            ids.update(p.name for p in (self.spool_dir / "recordings").iterdir() if p.is_dir())
        return sorted(ids)


def decrypt_segment_to_file(
    rec: Recording, index: int, pieces: Iterable[bytes], dest: Path,
    expect: SegmentEntry | None = None,
) -> int:  # fmt: skip
    """Decrypt one segment into `dest` (0600); on any error no file is left. Returns its size."""
    return write_atomic(dest, rec.decrypt_segment(index, pieces, expect)).size


async def decrypt_stream_to_file(
    rec: Recording, index: int, blocks: AsyncIterator[bytes], dest: Path,
    expect: SegmentEntry | None = None, *, atomic: bool = True,
) -> int:  # fmt: skip
    """Decrypt one segment as it is read (memory: one block and one chunk) into `dest`
    (0600; temp file + rename unless not `atomic`, for a caller's own temp file): on any
    error no file is left. Returns its size."""
    reader = rec.segment_reader(index, expect)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.urandom(4).hex()}") if atomic else dest
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if atomic else os.O_TRUNC)
    fd = os.open(tmp, flags, 0o600)
    size = 0
    try:
        async with contextlib.aclosing(blocks):  # closed (file, S3 body) even on error
            with os.fdopen(fd, "wb") as out:
                async for block in blocks:
                    plain = await asyncio.to_thread(reader.feed, block)
                    out.write(plain)
                    size += len(plain)
                last = reader.finish()
                out.write(last)
                size += len(last)
                out.flush()
                if atomic:
                    os.fsync(out.fileno())
        if atomic:
            os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


async def read_limited(storage: Storage, key: str, limit: int) -> bytes:
    """A small object (header, manifest), refused once it passes `limit` bytes: a forged
    huge one is never held in memory."""
    return await ObjectSource(storage).get_limited(key, limit)


async def decrypt_recording(
    storage: Storage, recording_id: str, keys: Keys, out_dir: str | Path, *,
    allow_incomplete: bool = False, suffix: str = ".webm",
) -> list[Path]:  # fmt: skip
    """Verify and decrypt a whole recording into `out_dir/segment-NNNNNN<suffix>`.

    All or nothing: segments are staged in a hidden directory and moved into place only
    after the header, the manifest and every segment verified.
    """
    try:
        header = await read_limited(storage, header_object(recording_id), MAX_HEADER_LEN)
    except ObjectNotFound:
        raise HeaderMissing(f"recording {recording_id} has no header (shredded?)") from None
    except ObjectTooLarge:
        raise HeaderTampered(f"recording {recording_id}: the header is too large") from None
    record = await keys.record(recording_id)
    rec = await asyncio.to_thread(  # a KMS keyring blocks
        open_recording, header, keys.keyring, record, expected_id=recording_id
    )
    try:
        manifest = rec.open_manifest(
            await read_limited(storage, manifest_object(recording_id), MAX_MANIFEST_SIZE)
        )
    except ObjectNotFound:
        raise ManifestMissing(f"recording {recording_id} has no manifest") from None
    except ObjectTooLarge as exc:
        raise ManifestTampered(str(exc)) from None
    if not manifest.complete and not allow_incomplete:
        raise RecordingIncomplete(f"recording {recording_id} has only a recovery manifest")
    out = Path(out_dir)
    staging = out / f".partial-{recording_id}-{os.urandom(4).hex()}"
    await asyncio.to_thread(staging.mkdir, 0o700, True)
    try:
        names = []
        for entry in manifest.segments:
            names.append(f"segment-{entry.index:06d}{suffix}")
            blocks = storage.iter(segment_object(recording_id, entry.index))
            try:
                await decrypt_stream_to_file(rec, entry.index, blocks, staging / names[-1],
                                             entry)  # fmt: skip
            except ObjectNotFound:
                raise SegmentMissing(entry.index) from None
        await asyncio.to_thread(lambda: [os.replace(staging / n, out / n) for n in names])
        return [out / name for name in names]
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
