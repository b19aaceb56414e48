"""A bounded local spool of ciphertext objects awaiting upload, and its uploader.

The recorder writes each encrypted segment here (`open(key)` ... `commit()`); a background
task uploads committed objects in commit order, deletes each local copy only after the
storage verified it, and retries with exponential backoff while the storage is down. State
is the directory itself: after a restart `start()` picks up whatever was committed.

Limits: crossing `limit_bytes` (either way) is reported through `on_limit` and counters
and never fails a write; only the optional `hard_limit_bytes` refuses writes (SpoolFull),
except those marked essential (a recording's small header and manifest).
Callbacks never break the spool: an exception in one is logged and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from recorder import SpoolFull
from recorder.storage import ObjectInfo, Storage, validate_key

log = logging.getLogger(__name__)

GiB = 1024**3
READ_BLOCK = 64 * 1024  # reading a spooled file back: a small fixed buffer


@dataclass(frozen=True)
class SpoolStats:
    size_bytes: int = 0  # committed + being written
    pending: int = 0  # committed objects not yet uploaded
    over_limit: bool = False
    uploaded: int = 0
    uploaded_bytes: int = 0
    failures: int = 0  # failed upload attempts (each is retried)
    limit_crossings: int = 0  # times size went above limit_bytes
    discarded_partials: int = 0  # interrupted writes found at start()
    last_error: str | None = None


class SpoolWriter:
    """One object being written into the spool. `write()` is a plain buffered file write
    (cheap enough for the event loop); `commit()` makes it durable and queues the upload."""

    def __init__(self, spool: Spool, key: str, essential: bool = False) -> None:
        self._spool, self.key, self.size = spool, key, 0
        self._essential = essential
        self._final = spool._path(key)
        self._final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A unique hidden name: start() deletes leftovers, two writers never share a file.
        self._part = self._final.with_name(f".{self._final.name}.{os.urandom(4).hex()}.part")
        fd = os.open(self._part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._fh = os.fdopen(fd, "wb")
        self._done = False

    def write(self, data: bytes) -> None:
        if self._done:
            raise ValueError(f"spool writer for {self.key} is closed")
        self._spool._reserve(len(data), self._essential)
        self._fh.write(data)
        self.size += len(data)

    def write_at(self, offset: int, data: bytes) -> None:
        """Ciphertext at a position (recorder.sink: chunk 0 of a segment goes in last)."""
        if self._done:
            raise ValueError(f"spool writer for {self.key} is closed")
        self._spool._reserve(len(data), self._essential)
        if self._fh.tell() != offset:
            self._fh.seek(offset)
        self._fh.write(data)
        self.size += len(data)

    def sha256(self) -> bytes:
        """SHA-256 of what was written, read back from the file (blocking: run it in a
        thread). One fixed buffer, no block allocated per read: the hash needs the bytes in
        order, and a streamed segment's chunk 0 was written last."""
        self._fh.flush()
        digest, buf = hashlib.sha256(), bytearray(READ_BLOCK)
        view = memoryview(buf)
        with open(self._part, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                digest.update(view[:n])
        return digest.digest()

    def discard_now(self) -> None:
        """Drop this object without waiting (the recorder's pump, which cannot await)."""
        if not self._done:
            self._done = True
            self._fh.close()
            self._part.unlink(missing_ok=True)
            self._spool._release(self.size)

    def _finish(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._part, self._final)
        fd = os.open(self._final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def commit(self) -> None:
        if self._done:
            raise ValueError(f"spool writer for {self.key} is closed")
        self._done = True
        try:
            await asyncio.to_thread(self._finish)
        except BaseException:
            await self._discard()
            raise
        self._spool._committed(self.key, self.size)

    async def _discard(self) -> None:
        def drop() -> None:
            self._fh.close()
            self._part.unlink(missing_ok=True)

        await asyncio.to_thread(drop)
        self._spool._release(self.size)

    async def abort(self) -> None:
        if not self._done:
            self._done = True
            await self._discard()

    async def __aenter__(self) -> SpoolWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.commit()
        else:
            await self.abort()


class Spool:
    def __init__(
        self,
        directory: str | Path,
        storage: Storage,
        *,
        limit_bytes: int = 2 * GiB,
        hard_limit_bytes: int | None = None,
        on_limit: Callable[[bool, int, int], Any] | None = None,  # (over, size, limit)
        on_uploaded: Callable[[str, ObjectInfo], Any] | None = None,
        on_error: Callable[[str, BaseException], Any] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._storage = storage
        self.limit_bytes, self.hard_limit_bytes = limit_bytes, hard_limit_bytes
        self._on_limit, self._on_uploaded, self._on_error = on_limit, on_uploaded, on_error
        self._backoff = (backoff_initial, backoff_max)
        self._queue: dict[str, int] = {}  # key -> generation, in commit order
        self._files: dict[str, int] = {}  # key -> committed size
        self._generation = 0
        self._size = 0
        self._stats = SpoolStats()
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._task: asyncio.Task[None] | None = None

    # --- observability

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def over_limit(self) -> bool:
        return self._stats.over_limit

    @property
    def pending(self) -> list[str]:
        return list(self._queue)

    def pending_bytes(self, prefix: str = "") -> int:
        """Bytes waiting for upload under a key prefix (one recording: its folder)."""
        return sum(n for key, n in self._files.items() if key.startswith(prefix))

    @property
    def stats(self) -> SpoolStats:
        return replace(self._stats, size_bytes=self._size, pending=len(self._queue))

    def _notify(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("spool callback %r failed (ignored)", callback)

    # --- size accounting

    def _reserve(self, n: int, essential: bool = False) -> None:
        hard = self.hard_limit_bytes
        if hard is not None and not essential and self._size + n > hard:
            raise SpoolFull(
                f"spool {self.directory} holds {self._size} bytes; {n} more would pass its "
                f"hard limit of {self.hard_limit_bytes}"
            )
        self._size += n
        self._check_limit()

    def _release(self, n: int) -> None:
        self._size -= n
        self._check_limit()

    def _check_limit(self) -> None:
        over = self._size > self.limit_bytes
        if over == self._stats.over_limit:
            return
        crossings = self._stats.limit_crossings + (1 if over else 0)
        self._stats = replace(self._stats, over_limit=over, limit_crossings=crossings)
        state = "over" if over else "back under"
        level = logging.WARNING if over else logging.INFO
        log.log(level, "recording spool %s its limit: %d of %d bytes", state, self._size,
                self.limit_bytes)  # fmt: skip
        self._notify(self._on_limit, over, self._size, self.limit_bytes)

    def _committed(self, key: str, size: int) -> None:
        if key in self._files:  # replaced an object still waiting: its old bytes are gone
            self._release(self._files[key])
        self._files[key] = size
        self._generation += 1
        self._queue[key] = self._generation
        self._empty.clear()
        self._wake.set()

    def _path(self, key: str) -> Path:
        return self.directory / validate_key(key)

    # --- writing

    def open(self, key: str, *, essential: bool = False) -> SpoolWriter:
        """Start writing ciphertext for `key`; `commit()` (or leaving `async with`) queues it."""
        return SpoolWriter(self, key, essential)

    async def put(self, key: str, data: bytes, *, essential: bool = False) -> None:
        """`essential`: a small object without which the others are useless (a recording's
        header or manifest); it is accepted even beyond the hard limit."""
        async with self.open(key, essential=essential) as writer:
            writer.write(data)

    # --- uploading

    def _scan(self) -> tuple[list[tuple[str, int]], int]:
        found, discarded = [], 0
        for path in self.directory.rglob("*"):
            if not path.is_file():
                continue
            if path.name.startswith("."):
                # An interrupted write holds an incomplete STREAM (no final chunk): no reader
                # could ever accept it, so it is dropped rather than uploaded.
                path.unlink()
                discarded += 1
                continue
            st = path.stat()
            found.append((st.st_mtime_ns, path.relative_to(self.directory).as_posix(), st.st_size))
        found.sort()  # oldest first: the header before its segments, the manifest last
        return [(key, size) for _, key, size in found], discarded

    async def start(self) -> None:
        """Queue what an earlier run left committed, then start uploading."""
        if self._task is not None:
            return
        found, discarded = await asyncio.to_thread(self._scan)
        self._stats = replace(
            self._stats, discarded_partials=self._stats.discarded_partials + discarded
        )
        if discarded:
            log.warning("recording spool: dropped %d interrupted partial writes", discarded)
        for key, size in found:
            if key not in self._files:
                self._size += size
                self._committed(key, size)
        self._check_limit()
        self._task = asyncio.create_task(self._run(), name="recording-spool-uploader")

    async def drain(self, within_s: float | None = None) -> bool:
        """Wait (up to `within_s`, None = forever) until every committed object is uploaded;
        False if that did not happen in time."""
        try:
            await asyncio.wait_for(self._empty.wait(), within_s)
        except TimeoutError:
            return False
        return True

    async def stop(self, drain_within_s: float | None = 0.0) -> bool:
        """Stop uploading (after draining up to `drain_within_s`); what is left stays on disk."""
        drained = await self.drain(drain_within_s) if drain_within_s != 0 else not self._queue
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return drained

    async def _run(self) -> None:
        delay = self._backoff[0]
        while True:
            if not self._queue:
                self._empty.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            key, generation = next(iter(self._queue.items()))
            path = self._path(key)
            try:
                info = await self._storage.put(key, path)
            except FileNotFoundError:  # deleted behind our back: nothing left to upload
                self._forget(key)
                continue
            except Exception as exc:
                self._stats = replace(
                    self._stats,
                    failures=self._stats.failures + 1,
                    last_error=f"{key}: {type(exc).__name__}: {exc}",
                )
                log.warning("upload of %s failed (retrying in %.1f s): %s", key, delay, exc)
                self._notify(self._on_error, key, exc)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter: no herd
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            if self._queue.get(key) == generation:  # not re-committed during the upload
                await asyncio.to_thread(path.unlink, True)
                self._forget(key)
            self._stats = replace(
                self._stats,
                uploaded=self._stats.uploaded + 1,
                uploaded_bytes=self._stats.uploaded_bytes + info.size,
            )
            self._notify(self._on_uploaded, key, info)

    async def discard(self, key: str) -> None:
        """Remove a committed object that must not stand (e.g. one of several objects that
        belong together, when a later one failed). An upload already under way may still
        complete: the caller deletes the key from the storage too."""
        await asyncio.to_thread(self._path(key).unlink, True)
        self._forget(key)

    def _forget(self, key: str) -> None:
        self._queue.pop(key, None)
        self._release(self._files.pop(key, 0))
