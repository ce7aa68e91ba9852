"""An httpx transport for threads: the pool never closes a connection under a running request.

httpcore's sync pool (1.0.9, encode/httpcore#1110) decides whether a pooled connection is dead
in two reads: "is it idle?", then "is its socket readable?". A thread that makes that check on
connection A can be suspended between the two reads while another thread starts a request on A
and the server answers it. The check then sees an idle connection with bytes waiting, takes
them for the server closing, and closes A under the request, which waits on the closed socket
until its read timeout (30 s by default). With 64 threads sharing one ``ComfyClient`` this
happened in about one round of 128 jobs in 150.

:class:`GuardedTransport` is ``httpx.HTTPTransport`` with each pooled connection wrapped in a
:class:`GuardedConnection`, which answers "expired?" with ``False`` while a request uses the
connection or when one started during the check. The async pool needs no guard: its check
runs without a suspension point between the two reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import TracebackType

import httpcore
import httpx

from comfykit._compat import replace_pool

__all__ = ["GuardedConnection", "GuardedTransport"]


class GuardedConnection(httpcore.ConnectionInterface):
    """A pooled connection that never reports "expired" while a request uses it."""

    def __init__(self, inner: httpcore.ConnectionInterface) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._busy = 0
        self._starts = 0

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request``; the connection counts as busy until the response is closed."""
        with self._lock:
            self._busy += 1
            self._starts += 1
        try:
            response = self._inner.handle_request(request)
        except BaseException:
            self._release()
            raise
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_ReleasingStream(response, self._release),
            extensions=response.extensions,
        )

    def _release(self) -> None:
        with self._lock:
            self._busy -= 1

    def has_expired(self) -> bool:
        """Whether the pool may close this connection: never while a request uses it."""
        with self._lock:
            if self._busy:
                return False
            before = self._starts
        expired = self._inner.has_expired()
        with self._lock:
            # A request that started during the check may be what made the socket readable.
            return expired and not self._busy and self._starts == before

    def close(self) -> None:
        """Close the wrapped connection."""
        self._inner.close()

    def info(self) -> str:
        """The wrapped connection's description."""
        return self._inner.info()

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        """Whether the wrapped connection serves ``origin``."""
        return self._inner.can_handle_request(origin)

    def is_available(self) -> bool:
        """Whether the wrapped connection can take a request now."""
        return self._inner.is_available()

    def is_idle(self) -> bool:
        """Whether the wrapped connection is idle."""
        return self._inner.is_idle()

    def is_closed(self) -> bool:
        """Whether the wrapped connection is closed."""
        return self._inner.is_closed()

    def __enter__(self) -> GuardedConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<GuardedConnection {self._inner!r}>"


class _ReleasingStream:
    """A response body that marks its connection free once closed."""

    def __init__(self, response: httpcore.Response, release: Callable[[], None]) -> None:
        self._response = response
        self._release = release
        self._released = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self._response.iter_stream()

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            if not self._released:
                self._released = True
                self._release()


class _GuardedPool(httpcore.ConnectionPool):
    def create_connection(self, origin: httpcore.Origin) -> httpcore.ConnectionInterface:
        return GuardedConnection(super().create_connection(origin))


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose pool keeps running requests' connections open.

    The guard covers the one check that closes a pooled connection from another thread
    (``has_expired()``). httpcore's pool has a second one, for surplus idle connections: it
    closes every connection found idle while the pool holds more connections than
    ``max_keepalive_connections`` (1.0.9 counts all of them, idle or not), and a connection just
    handed to another thread's request still looks idle until that request starts. With
    ``max_keepalive_connections == max_connections`` (what comfykit's clients use) the pool
    never holds more, so that branch never runs: the guard alone is then enough, and no
    connection is closed and reopened between two requests. Hence the check below.
    """

    def __init__(self, limits: httpx.Limits) -> None:
        if limits.max_keepalive_connections != limits.max_connections:
            raise ValueError(
                "GuardedTransport needs max_keepalive_connections == max_connections (httpcore "
                "closes surplus idle connections unguarded), got "
                f"{limits.max_keepalive_connections} and {limits.max_connections}"
            )
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        # The same pool httpx built (HTTP/1.1, no retries, the same TLS context) with guarded
        # connections, swapped in through comfykit._compat.
        self.guarded = replace_pool(
            self,
            _GuardedPool(
                ssl_context=ssl_context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
            ),
        )
        """False when the installed httpx keeps its pool elsewhere: then this is httpx's own."""
