"""The sync client's pool never closes a connection under a running request (encode/httpcore#1110).

httpcore checks whether an idle pooled connection died in two reads ("idle?", then "socket
readable?"). ``FakeConnection`` checks the same way and lets a test run code between the two
reads, as another thread can when the checking thread is suspended there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpcore
import httpx
import pytest

from comfykit import AsyncComfyClient, ComfyClient
from comfykit._backends.guarded_pool import GuardedConnection, GuardedTransport

ORIGIN = httpcore.Origin(b"http", b"127.0.0.1", 8188)


class FakeConnection(httpcore.ConnectionInterface):
    """An HTTP/1.1 connection to a server that answers at once."""

    def __init__(self) -> None:
        self.state = "IDLE"
        self.readable = False  # bytes (or EOF) waiting on the socket
        self.between_reads: Callable[[], None] = lambda: None
        self.closed = False
        self.fail_next: Exception | None = None
        self.sent: list[httpcore.Request] = []

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        self.sent.append(request)
        if self.fail_next is not None:
            raise self.fail_next
        self.state = "ACTIVE"
        self.readable = True  # the server's answer arrived

        fake = self

        class Body:
            def __iter__(self) -> Iterator[bytes]:
                yield b"{}"

            def close(self) -> None:
                fake.readable = False
                fake.state = "IDLE"

        return httpcore.Response(200, content=Body())

    def has_expired(self) -> bool:
        idle = self.state == "IDLE"
        self.between_reads()
        return idle and self.readable

    def close(self) -> None:
        self.closed = True

    def info(self) -> str:
        return "fake"

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        return origin == ORIGIN

    def is_available(self) -> bool:
        return self.state == "IDLE"

    def is_idle(self) -> bool:
        return self.state == "IDLE"

    def is_closed(self) -> bool:
        return self.closed


def guarded() -> tuple[FakeConnection, GuardedConnection]:
    inner = FakeConnection()
    return inner, GuardedConnection(inner)


def request() -> httpcore.Request:
    return httpcore.Request("GET", "http://127.0.0.1:8188/queue")


def test_the_fake_has_the_race_that_the_guard_closes() -> None:
    inner = FakeConnection()
    started: list[httpcore.Response] = []
    inner.between_reads = lambda: started.append(inner.handle_request(request()))
    # Unguarded: a request started between the two reads looks like the server hanging up.
    assert inner.has_expired()
    assert started


def test_a_request_started_during_the_check_keeps_the_connection() -> None:
    inner, conn = guarded()
    started: list[httpcore.Response] = []
    inner.between_reads = lambda: started.append(conn.handle_request(request()))
    assert not conn.has_expired()
    assert started and len(inner.sent) == 1
    inner.between_reads = lambda: None
    assert not conn.has_expired()  # still busy: its response is open
    started[0].read()
    started[0].close()
    assert not conn.has_expired()  # idle, nothing waiting
    inner.readable = True  # now the server really hangs up
    assert conn.has_expired()


def test_a_request_that_started_and_finished_during_the_check_keeps_it_too() -> None:
    inner, conn = guarded()

    def whole_request() -> None:
        response = conn.handle_request(request())
        response.read()
        response.close()
        inner.readable = True  # a late byte the check would take for a hang-up

    inner.between_reads = whole_request
    assert not conn.has_expired()


def test_a_busy_connection_is_never_expired() -> None:
    inner, conn = guarded()
    response = conn.handle_request(request())
    inner.state = "IDLE"  # even if the inner connection claimed to be idle and readable
    assert not conn.has_expired()
    response.close()
    inner.readable = True
    assert conn.has_expired()


def test_a_failed_request_frees_the_connection() -> None:
    inner, conn = guarded()
    inner.fail_next = httpcore.ConnectionNotAvailable()
    with pytest.raises(httpcore.ConnectionNotAvailable):
        conn.handle_request(request())
    inner.readable = True
    assert conn.has_expired()


def test_closing_a_response_twice_frees_the_connection_once() -> None:
    inner, conn = guarded()
    first = conn.handle_request(request())
    second = conn.handle_request(request())
    first.close()
    first.close()
    inner.readable = True
    assert not conn.has_expired()  # the second request still runs
    second.close()
    inner.readable = True
    assert conn.has_expired()


def test_the_rest_of_the_interface_is_the_inner_connection_s() -> None:
    inner, conn = guarded()
    assert conn.can_handle_request(ORIGIN)
    assert conn.is_available() and conn.is_idle() and not conn.is_closed()
    assert conn.info() == "fake"
    assert repr(conn).startswith("<GuardedConnection <")
    with conn:
        pass
    assert inner.closed and conn.is_closed()


def test_the_transport_pools_guarded_connections_with_the_client_s_limits() -> None:
    limits = httpx.Limits(max_connections=3, max_keepalive_connections=3, keepalive_expiry=7)
    transport = GuardedTransport(limits)
    pool = transport._pool
    assert isinstance(pool, httpcore.ConnectionPool)
    assert isinstance(pool.create_connection(ORIGIN), GuardedConnection)
    assert (pool._max_connections, pool._max_keepalive_connections) == (3, 3)
    assert pool._keepalive_expiry == 7
    transport.close()


def test_the_transport_refuses_fewer_keepalive_slots_than_connections() -> None:
    # httpcore closes surplus idle connections without asking has_expired(): unguarded.
    with pytest.raises(ValueError, match="max_keepalive_connections == max_connections"):
        GuardedTransport(httpx.Limits(max_connections=4, max_keepalive_connections=2))


async def test_only_the_sync_client_pools_through_the_guard() -> None:
    with ComfyClient("http://127.0.0.1:8188", max_connections=5) as comfy:
        transport = comfy._shared.transport  # what requests to the server go through
        assert isinstance(transport, GuardedTransport) and transport.guarded
        assert transport._pool._max_connections == 5
    async with AsyncComfyClient("http://127.0.0.1:8188") as acomfy:
        assert type(acomfy._shared.transport) is httpx.AsyncHTTPTransport
