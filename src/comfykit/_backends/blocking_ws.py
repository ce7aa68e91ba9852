"""A blocking WebSocket client on websockets' sans-I/O protocol.

``websockets.sync`` reads every connection in a thread of its own and hands each message over
through a queue: a thread wake-up (and CPU) per frame, and ComfyUI sends some 17 frames per job.
The sync client's threads read its socket themselves anyway (whoever waits for a job, or the
stream's background reader while nobody does), so it drives the protocol itself: ``socket.recv``
in the reading thread, ``ClientProtocol.receive_data`` and ``events_received`` to turn bytes into
messages, control frames (ping, close) answered on the spot. A connection that has been silent for
``ping_interval`` seconds is pinged, and one that then stays silent for ``ping_timeout`` seconds
counts as lost (as websockets' keepalive does), so a server that vanished without closing the
TCP connection is noticed even by a reader with no deadline.

Connections through an HTTP or SOCKS proxy (from the environment) still use ``websockets.sync``.
"""

from __future__ import annotations

import collections
import socket
import ssl
import time
from collections.abc import Mapping, Sequence

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosedError, InvalidHandshake
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri

__all__ = ["BlockingWebSocket", "connect"]

_RECV_BUFSIZE = 65536
PING_INTERVAL = 20.0
PING_TIMEOUT = 60.0


class BlockingWebSocket:
    """An open WebSocket; one thread at a time may call :meth:`recv`."""

    def __init__(
        self,
        sock: socket.socket,
        protocol: ClientProtocol,
        *,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        self._sock = sock
        self._protocol = protocol
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._last_rx = time.monotonic()  # when data last arrived
        self._ping_sent: float | None = None  # when the unanswered keepalive ping went out
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._receiving = False

    def recv(self, timeout: float | None) -> str | bytes:
        """The next message; ``TimeoutError`` when none is complete within ``timeout`` seconds.

        Raises ``ConnectionClosed`` when the connection closes, ``OSError`` when it breaks or
        stays silent after a keepalive ping.
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while not self._messages:
            self._raise_if_closed()
            wait = self._keepalive(deadline)
            self._receiving = True
            try:
                self._sock.settimeout(wait)
                data = self._sock.recv(_RECV_BUFSIZE)
            except (TimeoutError, BlockingIOError) as exc:  # BlockingIOError: a 0 s wait
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("no WebSocket message in time") from exc
                continue  # time for a keepalive step, not the caller's deadline
            except OSError:
                self._protocol.receive_eof()
                self._raise_if_closed()
                raise
            finally:
                self._receiving = False
            self._last_rx = time.monotonic()
            self._ping_sent = None
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            self._process(self._protocol.events_received())
        return self._messages.popleft()

    def _keepalive(self, deadline: float | None) -> float | None:
        """Ping a connection silent for ``ping_interval``; give up on one still silent
        ``ping_timeout`` after the ping. Return how long the next socket read may block."""
        now = time.monotonic()
        if self._ping_sent is None:
            if now - self._last_rx >= self._ping_interval:
                self._protocol.send_ping(b"")
                self._flush()
                self._ping_sent = now
                due = now + self._ping_timeout
            else:
                due = self._last_rx + self._ping_interval
        elif now - self._ping_sent >= self._ping_timeout:
            self.close()
            raise ConnectionClosedError(
                None, Close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            )
        else:
            due = self._ping_sent + self._ping_timeout
        if deadline is not None:
            due = min(due, deadline)
        return max(due - now, 0.0)

    def send(self, message: str) -> None:
        """Send a text message."""
        self._raise_if_closed()
        self._protocol.send_text(message.encode())
        self._flush()

    def close(self) -> None:
        """Close the socket; with a close frame first unless another thread is receiving.

        Shutting the socket down wakes a thread blocked in :meth:`recv`, which then raises
        ``ConnectionClosed``.
        """
        try:
            if self._protocol.state is State.OPEN and not self._receiving:
                self._protocol.send_close()
                self._sock.settimeout(1.0)
                self._flush()
        except OSError:
            pass
        finally:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()

    def _process(self, events: Sequence[object]) -> None:
        for event in events:
            if not isinstance(event, Frame):
                continue
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._fragments = [bytes(event.data)]
                self._fragment_text = event.opcode is Opcode.TEXT
            elif event.opcode is Opcode.CONT:
                self._fragments.append(bytes(event.data))
            else:
                continue  # ping, pong, close: the protocol has answered them already
            if event.fin:
                payload = b"".join(self._fragments)
                self._fragments = []
                self._messages.append(payload.decode() if self._fragment_text else payload)
        self._flush()

    def _flush(self) -> None:
        """Send what the protocol has queued (pongs, close frames); close when it says so."""
        for chunk in self._protocol.data_to_send():
            if chunk:
                self._sock.sendall(chunk)
            else:  # the protocol asks to half-close the TCP connection
                try:
                    self._sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def _raise_if_closed(self) -> None:
        protocol = self._protocol
        if protocol.state is State.OPEN or self._messages:
            return
        if protocol.state is State.CLOSED:
            raise protocol.close_exc
        raise ConnectionClosedError(
            protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent
        )


def connect(
    url: str,
    headers: Mapping[str, str],
    open_timeout: float | None,
    *,
    ping_interval: float = PING_INTERVAL,
    ping_timeout: float = PING_TIMEOUT,
) -> BlockingWebSocket:
    """Open a connection and complete the opening handshake within ``open_timeout`` seconds."""
    uri = parse_uri(url)
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    sock = _open_socket(uri, open_timeout)
    try:
        protocol = ClientProtocol(uri, max_size=None)
        request = protocol.connect()
        request.headers.update(dict(headers))
        protocol.send_request(request)
        for chunk in protocol.data_to_send():
            sock.sendall(chunk)
        ws = BlockingWebSocket(
            sock, protocol, ping_interval=ping_interval, ping_timeout=ping_timeout
        )
        while True:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("timed out during the WebSocket handshake")
                sock.settimeout(remaining)
            data = sock.recv(_RECV_BUFSIZE)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            events = protocol.events_received()
            if protocol.handshake_exc is not None:
                raise protocol.handshake_exc
            if events and isinstance(events[0], Response):
                ws._process(events[1:])
                break
            if not data:
                raise InvalidHandshake("the server closed the connection during the handshake")
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return ws


def _open_socket(uri: WebSocketURI, timeout: float | None) -> socket.socket:
    sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if uri.secure:
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=uri.host)
    except BaseException:
        sock.close()
        raise
    return sock
