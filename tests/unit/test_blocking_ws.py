"""The sync client's WebSocket (``comfykit._backends.blocking_ws``) against a real server.

The server side is websockets' own asyncio server in a thread, so every frame the client parses
is one a standards-conforming peer really sent: fragmented messages, pings, close frames,
rejected handshakes, a peer that never answers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
)
from websockets.http11 import Request, Response

from comfykit._backends import sync as _backend
from comfykit._backends.blocking_ws import BlockingWebSocket, connect

Handler = Callable[[ServerConnection], Awaitable[None]]


@contextmanager
def ws_server(
    handler: Handler,
    process_request: Callable[[ServerConnection, Request], Response | None] | None = None,
) -> Iterator[str]:
    """Serve ``handler`` on a free port in a background event loop; yield the ``ws://`` URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Future[None] | None = None
    port = 0

    async def main() -> None:
        nonlocal stop, port
        stop = loop.create_future()
        async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
            port = server.sockets[0].getsockname()[1]
            ready.set()
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:

        def finish() -> None:
            if stop is not None:
                stop.set_result(None)

        loop.call_soon_threadsafe(finish)
        thread.join(10)
        loop.close()


def test_text_binary_and_fragmented_messages_arrive_whole_and_in_order() -> None:
    async def handler(ws: ServerConnection) -> None:
        hello = await ws.recv(decode=True)
        await ws.send(f"echo:{hello!s}")
        await ws.send(b"\x00\x00\x00\x03binary")
        await ws.send(["frag", "mented ", "text ✓"])  # one message in three frames
        await ws.send([b"ab", b"cd"])
        await ws.ping()
        await ws.send("after the ping")
        await ws.wait_closed()

    with ws_server(handler) as url:
        ws = connect(url, {"X-Test": "1"}, 5.0)
        try:
            ws.send("hi")
            assert ws.recv(5.0) == "echo:hi"
            assert ws.recv(5.0) == b"\x00\x00\x00\x03binary"
            assert ws.recv(5.0) == "fragmented text ✓"
            assert ws.recv(5.0) == b"abcd"
            assert ws.recv(5.0) == "after the ping"  # the ping was answered on the way
        finally:
            ws.close()


def test_handshake_sends_the_given_headers() -> None:
    seen: list[Request] = []

    def process_request(_conn: ServerConnection, request: Request) -> Response | None:
        seen.append(request)
        return None

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    with ws_server(handler, process_request) as url:
        connect(url, {"Authorization": "Bearer t0k", "User-Agent": "comfykit/x"}, 5.0).close()
    (request,) = seen
    assert request.headers["Authorization"] == "Bearer t0k"
    assert request.headers.get_all("User-Agent") == ["comfykit/x"]


def test_recv_times_out_when_nothing_arrives() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    with ws_server(handler) as url:
        ws = connect(url, {}, 5.0)
        try:
            with pytest.raises(TimeoutError):
                ws.recv(0.05)
        finally:
            ws.close()


def test_recv_with_no_time_left_returns_what_is_there_or_times_out() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send("ready")
        await ws.wait_closed()

    with ws_server(handler) as url:
        ws = connect(url, {}, 5.0)
        try:
            with pytest.raises(TimeoutError):
                ws.recv(0)  # nothing there: no blocking, and not a broken connection
            ws.send("go")
            time.sleep(0.2)
            assert ws.recv(0) == "ready"
        finally:
            ws.close()


def test_a_silent_connection_is_pinged_and_an_answered_ping_keeps_it() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send("still here")
        await ws.wait_closed()

    with ws_server(handler) as url:
        ws = connect(url, {}, 5.0, ping_interval=0.05, ping_timeout=0.5)
        try:
            with pytest.raises(TimeoutError):
                ws.recv(1.0)  # ~20 pings went out, each answered: the connection lives
            ws.send("hello")
            assert ws.recv(5.0) == "still here"
        finally:
            ws.close()


def test_a_peer_that_stops_answering_pings_counts_as_lost() -> None:
    async def handler(ws: ServerConnection) -> None:
        ws.transport.pause_reading()  # the server does not see our pings, so does not answer
        await asyncio.sleep(1.0)  # (the client gives up after ~0.25 s)
        ws.transport.resume_reading()
        await ws.wait_closed()

    with ws_server(handler) as url:
        ws = connect(url, {}, 5.0, ping_interval=0.05, ping_timeout=0.2)
        start = time.monotonic()
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(None)  # no deadline of its own: the keepalive ends the wait
        assert time.monotonic() - start < 3
        assert info.value.sent is not None and info.value.sent.code == 1011
        assert "keepalive" in info.value.sent.reason
        with pytest.raises(ConnectionClosed):
            ws.recv(1.0)
        ws.close()


def test_a_message_larger_than_one_read_and_a_burst_of_small_ones_arrive_whole() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: many socket reads
    small = [f"frame {i}" for i in range(200)]

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(big)
        for text in small:  # many frames in one socket read
            await ws.send(text)
        await ws.wait_closed()

    with ws_server(handler) as url:
        ws = connect(url, {}, 5.0)
        try:
            ws.send("go")
            assert ws.recv(10.0) == big
            assert [ws.recv(5.0) for _ in small] == small
        finally:
            ws.close()


def test_close_from_another_thread_ends_a_wait_without_a_deadline() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    with ws_server(handler) as url:
        ws = connect(url, {}, 5.0)
        outcome: list[BaseException] = []

        def wait() -> None:
            try:
                ws.recv(None)
            except BaseException as exc:  # noqa: BLE001 - the test looks at it
                outcome.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.2)  # the waiter is in the selector by now
        start = time.monotonic()
        ws.close()
        waiter.join(5)
        assert not waiter.is_alive()
        assert time.monotonic() - start < 2
        assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosed)
        assert ws._sock.fileno() == -1  # the waiter released the socket on its way out
        with pytest.raises(ConnectionClosed):
            ws.recv(0.1)


def test_a_close_from_the_server_raises_connection_closed_after_queued_messages() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("last words")
        await ws.close(1000, "bye")

    with ws_server(handler) as url:
        ws = connect(url, {}, 5.0)
        assert ws.recv(5.0) == "last words"
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5.0)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1000
        with pytest.raises(ConnectionClosed):
            ws.send("too late")
        ws.close()


def test_a_dropped_tcp_connection_raises_connection_closed() -> None:
    async def handler(ws: ServerConnection) -> None:
        ws.transport.abort()  # no close frame: the TCP connection just ends
        await asyncio.sleep(0)

    with ws_server(handler) as url:
        ws = connect(url, {}, 5.0)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5.0)
        assert not isinstance(info.value, ConnectionClosedOK)
        ws.close()


def test_a_rejected_handshake_raises_invalid_status() -> None:
    def process_request(conn: ServerConnection, _request: Request) -> Response | None:
        return conn.respond(403, "no\n")

    async def handler(ws: ServerConnection) -> None:  # never reached
        await ws.wait_closed()

    with ws_server(handler, process_request) as url, pytest.raises(InvalidStatus) as info:
        connect(url, {}, 5.0)
    assert info.value.response.status_code == 403


def test_a_peer_that_never_answers_the_handshake_times_out() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{port}/ws", {}, 0.3)
        assert time.monotonic() - start < 5
    finally:
        listener.close()


def test_nothing_listening_is_an_os_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError):
        connect(f"ws://127.0.0.1:{port}/ws", {}, 2.0)


def test_the_sync_backend_connects_directly_without_a_thread_of_websockets() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("x")
        await ws.wait_closed()

    with ws_server(handler) as url:
        before = threading.active_count()
        ws = _backend.open_websocket(url, {}, 5.0)
        try:
            assert isinstance(ws._conn, BlockingWebSocket)
            assert threading.active_count() == before
            assert ws.recv(5.0) == "x"
        finally:
            ws.close()


def test_the_sync_backend_goes_through_websockets_when_a_proxy_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An HTTP proxy that does not exist: websockets (which knows how to tunnel) is used, and
    # fails to reach the proxy; the direct connection would have succeeded.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    with ws_server(handler) as url:
        monkeypatch.setenv("ws_proxy", f"http://127.0.0.1:{dead}")
        monkeypatch.setenv("no_proxy", "")
        monkeypatch.delenv("NO_PROXY", raising=False)
        with pytest.raises(OSError):
            _backend.open_websocket(url, {}, 2.0)
