"""Generate ``src/comfykit/_sync`` from ``src/comfykit/_async``.

The async client is the one implementation; the blocking client is this mechanical translation
(the way httpcore generates its sync code). Every file in ``_sync`` is generated; the
hand-written I/O primitives live in ``comfykit/_backends``, and the one rule that maps the
asyncio backend's import to the sync one is what ties them in.

Each rule applies to code, to prose (comments and string literals, docstrings included) or to
both: the source is split with :mod:`tokenize`, so ``await`` in a sentence stays a word while
``await`` in code goes. A rule that matches nothing in the whole async tree is an error (it is
stale, or the code it was written for has moved), and so is a generated file that differs from
what is checked in, with ``--check``.

    python scripts/unasync.py           # regenerate
    python scripts/unasync.py --check   # fail if the generated files are stale
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import re
import subprocess
import sys
import tokenize
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1] / "src" / "comfykit"
SRC = ROOT / "_async"
DEST = ROOT / "_sync"
HEADER = (
    "# Generated from comfykit/_async by scripts/unasync.py. Do not edit: edit _async instead.\n"
)

Scope = Literal["code", "prose", "all"]


@dataclass(frozen=True)
class Rule:
    """Replace ``pattern`` (a regular expression) by ``repl`` where ``scope`` says."""

    pattern: str
    repl: str
    scope: Scope = "all"
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))

    def __str__(self) -> str:
        return f"{self.pattern!r} -> {self.repl!r} ({self.scope})"


RULES: tuple[Rule, ...] = (
    # Names: the blocking twin of each public and private async name, in code and in prose.
    Rule(r"\bcomfykit\._async\b", "comfykit._sync"),
    Rule(r"\bAsyncComfyClient\b", "ComfyClient"),
    Rule(r"\bAsyncEventStream\b", "EventStream"),
    Rule(r"\bAsyncOutputFile\b", "OutputFile"),
    Rule(r"\bAsyncResult\b", "Result"),
    Rule(r"\bAsyncJob\b", "Job"),
    Rule(r"\bAsyncGenerateMixin\b", "GenerateMixin"),
    Rule(r"\bAsyncClientCore\b", "ClientCore"),
    Rule(r"\bAsyncJobContext\b", "JobContext"),
    Rule(r"\bAsyncJobHandle\b", "JobHandle"),
    Rule(r"\bAsyncComfyPool\b", "ComfyPool"),
    Rule(r"\bAsyncPoolJob\b", "PoolJob"),
    Rule(r"\bAsyncRetrying\b", "Retrying"),
    Rule(r"\bhttpx\.AsyncClient\b", "httpx.Client"),
    Rule(r"\bhttpx\.AsyncBaseTransport\b", "httpx.BaseTransport"),
    # The hand-written backend of each tree.
    Rule(
        r"\bfrom comfykit\._backends import asyncio as backend\b",
        "from comfykit._backends import sync as backend",
        "code",
    ),  # fmt: skip
    # The language and the libraries' async spellings.
    Rule(r"\bhandle_async_request\b", "handle_request", "code"),
    Rule(r"\bAsyncIterator\b", "Iterator"),
    Rule(r"\bAwaitable\[None\]", "None", "code"),
    Rule(r"\b__aenter__\b", "__enter__", "code"),
    Rule(r"\b__aexit__\b", "__exit__", "code"),
    Rule(r"\baclose\b", "close"),
    Rule(r"\baread\b", "read"),
    Rule(r"\baiter_bytes\b", "iter_bytes", "code"),
    Rule(r"\basync def\b", "def", "code"),
    Rule(r"\basync with\b", "with"),
    Rule(r"\basync for\b", "for"),
    Rule(r"\bawait\s+", "", "code"),
    # Prose that names the client's kind.
    Rule(r"\bAsync client\b", "Blocking client", "prose"),
)


def _line_starts(source: str) -> list[int]:
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _prose_spans(source: str) -> Iterator[tuple[int, int]]:
    """Offsets of every comment and string literal (an f-string counts as one literal, on
    every Python version, so the output does not depend on the one that ran the script)."""
    starts = _line_starts(source)
    fstring_start = getattr(tokenize, "FSTRING_START", None)
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    depth = 0
    open_at = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        begin = starts[tok.start[0] - 1] + tok.start[1]
        end = starts[tok.end[0] - 1] + tok.end[1]
        if tok.type == fstring_start:
            if depth == 0:
                open_at = begin
            depth += 1
        elif tok.type == fstring_end:
            depth -= 1
            if depth == 0:
                yield open_at, end
        elif depth == 0 and tok.type in (tokenize.COMMENT, tokenize.STRING):
            yield begin, end


def segments(source: str) -> Iterator[tuple[Literal["code", "prose"], str]]:
    """``source`` cut into consecutive code and prose pieces."""
    at = 0
    for begin, end in _prose_spans(source):
        if begin > at:
            yield "code", source[at:begin]
        yield "prose", source[begin:end]
        at = end
    if at < len(source):
        yield "code", source[at:]


def translate(source: str, rules: Sequence[Rule] = RULES, hits: Counter[Rule] | None = None) -> str:
    """The blocking twin of one async module; ``hits`` counts the matches of each rule."""
    out: list[str] = []
    for kind, text in segments(source):
        for rule in rules:
            if rule.scope in (kind, "all"):
                text, n = rule.regex.subn(rule.repl, text)
                if hits is not None and n:
                    hits[rule] += n
        out.append(text)
    return HEADER + "".join(out)


def tidy(source: str, path: Path) -> str:
    """``source`` with its imports sorted and the ones translation left unused removed
    (``Awaitable`` once ``Awaitable[None]`` became ``None``), then formatted, by the pinned
    ruff: the generated files are linted and format-checked like every other."""
    fixed = _ruff_stdin(["check", "--fix-only", "--quiet", "--select", "I,F401"], source, path)
    return _ruff_stdin(["format", "--quiet"], fixed, path)


def _ruff_stdin(command: list[str], source: str, path: Path) -> str:
    try:
        done = subprocess.run(
            [*_ruff(), *command, "--stdin-filename", str(path), "-"],
            input=source, capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"unasync needs ruff (make install): {exc}") from exc
    return done.stdout


def _ruff() -> list[str]:
    """The pinned ruff: this interpreter's, else the project's virtualenv's (``make install``),
    so ``python3 scripts/unasync.py --check`` works outside the virtualenv too."""
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    venv_ruff = ROOT.parents[1] / ".venv" / "bin" / "ruff"
    return [str(venv_ruff)] if venv_ruff.exists() else ["ruff"]


def expected(
    src: Path = SRC, dest: Path = DEST, rules: Sequence[Rule] = RULES
) -> tuple[dict[Path, str], list[Rule]]:
    """Every generated file with its content, and the rules that matched nothing."""
    hits: Counter[Rule] = Counter()
    files = {
        dest / path.name: tidy(translate(path.read_text(), rules, hits), dest / path.name)
        for path in sorted(src.glob("*.py"))
    }
    return files, [rule for rule in rules if not hits[rule]]


def run(*, check: bool, src: Path = SRC, dest: Path = DEST, rules: Sequence[Rule] = RULES) -> int:
    """Regenerate ``dest`` (or with ``check``, compare it); non-zero on a stale rule or file."""
    files, unused = expected(src, dest, rules)
    if unused:
        for rule in unused:
            print(f"unasync rule matches nothing in {src.name}: {rule}", file=sys.stderr)
        print("remove the rule from scripts/unasync.py, or fix its pattern", file=sys.stderr)
        return 1
    stale = [p for p, content in files.items() if not p.exists() or p.read_text() != content]
    extra = sorted(p for p in dest.glob("*.py") if p not in files)
    if check:
        for p in [*stale, *extra]:
            print(f"stale generated file: {p}", file=sys.stderr)
        if stale or extra:
            print("run: make unasync", file=sys.stderr)
            return 1
        return 0
    for p in extra:
        p.unlink()
        print(f"removed {p}")
    for p in stale:
        p.write_text(files[p])
        print(f"wrote {p}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate, or with ``--check`` compare and fail when stale."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if _sync is out of date")
    args = parser.parse_args(argv)
    return run(check=bool(args.check))


if __name__ == "__main__":
    raise SystemExit(main())
