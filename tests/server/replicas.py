"""Several ``comfykit serve`` replicas on one PostgreSQL store, with nginx (Debian's package)
in front, configured from ``deploy/nginx.conf`` (so the example the docs give is the one the
tests run)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from comfykit.testing import free_port

__all__ = ["Nginx", "find_nginx"]

DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


def find_nginx() -> str | None:
    """The nginx executable (``PATH``, then ``/usr/sbin``); ``None`` when not installed."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None


class Nginx:
    """nginx on a free loopback port in front of ``upstreams`` (``host:port`` each)."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        """``deploy/nginx.conf`` with this instance's port, upstreams, logs and temp dirs."""
        assert self._tmp is not None
        text = DEPLOY_CONF.read_text()
        servers = "".join(
            f"        server {u} max_fails=1 fail_timeout=5s;\n" for u in self.upstreams
        )
        text, n = re.subn(r"(?:        server 127\.0\.0\.1:800\d[^\n]*\n)+", servers, text)
        assert n == 1, "deploy/nginx.conf: the upstream block changed"
        text, n = re.subn(r"listen 8000;", f"listen 127.0.0.1:{self.port};", text)
        assert n == 1, "deploy/nginx.conf: the listen line changed"
        tmp = self._tmp
        paths = (
            f"    access_log {tmp}/access.log;\n"
            f"    client_body_temp_path {tmp}/body;\n    proxy_temp_path {tmp}/proxy;\n"
            f"    fastcgi_temp_path {tmp}/fastcgi;\n    uwsgi_temp_path {tmp}/uwsgi;\n"
            f"    scgi_temp_path {tmp}/scgi;\n"
        )
        return text.replace("http {\n", "http {\n" + paths, 1)

    def start(self) -> Nginx:
        """Write the config and start nginx in the foreground; return once it answers."""
        binary = find_nginx()
        if binary is None:
            raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
        self._tmp = Path(tempfile.mkdtemp(prefix="comfykit-nginx-"))
        os.chmod(self._tmp, 0o755)
        conf = self._tmp / "nginx.conf"
        conf.write_text(self.config())
        globals_ = f"daemon off; pid {self._tmp}/nginx.pid; error_log {self._tmp}/error.log;"
        self._proc = subprocess.Popen(
            [binary, "-p", str(self._tmp), "-c", str(conf), "-g", globals_],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.log()}")
            try:
                httpx.get(f"{self.url}/health", timeout=2)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"nginx did not answer: {self.log()}")

    def log(self) -> str:
        """nginx's error log so far."""
        if self._tmp is None:
            return ""
        path = self._tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop nginx and remove its files."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
