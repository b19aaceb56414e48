"""Reading recordings back: verify, recover after a crash, export to one playable file.

Objects are read from the spool first (committed but not uploaded yet) and then from the
storage, so these work whether or not the uploader has caught up. Nothing here writes
plaintext except `export`, which writes a temporary file (0600) next to the destination
and renames it only once every segment verified.

Slightly over 400 lines because verify, recover and export walk the same objects with the
same checks (`_check_segment`, `_gaps`); split, they would each need them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder import (
    HeaderMissing,
    ManifestMissing,
    ObjectNotFound,
    RecordingError,
    RecordingIncomplete,
    SegmentMissing,
)
from recorder.crypto import (
    Manifest,
    Recording,
    SegmentEntry,
    header_object,
    manifest_object,
    open_recording,
    segment_object,
)
from recorder.keys import Keyring, header_key_id
from recorder.mux import BY_NAME, Concatenator, probe
from recorder.storage import Storage, validate_key

# A pause longer than this between two segments is reported (the caller's camera was off
# or reconnecting); it is not an error.
GAP_REPORT_MS = 2000
KIND_VIDEO = "video"
PHOTO_KINDS = ("snapshot", "upload")


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

    async def get(self, key: str) -> bytes:
        path = await asyncio.to_thread(self._spooled, key)
        if path is not None:
            try:
                return await asyncio.to_thread(path.read_bytes)
            except FileNotFoundError:
                pass  # uploaded (and removed) meanwhile: the storage has it
        return await self.storage.get(key)

    async def exists(self, key: str) -> bool:
        if await asyncio.to_thread(self._spooled, key) is not None:
            return True
        return await self.storage.exists(key)

    async def recording_ids(self) -> list[str]:
        ids = {k.split("/")[1] for k in await self.storage.list("recordings/") if k.count("/") == 2}
        if self.spool_dir is not None and (self.spool_dir / "recordings").is_dir():
            ids.update(p.name for p in (self.spool_dir / "recordings").iterdir() if p.is_dir())
        return sorted(ids)


@dataclass
class SegmentReport:
    index: int
    ok: bool
    error: str | None = None
    frames: int = 0
    start_ms: int | None = None
    end_ms: int | None = None
    ciphertext_size: int = 0


@dataclass
class Report:
    recording_id: str
    manifest: str = "missing"  # "complete" | "recovery" | "missing"
    key_id: str | None = None
    kind: str = KIND_VIDEO
    metadata: dict[str, Any] = field(default_factory=dict)
    segments: list[SegmentReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing tampered, nothing listed missing (an interrupted recording can be ok)."""
        return not self.errors

    @property
    def complete(self) -> bool:
        return self.ok and self.manifest == "complete"

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments if s.ok)

    @property
    def duration_ms(self) -> int:
        good = [s for s in self.segments if s.ok and s.start_ms is not None]
        if not good:
            return 0
        return (good[-1].end_ms or 0) - (good[0].start_ms or 0)

    def summary(self) -> str:
        if not self.ok:
            state = "FAILED"
        elif self.manifest == "complete":
            state = "OK"
        else:
            state = "INCOMPLETE"
        what = f"{len(self.segments)} segment(s)"
        if self.kind == KIND_VIDEO:
            what += f", {self.frames} frames, {self.duration_ms / 1000:.1f} s"
        else:
            what = f"{self.kind} photo"
        return f"recording {self.recording_id}: {state} ({what}; manifest: {self.manifest})"

    def lines(self) -> list[str]:
        out = [self.summary()]
        if self.key_id:
            out.append(f"  data key wrapped by {self.key_id}")
        for seg in self.segments:
            if seg.ok and self.kind == KIND_VIDEO:
                start, end = (seg.start_ms or 0) / 1000, (seg.end_ms or 0) / 1000
                out.append(f"  segment {seg.index}: ok, {seg.frames} frames, "
                           f"{start:.2f}-{end:.2f} s")  # fmt: skip
            elif seg.ok:
                out.append(f"  segment {seg.index}: ok, {seg.ciphertext_size} bytes")
            else:
                out.append(f"  segment {seg.index}: {seg.error}")
        for gap in self.gaps:
            out.append(f"  gap: {gap['description']}")
        out += [f"  note: {n}" for n in self.notes]
        out += [f"  error: {e}" for e in self.errors]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id, "ok": self.ok, "complete": self.complete,
            "manifest": self.manifest, "kind": self.kind, "frames": self.frames,
            "duration_ms": self.duration_ms, "segments": [s.__dict__ for s in self.segments],
            "gaps": self.gaps, "errors": self.errors, "notes": self.notes,
        }  # fmt: skip


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def _open(source: ObjectSource, keyring: Keyring, rid: str) -> tuple[Recording, bytes]:
    try:
        header = await source.get(header_object(rid))
    except ObjectNotFound:
        raise HeaderMissing(f"recording {rid} has no header (shredded, or never stored)") from None
    rec = await asyncio.to_thread(open_recording, header, keyring)  # a KMS keyring blocks
    return rec, header


async def _manifest(source: ObjectSource, rec: Recording) -> Manifest | None:
    try:
        data = await source.get(manifest_object(rec.id))
    except ObjectNotFound:
        return None
    return rec.open_manifest(data)


def _check_segment(
    rec: Recording, index: int, data: bytes, expect: SegmentEntry | None, media: bool
) -> tuple[SegmentEntry, bytes, SegmentReport]:
    reader = rec.segment_reader(index, expect)
    plain = reader.feed(data) + reader.finish()
    assert reader.entry is not None
    report = SegmentReport(index, True, ciphertext_size=len(data))
    if media:
        p = probe(plain)
        report.frames, report.start_ms, report.end_ms = p.frames, p.first_ms, p.last_ms
    return reader.entry, plain, report


def _gaps(report: Report) -> None:
    for lost in report.metadata.get("lost", []):
        report.gaps.append({**lost, "description": (
            f"{lost.get('frames', '?')} frames lost while recording "
            f"({lost.get('start_ms', 0) / 1000:.2f}-{lost.get('end_ms', 0) / 1000:.2f} s): "
            f"{lost.get('reason', 'unknown')}")})  # fmt: skip
    good = [s for s in report.segments if s.ok and s.start_ms is not None]
    for a, b in zip(good, good[1:], strict=False):
        pause = (b.start_ms or 0) - (a.end_ms or 0)
        if pause > GAP_REPORT_MS:
            report.gaps.append({"start_ms": a.end_ms, "end_ms": b.start_ms, "reason": "pause",
                                "description": f"no video for {pause / 1000:.1f} s between "
                                f"segments {a.index} and {b.index} (camera paused or "
                                "reconnecting)"})  # fmt: skip


async def verify(
    source: ObjectSource, keyring: Keyring, rid: str, *, media: bool = True
) -> Report:
    """Check a recording end to end without releasing plaintext. Never raises for
    recording problems: they are in the report (`ok`, `errors`)."""
    report = Report(rid)
    try:
        rec, header = await _open(source, keyring, rid)
        report.key_id = header_key_id(header)
        manifest = await _manifest(source, rec)
    except RecordingError as exc:
        report.errors.append(_describe(exc))
        return report
    if manifest is not None:
        report.manifest = "complete" if manifest.complete else "recovery"
        report.metadata = manifest.metadata
        report.kind = str(manifest.metadata.get("kind", KIND_VIDEO))
        is_video = report.kind == KIND_VIDEO
        for entry in manifest.segments:
            try:
                data = await source.get(segment_object(rid, entry.index))
            except ObjectNotFound:
                report.segments.append(SegmentReport(entry.index, False, _describe(
                    SegmentMissing(entry.index))))  # fmt: skip
                report.errors.append(_describe(SegmentMissing(entry.index)))
                continue
            try:
                _, _, seg = await asyncio.to_thread(
                    _check_segment, rec, entry.index, data, entry, is_video
                )
            except RecordingError as exc:
                report.segments.append(SegmentReport(entry.index, False, _describe(exc)))
                report.errors.append(_describe(exc))
                continue
            report.segments.append(seg)
        extra = len(manifest.segments)
        if await source.exists(segment_object(rid, extra)):
            report.notes.append(f"segment {extra} exists but the manifest does not list it")
        if manifest.complete is False:
            report.notes.append(
                "recovery manifest: the recorder was interrupted (crash or power loss); "
                f"{_end(report)} is all that was stored, the rest of the session is lost"
            )
    else:
        report.manifest = "missing"
        await _scan(source, rec, report)
        report.notes.append(
            "no manifest: the recording was interrupted and has not been recovered yet "
            f"(the server seals a recovery manifest at its next start); {_end(report)}"
        )
    _gaps(report)
    return report


def _end(report: Report) -> str:
    good = [s for s in report.segments if s.ok]
    if not good:
        return "no segment"
    if report.kind != KIND_VIDEO:
        return f"segments 0-{good[-1].index}"
    return f"segments 0-{good[-1].index} up to {(good[-1].end_ms or 0) / 1000:.2f} s"


async def _scan(
    source: ObjectSource, rec: Recording, report: Report, keep: list[SegmentEntry] | None = None
) -> None:
    """Segments 0, 1, ... until the first missing or invalid one (recovery rule)."""
    index = 0
    while True:
        try:
            data = await source.get(segment_object(rec.id, index))
        except ObjectNotFound:
            return
        try:
            entry, _, seg = await asyncio.to_thread(_check_segment, rec, index, data, None, True)
        except RecordingError as exc:
            report.notes.append(f"segment {index} is not usable ({_describe(exc)}); "
                                "recovery stops before it")  # fmt: skip
            return
        except Exception as exc:  # authentic, but not a media file we can read
            report.notes.append(f"segment {index} decrypts but does not demux ({exc})")
            return
        report.segments.append(seg)
        if keep is not None:
            keep.append(entry)
        index += 1


async def recover(
    source: ObjectSource,
    keyring: Keyring,
    rid: str,
    put: Callable[[str, bytes], Any],
    metadata: dict[str, Any] | None = None,
) -> Report:
    """Seal a recovery manifest (`complete = 0`) for a recording that has none.

    Lists segments 0..n-1 up to the first missing or invalid one; `put(key, data)` (an
    awaitable, e.g. Spool.put) stores it. A recording that has a manifest is left alone.
    """
    report = Report(rid)
    rec, header = await _open(source, keyring, rid)
    report.key_id = header_key_id(header)
    existing = await _manifest(source, rec)
    if existing is not None:
        report.manifest = "complete" if existing.complete else "recovery"
        return report
    entries: list[SegmentEntry] = []
    await _scan(source, rec, report, entries)
    meta = dict(metadata or {})
    meta.update(
        kind=KIND_VIDEO, recovered=True, frames=report.frames,
        segments=[{"start_ms": s.start_ms, "end_ms": s.end_ms, "frames": s.frames}
                  for s in report.segments],
        interrupted_after_ms=report.segments[-1].end_ms if report.segments else 0,
    )  # fmt: skip
    await put(manifest_object(rid), rec.seal_manifest(entries, complete=False, metadata=meta))
    report.manifest = "recovery"
    report.metadata = meta
    return report


@dataclass(frozen=True)
class Exported:
    path: Path
    kind: str
    segments: int
    frames: int
    bytes: int


async def read_photo(source: ObjectSource, keyring: Keyring, rid: str) -> tuple[bytes, dict]:
    """A photo's JPEG bytes and metadata, verified (the agent console's on-the-fly GET)."""
    rec, _ = await _open(source, keyring, rid)
    manifest = await _manifest(source, rec)
    if manifest is None:
        raise ManifestMissing(f"photo {rid} has no manifest")
    if manifest.metadata.get("kind") not in PHOTO_KINDS or len(manifest.segments) != 1:
        raise RecordingError(f"{rid} is not a photo")
    try:
        data = await source.get(segment_object(rid, 0))
    except ObjectNotFound:
        raise SegmentMissing(0) from None
    _, plain, _ = await asyncio.to_thread(
        _check_segment, rec, 0, data, manifest.segments[0], False
    )
    return plain, manifest.metadata


async def export(
    source: ObjectSource, keyring: Keyring, rid: str, dest: Path, *,
    allow_incomplete: bool = False,
) -> Exported:  # fmt: skip
    """Decrypt a recording into one playable file at `dest` (WebM/MKV, or the JPEG of a
    photo). All or nothing: on any error no file is left at `dest` or beside it."""
    rec, _ = await _open(source, keyring, rid)
    manifest = await _manifest(source, rec)
    if manifest is None:
        raise ManifestMissing(f"recording {rid} has no manifest (not recovered yet)")
    if not manifest.complete and not allow_incomplete:
        raise RecordingIncomplete(
            f"recording {rid} has only a recovery manifest (it was interrupted); "
            "use --allow-incomplete to export what was stored"
        )
    kind = str(manifest.metadata.get("kind", KIND_VIDEO))
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.partial-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        frames = 0
        if kind in PHOTO_KINDS:
            plain, _ = await read_photo(source, keyring, rid)
            await asyncio.to_thread(tmp.write_bytes, plain)
        else:
            fmt = BY_NAME.get(str(manifest.metadata.get("container", "webm")), BY_NAME["webm"])
            joined = await asyncio.to_thread(Concatenator, str(tmp), fmt.format)
            try:
                for entry in manifest.segments:
                    try:
                        data = await source.get(segment_object(rid, entry.index))
                    except ObjectNotFound:
                        raise SegmentMissing(entry.index) from None
                    _, plain, _ = await asyncio.to_thread(
                        _check_segment, rec, entry.index, data, entry, False
                    )
                    frames += await asyncio.to_thread(joined.add, plain)
            finally:
                await asyncio.to_thread(joined.close)
        size = tmp.stat().st_size
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Exported(dest, kind, len(manifest.segments), frames, size)
