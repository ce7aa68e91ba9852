"""A TCP proxy on loopback that tests control: cut every connection, stall or slow the bytes."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["TcpProxy"]

_CHUNK = 65536


class _Link:
    """One proxied connection: the client's socket and the upstream one."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = False
        self.pumps_done = 0

    def close(self, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                if reset:  # RST instead of FIN: what a peer sees when the network breaks
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    # Wakes the pump blocked reading it (closing alone would not, and the
                    # socket would live on until that read returned); sends nothing.
                    sock.shutdown(socket.SHUT_RD)
                else:
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class TcpProxy:
    """Forwards TCP connections from a loopback port to ``target``, with faults on demand.

    Point a client at :attr:`url` instead of the server's; then :meth:`cut` resets every open
    connection (as a network failure would; new ones are accepted at once), :meth:`stall`
    stops every byte in both directions for a while (connections stay open), and :meth:`slow`
    caps the bytes per second of each direction of each connection. Threads, not asyncio, so
    that it works under any test's event loop and with blocking clients.

    Args:
        target: the server, as a URL (``"http://127.0.0.1:8188"``) or ``(host, port)``.
        host: where the proxy listens (loopback by default).
        port: its port (a free one by default).

    Use it as ``with TcpProxy(server.url) as proxy: ...`` or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(
        self, target: str | tuple[str, int], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if isinstance(target, str):
            parts = urlsplit(target)
            if not parts.hostname or not parts.port:
                raise ValueError(f"target needs a host and a port, got {target!r}")
            target = (parts.hostname, parts.port)
        self.target = target
        self.host = host
        self._port = port
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._stall_until = 0.0
        self._rate: float | None = None
        self._answer: bytes | None = None
        self._stopped = threading.Event()
        #: How many connections were accepted, and how many were cut, so far.
        self.accepted = 0
        self.cut_count = 0

    @property
    def port(self) -> int:
        """The port the proxy listens on (once started)."""
        if self._listener is None:
            raise RuntimeError("the proxy has not been started")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of the proxy: give it to the client instead of the server's."""
        return f"http://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """Connections open through the proxy now."""
        with self._lock:
            return sum(1 for link in self._links if not link.closed)

    def start(self) -> TcpProxy:
        """Listen and forward in background threads."""
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self._port))
        listener.listen(128)
        listener.settimeout(0.2)
        self._listener = listener
        self._stopped.clear()
        self._acceptor = threading.Thread(target=self._accept, name="tcpproxy-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self._stopped.set()
        self._flowing.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
        self._close_all(reset=False)

    def answer(self, status: int | None) -> None:
        """Answer every request with HTTP ``status`` (say 503) instead of forwarding it, as an
        overloaded server or a proxy in front of it would; open connections are cut so the
        next request gets it. ``None`` forwards again."""
        self._answer = (
            None
            if status is None
            else (
                f"HTTP/1.1 {status} Fault\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                "Connection: close\r\nRetry-After: 1\r\n\r\nfault"
            ).encode()
        )
        if status is not None:
            self._close_all(reset=False)

    def cut(self) -> int:
        """Reset every open connection (RST both ways); return how many were cut."""
        cut = self._close_all(reset=True)
        self.cut_count += cut
        return cut

    def stall(self, seconds: float) -> None:
        """No byte goes through, either way, for ``seconds`` (connections stay open, and new
        ones are accepted but stall too)."""
        with self._lock:
            self._stall_until = max(self._stall_until, time.monotonic() + seconds)
            self._flowing.clear()
        timer = threading.Timer(seconds, self._end_stall)
        timer.daemon = True
        timer.start()

    def resume(self) -> None:
        """End a stall now."""
        with self._lock:
            self._stall_until = 0.0
            self._flowing.set()

    def slow(self, bytes_per_s: float | None) -> None:
        """Cap each direction of each connection to ``bytes_per_s`` (``None``: no cap)."""
        if bytes_per_s is not None and bytes_per_s <= 0:
            raise ValueError(f"bytes_per_s must be > 0 or None, got {bytes_per_s}")
        self._rate = bytes_per_s

    def _end_stall(self) -> None:
        with self._lock:
            if time.monotonic() >= self._stall_until - 0.001:
                self._flowing.set()

    def _close_all(self, *, reset: bool) -> int:
        with self._lock:
            links, self._links = self._links, set()
        count = 0
        for link in links:
            if not link.closed:
                count += 1
            link.close(reset=reset)
        return count

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            canned = self._answer
            if canned is not None:
                threading.Thread(
                    target=self._refuse, args=(client, canned), name="tcpproxy-answer", daemon=True
                ).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                with contextlib.suppress(OSError):
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, upstream)
            with self._lock:
                self._links.add(link)
                self.accepted += 1
            for src, dst, name in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(
                    target=self._pump, args=(link, src, dst), name=f"tcpproxy-{name}", daemon=True
                ).start()

    @staticmethod
    def _refuse(client: socket.socket, canned: bytes) -> None:
        """Read a request's head, send the canned answer, close."""
        with contextlib.suppress(OSError), client:
            client.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            client.sendall(canned)
            client.shutdown(socket.SHUT_WR)

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket) -> None:
        try:
            self._forward(link, src, dst)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)  # pass the end on: half-closed, as the peer did
        with self._lock:
            link.pumps_done += 1
            finished = link.pumps_done == 2
            if finished:
                self._links.discard(link)
        if finished:
            link.close(reset=False)

    def _forward(self, link: _Link, src: socket.socket, dst: socket.socket) -> None:
        while not link.closed:
            data = src.recv(_CHUNK)
            if not data:
                return
            while data and not link.closed:
                while not self._flowing.wait(0.1):
                    if link.closed or self._stopped.is_set():
                        return
                rate = self._rate
                piece = data if rate is None else data[: max(1, int(rate / 20))]
                dst.sendall(piece)
                data = data[len(piece) :]
                if rate is not None:
                    time.sleep(len(piece) / rate)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._listener is not None else "not started"
        return f"<TcpProxy {where} -> {self.target[0]}:{self.target[1]}>"
