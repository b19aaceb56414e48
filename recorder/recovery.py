"""Reading recordings back: verify, recover after a crash, export to one playable file.

Objects are read from the spool first (committed but not uploaded yet) and then from the
storage, so these work whether or not the uploader has caught up. Nothing here writes
plaintext except `export`, which writes a temporary file (0600) next to the destination
and renames it only once every segment verified. Every read is for one recording id and,
given its database row (`Expected`), checked against it; memory stays bounded whatever
the objects' sizes (recorder.reading streams them).

Over 400 lines because verify, recover and export share the report, the opening and the per
segment checks; split up, one reading procedure would be spread over several modules.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder import (
    HeaderMissing,
    HeaderTampered,
    ManifestMissing,
    ManifestTampered,
    ObjectNotFound,
    RecordingError,
    RecordingIncomplete,
    RecordingMismatch,
    SegmentMissing,
)
from recorder.crypto import (
    MAX_MANIFEST_SIZE,
    Manifest,
    Recording,
    SegmentEntry,
    header_object,
    manifest_object,
    open_recording,
    segment_object,
)
from recorder.header import MAX_HEADER_LEN
from recorder.mux import BY_NAME, Concatenator, probe
from recorder.reading import ObjectSource, decrypt_stream_to_file
from recorder.storage import ObjectTooLarge
from recorder.vault import Expected, Keys, check_manifest, check_sizes

__all__ = ["ObjectSource", "Report", "SegmentReport", "Exported", "verify", "recover",
           "read_photo", "export"]  # fmt: skip

# A pause longer than this between two segments is reported (the caller's camera was off
# or reconnecting); it is not an error.
GAP_REPORT_MS = 2000
KIND_VIDEO = "video"
PHOTO_KINDS = ("snapshot", "upload")
# verify demuxes a segment (frame count, time span) only if its plaintext fits in this much
# memory; the recorder cuts segments far smaller. Bigger ones are still fully authenticated.
PROBE_LIMIT = 32 * 1024 * 1024
# A photo is decrypted into memory (the agent's view): a bigger "photo" is refused.
PHOTO_LIMIT = 32 * 1024 * 1024


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


async def _open(source: ObjectSource, keys: Keys, rid: str) -> tuple[Recording, bytes]:
    """The header of recording `rid`, checked to be rid's, and its data key."""
    try:
        header = await source.get_limited(header_object(rid), MAX_HEADER_LEN)
    except ObjectNotFound:
        raise HeaderMissing(f"recording {rid} has no header (shredded, or never stored)") from None
    except ObjectTooLarge:
        raise HeaderTampered(f"recording {rid}: the header is larger than any header") from None
    record = await keys.record(rid)
    rec = await asyncio.to_thread(  # a KMS keyring blocks
        open_recording, header, keys.keyring, record, expected_id=rid
    )
    return rec, header


async def _manifest(source: ObjectSource, rec: Recording) -> tuple[Manifest, int] | None:
    try:
        data = await source.get_limited(manifest_object(rec.id), MAX_MANIFEST_SIZE)
    except ObjectNotFound:
        return None
    except ObjectTooLarge as exc:
        raise ManifestTampered(str(exc)) from None
    return rec.open_manifest(data), len(data)


async def _check_segment(
    source: ObjectSource, rec: Recording, index: int, expect: SegmentEntry | None, media: bool
) -> tuple[SegmentEntry, SegmentReport]:
    """Authenticate one segment as it streams in (one block + one chunk in memory). The
    plaintext is kept, to demux it, only while it stays under PROBE_LIMIT."""
    reader = rec.segment_reader(index, expect)
    keep = media and (expect is None or expect.plaintext_size <= PROBE_LIMIT)
    plain = bytearray()
    try:
        async with aclosing(source.iter(segment_object(rec.id, index))) as blocks:
            async for block in blocks:
                out = await asyncio.to_thread(reader.feed, block)
                if keep:
                    plain += out
                    if len(plain) > PROBE_LIMIT:
                        keep, plain = False, bytearray()
    except ObjectNotFound:
        raise SegmentMissing(index) from None
    last = reader.finish()
    assert reader.entry is not None
    report = SegmentReport(index, True, ciphertext_size=reader.entry.ciphertext_size)
    if keep:
        plain += last
        p = await asyncio.to_thread(probe, bytes(plain))
        report.frames, report.start_ms, report.end_ms = p.frames, p.first_ms, p.last_ms
    return reader.entry, report


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
    source: ObjectSource, keys: Keys, rid: str, *, media: bool = True,
    expect: Expected | None = None,
) -> Report:  # fmt: skip
    """Check recording `rid` end to end without releasing plaintext, against its database
    row when given (`expect`). Never raises for recording problems: they are in the report
    (`ok`, `errors`)."""
    report = Report(rid)
    try:
        rec, header = await _open(source, keys, rid)
        report.key_id = rec.key_id
        opened = await _manifest(source, rec)
        if opened is not None:
            check_manifest(rid, opened[0], expect)
    except RecordingError as exc:
        report.errors.append(_describe(exc))
        return report
    if opened is not None:
        manifest, manifest_size = opened
        report.manifest = "complete" if manifest.complete else "recovery"
        report.metadata = manifest.metadata
        report.kind = str(manifest.metadata.get("kind", KIND_VIDEO))
        try:
            check_sizes(rid, len(header), manifest_size, manifest, expect)
        except RecordingMismatch as exc:
            report.errors.append(_describe(exc))
        is_video = report.kind == KIND_VIDEO
        for entry in manifest.segments:
            try:
                _, seg = await _check_segment(source, rec, entry.index, entry, is_video)
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
        if expect is not None and expect.status in ("complete", "incomplete"):
            # The database knows the recording was closed: a missing manifest is damage
            # (deleted, with any trailing segments), not an interruption.
            report.errors.append(_describe(ManifestMissing(
                f"recording {rid} is {expect.status} in the database ({expect.segments} "
                "segments) but its manifest is missing: deleted")))  # fmt: skip
        else:
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
            entry, seg = await _check_segment(source, rec, index, None, True)
        except SegmentMissing:
            return
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
    keys: Keys,
    rid: str,
    put: Callable[[str, bytes], Any],
    metadata: dict[str, Any] | None = None,
) -> Report:
    """Seal a recovery manifest (`complete = 0`) for a recording that has none.

    Lists segments 0..n-1 up to the first missing or invalid one; `put(key, data)` (an
    awaitable, e.g. Spool.put) stores it. A recording that has a manifest is left alone.
    """
    report = Report(rid)
    rec, _ = await _open(source, keys, rid)
    report.key_id = rec.key_id
    existing = await _manifest(source, rec)
    if existing is not None:
        report.manifest = "complete" if existing[0].complete else "recovery"
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


async def _checked_manifest(
    source: ObjectSource, rec: Recording, expect: Expected | None, what: str
) -> Manifest:
    opened = await _manifest(source, rec)
    if opened is None:
        raise ManifestMissing(f"{what} {rec.id} has no manifest")
    check_manifest(rec.id, opened[0], expect)
    check_sizes(rec.id, len(rec.header), opened[1], opened[0], expect)
    return opened[0]


async def read_photo(
    source: ObjectSource, keys: Keys, rid: str, expect: Expected | None = None
) -> tuple[bytes, dict]:
    """A photo's JPEG bytes and metadata, verified (the agent console's on-the-fly GET)."""
    rec, _ = await _open(source, keys, rid)
    manifest = await _checked_manifest(source, rec, expect, "photo")
    if manifest.metadata.get("kind") not in PHOTO_KINDS or len(manifest.segments) != 1:
        raise RecordingError(f"{rid} is not a photo")
    entry = manifest.segments[0]
    if entry.plaintext_size > PHOTO_LIMIT:
        raise RecordingError(f"photo {rid} is {entry.plaintext_size} bytes, over the limit")
    reader = rec.segment_reader(0, entry)
    plain = bytearray()
    try:
        async with aclosing(source.iter(segment_object(rid, 0))) as blocks:
            async for block in blocks:
                plain += await asyncio.to_thread(reader.feed, block)
    except ObjectNotFound:
        raise SegmentMissing(0) from None
    plain += reader.finish()
    return bytes(plain), manifest.metadata


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _remove_stale_partials(dest: Path) -> int:
    """Plaintext left by an export that was killed (kill -9, power loss): its temp files
    are `.<dest>.partial-<pid>-<random>[-segment]`; those of a process that is gone are
    deleted, and so are any of the older naming without a pid."""
    prefix, removed = f".{dest.name}.partial-", 0
    for path in dest.parent.iterdir():
        if not path.name.startswith(prefix):
            continue
        parts = path.name[len(prefix) :].split("-")
        if len(parts) >= 2 and parts[0].isdigit() and _alive(int(parts[0])):
            continue  # an export under way (this or another live process)
        path.unlink(missing_ok=True)
        removed += 1
    return removed


async def export(
    source: ObjectSource, keys: Keys, rid: str, dest: Path, *,
    allow_incomplete: bool = False, expect: Expected | None = None,
) -> Exported:  # fmt: skip
    """Decrypt recording `rid` into one playable file at `dest` (WebM/MKV, or the JPEG of a
    photo), checked against its database row when given. All or nothing: on any error no
    file is left at `dest` or beside it. Memory stays bounded: each segment is decrypted
    chunk by chunk into a temporary file (0600) beside `dest` before it is joined."""
    dest = Path(dest)
    await asyncio.to_thread(_remove_stale_partials, dest)
    rec, _ = await _open(source, keys, rid)
    manifest = await _checked_manifest(source, rec, expect, "recording")
    if not manifest.complete and not allow_incomplete:
        raise RecordingIncomplete(
            f"recording {rid} has only a recovery manifest (it was interrupted); "
            "use --allow-incomplete to export what was stored"
        )
    kind = str(manifest.metadata.get("kind", KIND_VIDEO))
    stem = f".{dest.name}.partial-{os.getpid()}-{os.urandom(4).hex()}"
    tmp = dest.with_name(stem)
    seg_tmp = dest.with_name(stem + "-segment")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        frames = 0
        if kind in PHOTO_KINDS:
            if len(manifest.segments) != 1:
                raise RecordingError(f"{rid} is not a photo")
            await _segment_to(source, rec, manifest.segments[0], tmp)
        else:
            fmt = BY_NAME.get(str(manifest.metadata.get("container", "webm")), BY_NAME["webm"])
            joined = await asyncio.to_thread(Concatenator, str(tmp), fmt.format)
            try:
                for entry in manifest.segments:
                    await _segment_to(source, rec, entry, seg_tmp)
                    frames += await asyncio.to_thread(joined.add, seg_tmp)
            finally:
                await asyncio.to_thread(joined.close)
        size = tmp.stat().st_size
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        seg_tmp.unlink(missing_ok=True)
    return Exported(dest, kind, len(manifest.segments), frames, size)


async def _segment_to(source: ObjectSource, rec: Recording, entry: SegmentEntry,
                      dest: Path) -> None:  # fmt: skip
    try:
        blocks = source.iter(segment_object(rec.id, entry.index))
        await decrypt_stream_to_file(rec, entry.index, blocks, dest, entry, atomic=False)
    except ObjectNotFound:
        raise SegmentMissing(entry.index) from None

