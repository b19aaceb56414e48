"""A room's load, and when a measured step holds it."""

from __future__ import annotations

from typing import Any

# The caller's camera (forwarded to the agent and recorded) and the agent's screen.
CAMERA = {"width": 640, "height": 480, "fps": 30, "bitrate": 1_000_000, "frames": 150}
SCREEN = {"width": 1280, "height": 720, "fps": 5, "bitrate": 300_000, "frames": 15}
HOLD_FPS = 29.0
HOLD_LOSS = 0.01


def holds(m: dict[str, Any]) -> bool:
    return m["fps_mean"] >= HOLD_FPS and m["loss"] < HOLD_LOSS
