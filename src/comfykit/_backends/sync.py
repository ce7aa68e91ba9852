"""Blocking I/O primitives of ``_sync``; the async twin is :mod:`comfykit._backends.asyncio`.

All of ``_sync`` is generated from ``_async`` by ``scripts/unasync.py``. Only plain blocking
calls are used, so the sync client also works inside a running event loop (notebooks).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from comfykit._compat import replace_transport, ws_proxy_configured

if TYPE_CHECKING:
    import httpx
    from websockets.sync.client import ClientConnection

    from comfykit._backends.blocking_ws import BlockingWebSocket

monotonic = time.monotonic

#: The stream's background reader steps aside while anybody waits, and the waiting threads read
#: the socket themselves: handing each finished job from the reader thread to the waiting one
#: costs a thread wake-up on the critical path.
READER_STEPS_ASIDE = True
#: How often the background reader checks whether somebody started waiting (seconds).
READER_POLL: float | None = 0.1
#: The background reader reads only once nobody has waited for this long (seconds): jobs run
#: back to back never involve it, while the socket of a client that stopped waiting is read
#: again soon, before what the server broadcasts meanwhile can fill its buffers.
READER_IDLE = 0.25


class Cancelled(BaseException):
    """Never raised: threads are not cancelled (the async twin's is ``CancelledError``)."""


def event_loop() -> object | None:
    """No event loop: blocking sockets work from any thread."""
    return None


def loop_is_running(loop: object | None) -> bool:  # noqa: ARG001 - the async twin uses it
    """Always True: nothing here belongs to an event loop."""
    return True


def sleep(seconds: float) -> None:
    """Sleep."""
    time.sleep(seconds)


def deadline_scope(deadline: float | None) -> contextlib.AbstractContextManager[Any]:  # noqa: ARG001
    """Nothing to arm: blocking waits each take their own timeout."""
    return contextlib.nullcontext()


def per_call_timeout(remaining: float | None) -> float | None:
    """Every blocking wait carries the time that is left."""
    return remaining


class Lock:
    """A lock whose ``acquire`` gives up after ``timeout`` seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def locked(self) -> bool:
        """True while somebody holds the lock."""
        return self._lock.locked()

    def acquire(self, timeout: float | None) -> bool:
        """Acquire; False when ``timeout`` passed first (``0``: do not wait at all)."""
        if timeout is None:
            return self._lock.acquire()
        if timeout <= 0:
            return self._lock.acquire(blocking=False)
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        """Release."""
        self._lock.release()


class Signal:
    """A flag one thread sets and another waits for."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Wake the waiter."""
        self._event.set()

    def clear(self) -> None:
        """Reset after waking."""
        self._event.clear()

    def wait(self, timeout: float | None) -> bool:
        """Wait until set; False when ``timeout`` passed first."""
        return self._event.wait(None if timeout is None else max(timeout, 0))


class Background:
    """A function running in a daemon thread."""

    def __init__(self, fn: Callable[[], None], name: str = "comfykit-ws-reader") -> None:
        self._running = True

        def run() -> None:
            try:
                fn()
            finally:
                self._running = False

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True until the function has returned."""
        return self._running

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the function to return."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


def run_detached(reader: Background | None, fn: Callable[[], None]) -> None:  # noqa: ARG001
    """Run ``fn()`` in a daemon thread of its own (the caller may be a finalizer, in any
    thread, even the reader's)."""
    threading.Thread(target=fn, name="comfykit-close", daemon=True).start()


class Mutex:
    """Guards shared bookkeeping between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class WebSocket:
    """A connected WebSocket with a receive timeout."""

    def __init__(self, conn: BlockingWebSocket | ClientConnection) -> None:
        self._conn = conn

    def recv(self, timeout: float | None) -> str | bytes:
        """Next frame; ``TimeoutError`` when none arrives in time."""
        return self._conn.recv(timeout=None if timeout is None else max(timeout, 0))

    def send(self, message: str) -> None:
        """Send a text frame."""
        self._conn.send(message)

    def close(self) -> None:
        """Close (best effort; safe while another thread receives)."""
        self._conn.close()


def open_websocket(url: str, headers: Mapping[str, str], open_timeout: float | None) -> WebSocket:
    """Open a WebSocket with no frame-size limit.

    A direct connection is driven by the thread that reads it
    (:mod:`comfykit._backends.blocking_ws`): no thread of websockets' own, no hand-over per
    frame. Through a proxy from the environment, the connection is made by ``websockets.sync``,
    which knows how to tunnel.
    """
    from websockets.uri import parse_uri

    if not ws_proxy_configured(parse_uri(url)):
        from comfykit._backends.blocking_ws import connect as connect_direct

        return WebSocket(connect_direct(url, headers, open_timeout))

    from websockets.sync.client import connect  # imported on first use: it is slow to import

    conn = connect(
        url,
        additional_headers=dict(headers),
        open_timeout=open_timeout,
        max_size=None,
        max_queue=None,
        ping_interval=20,
        ping_timeout=60,
        compression=None,
    )
    # Entering the connection marks it as managed (websockets >= 17 warns otherwise); leaving it
    # is what WebSocket.close() does.
    return WebSocket(conn.__enter__())


def guard_http_pool(http: httpx.Client, limits: httpx.Limits) -> None:
    """Make the pool of a client made by comfykit safe under many threads: its transport for
    direct connections becomes a :class:`~comfykit._backends.guarded_pool.GuardedTransport`
    (nothing changes when the installed httpx keeps its transport or pool elsewhere: see
    :mod:`comfykit._compat`)."""
    from comfykit._backends.guarded_pool import GuardedTransport

    transport = GuardedTransport(limits)
    if not (transport.guarded and replace_transport(http, transport)):
        transport.close()


def prefetch(files: Sequence[Any]) -> list[bytes] | None:  # noqa: ARG001 - the async twin uses it
    """Nothing now: blocking results download their images on first use."""
    return None


def blocking_fetch(file: Any) -> bytes:
    """Download one output file."""
    data = file.read()
    assert isinstance(data, bytes)
    return data
