"""Master keys and recording keys (docs/recording-format.md, "Keys").

The key hierarchy: a master key (versioned, local or AWS KMS) wraps one random **recording
key** per recording, kept as a `KeyRecord` in the database, never beside the media; the
recording key wraps the recording's data key in its header (recorder.header). Keyrings wrap
and unwrap: `MasterKeyring` with versioned local AES-256 keys (files or an environment
variable), `KmsKeyring` with AWS KMS. Crypto-shredding: delete a recording's key record and
no copy of its objects (backup, replica, old S3 version) can be decrypted again.

Over 400 lines because both keyrings and the key records they wrap must agree on one
versioned wire format; split, the format would be described in two places.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from recorder import (
    KeyringError,
    UnknownMasterKey,
    WrappedKeyTampered,
    WrongKey,
    WrongRecording,
)

MAGIC_KEY_RECORD = b"CARK"
KEY_RECORD_VERSION = 2
RECORDING_ID_LEN = 16
DATA_KEY_LEN = 32
INFO_PREFIX = b"callassist/rec/v1 "  # every HKDF info string starts with this
WRAP_LOCAL_AES256GCM = 1
WRAP_AWS_KMS = 2
WRAP_ALGORITHMS = (WRAP_LOCAL_AES256GCM, WRAP_AWS_KMS)
ENV_VAR = "CALLASSIST_RECORDING_KEYS"
_KEY_ID = re.compile(r"mk-(\d{4,9})")
_KCV_LEN = 16
_LOCAL_BLOB_LEN = _KCV_LEN + 12 + DATA_KEY_LEN + 16  # check value, nonce, key, GCM tag


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@dataclass(frozen=True)
class WrappedKey:
    alg: int  # WRAP_LOCAL_AES256GCM or WRAP_AWS_KMS
    key_id: str  # master key id or KMS key ARN: ASCII, 1..255 bytes
    blob: bytes  # keyring-specific, 1..65535 bytes
    context: bytes  # what the wrap authenticates: header bytes 0..21 (not stored twice)


class Keyring(Protocol):
    def generate(self, context: bytes) -> tuple[bytes, WrappedKey]: ...
    def wrap(self, data_key: bytes, context: bytes) -> WrappedKey: ...
    def unwrap(self, wrapped: WrappedKey) -> bytes: ...
    def rewrap(self, wrapped: WrappedKey) -> WrappedKey: ...


# --- recording keys: the per-recording key-encryption key, stored in the database


@dataclass(frozen=True)
class KeyRecord:
    """A recording key (KEK) wrapped by a master key: what the database stores per recording.

    Destroying this record makes the recording's media unreadable whatever copies of the
    objects exist (docs/recording-format.md, "Erasure").
    """

    recording_id: str  # hex
    alg: int  # WRAP_LOCAL_AES256GCM or WRAP_AWS_KMS
    key_id: str  # the master key id (mk-NNNN) or KMS key ARN that wraps it
    wrapped: bytes


def key_context(recording_id: bytes) -> bytes:
    """What wrapping a recording key authenticates: "CARK" || u8(2) || R."""
    return MAGIC_KEY_RECORD + bytes([KEY_RECORD_VERSION]) + recording_id


def new_recording_key(keyring: Keyring, recording_id: bytes) -> tuple[bytes, KeyRecord]:
    """A fresh recording key from the keyring: (key, the record to store)."""
    key, wrapped = keyring.generate(key_context(recording_id))
    if len(key) != DATA_KEY_LEN:
        raise ValueError("keyring returned a key that is not 256 bits")
    return key, KeyRecord(recording_id.hex(), wrapped.alg, wrapped.key_id, wrapped.blob)


def _wrapped(record: KeyRecord) -> WrappedKey:
    try:
        rid = bytes.fromhex(record.recording_id)
    except ValueError:
        rid = b""
    if len(rid) != RECORDING_ID_LEN or record.alg not in WRAP_ALGORITHMS or not record.wrapped:
        raise WrappedKeyTampered(f"key record of recording {record.recording_id} is malformed")
    return WrappedKey(record.alg, record.key_id, record.wrapped, key_context(rid))


def open_recording_key(record: KeyRecord, keyring: Keyring, expected_id: str) -> bytes:
    """Unwrap a recording key; the record must be the expected recording's."""
    if record.recording_id != expected_id:
        raise WrongRecording(f"key record belongs to recording {record.recording_id}, "
                             f"not {expected_id}")  # fmt: skip
    key = keyring.unwrap(_wrapped(record))  # WrongKey, UnknownMasterKey, WrappedKeyTampered
    if len(key) != DATA_KEY_LEN:
        raise WrappedKeyTampered(f"recording key of {expected_id} is not 256 bits")
    return key


def rewrap_key_record(record: KeyRecord, keyring: Keyring) -> KeyRecord:
    """The same recording key wrapped under the keyring's newest key (master-key rotation):
    only this database record changes, no stored object does."""
    wrapped = keyring.rewrap(_wrapped(record))
    return KeyRecord(record.recording_id, wrapped.alg, wrapped.key_id, wrapped.blob)


# --- local master keys


def _version(key_id: str) -> int:
    match = _KEY_ID.fullmatch(key_id)
    if match is None:
        raise KeyringError(f"master key id {key_id!r} is not of the form mk-NNNN")
    return int(match.group(1))


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise KeyringError(f"{where}: not base64") from None
    if len(key) != 32:
        raise KeyringError(f"{where}: a master key is 32 bytes, this one is {len(key)}")
    return key


def _read_private(path: Path) -> str:
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise KeyringError(f"{path}: cannot read ({exc.strerror})") from None
    if mode & 0o077:
        # Like ssh: a master key others can read is a leaked key; refuse instead of using it.
        raise KeyringError(f"{path} has mode {mode:o}: run 'chmod 600 {path}'")
    return path.read_text("ascii")


def _read_key_file(path: Path) -> bytes:
    return _decode_key(_read_private(path), str(path))


def _write_key_file(directory: Path, key_id: str, key: bytes) -> None:
    final = directory / f"{key_id}.key"
    tmp = directory / f".{key_id}.key.tmp-{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, final)  # unlike rename, never replaces a key another process just wrote
    except FileExistsError:
        raise KeyringError(f"{final} already exists") from None
    finally:
        tmp.unlink()
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MasterKeyring:
    """Versioned local master keys (mk-0001, mk-0002, ...): the newest wraps, any unwraps."""

    def __init__(self, keys: Mapping[str, bytes], directory: Path | None = None) -> None:
        self.directory = directory
        self._set(keys)

    def _set(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise KeyringError("a keyring needs at least one master key")
        raw = dict(sorted(keys.items(), key=lambda kv: _version(kv[0])))
        derived: dict[str, tuple[bytes, bytes]] = {}  # id -> (wrapping key, check value)
        for key_id, key in raw.items():
            if len(key) != 32:
                raise KeyringError(f"master key {key_id} must be 32 bytes")
            derived[key_id] = (
                hkdf_sha256(key, None, INFO_PREFIX + b"master-wrap"),
                hkdf_sha256(key, None, INFO_PREFIX + b"master-check", _KCV_LEN),
            )
        self._raw, self._keys = raw, derived

    @classmethod
    def from_directory(cls, directory: str | Path, *, create: bool = True) -> MasterKeyring:
        """Keys from `mk-NNNN.key` files (mode 0600); the first key is made on first use."""
        path = Path(directory)
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = {f.stem: _read_key_file(f) for f in path.glob("mk-*.key")} if path.is_dir() else {}
        if not keys:
            if not create:
                raise KeyringError(f"no master keys (mk-NNNN.key files) in {path}")
            keys["mk-0001"] = os.urandom(32)
            _write_key_file(path, "mk-0001", keys["mk-0001"])
        return cls(keys, path)

    @classmethod
    def from_env(
        cls, var: str = ENV_VAR, environ: Mapping[str, str] | None = None
    ) -> MasterKeyring:
        """Keys from `mk-0001:BASE64,mk-0002:BASE64` in an environment variable, or in the
        file `<var>_FILE` names (the CALLASSIST_<NAME>[_FILE] convention of server.secrets)."""
        env = os.environ if environ is None else environ
        value = env.get(var, "")
        if not value and env.get(f"{var}_FILE"):
            value = _read_private(Path(env[f"{var}_FILE"]))
        keys: dict[str, bytes] = {}
        for n, item in enumerate(filter(None, (part.strip() for part in value.split(",")))):
            key_id, _, encoded = item.partition(":")
            if not _KEY_ID.fullmatch(key_id):  # the message never echoes the value: a key
                raise KeyringError(f"{var}: item {n + 1} is not of the form mk-NNNN:BASE64")
            keys[key_id] = _decode_key(encoded, f"{var} ({key_id})")
        if not keys:
            raise KeyringError(f"{var} is empty or unset")
        return cls(keys)

    @classmethod
    def load(
        cls, directory: str | Path, var: str = ENV_VAR, environ: Mapping[str, str] | None = None
    ) -> MasterKeyring:
        """The environment (`var` or `var_FILE`) when set (production), else the directory."""
        env = os.environ if environ is None else environ
        if env.get(var) or env.get(f"{var}_FILE"):
            return cls.from_env(var, environ)
        return cls.from_directory(directory)

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)  # oldest first

    @property
    def current_key_id(self) -> str:
        return next(reversed(self._keys))

    def env_value(self) -> str:
        """This keyring in the `from_env` format (moving embedded keys to production)."""
        return ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in self._raw.items())

    def rotate(self) -> str:
        """Create the next key version, persist it, and make it the one that wraps."""
        if self.directory is None:
            raise KeyringError(f"keys from {ENV_VAR} are managed there: add a new version to it")
        key_id = f"mk-{_version(self.current_key_id) + 1:04d}"
        key = os.urandom(32)
        _write_key_file(self.directory, key_id, key)
        self._set({**self._raw, key_id: key})
        return key_id

    def retire(self, key_id: str) -> None:
        """Forget an old key (after every header was rewrapped). Its recordings, if any
        remain, become undecryptable: this is crypto-shredding at the master-key level."""
        if key_id == self.current_key_id:
            raise KeyringError(f"{key_id} is the current key: rotate before retiring it")
        if key_id not in self._keys:
            raise KeyringError(f"{key_id} is not in the keyring")
        if self.directory is not None:
            (self.directory / f"{key_id}.key").unlink()
            _fsync_dir(self.directory)
        del self._keys[key_id], self._raw[key_id]

    @staticmethod
    def _aad(context: bytes, key_id: str) -> bytes:
        kid = key_id.encode("ascii")
        return context + bytes([WRAP_LOCAL_AES256GCM, len(kid)]) + kid

    def generate(self, context: bytes) -> tuple[bytes, WrappedKey]:
        data_key = os.urandom(DATA_KEY_LEN)
        return data_key, self.wrap(data_key, context)

    def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        key_id = self.current_key_id
        wrap_key, check = self._keys[key_id]
        nonce = os.urandom(12)
        sealed = AESGCM(wrap_key).encrypt(nonce, data_key, self._aad(context, key_id))
        return WrappedKey(WRAP_LOCAL_AES256GCM, key_id, check + nonce + sealed, context)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        kid = wrapped.key_id
        if wrapped.alg != WRAP_LOCAL_AES256GCM:
            raise WrongKey(f"the data key is wrapped by AWS KMS ({kid}), not a local master key")
        if kid not in self._keys:
            held = ", ".join(self._keys)
            raise UnknownMasterKey(f"master key {kid!r} is not in the keyring (it holds {held})")
        wrap_key, check = self._keys[kid]
        blob = wrapped.blob
        if len(blob) != _LOCAL_BLOB_LEN:
            raise WrappedKeyTampered(f"wrapped data key has {len(blob)} bytes, not 76")
        if not hmac.compare_digest(blob[:_KCV_LEN], check):
            raise WrongKey(
                f"master key {kid!r} in this keyring is not the one the recording was "
                "wrapped with (key check value differs)"
            )
        nonce, sealed = blob[_KCV_LEN : _KCV_LEN + 12], blob[_KCV_LEN + 12 :]
        try:
            return AESGCM(wrap_key).decrypt(nonce, sealed, self._aad(wrapped.context, kid))
        except InvalidTag:
            raise WrappedKeyTampered(
                f"wrapped data key fails authentication under master key {kid!r}"
            ) from None

    def rewrap(self, wrapped: WrappedKey) -> WrappedKey:
        return self.wrap(self.unwrap(wrapped), wrapped.context)


# --- AWS KMS

# KMS error codes that mean "not this key" rather than "this envelope was edited".
_KMS_WRONG_KEY = {"IncorrectKeyException", "NotFoundException", "AccessDeniedException",
                  "DisabledException", "KMSInvalidStateException"}  # fmt: skip


class KmsKeyring:
    """Data keys from AWS KMS (GenerateDataKey/Decrypt/ReEncrypt); the key never leaves KMS.

    Calls block: from async code run `new_recording`/`open_recording` in a thread.
    """

    def __init__(self, key_id: str, *, client: Any = None, session: Any = None,
                 region_name: str | None = None, endpoint_url: str | None = None,
                 max_attempts: int = 5) -> None:  # fmt: skip
        self.key_id = key_id
        if client is None:
            import boto3  # imported here: local-key users need not load boto3
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": max_attempts})
            client = (session or boto3.session.Session()).client(
                "kms", region_name=region_name, endpoint_url=endpoint_url, config=config
            )
        self._client = client

    def _call(self, op: str, key_id: str, context: bytes, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        # KMS logs the encryption context (CloudTrail): it names the recording, nothing more.
        # A recording key ("CARK...") or a format 1 header's data key ("CARH...").
        label = "recording-key" if context[:4] == MAGIC_KEY_RECORD else "recording-header"
        ctx = {f"callassist:{label}": context.hex()}
        if op == "re_encrypt":
            kwargs.update(SourceEncryptionContext=ctx, DestinationEncryptionContext=ctx)
        else:
            kwargs["EncryptionContext"] = ctx
        try:
            return getattr(self._client, op)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "InvalidCiphertextException":
                raise WrappedKeyTampered(f"KMS rejects the wrapped data key for {key_id} "
                                         "(edited, or another recording's)") from None  # fmt: skip
            if code in _KMS_WRONG_KEY:
                raise WrongKey(f"KMS key {key_id} cannot unwrap this data key ({code})") from None
            raise  # throttling, network: transient, the caller retries

    @staticmethod
    def _wrapped(r: dict[str, Any], context: bytes) -> WrappedKey:
        return WrappedKey(WRAP_AWS_KMS, r["KeyId"], r["CiphertextBlob"], context)

    @staticmethod
    def _check_alg(wrapped: WrappedKey) -> None:
        if wrapped.alg != WRAP_AWS_KMS:
            raise WrongKey(f"the data key is wrapped by local master key {wrapped.key_id}, not KMS")

    def generate(self, context: bytes) -> tuple[bytes, WrappedKey]:
        r = self._call("generate_data_key", self.key_id, context, KeyId=self.key_id,
                       KeySpec="AES_256")  # fmt: skip
        return r["Plaintext"], self._wrapped(r, context)

    def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        r = self._call("encrypt", self.key_id, context, KeyId=self.key_id, Plaintext=data_key)
        return self._wrapped(r, context)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        self._check_alg(wrapped)
        r = self._call("decrypt", wrapped.key_id, wrapped.context, KeyId=wrapped.key_id,
                       CiphertextBlob=wrapped.blob)  # fmt: skip
        return r["Plaintext"]

    def rewrap(self, wrapped: WrappedKey) -> WrappedKey:
        self._check_alg(wrapped)
        r = self._call("re_encrypt", wrapped.key_id, wrapped.context, CiphertextBlob=wrapped.blob,
                       SourceKeyId=wrapped.key_id, DestinationKeyId=self.key_id)  # fmt: skip
        return self._wrapped(r, wrapped.context)
