"""One room's sample for the ops console, from the media layer's counters and aiortc's
getStats() of each participant (pure: no I/O; server.observe.ops gathers the inputs).

Counters are cumulative; a sample turns them into rates against the previous sample of
the same room (`RoomSampler` keeps it). A new peer connection of a participant starts its
counters again, so its first sample shows no rate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from server.rooms.manager import LiveRoom
from server.rooms.state import Room, iso

HISTORY_POINTS = 180  # three minutes of sparkline at one sample a second
NO_FRAMES_WARN_S = 5.0
HIGH_LOSS = 0.05  # share of packets lost over one sample
MIN_PACKETS_FOR_LOSS = 20


@dataclass
class _PartPrev:
    pc_id: int | None
    bytes_received: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    packets_lost: int = 0
    frames_forwarded: int = 0


@dataclass
class Totals:
    """What one sample adds to the node's totals."""

    in_kbps: float = 0.0
    out_kbps: float = 0.0
    bytes_received: int = 0
    bytes_sent: int = 0


def _kbps(delta_bytes: int, seconds: float) -> float:
    return round(max(delta_bytes, 0) * 8 / seconds / 1000, 1) if seconds > 0 else 0.0


@dataclass
class RoomSampler:
    """The previous sample of one room, and its sparkline history."""

    info: dict[str, Any] | None = None
    prev_at: float | None = None
    parts: dict[str, _PartPrev] = field(default_factory=dict)
    tracks: dict[str, tuple[int, int]] = field(default_factory=dict)
    last_frame_at: dict[str, float] = field(default_factory=dict)
    history: deque[tuple[float, float, float]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_POINTS)
    )

    def sample(
        self, live: LiveRoom, rtp: dict[str, Any], now: float, mono: float, interval_s: float
    ) -> tuple[dict[str, Any], Totals]:
        room = live.room
        seconds = mono - self.prev_at if self.prev_at is not None else 0.0
        warnings: list[dict[str, Any]] = []
        tracks = self._tracks(live, mono, seconds, warnings)
        totals = Totals()
        participants = []
        conns = live.conns
        for pid in sorted(set(rtp) | set(live.participants)):
            entry = self._participant(
                pid, rtp.get(pid), live, conns.get(pid) is not None, tracks, seconds, warnings,
                totals,
            )  # fmt: skip
            participants.append(entry)
        for gone in set(self.parts) - set(rtp):
            self.parts.pop(gone, None)
        if room.caller_status == "reconnecting":
            warnings.append({"code": "caller_reconnecting"})
        if seconds:
            self.history.append(
                (round(totals.in_kbps, 1), tracks["camera"]["fps"], round(totals.out_kbps, 1))
            )
        self.prev_at = mono
        return self._view(room, now, tracks, participants, totals, warnings, interval_s), totals

    def _tracks(
        self, live: LiveRoom, mono: float, seconds: float, warnings: list[dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Frames and payload bytes the server received per track, and when the last came."""
        room = live.room
        tracks = {}
        for name, track in live.media.tracks.items():
            frames, size = track.frames_in, track.bytes_in
            prev_frames, prev_size = self.tracks.get(name, (frames, size))
            if frames > prev_frames or name not in self.last_frame_at:
                self.last_frame_at[name] = mono
            self.tracks[name] = (frames, size)
            silent = mono - self.last_frame_at[name]
            tracks[name] = {
                "live": bool(room.tracks.get(name)),
                "publisher": track.live,
                "subscribers": len(track.subscribers),
                "fps": round((frames - prev_frames) / seconds, 1) if seconds else 0.0,
                "kbps": _kbps(size - prev_size, seconds),
                "frames": frames,
                "seconds_since_frame": round(silent, 1),
            }
            paused = name == "camera" and room.caller_status == "paused"
            if room.tracks.get(name) and not paused and silent >= NO_FRAMES_WARN_S:
                warnings.append({"code": "no_frames", "track": name, "seconds": int(silent)})
        return tracks

    def _participant(
        self,
        pid: str,
        r: dict[str, Any] | None,
        live: LiveRoom,
        signalling: bool,
        tracks: dict[str, dict[str, Any]],
        seconds: float,
        warnings: list[dict[str, Any]],
        totals: Totals,
    ) -> dict[str, Any]:
        member = live.participants.get(pid)
        role = r["role"] if r else member.kind if member else "?"
        entry: dict[str, Any] = {
            "id": pid,
            "role": role,
            "signalling": signalling,
            "connection": r["connection_state"] if r else "none",
            "ice": r["ice_state"] if r else "none",
            "in": None,
            "out": None,
            "rtt_ms": None,
        }
        if r is None:
            return entry
        prev = self.parts.get(pid)
        if prev is None or prev.pc_id != r["pc_id"]:
            prev = None  # a new peer connection: its counters start again
        cur = _PartPrev(r["pc_id"])
        cur.bytes_received = (r["transport"] or {}).get("bytes_received", 0)
        if r["publish"] is not None:
            entry["in"] = _inbound(r["publish"], cur, prev, seconds, tracks, live.room, totals)
            if entry["in"] and entry["in"]["loss"] >= HIGH_LOSS:
                warnings.append(
                    {"code": "high_loss", "participant": pid, "loss": entry["in"]["loss"]}
                )
        if r["receive"] is not None:
            rec = r["receive"]
            entry["out"] = _outbound(rec, cur, prev, seconds, live.room, totals)
            if rec["rtt_s"] is not None:
                entry["rtt_ms"] = round(rec["rtt_s"] * 1000, 1)
            out = entry["out"]
            if out and out["loss"] >= HIGH_LOSS and out["kbps"] > 0:
                warnings.append({"code": "high_loss", "participant": pid, "loss": out["loss"]})
        self.parts[pid] = cur
        return entry

    def _view(
        self,
        room: Room,
        now: float,
        tracks: dict[str, Any],
        participants: list[dict[str, Any]],
        totals: Totals,
        warnings: list[dict[str, Any]],
        interval_s: float,
    ) -> dict[str, Any]:
        info = self.info or {"phone": "", "reference": ""}
        return {
            "id": room.id,
            "agent": room.agent_name,
            "agent_status": "connected" if room.agent_connected else "away",
            "phone": info["phone"],
            "reference": info["reference"],
            "state": room.state,
            "caller_status": room.caller_status,
            "device": room.caller_device,
            "created_at": iso(room.created_at),
            "started_at": iso(room.started_at),
            "age_s": round(now - room.created_at, 1),
            "tracks": tracks,
            "participants": participants,
            "in_kbps": round(totals.in_kbps, 1),
            "out_kbps": round(totals.out_kbps, 1),
            "history": {
                "in_kbps": [h[0] for h in self.history],
                "fps": [h[1] for h in self.history],
                "out_kbps": [h[2] for h in self.history],
                "interval_s": interval_s,
            },
            "warnings": warnings,
            "watchers": sum(1 for p in participants if p["role"] == "supervisor"),
        }


def _inbound(
    pub: dict[str, Any],
    cur: _PartPrev,
    prev: _PartPrev | None,
    seconds: float,
    tracks: dict[str, dict[str, Any]],
    room: Room,
    totals: Totals,
) -> dict[str, Any] | None:
    """What a publisher sends the server: bitrate, frame rate, loss over the sample."""
    cur.packets_received = pub["packets_received"]
    cur.packets_lost = pub["packets_lost"]
    loss = kbps = 0.0
    if prev is not None and seconds:
        got = cur.packets_received - prev.packets_received
        lost = cur.packets_lost - prev.packets_lost
        if got + lost >= MIN_PACKETS_FOR_LOSS and lost > 0:
            loss = round(lost / (got + lost), 3)
        kbps = _kbps(cur.bytes_received - prev.bytes_received, seconds)
        totals.bytes_received += max(cur.bytes_received - prev.bytes_received, 0)
    totals.in_kbps += kbps
    fps = tracks[pub["track"]]["fps"] if pub["current"] else 0.0
    if room.tracks.get(pub["track"]) or kbps >= 50:  # shown while it flows
        return {"track": pub["track"], "kbps": kbps, "fps": fps, "loss": loss}
    return None


def _outbound(
    rec: dict[str, Any],
    cur: _PartPrev,
    prev: _PartPrev | None,
    seconds: float,
    room: Room,
    totals: Totals,
) -> dict[str, Any] | None:
    """What the server forwards to a subscriber: bitrate, frame rate, loss it reports."""
    cur.bytes_sent = rec["bytes_sent"]
    cur.frames_forwarded = rec["frames_forwarded"]
    kbps = fps = 0.0
    if prev is not None and seconds:
        sent = cur.bytes_sent - prev.bytes_sent
        kbps = _kbps(sent, seconds)
        totals.bytes_sent += max(sent, 0)
        fps = round((cur.frames_forwarded - prev.frames_forwarded) / seconds, 1)
    totals.out_kbps += kbps
    if room.tracks.get(rec["track"]) or kbps >= 50:
        return {
            "track": rec["track"],
            "kbps": kbps,
            "fps": fps,
            "loss": round(rec["fraction_lost"], 3),
        }
    return None
