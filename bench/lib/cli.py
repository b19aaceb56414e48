"""The command line every bench shares: its docstring's first line as the description,
`--json` for one JSON object on stdout (the summary otherwise), errors-only logging."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench's parser, with `--json` already on it; `doc` is the bench's __doc__."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def emit(result: dict[str, Any], as_json: bool, summary: Callable[[dict[str, Any]], str]) -> None:
    """One JSON object (one line, nothing else on stdout), or the human summary."""
    print(json.dumps(result) if as_json else summary(result))


def quiet_logs() -> None:
    # aiortc and aioice log every ICE and DTLS step at INFO; a bench prints only its result.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
