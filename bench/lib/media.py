"""The project's media internals the benches use: imported here and nowhere else in
bench/, so a change to server/media/ is adapted in this file alone.

Importing it changes nothing in aiortc (the hooks patch only when called), so a baseline
process that imports it for `FORWARDINGS` still runs aiortc as shipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from server.core.config import MediaConfig
from server.core.eventloop import run as run_on_loop
from server.media import aiortc_hooks, assembly_batch, relay, rtp_hooks, rtp_publisher
from server.media.peers import MediaRoom
from server.media.relay import RoomTrack

__all__ = [
    "FORWARDINGS",
    "MediaConfig",
    "MediaRoom",
    "RoomTrack",
    "aiortc_hooks",
    "camera_source",
    "loopback",
    "loopback_ice",
    "probe_first_moments",
    "rtp_hooks",
    "run_server",
    "switchable_part",
]

# The `media.forwarding` values a bench can ask for (server/core/config.py accepts these).
FORWARDINGS = ("rtp",)


def loopback(**overrides: Any) -> MediaConfig:
    """The media config as shipped, with ICE on loopback only: a bench's clients are
    aiortc peers on the same machine."""
    # Loopback candidates are refused by default (a real deployment): the bench runs on lo.
    overrides.setdefault("allow_loopback_candidates", True)
    return MediaConfig(ice_host_addresses=["127.0.0.1"], **overrides)


def run_server(main: Any, event_loop: str | None = None) -> Any:
    """A bench's server process runs `main` on the loop the product's server runs
    (`media.event_loop`, server/core/eventloop.py), so the bench measures that loop."""
    return run_on_loop(main, event_loop or MediaConfig().event_loop)


def run_clients_loop(main: Any, event_loop: str = "uvloop") -> Any:
    """A bench's client process runs `main` on uvloop unless told otherwise: the clients
    share the machine's cores with the server under test, and uvloop's per-datagram
    readiness and read (in C) cost them less than asyncio's selector loop."""
    return run_on_loop(main, event_loop)


def loopback_ice() -> None:
    """ICE candidates on 127.0.0.1 only for every peer connection of this process (a
    bench's clients: the server they talk to is on loopback)."""
    aiortc_hooks.install(["127.0.0.1"])


def camera_source(room: MediaRoom) -> Any:
    """What a recorder participant subscribes to in a room: the caller's camera slot."""
    return room.tracks["camera"]


def probe_first_moments(mark: Callable[[str], None]) -> Callable[[], None]:
    """Call mark(step) at the caller's camera moments in this process's server (bench/lib/
    first_frame_browser.py): `server_offer_in` / `server_answer_out` around a caller's
    offer, `server_first_rtp` for each camera RTP packet, `server_first_keyframe` for each
    camera keyframe (mark keeps the first). Returns what undoes it. A method renamed in
    server/media/ loses its step, never the bench."""
    undo: list[Callable[[], None]] = []

    def wrap(owner: Any, attr: str, before: Callable[..., None], after: Any = None) -> None:
        original = getattr(owner, attr, None)
        if original is None:
            return
        if asyncio.iscoroutinefunction(original):

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                before(*args)
                result = await original(*args, **kwargs)
                if after is not None:
                    after(*args)
                return result
        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                before(*args)
                return original(*args, **kwargs)

        setattr(owner, attr, wrapper)
        undo.append(lambda: setattr(owner, attr, original))

    def caller(step: str) -> Callable[..., None]:
        return lambda room, participant, role, *a: role == "caller" and mark(step)

    def camera(step: str, track_of: Callable[[Any], Any]) -> Callable[..., None]:
        return lambda obj, *a: track_of(obj).name == "camera" and mark(step)

    wrap(MediaRoom, "handle_offer", caller("server_offer_in"), caller("server_answer_out"))
    wrap(rtp_publisher.RtpPublisher, "_on_rtp", camera("server_first_rtp", lambda p: p.room_track))
    wrap(relay.RoomTrack, "keyframe_arrived", camera("server_first_keyframe", lambda t: t))

    def uninstall() -> None:
        while undo:
            undo.pop()()

    return uninstall


def switchable_part(part: str) -> Callable[[bool], None]:
    """A part of the server a bench switches on and off inside one process
    (bench/inprocess_ab.py); returns the switch. `recorder`: off, frame assembly does
    nothing, so frame subscribers get no frames; `batching`: off,
    assembly_batch.ASSEMBLY_BATCH_S is 0 (assembled in the next pass of the loop)."""
    state = {"on": True}
    if part == "recorder":
        original = rtp_publisher.RtpPublisher.assemble_backlog

        def assemble_backlog(self: Any) -> None:
            if state["on"]:
                original(self)
            else:
                self._backlog = []

        rtp_publisher.RtpPublisher.assemble_backlog = assemble_backlog  # type: ignore[method-assign]
    elif part != "batching":
        raise ValueError(f"unknown part {part!r}")
    shipped = assembly_batch.ASSEMBLY_BATCH_S

    def switch(on: bool) -> None:
        state["on"] = on
        if part == "batching":
            assembly_batch.ASSEMBLY_BATCH_S = shipped if on else 0.0

    return switch
