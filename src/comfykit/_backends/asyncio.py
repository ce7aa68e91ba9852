"""Async I/O primitives of ``_async``; the blocking twin is :mod:`comfykit._backends.sync`.

``_async`` is turned into ``_sync`` by ``scripts/unasync.py``; only the handful of primitives
that have no mechanical blocking equivalent live here and in the sync backend, which offers the
same names.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import httpx
    from websockets.asyncio.client import ClientConnection

monotonic = time.monotonic

#: The stream's background reader keeps reading while jobs are waited for: on one event loop,
#: waking a waiting task costs next to nothing.
READER_STEPS_ASIDE = False
#: How often a background reader that steps aside checks for waiters (not needed here).
READER_POLL: float | None = None
#: How long nobody must have waited before a reader that steps aside reads (not needed here).
READER_IDLE = 0.0


#: What a task gets when its event loop cancels it (``asyncio.run()`` ending cancels them all).
Cancelled = asyncio.CancelledError


def event_loop() -> object | None:
    """The running event loop: a client's sockets and pool belong to the loop they opened on."""
    return asyncio.get_running_loop()


def loop_is_running(loop: object | None) -> bool:
    """True when ``loop`` (from :func:`event_loop`) is the running loop, or there is none."""
    return loop is None or loop is asyncio.get_running_loop()


async def sleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


_T = TypeVar("_T")


async def _within(awaitable: Awaitable[_T], timeout: float) -> _T:
    """Await with a deadline; ``TimeoutError`` when it passes.

    ``asyncio.timeout`` (3.11+) cancels in place; ``wait_for`` on 3.10 wraps the awaitable in a
    task, which costs an extra loop round trip per call.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(max(timeout, 0)):
            return await awaitable
    try:
        return await asyncio.wait_for(awaitable, max(timeout, 0))
    except asyncio.TimeoutError as exc:
        raise TimeoutError from exc


def deadline_scope(deadline: float | None) -> contextlib.AbstractAsyncContextManager[Any]:
    """One timer for a whole wait (3.11+): ``TimeoutError`` when ``deadline`` passes.

    Setting a timeout on every frame read would arm and cancel a timer per frame.
    """
    if sys.version_info >= (3, 11) and deadline is not None:
        loop = asyncio.get_running_loop()
        return asyncio.timeout_at(loop.time() + (deadline - time.monotonic()))
    return contextlib.nullcontext()


def per_call_timeout(remaining: float | None) -> float | None:
    """The timeout of one wait inside :func:`deadline_scope` (none needed from 3.11 on)."""
    return remaining if sys.version_info < (3, 11) else None


class Lock:
    """A lock whose ``acquire`` gives up after ``timeout`` seconds (``0``: never waits).

    Not ``asyncio.Lock``: a task queued in ``asyncio.Lock.acquire`` makes the lock unavailable
    to everybody else even while it is free, and ``acquire(0)`` must never wait.
    """

    def __init__(self) -> None:
        self._held = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def locked(self) -> bool:
        """True while somebody holds the lock."""
        return self._held

    async def acquire(self, timeout: float | None) -> bool:
        """Acquire; False when ``timeout`` passed first."""
        if not self._held:
            self._held = True
            return True
        if timeout is not None and timeout <= 0:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            if timeout is None:
                await waiter
            else:
                await _within(waiter, timeout)
        except BaseException as exc:
            handed = waiter.done() and not waiter.cancelled()
            if isinstance(exc, TimeoutError):
                return handed  # handed over just as the time ran out: ours after all
            if handed:
                self.release()  # handed over just as we were cancelled: pass it on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return True

    def release(self) -> None:
        """Release, handing the lock straight to the longest waiting task if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # still held: it belongs to that task now
                return
        self._held = False


class Signal:
    """A flag one task sets and another waits for."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        """Wake the waiter."""
        self._event.set()

    def clear(self) -> None:
        """Reset after waking."""
        self._event.clear()

    async def wait(self, timeout: float | None) -> bool:
        """Wait until set; False when ``timeout`` passed first."""
        if timeout is None:
            await self._event.wait()
            return True
        try:
            await _within(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True


class Background:
    """A coroutine function running as a task of the current event loop."""

    def __init__(
        self, fn: Callable[[], Coroutine[Any, Any, None]], name: str = "comfykit-ws-reader"
    ) -> None:
        self._task = asyncio.get_running_loop().create_task(fn(), name=name)

    @property
    def alive(self) -> bool:
        """True until the task has finished."""
        return not self._task.done()

    async def join(self, timeout: float) -> None:
        """Wait for the task to finish; cancel it if it has not after ``timeout`` seconds."""
        if self._task is asyncio.current_task():
            return
        try:
            await _within(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


_detached: set[asyncio.Task[None]] = set()  # strong references until they finish


def run_detached(reader: Background | None, fn: Callable[[], Awaitable[None]]) -> None:
    """Run ``fn()`` as a task of the event loop ``reader`` runs on, from any thread; nothing
    when there is no reader (then no socket is open) or its loop is gone."""
    if reader is None:
        return
    loop = reader._task.get_loop()

    async def run() -> None:
        await fn()

    def start() -> None:
        task = loop.create_task(run())
        _detached.add(task)
        task.add_done_callback(_detached.discard)

    with contextlib.suppress(RuntimeError):  # the loop is closed
        loop.call_soon_threadsafe(start)


class Mutex:
    """Guards shared bookkeeping. Nothing to do on one event loop: no ``await`` runs inside."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class WebSocket:
    """A connected WebSocket with a receive timeout."""

    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn

    async def recv(self, timeout: float | None) -> str | bytes:
        """Next frame; ``TimeoutError`` when none arrives in time."""
        if timeout is None:
            return await self._conn.recv()
        return await _within(self._conn.recv(), timeout)

    async def send(self, message: str) -> None:
        """Send a text frame."""
        await self._conn.send(message)

    async def close(self) -> None:
        """Close (best effort)."""
        await self._conn.close()


async def open_websocket(
    url: str, headers: Mapping[str, str], open_timeout: float | None
) -> WebSocket:
    """Open a WebSocket with no frame-size limit and an unbounded receive queue."""
    from websockets.asyncio.client import connect  # imported on first use: it is slow to import

    conn = await connect(
        url,
        additional_headers=dict(headers),
        open_timeout=open_timeout,
        max_size=None,
        max_queue=None,
        ping_interval=20,
        ping_timeout=60,
        compression=None,
    )
    return WebSocket(conn)


class _Readable(Protocol):
    def read(self) -> Awaitable[bytes]: ...


def guard_http_pool(http: httpx.AsyncClient, limits: httpx.Limits) -> None:  # noqa: ARG001
    """Nothing to do: the sync twin makes a client's pool safe under many threads."""


async def prefetch(files: Sequence[_Readable]) -> list[bytes] | None:
    """Download ``files`` now, concurrently (an async result cannot download lazily)."""
    return list(await asyncio.gather(*(f.read() for f in files)))


#: Async results are prefetched, so they need no blocking download function.
blocking_fetch: Callable[[Any], bytes] | None = None
