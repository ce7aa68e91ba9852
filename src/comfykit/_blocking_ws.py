"""A blocking WebSocket client on websockets' sans-I/O protocol.

``websockets.sync`` reads every connection in a thread of its own and hands each message to the
caller through a queue: two thread switches per frame. The sync client already has a thread that
reads its socket (the stream's reader), so it drives the protocol itself: ``socket.recv`` in the
reader's thread, ``ClientProtocol.receive_data`` and ``events_received`` to turn bytes into
frames, control frames (ping, close) answered on the spot.

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
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri

__all__ = ["BlockingWebSocket", "connect"]

_RECV_BUFSIZE = 65536


class BlockingWebSocket:
    """An open WebSocket; one thread at a time may call :meth:`recv`."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self._sock = sock
        self._protocol = protocol
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._receiving = False

    def recv(self, timeout: float | None) -> str | bytes:
        """The next message; ``TimeoutError`` when none is complete within ``timeout`` seconds.

        Raises ``ConnectionClosed`` when the connection closes, ``OSError`` when it breaks.
        """
        while not self._messages:
            self._raise_if_closed()
            self._receiving = True
            try:
                self._sock.settimeout(None if timeout is None else max(timeout, 0.0))
                data = self._sock.recv(_RECV_BUFSIZE)
            except TimeoutError:
                raise
            except OSError:
                self._protocol.receive_eof()
                self._raise_if_closed()
                raise
            finally:
                self._receiving = False
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            self._process(self._protocol.events_received())
        return self._messages.popleft()

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


def connect(url: str, headers: Mapping[str, str], open_timeout: float | None) -> BlockingWebSocket:
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
        ws = BlockingWebSocket(sock, protocol)
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
