"""Fault-test bookkeeping: each job's outcome, the counts a closing note quotes, and where
they are written (``build/fault-figures/<test>.json``, printed too)."""

from __future__ import annotations

import collections
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIGURES_DIR = Path(__file__).resolve().parents[1] / "build" / "fault-figures"


@dataclass
class Outcome:
    """How one job ended: ``completed``, or the error's type (``None`` while it hangs)."""

    prompt_id: str
    ended: str | None = None
    error: str = ""
    seconds: float = 0.0
    servers: list[str] = field(default_factory=list)


@dataclass
class Figures:
    """The figures of one fault test."""

    test: str
    outcomes: list[Outcome]
    runs: dict[str, int]  # per prompt id: how many times it ran (output files, history entries)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def jobs(self) -> int:
        return len(self.outcomes)

    @property
    def completed(self) -> int:
        return sum(o.ended == "completed" for o in self.outcomes)

    @property
    def failed(self) -> dict[str, int]:
        return dict(
            collections.Counter(
                o.ended for o in self.outcomes if o.ended not in (None, "completed")
            )
        )

    @property
    def hung(self) -> int:
        return sum(o.ended is None for o in self.outcomes)

    @property
    def duplicated(self) -> int:
        return sum(1 for n in self.runs.values() if n > 1)

    @property
    def lost_completed(self) -> int:
        """Jobs that ran to the end on a server (their output exists) but whose caller got an
        error: completed results lost."""
        return sum(
            1 for o in self.outcomes if o.ended != "completed" and self.runs.get(o.prompt_id, 0)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "jobs": self.jobs,
            "completed": self.completed,
            "failed": self.failed,
            "failure_examples": {
                kind: next(o.error for o in self.outcomes if o.ended == kind)[:300]
                for kind in self.failed
            },
            "hung": self.hung,
            "duplicated": self.duplicated,
            "completed_results_lost": self.lost_completed,
            "max_seconds": round(max((o.seconds for o in self.outcomes), default=0.0), 2),
            "moved": sum(1 for o in self.outcomes if len(o.servers) > 1),
            **self.notes,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def record(self) -> dict[str, Any]:
        """Print the figures and write them to ``build/fault-figures/<test>.json``."""
        data = self.as_dict()
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        (FIGURES_DIR / f"{self.test}.json").write_text(json.dumps(data, indent=2) + "\n")
        print(f"\nfault figures {self.test}: {json.dumps(data)}")  # noqa: T201
        return data


def count_runs(prefixes: dict[str, str], output_dirs: Iterable[Path]) -> dict[str, int]:
    """Per prompt id, how many files of its own save prefix exist in the output folders (each
    run of a job writes one: more than one is a job that ran twice)."""
    dirs = list(output_dirs)
    runs: dict[str, int] = {}
    for pid, prefix in prefixes.items():
        folder, _, name = prefix.rpartition("/")
        pattern = re.compile(re.escape(name) + r"_\d{5}_\.png$")
        runs[pid] = sum(
            1
            for out in dirs
            if (out / folder).is_dir()
            for f in (out / folder).iterdir()
            if pattern.match(f.name)
        )
    return runs
