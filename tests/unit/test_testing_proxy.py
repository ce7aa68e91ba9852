"""comfykit.testing.TcpProxy against a loopback echo server: forwarding, cut, stall, slow."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from comfykit.testing import TcpProxy


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A loopback server that echoes every byte back."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()
    stop.set()
    thread.join(5)
    listener.close()


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_forwards_both_ways(echo: tuple[str, int]) -> None:
    with TcpProxy(echo) as proxy:
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            assert _roundtrip(sock, b"hello" * 1000) == b"hello" * 1000
        assert proxy.accepted == 1


def test_cut_resets_open_connections_and_accepts_new_ones(echo: tuple[str, int]) -> None:
    with TcpProxy(f"http://{echo[0]}:{echo[1]}") as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        assert _roundtrip(sock, b"x") == b"x"
        deadline = time.monotonic() + 5
        while proxy.open_connections != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert proxy.cut() == 1
        with pytest.raises(OSError):
            for _ in range(50):  # the reset shows on the next send or receive
                sock.sendall(b"y")
                if not sock.recv(1):
                    raise ConnectionResetError("closed")
                time.sleep(0.01)
        sock.close()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as again:
            assert _roundtrip(again, b"z") == b"z"
        assert proxy.cut_count == 1


def test_stall_holds_every_byte_then_lets_them_through(echo: tuple[str, int]) -> None:
    with TcpProxy(echo) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            proxy.stall(0.6)
            started = time.monotonic()
            sock.sendall(b"held")
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(10)
            sock.settimeout(5)
            assert sock.recv(10) == b"held"
            assert time.monotonic() - started >= 0.5


def test_slow_caps_the_rate(echo: tuple[str, int]) -> None:
    with TcpProxy(echo) as proxy:
        proxy.slow(20_000)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            started = time.monotonic()
            assert _roundtrip(sock, b"a" * 10_000) == b"a" * 10_000
            assert time.monotonic() - started >= 0.4  # 10 kB at 20 kB/s, each way
        proxy.slow(None)
        with pytest.raises(ValueError):
            proxy.slow(0)
