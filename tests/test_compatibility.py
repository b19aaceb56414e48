"""Safari's rules that the engine tests cannot show (docs/compatibility.md), checked in
the page code itself."""

from __future__ import annotations

import re

from server.paths import WEB_DIR


def web_text(suffix: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in WEB_DIR.glob(f"*{suffix}")}


def test_every_video_plays_inline_and_muted() -> None:
    # Without playsinline iPhone Safari takes a <video> full screen; without muted it will
    # not autoplay. Every <video> of every page has both.
    seen = 0
    for name, html in web_text(".html").items():
        for tag in re.findall(r"<video\b[^>]*>", html):
            seen += 1
            assert "playsinline" in tag and "muted" in tag, (name, tag)
    assert seen >= 3
    for name, js in web_text(".js").items():
        assert 'createElement("video")' not in js, name  # a script-made video would escape


def test_camera_tweaks_only_as_advanced_constraints_after_capabilities() -> None:
    # Torch and zoom: never required constraints (Safari rejects the unknown), only
    # `advanced`, and only for what getCapabilities() said the camera has.
    calls = 0
    for name, js in web_text(".js").items():
        for m in re.finditer(r"applyConstraints\(([^)]*)\)", js):
            calls += 1
            assert m.group(1).lstrip().startswith("{ advanced:"), (name, m.group(0))
            assert "getCapabilities" in js, name
    assert calls >= 2


def test_camera_only_from_a_tap_and_with_a_facing_mode_fallback() -> None:
    # The first getUserMedia runs in startCamera (the "Turn on the camera" click, never at
    # load); `facingMode` is `ideal`, never `exact`, with a plain {video: true} fallback.
    caller = (WEB_DIR / "caller-camera.js").read_text()
    assert "facingMode: { ideal:" in caller and "{ video: true, audio: false }" in caller
    for name, js in web_text(".js").items():
        assert "exact:" not in js, name
        if "getUserMedia(" in js and name not in ("caller-camera.js", "toolkit-caller-camera.js"):
            raise AssertionError(f"{name} calls getUserMedia outside the camera modules")
    main = (WEB_DIR / "caller.js").read_text()
    assert 'el("start-camera").addEventListener("click"' in main
