"""An encrypting, seekable file for the muxer: a segment goes to the spool as it is muxed.

PyAV writes the segment file into an `EncryptingSink` (write, seek, tell). The sink holds
the first chunk (64 KiB) of plaintext, the only region the Matroska/WebM muxer goes back
to (when it closes a file it seeks to the start to fill in the segment size, duration and
seek head, all within its first ~1 KiB), and seals every later chunk into the target (the
spool file) as soon as the next chunk has begun: a chunk's nonce says whether it is the
final one, so the last bytes are held until `finish()`. Memory per segment is therefore
fixed, at most two chunks of plaintext whatever the segment's length, and the plaintext
never touches a disk.

The object is byte for byte what SegmentWriter writes (docs/recording-format.md): the
segment header, then chunk i at its fixed offset; chunk 0 is sealed last, into the place
kept for it. The sink never raises into the muxer: a failing target (the spool's hard
limit, a disk error) or a write into a chunk already sealed (a muxer that goes further
back than the first chunk) sets `error`, later bytes are dropped, and the recorder counts
the segment as lost, so nothing wrong is ever stored.
"""

from __future__ import annotations

import contextlib
import os
from typing import Protocol

from recorder.crypto import SegmentSealer


class ChunkTarget(Protocol):
    """Where the ciphertext goes (recorder.spool.SpoolWriter): bytes at an offset."""

    def write_at(self, offset: int, data: bytes) -> None: ...


class EncryptingSink:
    def __init__(self, sealer: SegmentSealer, target: ChunkTarget) -> None:
        self._sealer, self._target = sealer, target
        self._chunk = sealer.chunk_size
        self._head = bytearray()  # plaintext [0, chunk): rewritten by the muxer at the end
        self._tail = bytearray()  # plaintext from _tail_start on, not sealed yet
        self._tail_start = self._chunk
        self._pos = self._size = 0
        self.error: BaseException | None = None
        self.finished = False
        with contextlib.suppress(Exception):  # kept in self.error, reported at the end
            self._put(0, sealer.header)

    @property
    def plaintext_size(self) -> int:
        return self._size

    @property
    def peak_buffered(self) -> int:
        """Plaintext bytes held now (a test's bound: never more than ~2 chunks + one write)."""
        return len(self._head) + len(self._tail)

    # --- the file interface PyAV uses (pyio: write, seek, tell, seekable, writable)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError("seek before the start of the segment")
        self._pos = base + offset
        return self._pos

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        pos, self._pos = self._pos, self._pos + n
        self._size = max(self._size, self._pos)
        if self.error is None and not self.finished:
            try:
                self._place(pos, memoryview(data))
            except Exception as exc:  # recorded, reported at the segment's end: see above
                self._fail(exc)
        return n

    # --- the end

    def finish(self) -> None:
        """Seal the final chunk and chunk 0. Afterwards `plaintext_size` and the target hold
        the whole segment; the caller hashes the object and asks the sealer for its entry."""
        if self.finished:
            return
        self.finished = True
        if self.error is None:
            try:
                self._seal_rest()
            except Exception as exc:
                self._fail(exc)
        self._head, self._tail = bytearray(), bytearray()

    def _seal_rest(self) -> None:
        chunk, size = self._chunk, self._size
        _fill(self._head, min(size, chunk))
        if size > chunk:
            _fill(self._tail, size - self._tail_start)
            counter = self._tail_start // chunk
            self._put(self._sealer.offset(counter),
                      self._sealer.seal(counter, self._tail, last=True))  # fmt: skip
            self._put(self._sealer.offset(0), self._sealer.seal(0, self._head, last=False))
        else:
            self._put(self._sealer.offset(0), self._sealer.seal(0, self._head, last=True))

    # --- internals

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self._head, self._tail = bytearray(), bytearray()

    def _put(self, offset: int, data: bytes) -> None:
        try:
            self._target.write_at(offset, data)
        except Exception as exc:
            self._fail(exc)
            raise

    def _place(self, pos: int, view: memoryview) -> None:
        chunk = self._chunk
        if pos < chunk:
            k = min(len(view), chunk - pos)
            _write_into(self._head, pos, view[:k])
            pos, view = pos + k, view[k:]
        if not view:
            return
        if pos < self._tail_start:
            raise OSError(f"the muxer rewrote byte {pos}, in a chunk already encrypted")
        _write_into(self._tail, pos - self._tail_start, view)
        # Strictly more than a chunk: the chunk sealed now is certainly not the final one.
        while len(self._tail) > chunk:
            counter = self._tail_start // chunk
            with memoryview(self._tail) as whole:
                sealed = self._sealer.seal(counter, whole[:chunk], last=False)
            del self._tail[:chunk]  # bytearray: cheap at the front, no new block
            self._tail_start += chunk
            self._put(self._sealer.offset(counter), sealed)


def _write_into(buf: bytearray, off: int, view: memoryview) -> None:
    _fill(buf, off)
    buf[off : off + len(view)] = view


def _fill(buf: bytearray, size: int) -> None:
    """Zeros up to `size` (bytes a muxer skipped over by seeking forward)."""
    if len(buf) < size:
        buf.extend(bytes(size - len(buf)))
