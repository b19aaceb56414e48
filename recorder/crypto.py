"""Recording encryption format 2: pure logic (bytes in, bytes out; no files, no network).

The byte layouts, key derivations and checks are specified in docs/recording-format.md;
keep the two in step. In short: one random data key per recording, sealed in the header
under a per-recording key that the database keeps wrapped by a master key; every segment
is an AES-256-GCM STREAM (nonce = prefix || chunk counter || last flag)
under a key derived from the data key, the recording id, the segment index and a random
salt; the manifest is AES-GCM-sealed and lists every segment's sizes and SHA-256.

Over 400 lines because the segment writer, sealer and reader are the parts of one STREAM
construction and stay next to the key derivations they share.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder import (
    ChunkTampered,
    HeaderTampered,
    KeyErased,
    ManifestTampered,
    SegmentOutOfOrder,
    SegmentTampered,
    Truncated,
    UnsupportedFormat,
    WrongRecording,
)
from recorder.header import (
    HEADER_V1,
    create_header,
    header_version,
    open_header,
    open_v1_header,
)
from recorder.keys import (
    INFO_PREFIX,
    RECORDING_ID_LEN,
    KeyRecord,
    Keyring,
    hkdf_sha256,
    open_recording_key,
)

MAGIC_SEGMENT = b"CASG"
MAGIC_MANIFEST = b"CAMF"
# Segments and manifests kept their format 1 layout in format 2 (only the header changed),
# so a migrated recording's media objects are used as they are.
FORMAT_VERSION = 1
# A manifest lists ~100 bytes per segment (entry + metadata): 4 MiB is days of video. A
# reader refuses a bigger one before reading it.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
TAG_LEN = 16
DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 1024
# A reader holds one chunk in memory; the bound stops a forged header from asking for more.
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_CHUNKS = 2**32  # the chunk counter is 32 bits; a counter must never repeat under a key

_SEG_BODY = struct.Struct(">4sB16sII32s7s")  # magic, version, rid, index, chunk size, salt, prefix
SEGMENT_HEADER_LEN = _SEG_BODY.size + 32  # + HMAC-SHA256
_ENTRY = struct.Struct(">IQQ32s")  # index, plaintext size, ciphertext size, SHA-256


# --- segments and manifest entries


@dataclass(frozen=True)
class SegmentEntry:
    index: int
    plaintext_size: int
    ciphertext_size: int
    sha256: bytes  # of the whole segment object (header + chunks)


@dataclass(frozen=True)
class Manifest:
    recording_id: str
    complete: bool
    segments: tuple[SegmentEntry, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class Recording:
    """One recording's unwrapped data key and everything derived from it.

    Create with `new_recording` (recorder) or `open_recording` (reader). Holds the data key in
    memory; drop the object when the recording is closed.
    """

    def __init__(
        self, recording_id: bytes, data_key: bytes, header: bytes,
        key_record: KeyRecord | None = None,
    ) -> None:  # fmt: skip
        self.recording_id = recording_id
        self.id = recording_id.hex()
        self.header = header
        # A new recording's key record: the caller stores it (the database) before the header.
        self.key_record = key_record
        self._data_key = data_key
        salt = recording_id
        self._seg_mac_key = hkdf_sha256(data_key, salt, INFO_PREFIX + b"segment-mac")
        self._manifest = AESGCM(hkdf_sha256(data_key, salt, INFO_PREFIX + b"manifest"))

    @property
    def key_id(self) -> str | None:
        """The master key (or KMS key) wrapping the recording key, when known here."""
        return self.key_record.key_id if self.key_record is not None else None

    # segment header: written by SegmentWriter, checked by SegmentReader
    def _segment_header(self, index: int, chunk_size: int, salt: bytes, prefix: bytes) -> bytes:
        body = _SEG_BODY.pack(
            MAGIC_SEGMENT, FORMAT_VERSION, self.recording_id, index, chunk_size, salt, prefix
        )
        return body + hmac.digest(self._seg_mac_key, body, "sha256")

    def _segment_cipher(self, index: int, salt: bytes) -> AESGCM:
        info = INFO_PREFIX + b"segment" + self.recording_id + index.to_bytes(4, "big")
        return AESGCM(hkdf_sha256(self._data_key, salt, info))

    def _check_segment_header(self, index: int, hdr: bytes) -> tuple[AESGCM, int, bytes, bytes]:
        """Verify a segment header; returns (cipher, chunk size, nonce prefix, chunk AAD)."""
        magic, version, rid, found, chunk_size, salt, prefix = _SEG_BODY.unpack_from(hdr)
        if magic != MAGIC_SEGMENT:
            raise UnsupportedFormat(f"segment {index}: not a callassist segment (bad magic)")
        if version != FORMAT_VERSION:
            raise UnsupportedFormat(f"segment {index}: version {version} is not supported")
        if rid != self.recording_id:
            raise WrongRecording(f"segment {index} belongs to recording {rid.hex()}, not {self.id}")
        body = hdr[: _SEG_BODY.size]
        mac = hmac.digest(self._seg_mac_key, body, "sha256")
        if not hmac.compare_digest(mac, hdr[_SEG_BODY.size : SEGMENT_HEADER_LEN]):
            raise HeaderTampered(f"segment {index}: header fails authentication")
        if found != index:
            raise SegmentOutOfOrder(index, found)
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise UnsupportedFormat(f"segment {index}: chunk size {chunk_size} out of range")
        return self._segment_cipher(index, salt), chunk_size, prefix, body

    def segment_writer(self, index: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> SegmentWriter:
        return SegmentWriter(self, index, chunk_size)

    def segment_sealer(self, index: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> SegmentSealer:
        return SegmentSealer(self, index, chunk_size)

    def segment_reader(self, index: int, expect: SegmentEntry | None = None) -> SegmentReader:
        return SegmentReader(self, index, expect)

    def decrypt_segment(
        self, index: int, pieces: Iterable[bytes], expect: SegmentEntry | None = None
    ) -> Iterator[bytes]:
        """Plaintext of one segment, chunk by chunk, each chunk verified before it is yielded.

        Completeness is known only when the iterator finishes without raising: a consumer
        must treat what it received as provisional until then (decrypt_segment_to_file does).
        """
        reader = SegmentReader(self, index, expect)
        for piece in pieces:
            out = reader.feed(piece)
            if out:
                yield out
        yield reader.finish()

    def verify_segment(self, index: int, data: bytes) -> SegmentEntry:
        """Decrypt without output; the entry to list in a recovery manifest."""
        reader = SegmentReader(self, index)
        reader.feed(data)
        reader.finish()
        assert reader.entry is not None
        return reader.entry

    def seal_manifest(
        self,
        segments: Sequence[SegmentEntry],
        *,
        complete: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> bytes:
        for pos, entry in enumerate(segments):
            if entry.index != pos:
                raise ValueError(f"manifest entry {pos} is segment {entry.index}: list 0..n-1")
        meta = json.dumps(metadata or {}, sort_keys=True, separators=(",", ":")).encode()
        body = b"".join(
            (
                bytes([1 if complete else 0]),
                struct.pack(">I", len(segments)),
                *(
                    _ENTRY.pack(e.index, e.plaintext_size, e.ciphertext_size, e.sha256)
                    for e in segments
                ),
                struct.pack(">I", len(meta)),
                meta,
            )
        )
        # A random nonce: the manifest key seals few messages (a recovery manifest, then the
        # final one), so 96-bit random nonces cannot collide in practice.
        clear = MAGIC_MANIFEST + bytes([FORMAT_VERSION]) + self.recording_id + os.urandom(12)
        return clear + self._manifest.encrypt(clear[21:33], body, clear)

    def open_manifest(self, data: bytes) -> Manifest:
        if len(data) > MAX_MANIFEST_SIZE:
            raise ManifestTampered(f"manifest is {len(data)} bytes, over the limit of "
                                   f"{MAX_MANIFEST_SIZE}")  # fmt: skip
        if len(data) < 33 + TAG_LEN or data[:4] != MAGIC_MANIFEST or data[4] != FORMAT_VERSION:
            raise ManifestTampered("not a version 1 callassist manifest (bad magic or version)")
        if data[5:21] != self.recording_id:
            raise ManifestTampered(f"manifest belongs to recording {data[5:21].hex()}")
        try:
            body = self._manifest.decrypt(data[21:33], data[33:], data[:33])
        except InvalidTag:
            raise ManifestTampered("manifest fails authentication") from None
        # The body is authentic, so a malformed one is a writer bug, reported the same way.
        try:
            (count,) = struct.unpack_from(">I", body, 1)
            pos = 5 + count * _ENTRY.size
            entries = tuple(
                SegmentEntry(*_ENTRY.unpack_from(body, 5 + i * _ENTRY.size)) for i in range(count)
            )
            (meta_len,) = struct.unpack_from(">I", body, pos)
            metadata = json.loads(body[pos + 4 : pos + 4 + meta_len])
            if body[0] > 1 or pos + 4 + meta_len != len(body) or not isinstance(metadata, dict):
                raise ValueError("length mismatch")
        except (struct.error, ValueError) as exc:
            raise ManifestTampered(f"manifest body is malformed: {exc}") from None
        if any(e.index != i for i, e in enumerate(entries)):
            raise ManifestTampered("manifest entries are not segments 0..n-1 in order")
        return Manifest(self.id, body[0] == 1, entries, metadata)


def new_recording(keyring: Keyring, recording_id: bytes | None = None) -> Recording:
    """A fresh recording: a new random id (unless given), a new recording key from the
    keyring and a new data key. Store `rec.key_record` (the database) before the header."""
    rid = recording_id if recording_id is not None else os.urandom(RECORDING_ID_LEN)
    data_key, header, record = create_header(keyring, rid)
    return Recording(rid, data_key, header, record)


def open_recording(
    header: bytes, keyring: Keyring, key_record: KeyRecord | None, *, expected_id: str
) -> Recording:
    """Verify the header of recording `expected_id` and unwrap its data key. Nothing is
    decrypted before this succeeds.

    Format 2 needs the recording's key record (KeyErased without it). A format 1 header
    (not migrated yet) carries its own wrapped key and is accepted only while there is no
    key record: once migrated, an old format 1 copy (a backup) is refused.
    """
    if header_version(header) == HEADER_V1:
        if key_record is not None:
            raise HeaderTampered(f"recording {expected_id} was migrated to format 2, but "
                                 "this is its old format 1 header (an older copy): refused")
        data_key = open_v1_header(header, keyring, expected_id)
    else:
        if key_record is None:
            raise KeyErased(f"recording {expected_id}: its key is not in the database (erased, "
                            "or never stored): the media cannot be decrypted")  # fmt: skip
        recording_key = open_recording_key(key_record, keyring, expected_id)
        data_key = open_header(header, recording_key, expected_id)
    return Recording(bytes.fromhex(expected_id), data_key, bytes(header), key_record)


class SegmentWriter:
    """Encrypts one segment incrementally: `write()` and `close()` return ciphertext to store.

    A chunk is sealed only once more plaintext than one chunk is buffered, because whether
    it is the last chunk (nonce flag) must be known when it is sealed.
    """

    def __init__(self, rec: Recording, index: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
        if not 0 <= index < 2**32:
            raise ValueError("segment index must fit in 32 bits")
        salt, self._prefix = os.urandom(32), os.urandom(7)
        # The random salt gives every writer a fresh key, so re-writing segment i (after a
        # crash, say) never reuses a (key, nonce) pair.
        self._header = rec._segment_header(index, chunk_size, salt, self._prefix)
        self._aad = self._header[: _SEG_BODY.size]
        self._cipher = rec._segment_cipher(index, salt)
        self._index, self._chunk = index, chunk_size
        self._buf = bytearray()
        self._counter = 0
        self._hash = hashlib.sha256()
        self._pt_size = self._ct_size = 0
        self._started = False
        self.entry: SegmentEntry | None = None

    def _seal(self, data: bytes | memoryview, last: bool) -> bytes:
        if self._counter >= MAX_CHUNKS:
            raise ValueError("segment too large: chunk counter exhausted")
        ct = self._cipher.encrypt(_nonce(self._prefix, self._counter, last), data, self._aad)
        self._counter += 1
        return ct

    def _emit(self, parts: list[bytes]) -> bytes:
        if not self._started:
            self._started = True
            parts.insert(0, self._header)
        out = parts[0] if len(parts) == 1 else b"".join(parts)  # the usual case: no copy
        self._hash.update(out)
        self._ct_size += len(out)
        return out

    def write(self, data: bytes | bytearray | memoryview) -> bytes:
        if self.entry is not None:
            raise ValueError("segment writer is closed")
        self._buf += data
        self._pt_size += len(data)
        parts: list[bytes] = []
        off, size = 0, self._chunk
        with memoryview(self._buf) as view:
            while len(self._buf) - off > size:
                parts.append(self._seal(view[off : off + size], last=False))
                off += size
        del self._buf[:off]
        return self._emit(parts) if parts or not self._started else b""

    def close(self) -> bytes:
        if self.entry is not None:
            raise ValueError("segment writer is closed")
        out = self._emit([self._seal(bytes(self._buf), last=True)])
        self._buf = bytearray()
        self.entry = SegmentEntry(self._index, self._pt_size, self._ct_size, self._hash.digest())
        return out


class SegmentSealer:
    """Seals the chunks of one segment by number, for a writer that places them itself.

    The same bytes as SegmentWriter (header, then chunk i at `offset(i)`), but a chunk may
    be sealed out of order: the recorder streams chunks 1, 2, ... to the spool file while
    the muxer may still rewrite the start of the file (chunk 0: sizes, duration), which it
    seals last. Each counter is sealed at most once (a second sealing would reuse a nonce
    under the same key), and only one chunk is the final one.
    """

    def __init__(self, rec: Recording, index: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
        if not 0 <= index < 2**32:
            raise ValueError("segment index must fit in 32 bits")
        salt, self._prefix = os.urandom(32), os.urandom(7)  # a fresh key: see SegmentWriter
        self.header = rec._segment_header(index, chunk_size, salt, self._prefix)
        self._aad = self.header[: _SEG_BODY.size]
        self._cipher = rec._segment_cipher(index, salt)
        self.index, self.chunk_size = index, chunk_size
        self._sealed: set[int] = set()
        self._last: int | None = None

    def offset(self, counter: int) -> int:
        """Where chunk `counter` starts in the segment object (every earlier chunk is full)."""
        return SEGMENT_HEADER_LEN + counter * (self.chunk_size + TAG_LEN)

    def seal(self, counter: int, data: bytes | bytearray | memoryview, last: bool) -> bytes:
        if not 0 <= counter < MAX_CHUNKS:
            raise ValueError("segment too large: chunk counter exhausted")
        if counter in self._sealed:
            raise ValueError(f"chunk {counter} of segment {self.index} is sealed already")
        if len(data) > self.chunk_size or (not last and len(data) != self.chunk_size):
            raise ValueError(f"chunk {counter}: {len(data)} bytes (chunks are {self.chunk_size},"
                             " only the final one may be shorter)")  # fmt: skip
        end = self._last
        if (last and end is not None) or (end is not None and counter > end) or (
            last and self._sealed and max(self._sealed) > counter
        ):
            raise ValueError(f"chunk {counter}: only the highest chunk is the final one")
        if last:
            self._last = counter
        self._sealed.add(counter)
        return self._cipher.encrypt(_nonce(self._prefix, counter, last), data, self._aad)

    def entry(self, plaintext_size: int, sha256: bytes) -> SegmentEntry:
        """The manifest entry, once every chunk up to the final one is sealed; `sha256` is
        of the whole object as stored (header + chunks in order)."""
        if self._last is None or len(self._sealed) != self._last + 1:
            raise ValueError(f"segment {self.index}: not every chunk is sealed")
        size = SEGMENT_HEADER_LEN + plaintext_size + TAG_LEN * (self._last + 1)
        return SegmentEntry(self.index, plaintext_size, size, sha256)


class SegmentReader:
    """Push-based decryptor for one segment: `feed()` returns verified plaintext, `finish()`
    checks the end of the stream (and the manifest entry, if given) and returns the rest."""

    def __init__(self, rec: Recording, index: int, expect: SegmentEntry | None = None) -> None:
        self._rec, self._index, self._expect = rec, index, expect
        self._buf = bytearray()
        self._hash = hashlib.sha256()
        self._ct_size = self._pt_size = 0
        self._counter = 0
        self._cipher: AESGCM | None = None  # set once the segment header is verified
        self._chunk = 0
        self._prefix = self._aad = b""
        self.entry: SegmentEntry | None = None

    def _open(self, cipher: AESGCM, data: bytes | memoryview, last: bool) -> bytes:
        if self._counter >= MAX_CHUNKS:
            raise SegmentTampered(self._index, "has more chunks than a counter can number")
        return cipher.decrypt(_nonce(self._prefix, self._counter, last), data, self._aad)

    def feed(self, data: bytes) -> bytes:
        if self.entry is not None:
            raise ValueError("segment reader is finished")
        self._hash.update(data)
        self._ct_size += len(data)
        exp = self._expect
        if exp is not None and self._ct_size > exp.ciphertext_size:
            # Refused before it is buffered: a huge replacement object costs no memory.
            raise SegmentTampered(self._index, f"is over {self._ct_size} bytes, manifest says "
                                  f"{exp.ciphertext_size}")  # fmt: skip
        self._buf += data
        cipher = self._cipher
        if cipher is None:
            if len(self._buf) < SEGMENT_HEADER_LEN:
                return b""
            hdr = bytes(self._buf[:SEGMENT_HEADER_LEN])
            cipher, self._chunk, self._prefix, self._aad = self._rec._check_segment_header(
                self._index, hdr
            )
            self._cipher = cipher
            del self._buf[:SEGMENT_HEADER_LEN]
        step = self._chunk + TAG_LEN
        out: list[bytes] = []
        off = 0
        with memoryview(self._buf) as view:
            # Strictly more than one chunk buffered: this one is not the last.
            while len(self._buf) - off > step:
                try:
                    out.append(self._open(cipher, view[off : off + step], last=False))
                except InvalidTag:
                    raise ChunkTampered(self._index, self._counter) from None
                self._counter += 1
                off += step
        del self._buf[:off]
        plain = b"".join(out)
        self._pt_size += len(plain)
        return plain

    def finish(self) -> bytes:
        if self.entry is not None:
            raise ValueError("segment reader is finished")
        idx, exp = self._index, self._expect
        if exp is not None and self._ct_size < exp.ciphertext_size:
            raise Truncated(idx, f"{self._ct_size} of {exp.ciphertext_size} bytes")
        if exp is not None and self._ct_size > exp.ciphertext_size:
            raise SegmentTampered(
                idx, f"is {self._ct_size} bytes, manifest says {exp.ciphertext_size}"
            )
        cipher = self._cipher
        if cipher is None:
            raise Truncated(idx, f"ends inside its header ({self._ct_size} bytes)")
        if len(self._buf) < TAG_LEN:
            raise Truncated(idx, f"ends inside chunk {self._counter}")
        try:
            last = self._open(cipher, bytes(self._buf), last=True)
        except InvalidTag:
            try:  # a whole chunk that is authentic but not flagged last: the rest was cut off
                self._open(cipher, bytes(self._buf), last=False)
            except InvalidTag:
                raise ChunkTampered(
                    idx,
                    self._counter,
                    "fails authentication as the final chunk (edited, or cut off inside the chunk)",
                ) from None
            raise Truncated(idx, f"chunk {self._counter} is not the final chunk") from None
        if not last and self._counter > 0:
            # Canonical encoding only (as age): an empty final chunk is valid only as the
            # sole chunk of an empty segment; otherwise the previous chunk is the last one.
            raise ChunkTampered(idx, self._counter, "is an empty final chunk after full "
                                "chunks (not a canonical encoding)")  # fmt: skip
        self._pt_size += len(last)
        entry = SegmentEntry(idx, self._pt_size, self._ct_size, self._hash.digest())
        if exp is not None and (exp.sha256, exp.plaintext_size) != (
            entry.sha256,
            entry.plaintext_size,
        ):
            raise SegmentTampered(idx, "is authentic but differs from the manifest (SHA-256)")
        self._buf = bytearray()
        self.entry = entry
        return last


# --- object names: where the pieces of a recording live in a Storage


def header_object(recording_id: str) -> str:
    return f"recordings/{recording_id}/header"


def segment_object(recording_id: str, index: int) -> str:
    return f"recordings/{recording_id}/segment-{index:06d}"


def manifest_object(recording_id: str) -> str:
    return f"recordings/{recording_id}/manifest"
