"""WebSocket traffic recorded from the real server (``scripts/record_event_fixtures.py``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "events"
SCENARIOS = sorted(p.stem for p in FIXTURES.glob("*.jsonl"))


def load(name: str) -> tuple[dict[str, Any], list[str | bytes], dict[str, Any]]:
    """(submit info, raw frames in order, history entry) of one recorded scenario."""
    submit: dict[str, Any] = {}
    frames: list[str | bytes] = []
    history: dict[str, Any] = {}
    for line in (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if "submit" in item:
            submit = item["submit"]
        elif "text" in item:
            frames.append(item["text"])
        elif "binary" in item:
            frames.append(base64.b64decode(item["binary"]))
        elif "history" in item:
            history = item["history"]
    return submit, frames, history
