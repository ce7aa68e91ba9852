"""The backends: both offer the same names; the async backend's primitives (the sync twins are
``threading``'s own)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from comfykit._backends import INTERFACE
from comfykit._backends import asyncio as async_backend
from comfykit._backends import sync as sync_backend
from comfykit._backends.asyncio import Background, Lock

ASYNC_TREE = Path(__file__).resolve().parents[2] / "src" / "comfykit" / "_async"


def test_both_backends_offer_the_interface_and_the_clients_use_no_more() -> None:
    for module in (async_backend, sync_backend):
        missing = [name for name in INTERFACE if not hasattr(module, name)]
        assert not missing, f"{module.__name__} lacks {missing}"
    used = {
        name
        for path in ASYNC_TREE.glob("*.py")
        for name in re.findall(r"\bbackend\.(\w+)", path.read_text())
    }
    assert used <= set(INTERFACE), used - set(INTERFACE)


async def test_acquire_zero_never_waits_even_with_a_task_queued() -> None:
    lock = Lock()
    assert await lock.acquire(0)
    queued = asyncio.create_task(lock.acquire(None))
    await asyncio.sleep(0)
    assert not queued.done()
    assert not await lock.acquire(0)  # held, and a task is queued: no waiting
    lock.release()
    assert await queued  # handed straight to the queued task ...
    assert lock.locked()  # ... so it never looked free
    assert not await lock.acquire(0)
    lock.release()
    assert not lock.locked()


async def test_acquire_times_out_and_leaves_the_queue() -> None:
    lock = Lock()
    await lock.acquire(None)
    assert not await lock.acquire(0.01)
    lock.release()
    assert not lock.locked()  # nobody was left queued to hand it to


async def test_a_cancelled_waiter_that_was_handed_the_lock_passes_it_on() -> None:
    lock = Lock()
    await lock.acquire(None)
    first = asyncio.create_task(lock.acquire(None))
    second = asyncio.create_task(lock.acquire(None))
    await asyncio.sleep(0)
    lock.release()  # handed to `first` ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second
    lock.release()
    assert not lock.locked()


async def test_background_join_waits_then_cancels_a_task_that_does_not_finish() -> None:
    finished = asyncio.Event()

    async def quick() -> None:
        await asyncio.sleep(0)
        finished.set()

    task = Background(quick)
    await task.join(5)
    assert finished.is_set() and not task.alive

    async def forever() -> None:
        await asyncio.Event().wait()

    stuck = Background(forever)
    await stuck.join(0.01)
    assert not stuck.alive
