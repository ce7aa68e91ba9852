"""Options of the test harness's server that can be checked without starting ComfyUI."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from comfykit.testing import ComfyUIServer
from comfykit.testing.__main__ import cpu_list
from comfykit.testing._server import _child_setup

linux_only = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity"), reason="CPU affinity is a Linux feature"
)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0,2", {0, 2}), ("1-3", {1, 2, 3}), ("0, 2-3", {0, 2, 3})],
)
def test_cpu_list_reads_taskset_syntax(text: str, cpus: set[int]) -> None:
    assert cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "-1", "0,,1"])
def test_cpu_list_rejects_what_is_not_a_cpu_list(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a CPU list"):
        cpu_list(text)


@linux_only
def test_server_rejects_cpus_the_process_cannot_use() -> None:
    available = os.sched_getaffinity(0)
    unavailable = max(available) + 1000
    with pytest.raises(ValueError, match=rf"\[{unavailable}\] not available to this process"):
        ComfyUIServer(cpus={min(available), unavailable})
    with pytest.raises(ValueError, match="at least one CPU"):
        ComfyUIServer(cpus=[])
    assert ComfyUIServer(cpus=[min(available)]).cpus == frozenset({min(available)})
    assert ComfyUIServer().cpus is None


@linux_only
def test_child_setup_pins_the_child_and_every_thread_it_starts() -> None:
    cpu = min(os.sched_getaffinity(0))
    code = (
        "import os, threading\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))\n"
        "t.start(); t.join()\n"
        "print(sorted(os.sched_getaffinity(0)), sorted(seen[0]), os.getsid(0) == os.getpid())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: _child_setup(frozenset({cpu})),  # noqa: PLW1509
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert out.split() == [f"[{cpu}]", f"[{cpu}]", "True"]
