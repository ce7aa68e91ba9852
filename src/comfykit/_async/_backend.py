"""Async I/O primitives. Hand-written twin: ``_sync/_backend.py`` (everything else is generated).

The rest of ``_async`` is turned into ``_sync`` by ``scripts/unasync.py``; only the handful of
primitives that have no mechanical blocking equivalent live here and in ``_sync/_backend.py``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = [
    "Lock",
    "WebSocket",
    "blocking_fetch",
    "monotonic",
    "open_websocket",
    "prefetch",
    "sleep",
]

monotonic = time.monotonic


async def sleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


_T = TypeVar("_T")


async def _within(awaitable: Coroutine[Any, Any, _T], timeout: float) -> _T:
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


class Lock:
    """A lock whose ``acquire`` gives up after ``timeout`` seconds."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def acquire(self, timeout: float | None) -> bool:
        """Acquire; False when ``timeout`` passed first."""
        if timeout is None or not self._lock.locked():
            await self._lock.acquire()
            return True
        try:
            await _within(self._lock.acquire(), timeout)
        except TimeoutError:
            return False
        return True

    def release(self) -> None:
        """Release."""
        self._lock.release()


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


async def prefetch(files: Sequence[_Readable]) -> list[bytes] | None:
    """Download ``files`` now, concurrently (an async result cannot download lazily)."""
    return list(await asyncio.gather(*(f.read() for f in files)))


#: Async results are prefetched, so they need no blocking download function.
blocking_fetch: Callable[[Any], bytes] | None = None
