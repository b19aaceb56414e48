"""`callassist inspect IMAGE [--json]`: the agent's "read" on a file, for operators and
tests: codes, text lines with their boxes and labels, and the number of faces found."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.core.config import Config
from server.inspect.read import InspectError, Reading, read_still


def render(reading: Reading) -> str:
    """The human summary: one finding a line, its labels after it."""
    lines = [f"{reading.width}x{reading.height}, {len(reading.findings)} findings, "
             f"{reading.faces} faces, {reading.timings_ms['total']:.0f} ms"]  # fmt: skip
    if "text_unavailable" in reading.notes:
        lines.append("text not read: the OCR (tesseract) is missing, failed or was too slow")
    for f in reading.findings:
        x, y, w, h = f.box
        labels = "".join(f"  [{m['label']} {m['value']}]" for m in f.labels)
        lines.append(f"{f.source:4} {f.format:10} {x},{y} {w}x{h}  {f.text}{labels}")
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace, load: Callable[[argparse.Namespace], Config]) -> int:
    ic = load(args).inspect  # the data directory is not used
    try:
        data = Path(args.image).read_bytes()
    except OSError as exc:
        print(f"callassist: cannot read {args.image}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        reading = read_still(data, ic.timeout_s, ic.tesseract)
    except InspectError as exc:
        print(f"callassist: {args.image}: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(reading.as_dict()) if args.json else render(reading))
    return 0


def add_parsers(
    sub: Any, common: Callable[[argparse.ArgumentParser], None],
    load: Callable[[argparse.Namespace], Config],
) -> None:  # fmt: skip
    """Register `inspect` on `callassist`'s subparsers."""
    p = sub.add_parser("inspect", help="read codes and text from an image file (no server)")
    common(p)
    p.add_argument("image", help="a JPEG, PNG or WebP file")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=lambda args: cmd_inspect(args, load))
