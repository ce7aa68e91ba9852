"""``scripts/unasync.py``: the translation, its scopes, the stale-rule failure and ``--check``."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "unasync.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["unasync"] = module  # dataclasses look the module up while building Rule
    spec.loader.exec_module(module)
    return module


unasync = _load()
SOURCE = '''\
"""``AsyncComfyClient`` helpers: await the job. Async client only."""

from comfykit._backends import asyncio as backend


async def run(client: AsyncComfyClient) -> None:
    # await here is a word, and so is aclose
    async with client:
        await client.aclose()
    print("await me", f"{AsyncJob}")
'''


def body(text: str) -> str:
    assert text.startswith(unasync.HEADER)
    return str(text[len(unasync.HEADER) :])


def test_code_is_translated_and_prose_only_by_the_rules_meant_for_it() -> None:
    hits: Counter[object] = Counter()
    out = body(unasync.translate(SOURCE, hits=hits))
    assert (
        out
        == '''\
"""``ComfyClient`` helpers: await the job. Blocking client only."""

from comfykit._backends import sync as backend


def run(client: ComfyClient) -> None:
    # await here is a word, and so is close
    with client:
        client.close()
    print("await me", f"{Job}")
'''
    )
    matched = {str(rule) for rule in hits}
    assert any("_backends import asyncio" in rule for rule in matched)


def test_segments_cover_the_source_and_tell_code_from_prose() -> None:
    pieces = list(unasync.segments(SOURCE))
    assert "".join(text for _, text in pieces) == SOURCE
    prose = [text for kind, text in pieces if kind == "prose"]
    assert "# await here is a word, and so is aclose" in prose
    assert 'f"{AsyncJob}"' in prose
    assert all("async def" not in text for text in prose)


def test_the_checked_in_sync_tree_is_what_the_script_generates() -> None:
    files, unused = unasync.expected()
    assert unused == []
    for path, content in files.items():
        assert path.read_text() == content, f"{path} is stale: run make unasync"
    generated = {p.name for p in unasync.DEST.glob("*.py")}
    assert generated == {p.name for p in unasync.SRC.glob("*.py")}  # nothing hand-written


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    src, dest = tmp_path / "_async", tmp_path / "_sync"
    src.mkdir()
    dest.mkdir()
    (src / "mod.py").write_text("async def f() -> None:\n    await g()\n")
    return src, dest


RULES = (
    unasync.Rule(r"\basync def\b", "def", "code"),
    unasync.Rule(r"\bawait\s+", "", "code"),
)


def test_regenerate_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dest = _tree(tmp_path)
    (dest / "leftover.py").write_text("x = 1\n")
    assert unasync.run(check=True, src=src, dest=dest, rules=RULES) == 1
    err = capsys.readouterr().err
    assert "stale generated file" in err and "mod.py" in err and "leftover.py" in err

    assert unasync.run(check=False, src=src, dest=dest, rules=RULES) == 0
    assert body((dest / "mod.py").read_text()) == "def f() -> None:\n    g()\n"
    assert not (dest / "leftover.py").exists()
    assert unasync.run(check=True, src=src, dest=dest, rules=RULES) == 0

    (dest / "mod.py").write_text((dest / "mod.py").read_text() + "# edited by hand\n")
    assert unasync.run(check=True, src=src, dest=dest, rules=RULES) == 1


def test_a_rule_that_matches_nothing_fails_and_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dest = _tree(tmp_path)
    stale = unasync.Rule(r"\bAsyncGone\b", "Gone")
    for check in (True, False):
        assert unasync.run(check=check, src=src, dest=dest, rules=(*RULES, stale)) == 1
        assert "matches nothing" in capsys.readouterr().err
        assert not (dest / "mod.py").exists()  # nothing written while a rule is stale
    assert str(stale) == "'\\\\bAsyncGone\\\\b' -> 'Gone' (all)"


def test_a_code_rule_does_not_count_matches_in_prose(tmp_path: Path) -> None:
    src, dest = _tree(tmp_path)
    (src / "mod.py").write_text('"""aread the docs."""\n')
    rule = unasync.Rule(r"\baread\b", "read", "code")
    assert unasync.run(check=False, src=src, dest=dest, rules=(rule,)) == 1
