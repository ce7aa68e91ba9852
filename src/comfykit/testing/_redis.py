"""A throw-away Redis server for tests: ``redis-server`` (Debian's package) on a free loopback
port, nothing written to disk, stopped and removed on :meth:`RedisServer.stop`."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from comfykit.testing._managed import Managed
from comfykit.testing._server import free_port

__all__ = ["RedisServer", "RedisStartError", "find_redis_server"]


class RedisStartError(RuntimeError):
    """``redis-server`` could not be started (the message carries its log)."""


def find_redis_server() -> str | None:
    """The ``redis-server`` executable (``PATH``, then ``/usr/bin``); ``None`` when Redis is
    not installed."""
    found = shutil.which("redis-server")
    if found:
        return found
    debian = Path("/usr/bin/redis-server")
    return str(debian) if debian.exists() else None


class RedisServer(Managed):
    """One Redis on ``127.0.0.1:<free port>`` (no persistence). ``url`` is ``redis://...``.

    Use as a context manager, or :meth:`start` / :meth:`stop`. :meth:`stop` then
    :meth:`start` again restarts it on the same port (a fault test's outage).
    """

    def __init__(self, *, start_timeout: float = 20.0) -> None:
        self.start_timeout = start_timeout
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server; return once it answers ``PING``."""
        binary = find_redis_server()
        if binary is None:
            raise RedisStartError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="comfykit-redis-"))
        if not self.port:
            self.port = free_port()
        log = open(self._tmp / "redis.log", "ab")  # noqa: SIM115 - closed in stop()
        try:
            self._proc = subprocess.Popen(
                [
                    binary, "--port", str(self.port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", str(self._tmp),
                    "--protected-mode", "yes",
                ],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while not self._ping():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                text = self.log()
                self.stop()
                raise RedisStartError(f"redis-server did not start:\n{text}")
            time.sleep(0.05)
        return self

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log(self) -> str:
        """The server's log so far."""
        if self._tmp is None:
            return ""
        with contextlib.suppress(OSError):
            return (self._tmp / "redis.log").read_text(errors="replace")
        return ""

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server; ``remove=False`` keeps its port and folder for a restart."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
            self._proc = None
        if remove and self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
