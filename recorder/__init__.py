"""Encrypted recordings: format (recorder.crypto), keys (recorder.keys), storage
(recorder.storage), the upload spool (recorder.spool), the recorder that joins a room as a
participant (recorder.participant) and muxes encoded frames without re-encoding
(recorder.mux), and reading recordings back: verify, crash recovery, export
(recorder.recovery).

The errors live here, at package level, so every module (and every caller) names them the
same way and no submodule has to import another just for an exception class. This module
imports nothing from its submodules: importing `recorder` stays cheap and cycle-free.
"""

from __future__ import annotations


class RecordingError(Exception):
    """Base class: the recording cannot be decrypted as it is."""


class HeaderTampered(RecordingError):
    """A recording or segment header is malformed, edited or belongs to something else."""


class WrongRecording(HeaderTampered):
    """An object (header, segment, manifest, key record) belongs to another recording than
    the one asked for: a substitution."""


class UnsupportedFormat(HeaderTampered):
    """Wrong magic or an unknown version/algorithm: not something this code wrote."""


class WrappedKeyTampered(HeaderTampered):
    """The wrapped data key fails authentication under the right master key."""


class WrongKey(RecordingError):
    """The keyring's key is not the one this recording was wrapped with."""


class UnknownMasterKey(WrongKey):
    """The header names a master key id the keyring does not hold (retired or foreign)."""


class KeyErased(RecordingError):
    """The recording's key is not in the database: it was erased (crypto-shredded) with the
    recording, or never stored. Its media can no longer be decrypted by anyone."""


class RecordingMismatch(RecordingError):
    """The recording's objects disagree with its database row (session, kind, state,
    segment count, sizes): authentic objects, but not the recording the database lists."""


class ChunkTampered(RecordingError):
    def __init__(self, segment: int, chunk: int, detail: str = "fails authentication") -> None:
        super().__init__(f"segment {segment}, chunk {chunk} {detail}")
        self.segment, self.chunk = segment, chunk


class Truncated(RecordingError):
    def __init__(self, segment: int, detail: str) -> None:
        super().__init__(f"segment {segment} is truncated: {detail}")
        self.segment = segment


class SegmentMissing(RecordingError):
    def __init__(self, index: int) -> None:
        super().__init__(f"segment {index} listed in the manifest is missing")
        self.index = index


class SegmentOutOfOrder(RecordingError):
    def __init__(self, expected: int, found: int) -> None:
        super().__init__(f"expected segment {expected}, the object holds segment {found}")
        self.expected, self.found = expected, found


class SegmentTampered(RecordingError):
    def __init__(self, index: int, detail: str) -> None:
        super().__init__(f"segment {index} {detail}")
        self.index = index


class ManifestTampered(RecordingError):
    """The manifest is malformed, edited, or sealed for another recording."""


class ManifestMissing(RecordingError):
    """No manifest: the recording was never closed (recover it, see the format doc)."""


class HeaderMissing(RecordingError):
    """No header: the data key is gone (crypto-shredded, or never uploaded)."""


class RecordingIncomplete(RecordingError):
    """The manifest is a recovery manifest, not the one written when recording ended."""


class KeyringError(Exception):
    """The keyring itself is misconfigured (files, permissions, environment value)."""


class StorageError(Exception):
    """A storage backend failed or refused; the message says which object and why."""


class ObjectNotFound(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"object not found: {key}")
        self.key = key


class RegionNotAllowed(StorageError):
    def __init__(self, bucket: str, region: str | None, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"S3 bucket {bucket!r} is in region {region!r}, which is not in the EU/EEA "
            f"allow-list ({', '.join(allowed)}): refusing to store recordings there"
        )
        self.bucket, self.region = bucket, region


class UploadVerificationFailed(StorageError):
    """The stored object does not match what was sent (size or checksum)."""


class SpoolFull(StorageError):
    """The spool's hard limit would be exceeded: the segment was not accepted."""
