"""Data-subject rights by phone number (GDPR Art. 15 access, 16 rectification, 17 erasure,
21 objection), shared by the DPO's pages and API (server/privacy/dpo.py) and `callassist subject`.

- A subject is a phone number in E.164. Everything is found through `sessions.phone` and
  then by session id, so one person's export or erasure never reaches another's data, even
  when both used the same device type with the same agent.
- Media are erased by crypto-shredding: each recording's key lives only in the database
  (`recording_keys`, docs/recording-format.md), and is deleted in the same transaction as
  the subject's session and recording rows, so no copy of the objects (a backup, a replica,
  an old S3 version) can be decrypted afterwards, whatever master keys survive. The objects
  themselves are deleted too (storage limitation): every version in the storage and the
  upload spool, the header first.
- The audit log never holds a phone number in clear: a subject is named by an HMAC of the
  number under the server key (`subject_ref`). The do-not-record list stores only that
  HMAC as well.

Over 400 lines because access, erasure, rectification and objection must find exactly
the same data for a number; kept in one module, no right can drift from the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder import RecordingError
from recorder.crypto import header_object
from recorder.keys import Keyring, MasterKeyring
from recorder.recovery import ObjectSource, export
from recorder.spool import Spool
from recorder.storage import LocalStorage, Storage
from server.core.audit import Audit
from server.core.db import Database
from server.core.phone import BadPhone, normalise
from server.recording.keystore import database_keys, expected
from server.rooms.state import iso

log = logging.getLogger(__name__)

EXPORT_FORMAT = "callassist-subject-export"
SUFFIX = {"webm": ".webm", "mkv": ".mkv", "jpeg": ".jpg"}
CONTENT_TYPE = {".webm": "video/webm", ".mkv": "video/x-matroska", ".jpg": "image/jpeg"}
SESSION_TIMES = ("created_at", "link_sent_at", "opened_at", "accepted_at", "media_started_at",
                 "media_ended_at", "ended_at")  # fmt: skip


class SubjectError(Exception):
    """A request about a subject cannot be carried out; `code` and `message` go to the user."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def phone_key(server_key: bytes, phone: str) -> str:
    """A keyed hash of an E.164 number: stable, but names nobody without the server key."""
    return hmac.new(server_key, b"callassist-phone:" + phone.encode(), hashlib.sha256).hexdigest()


def subject_ref(server_key: bytes, phone: str) -> str:
    """How the audit log names a subject (never the number itself)."""
    return "subject:" + phone_key(server_key, phone)[:32]


def parse_phone(raw: Any, default_country_code: str) -> str:
    if not isinstance(raw, str):
        raise SubjectError(400, "bad_phone", "give the phone number")
    try:
        return normalise(raw, default_country_code)
    except BadPhone as exc:
        raise SubjectError(400, "bad_phone", str(exc)) from None


# --- where the encrypted media live ---------------------------------------------------------


@dataclass
class Media:
    """The storage, the spool and the keyring, from the running service or the CLI."""

    storage: Storage
    spool_dir: Path | None
    keyring: Keyring | None = None
    spool: Spool | None = None  # the running server's spool (its upload queue is updated)

    @property
    def source(self) -> ObjectSource:
        return ObjectSource(self.storage, self.spool_dir)

    def fresh_keyring(self) -> Keyring:
        """The keyring, re-read from its directory when it has one (a `keys rotate` since
        the service started added a key this process does not know yet)."""
        ring = self.keyring
        if ring is None:
            raise SubjectError(503, "keys_unavailable", "the recording keys are not available")
        if isinstance(ring, MasterKeyring) and ring.directory is not None:
            return MasterKeyring.from_directory(ring.directory, create=False)
        return ring


def _spooled_files(spool_dir: Path | None, rid: str) -> list[Path]:
    if spool_dir is None:
        return []
    folder = spool_dir / "recordings" / rid
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


async def delete_recording_objects(media: Media, rid: str) -> int:
    """Delete every object of recording `rid` from the storage and the spool, the header
    (the wrapped data key) first. Returns how many objects were deleted."""
    prefix = f"recordings/{rid}/"
    header = header_object(rid)
    deleted = 0

    async def drop_spooled(path: Path) -> None:
        nonlocal deleted
        assert media.spool_dir is not None
        key = path.relative_to(media.spool_dir).as_posix()
        if media.spool is not None and not path.name.startswith("."):
            await media.spool.discard(key)  # also leaves the upload queue
        else:
            await asyncio.to_thread(path.unlink, True)
        deleted += 1

    # 1. Crypto-shredding: without the header nothing of this recording can be decrypted.
    for path in await asyncio.to_thread(_spooled_files, media.spool_dir, rid):
        if path.name == "header":
            await drop_spooled(path)
    if await media.storage.exists(header):
        deleted += 1
    await media.storage.delete(header)
    # 2. Everything else: segments, manifest, interrupted writes.
    for path in await asyncio.to_thread(_spooled_files, media.spool_dir, rid):
        await drop_spooled(path)
    for key in await media.storage.list(prefix):
        await media.storage.delete(key)
        deleted += 1
    # 3. An upload that was under way when its spool file went may still land: look again.
    for attempt in range(1, 4):
        keys = await media.storage.list(prefix)
        if not keys:
            break
        await asyncio.sleep(0.2 * attempt)
        for key in keys:
            await media.storage.delete(key)
    folders = [media.spool_dir] if media.spool_dir is not None else []
    if isinstance(media.storage, LocalStorage):
        folders.append(media.storage.directory)
    for root in folders:  # empty directories named after the recording
        await asyncio.to_thread(shutil.rmtree, Path(root) / "recordings" / rid, True)
    return deleted


# --- finding -------------------------------------------------------------------------------


async def subject_sessions(db: Database, phone: str) -> list[dict[str, Any]]:
    """Every session of this phone number, each with its recordings (rows)."""
    rows = await db.sessions_by_phone(phone)
    for row in rows:
        row["recordings"] = await db.list_recordings(row["id"])
    return rows


def _duration(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(end - start, 0.0), 1)


def session_summary(row: dict[str, Any], agent: str | None) -> dict[str, Any]:
    recs = row.get("recordings", [])
    kinds = [r["kind"] for r in recs]
    return {
        "id": row["id"],
        "phone": row["phone"],
        "reference": row["reference"],
        "state": row["state"],
        "agent": agent,
        "device_type": row["device_type"] or None,
        "notice_version": row["notice_version"] or None,
        "created_at": iso(row["created_at"]),
        "ended_at": iso(row["ended_at"]),
        "recordings": kinds.count("video"),
        "snapshots": kinds.count("snapshot"),
        "uploads": kinds.count("upload"),
    }


async def agent_names(db: Database, rows: list[dict[str, Any]]) -> dict[int, str | None]:
    names: dict[int, str | None] = {}
    for row in rows:
        if row["agent_id"] not in names:
            user = await db.user_by_id(row["agent_id"])
            names[row["agent_id"]] = user.username if user else None
    return names


async def _access_log(db: Database, objects: set[str]) -> list[dict[str, Any]]:
    """Who (by role) did what with these sessions and recordings, from the audit log."""
    if not objects:
        return []
    return [
        {"at": iso(r["at"]), "role": r["role"], "action": r["action"], "object": r["object"],
         "result": r["result"]}
        for r in await Audit.rows_about(db, objects)
    ]  # fmt: skip


def _record(row: dict[str, Any], agent: str | None, chat: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "phone": row["phone"],
        "reference": row["reference"],
        "agent": agent,
        "device_type": row["device_type"] or None,
        "notice_version_accepted": row["notice_version"] or None,
        "state": row["state"],
        "end_reason": row["end_reason"],
        "end_note": row.get("end_note"),  # an ops user's reason for ending the room
    }
    for name in SESSION_TIMES:
        out[name] = iso(row[name])
    out["media_duration_s"] = _duration(row["media_started_at"], row["media_ended_at"])
    out["duration_s"] = _duration(row["created_at"], row["ended_at"])
    out["chat"] = [{"n": c["n"], "from": c["sender"], "text": c["text"], "at": iso(c["at"])}
                   for c in chat]  # fmt: skip
    out["recordings"] = []
    return out


# --- access: the export archive ------------------------------------------------------------


@dataclass
class ExportResult:
    path: Path
    sessions: int
    files: list[dict[str, Any]] = field(default_factory=list)
    not_exported: list[dict[str, Any]] = field(default_factory=list)
    recording_ids: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


async def export_subject(
    db: Database,
    media: Media,
    phone: str,
    dest: Path,
    *,
    server_key: bytes,
    now: float,
    requested_by: str,
) -> ExportResult:
    """Write one ZIP archive at `dest` (0600) with everything held about `phone`:

    - `records.json`: the session records (times, device type, reference, agent, notice
      version, chat if kept), each with its recordings and photos, the do-not-record flag,
      and who (by role) viewed or handled them according to the audit log;
    - `media/<session>/<recording>.webm|.mkv|.jpg`: recordings decrypted into one playable
      file each, snapshots and uploads as JPEG;
    - `manifest.json`: every file with its SHA-256 and size, and what could not be exported.
    """
    rows = await subject_sessions(db, phone)
    names = await agent_names(db, rows)
    objects = {r["id"] for r in rows} | {rec["id"] for r in rows for rec in r["recordings"]}
    records = {
        "subject": {"phone": phone},
        "do_not_record": await db.has_objection(phone_key(server_key, phone)),
        "sessions": [],
        "access_log": await _access_log(db, objects),
    }
    dest = Path(dest)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".export-", dir=dest.parent))
    result = ExportResult(dest, len(rows))
    try:
        keyring = media.fresh_keyring() if any(r["recordings"] for r in rows) else None
        for row in rows:
            record = _record(row, names[row["agent_id"]], await db.chat_messages(row["id"]))
            for rec in row["recordings"]:
                entry: dict[str, Any] = {
                    "id": rec["id"], "kind": rec["kind"], "status": rec["status"],
                    "started_at": iso(rec["started_at"]), "ended_at": iso(rec["ended_at"]),
                    "duration_s": _duration(rec["started_at"], rec["ended_at"])
                    if rec["kind"] == "video" else None,
                    "file": None,
                }  # fmt: skip
                record["recordings"].append(entry)
                if rec["status"] == "recording":
                    result.not_exported.append({"recording_id": rec["id"], "session_id": row["id"],
                                                "reason": "still being recorded"})  # fmt: skip
                    continue
                name = f"media/{row['id']}/{rec['id']}{SUFFIX.get(rec['container'], '.bin')}"
                out = work / name
                await asyncio.to_thread(out.parent.mkdir, 0o700, True, True)
                assert keyring is not None
                try:
                    # Checked against the row: another recording's objects copied over this
                    # one are refused, never exported as this subject's.
                    await export(media.source, database_keys(db, keyring), rec["id"], out,
                                 allow_incomplete=True,
                                 expect=await expected(db, rec["id"]))  # fmt: skip
                except (RecordingError, OSError) as exc:
                    log.warning("export: recording %s not exported: %s", rec["id"], exc)
                    reason = f"{type(exc).__name__}: {exc}"
                    result.not_exported.append(
                        {"recording_id": rec["id"], "session_id": row["id"], "reason": reason}
                    )
                    continue
                entry["file"] = name
                result.recording_ids.append(rec["id"])
                result.files.append({
                    "path": name, "session_id": row["id"], "recording_id": rec["id"],
                    "kind": rec["kind"], "content_type": CONTENT_TYPE.get(out.suffix,
                                                                         "application/octet-stream"),
                })  # fmt: skip
            records["sessions"].append(record)
        records_path = work / "records.json"
        await asyncio.to_thread(
            records_path.write_text, json.dumps(records, indent=1, ensure_ascii=False), "utf-8"
        )
        result.files.insert(0, {"path": "records.json", "content_type": "application/json"})
        for f in result.files:
            path = work / f["path"]
            f["bytes"] = path.stat().st_size
            f["sha256"] = await asyncio.to_thread(_sha256, path)
        manifest = {
            "format": EXPORT_FORMAT,
            "version": 1,
            "generated_at": iso(now),
            "requested_by": requested_by,
            "subject": {"phone": phone},
            "sessions": len(rows),
            "files": result.files,
            "not_exported": result.not_exported,
            "note": "records.json holds the session records; media/ the decrypted recordings "
            "(WebM/Matroska video) and photos (JPEG). Each file's SHA-256 is listed here.",
        }
        await asyncio.to_thread(_zip, work, dest, result.files, manifest)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return result


def _zip(work: Path, dest: Path, files: list[dict[str, Any]], manifest: dict[str, Any]) -> None:
    tmp = dest.with_name(f".{dest.name}.partial-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as zf:
            zf.writestr("manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False),
                        compress_type=zipfile.ZIP_DEFLATED)  # fmt: skip
            for f in files:
                compress = (
                    zipfile.ZIP_DEFLATED if f["path"].endswith(".json") else (zipfile.ZIP_STORED)
                )  # media are compressed already
                zf.write(work / f["path"], f["path"], compress_type=compress)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- rectification -------------------------------------------------------------------------


async def rectify(
    db: Database, session_id: str, *, phone: Any = None, reference: Any = None,
    default_country_code: str,
) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """Correct a session's phone number and/or reference; returns the row and what changed."""
    row = await db.get_session(session_id)
    if row is None:
        raise SubjectError(404, "not_found", "no such session")
    values: dict[str, Any] = {}
    if phone is not None:
        new = parse_phone(phone, default_country_code)
        if new != row["phone"]:
            values["phone"] = new
    if reference is not None:
        if not isinstance(reference, str) or len(reference.strip()) > 128:
            raise SubjectError(400, "bad_reference", "the reference may have at most 128 "
                               "characters")  # fmt: skip
        if reference.strip() != row["reference"]:
            values["reference"] = reference.strip()
    if phone is None and reference is None:
        raise SubjectError(400, "nothing_to_change", "give a new phone number or reference")
    if values:
        await db.update_session(session_id, **values)
        row = await db.get_session(session_id)
        assert row is not None
    return row, sorted(values)


# --- erasure -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erased:
    sessions: int
    recordings: int
    objects: int


async def erase_subject(db: Database, media: Media, phone: str) -> Erased:
    """Delete every session of `phone` with its recordings, photos, chat, links and device
    cookies, and every media object (storage and spool, header first). A session still live
    is refused: end it first."""
    rows = await subject_sessions(db, phone)
    live = [r["id"] for r in rows if r["state"] != "ended"]
    if live:
        raise SubjectError(409, "session_live", "a session of this number is still open "
                           f"({', '.join(live)}): end it first")  # fmt: skip
    objects = recordings = 0
    for row in rows:
        for rec in row["recordings"]:
            objects += await delete_recording_objects(media, rec["id"])
            recordings += 1
    # Media first: if the storage fails half-way the rows are still there to retry with.
    # This transaction also deletes the recording keys: from here on no copy of the media
    # anywhere can be decrypted (crypto-shredding), even if an object was missed above.
    await db.delete_sessions([r["id"] for r in rows])
    return Erased(len(rows), recordings, objects)


# --- objection: do not record --------------------------------------------------------------


async def set_do_not_record(
    db: Database, server_key: bytes, phone: str, on: bool, now: float
) -> bool:
    await db.set_objection(phone_key(server_key, phone), on, now)
    return on


async def recording_objected(db: Database, server_key: bytes, session_id: str) -> bool:
    """True when the caller of this session objected to being recorded."""
    row = await db.get_session(session_id)
    return row is not None and await db.has_objection(phone_key(server_key, row["phone"]))


async def audit_subject(
    audit: Audit, actor: tuple[str, str], action: str, server_key: bytes, phone: str,
    result: str = "ok", reason: str = "",
) -> None:  # fmt: skip
    await audit.record(actor=actor[0], role=actor[1], action=action,
                       object=subject_ref(server_key, phone), result=result,
                       reason=reason)  # fmt: skip


Clock = Callable[[], float]
