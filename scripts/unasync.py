"""Generate ``src/comfykit/_sync`` from ``src/comfykit/_async``.

The async client is the one implementation; the blocking client is this mechanical translation
(the way httpcore generates its sync code). ``_backend.py`` is the only hand-written twin.

    python scripts/unasync.py           # regenerate
    python scripts/unasync.py --check   # fail if the generated files are stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "comfykit"
SRC = ROOT / "_async"
DEST = ROOT / "_sync"
HAND_WRITTEN = {"_backend.py"}
HEADER = (
    "# Generated from comfykit/_async by scripts/unasync.py. Do not edit: edit _async instead.\n"
)

SUBS: list[tuple[str, str]] = [
    (r"\bcomfykit\._async\b", "comfykit._sync"),
    (r"\bAsyncComfyClient\b", "ComfyClient"),
    (r"\bAsyncEventStream\b", "EventStream"),
    (r"\bAsyncOutputFile\b", "OutputFile"),
    (r"\bAsyncResult\b", "Result"),
    (r"\bAsyncJob\b", "Job"),
    (r"\bAsyncGenerateMixin\b", "GenerateMixin"),
    (r"\bAsyncClientCore\b", "ClientCore"),
    (r"\bAsyncJobContext\b", "JobContext"),
    (r"\bAsyncRetrying\b", "Retrying"),
    (r"\bhttpx\.AsyncClient\b", "httpx.Client"),
    (r"\bhttpx\.AsyncBaseTransport\b", "httpx.BaseTransport"),
    (r"\bhandle_async_request\b", "handle_request"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncIterable\b", "Iterable"),
    (r"\bAwaitable\[None\]", "None"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\baclose\b", "close"),
    (r"\baread\b", "read"),
    (r"\baiter_bytes\b", "iter_bytes"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait\s+", ""),
    (r"\bAsync blocking\b", "Blocking"),
    (r"^(\s*)\"\"\"``AsyncComfyClient``", r'\1"""``ComfyClient``'),
]
_COMPILED = [(re.compile(pattern, re.MULTILINE), repl) for pattern, repl in SUBS]


def translate(source: str) -> str:
    """The blocking twin of one async module."""
    out = source
    for pattern, repl in _COMPILED:
        out = pattern.sub(repl, out)
    out = out.replace("async client", "blocking client").replace("Async client", "Blocking client")
    return HEADER + out


def expected() -> dict[Path, str]:
    """Every generated file and its content."""
    files: dict[Path, str] = {}
    for path in sorted(SRC.glob("*.py")):
        if path.name in HAND_WRITTEN:
            continue
        files[DEST / path.name] = translate(path.read_text())
    return files


def main() -> int:
    """Regenerate, or with ``--check`` compare and fail when stale."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if _sync is out of date")
    args = parser.parse_args()
    stale = []
    for path, content in expected().items():
        current = path.read_text() if path.exists() else None
        if current != content:
            stale.append(path)
            if not args.check:
                path.write_text(content)
    extra = [p for p in DEST.glob("*.py") if p.name not in HAND_WRITTEN and p not in expected()]
    if args.check:
        if stale or extra:
            for p in [*stale, *extra]:
                print(f"stale generated file: {p.relative_to(ROOT.parent.parent)}", file=sys.stderr)
            print("run: python scripts/unasync.py", file=sys.stderr)
            return 1
        return 0
    for p in extra:
        p.unlink()
    for p in stale:
        print(f"wrote {p.relative_to(ROOT.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
