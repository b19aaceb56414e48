"""The recording header: the data-key envelope stored as `recordings/RID/header`.

Format 2 (written now): magic, version, recording id, a commitment to the data key, and the
data key sealed under the recording key (recorder.keys.KeyRecord, kept in the database).
It names no master key, no KMS ARN: an object holder learns nothing about the keys.
Format 1 (read for migration only): the data key wrapped directly by a master key.
Both are specified in docs/recording-format.md.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder import (
    HeaderTampered,
    UnsupportedFormat,
    WrappedKeyTampered,
    WrongRecording,
)
from recorder.keys import (
    DATA_KEY_LEN,
    INFO_PREFIX,
    RECORDING_ID_LEN,
    WRAP_ALGORITHMS,
    KeyRecord,
    Keyring,
    WrappedKey,
    hkdf_sha256,
    new_recording_key,
    open_recording_key,
)

MAGIC_HEADER = b"CARH"
HEADER_V1 = 1
HEADER_V2 = 2
_V2_CLEAR = 4 + 1 + RECORDING_ID_LEN + 32 + 12  # magic, version, R, commit, nonce
HEADER_V2_LEN = _V2_CLEAR + DATA_KEY_LEN + 16
# A format 1 header is at most 57 + 255 + 65535 bytes; a reader never reads more.
MAX_HEADER_LEN = 57 + 255 + 65535


def commitment(data_key: bytes, recording_id: bytes) -> bytes:
    return hkdf_sha256(data_key, recording_id, INFO_PREFIX + b"commitment")


def header_version(data: bytes) -> int:
    if len(data) < 5 or data[:4] != MAGIC_HEADER:
        raise UnsupportedFormat("not a callassist recording header (bad magic or too short)")
    if data[4] not in (HEADER_V1, HEADER_V2):
        raise UnsupportedFormat(f"recording header version {data[4]} is not supported")
    return data[4]


def _expect_id(expected_id: str) -> bytes:
    try:
        rid = bytes.fromhex(expected_id)
    except ValueError:
        rid = b""
    if len(rid) != RECORDING_ID_LEN:
        raise ValueError(f"{expected_id!r} is not a recording id (32 hex digits)")
    return rid


def _check_id(found: bytes, expected: bytes) -> None:
    # Before any key is used: a substituted header is refused as what it is.
    if found != expected:
        raise WrongRecording(f"header belongs to recording {found.hex()}, not {expected.hex()}")


# --- format 2


def _header_cipher(recording_key: bytes, recording_id: bytes) -> AESGCM:
    return AESGCM(hkdf_sha256(recording_key, recording_id, INFO_PREFIX + b"header-wrap"))


def seal_header(recording_key: bytes, recording_id: bytes, data_key: bytes) -> bytes:
    clear = (MAGIC_HEADER + bytes([HEADER_V2]) + recording_id
             + commitment(data_key, recording_id) + os.urandom(12))  # fmt: skip
    sealed = _header_cipher(recording_key, recording_id).encrypt(clear[-12:], data_key, clear)
    return clear + sealed


def open_header(header: bytes, recording_key: bytes, expected_id: str) -> bytes:
    """Verify a format 2 header of recording `expected_id`; returns its data key."""
    rid = _expect_id(expected_id)
    if header_version(header) != HEADER_V2:
        raise UnsupportedFormat("expected a format 2 recording header")
    if len(header) != HEADER_V2_LEN:
        raise HeaderTampered(f"recording header is {len(header)} bytes, not {HEADER_V2_LEN}")
    _check_id(bytes(header[5:21]), rid)
    clear = bytes(header[:_V2_CLEAR])
    try:
        data_key = _header_cipher(recording_key, rid).decrypt(
            clear[-12:], bytes(header[_V2_CLEAR:]), clear
        )
    except InvalidTag:
        raise WrappedKeyTampered("recording header: the data key fails authentication under "
                                 "the recording key") from None  # fmt: skip
    if not hmac.compare_digest(commitment(data_key, rid), clear[21:53]):
        raise HeaderTampered("recording header: data key commitment does not match")
    return data_key


def create_header(keyring: Keyring, recording_id: bytes) -> tuple[bytes, bytes, KeyRecord]:
    """A fresh recording key and data key: (data key, header, key record to store)."""
    if len(recording_id) != RECORDING_ID_LEN:
        raise ValueError("recording id must be 16 bytes")
    recording_key, record = new_recording_key(keyring, recording_id)
    data_key = os.urandom(DATA_KEY_LEN)
    return data_key, seal_header(recording_key, recording_id, data_key), record


# --- format 1 (data key wrapped by the master key inside the header): read, then migrate


@dataclass(frozen=True)
class HeaderV1:
    recording_id: bytes
    commitment: bytes
    wrapped: WrappedKey


def v1_prefix(recording_id: bytes) -> bytes:
    return MAGIC_HEADER + bytes([HEADER_V1]) + recording_id


def encode_v1_header(recording_id: bytes, commit: bytes, wrapped: WrappedKey) -> bytes:
    """Format 1, as the recorder wrote it before (tests and the migration test need it)."""
    kid = wrapped.key_id.encode("ascii")
    if not 1 <= len(kid) <= 255 or not 1 <= len(wrapped.blob) <= 65535:
        raise ValueError("key id must be 1..255 bytes and the wrapped key 1..65535 bytes")
    head = v1_prefix(recording_id) + commit + bytes([wrapped.alg, len(kid)]) + kid
    return head + struct.pack(">H", len(wrapped.blob)) + wrapped.blob


def parse_v1_header(data: bytes) -> HeaderV1:
    """Split a format 1 header into its fields; checks only the layout (no key needed)."""
    if header_version(data) != HEADER_V1 or len(data) < 58:
        raise UnsupportedFormat("not a format 1 recording header")
    rid, commit, alg, kid_len = bytes(data[5:21]), bytes(data[21:53]), data[53], data[54]
    if alg not in WRAP_ALGORITHMS:
        raise UnsupportedFormat(f"unknown key-wrapping algorithm {alg} in recording header")
    end_kid = 55 + kid_len
    if kid_len == 0 or len(data) < end_kid + 2:
        raise HeaderTampered("recording header: key id length is inconsistent")
    (blob_len,) = struct.unpack_from(">H", data, end_kid)
    if blob_len == 0 or len(data) != end_kid + 2 + blob_len:
        raise HeaderTampered("recording header: length fields do not match its size")
    try:
        key_id = bytes(data[55:end_kid]).decode("ascii")
    except UnicodeDecodeError:
        raise HeaderTampered("recording header: key id is not ASCII") from None
    return HeaderV1(rid, commit, WrappedKey(alg, key_id, bytes(data[end_kid + 2 :]),
                                            v1_prefix(rid)))  # fmt: skip


def open_v1_header(header: bytes, keyring: Keyring, expected_id: str) -> bytes:
    """Verify a format 1 header of recording `expected_id`; returns its data key."""
    rid = _expect_id(expected_id)
    fields = parse_v1_header(header)
    _check_id(fields.recording_id, rid)
    data_key = keyring.unwrap(fields.wrapped)  # WrongKey, UnknownMasterKey, WrappedKeyTampered
    if len(data_key) != DATA_KEY_LEN or not hmac.compare_digest(
        commitment(data_key, rid), fields.commitment
    ):
        raise HeaderTampered("recording header: data key commitment does not match")
    return data_key


def migrate_v1_header(
    header: bytes, keyring: Keyring, expected_id: str, existing: KeyRecord | None = None
) -> tuple[bytes, KeyRecord]:
    """A format 1 header as format 2: (new header, key record to store). The data key, and
    so every segment and the manifest, stay as they are. `existing`: the key record an
    interrupted migration already stored (it is reused, so a retry completes the job)."""
    data_key = open_v1_header(header, keyring, expected_id)
    rid = bytes.fromhex(expected_id)
    if existing is not None:
        return seal_header(open_recording_key(existing, keyring, expected_id), rid,
                           data_key), existing  # fmt: skip
    recording_key, record = new_recording_key(keyring, rid)
    return seal_header(recording_key, rid, data_key), record
