"""The async backend's primitives (the sync twins are ``threading``'s own)."""

from __future__ import annotations

import asyncio

import pytest

from comfykit._backends.asyncio import Background, Lock


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
