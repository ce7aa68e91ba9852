"""Async I/O primitives. Hand-written twin: ``_sync/_backend.py`` (everything else is generated).

The rest of ``_async`` is turned into ``_sync`` by ``scripts/unasync.py``; only the handful of
primitives that have no mechanical blocking equivalent live here and in ``_sync/_backend.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect

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


class Lock:
    """A lock whose ``acquire`` gives up after ``timeout`` seconds."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def acquire(self, timeout: float | None) -> bool:
        """Acquire; False when ``timeout`` passed first."""
        if timeout is None:
            await self._lock.acquire()
            return True
        try:
            await asyncio.wait_for(self._lock.acquire(), max(timeout, 0))
        except (asyncio.TimeoutError, TimeoutError):
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
        try:
            return await asyncio.wait_for(self._conn.recv(), max(timeout, 0))
        except asyncio.TimeoutError as exc:  # an alias of TimeoutError from 3.11 on
            raise TimeoutError from exc

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
