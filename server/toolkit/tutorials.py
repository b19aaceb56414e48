"""Tutorials an agent can push: one folder each, holding tutorial.json and its images
(docs/protocol.md, "Toolkit over HTTP"). Read and checked on every use, so an operator can
add or fix one without a restart; a broken one is left out and logged."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from server.toolkit import messages as TK

log = logging.getLogger(__name__)

IMAGE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(png|jpg|jpeg|webp)$")
LANGS = ("lv", "en", "ru")
MAX_STEPS = 30


def load(root: Path, tutorial_id: str) -> dict[str, Any] | None:
    """The tutorial's JSON, checked; None when it does not exist or is broken (logged)."""
    if not TK.TUTORIAL_ID_RE.match(tutorial_id):
        return None
    folder = root / tutorial_id
    try:
        data = json.loads((folder / "tutorial.json").read_text(encoding="utf-8"))
        return _check_tutorial(data, folder)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("tutorial %s is not usable: %s", tutorial_id, exc)
        return None


def list_all(root: Path) -> list[dict[str, Any]]:
    found = []
    try:
        names = sorted(p.name for p in root.iterdir() if p.is_dir())
    except OSError:
        log.warning("tutorials folder %s cannot be read", root)
        return []
    for name in names:
        tut = load(root, name)
        if tut is not None:
            found.append({"id": name, "title": tut["title"], "steps": len(tut["steps"])})
    return found


def _lang_texts(value: Any, what: str, limit: int) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(value.get(lang), str) for lang in LANGS):
        raise ValueError(f"{what} needs a text for each of {', '.join(LANGS)}")
    return {lang: value[lang][:limit] for lang in LANGS}


def _check_tutorial(data: Any, folder: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("tutorial.json must be an object")
    steps = data.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise ValueError(f"'steps' must be a list of 1 to {MAX_STEPS} steps")
    out_steps = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise ValueError(f"step {i + 1} must be an object")
        image = step.get("image")
        if image is not None and (
            not isinstance(image, str)
            or not IMAGE_NAME_RE.match(image)
            or not (folder / image).is_file()
        ):
            raise ValueError(f"step {i + 1}: image {image!r} is not a file of the tutorial")
        out_steps.append({"image": image, "text": _lang_texts(step.get("text"), "text", 600)})
    return {"title": _lang_texts(data.get("title"), "title", 120), "steps": out_steps}
