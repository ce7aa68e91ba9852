"""A throw-away PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` in a temp dir, on loopback.

Uses the server binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/<v>/bin``) or
any found on ``PATH``. PostgreSQL refuses to run as root, so as root the cluster is owned by and
run as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from comfykit.testing._managed import Managed
from comfykit.testing._server import free_port

__all__ = ["PostgresServer", "PostgresStartError", "find_postgres_bin"]


class PostgresStartError(RuntimeError):
    """The cluster could not be created or started (the message carries the server's log)."""


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb``/``pg_ctl``: ``$COMFYKIT_PG_BIN``, Debian's newest
    ``/usr/lib/postgresql/<v>/bin``, else ``PATH``; ``None`` when PostgreSQL is not installed."""
    env = os.environ.get("COMFYKIT_PG_BIN")
    if env:
        return Path(env)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresServer(Managed):
    """One PostgreSQL cluster on ``127.0.0.1:<free port>``, removed on :meth:`stop`.

    ``url`` is a SQLAlchemy URL (``postgresql+asyncpg://...``); ``dsn`` the plain
    ``postgresql://`` form. Use as a context manager, or :meth:`start` / :meth:`stop`.

    Args:
        database: the database created for the tests.
        bin_dir: where ``initdb`` and ``pg_ctl`` are (default: :func:`find_postgres_bin`).
        start_timeout: seconds to wait for the server to accept connections.
    """

    def __init__(
        self,
        *,
        database: str = "comfykit",
        bin_dir: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.database = database
        self.bin_dir = bin_dir or find_postgres_bin()
        self.start_timeout = start_timeout
        self.port = 0
        self.user = "comfykit"
        self._tmp: Path | None = None
        self._run_as: pwd.struct_passwd | None = None

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        assert self._tmp is not None, "not started"
        return self._tmp / "data"

    @property
    def dsn(self) -> str:
        """``postgresql://user@127.0.0.1:port/database`` (trust authentication, loopback only)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL with the asyncpg driver."""
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    def _tool(self, name: str) -> str:
        if self.bin_dir is None:
            raise PostgresStartError("PostgreSQL is not installed (no initdb found)")
        return str(self.bin_dir / name)

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        preexec: Callable[[], None] | None = None
        if self._run_as is not None:
            uid, gid = self._run_as.pw_uid, self._run_as.pw_gid

            def preexec() -> None:  # pragma: no cover - runs in the child
                os.setgid(gid)
                os.setuid(uid)

        try:
            done = subprocess.run(
                args, capture_output=True, text=True, preexec_fn=preexec, check=False,
                env={**os.environ, "LC_ALL": "C"},
            )  # fmt: skip
        except OSError as exc:
            raise PostgresStartError(f"cannot run {args[0]}: {exc}") from exc
        if check and done.returncode != 0:
            raise PostgresStartError(f"{args[0]} failed: {done.stdout}{done.stderr}")
        return done

    def start(self) -> PostgresServer:
        """Create the cluster and start it; return once it accepts connections."""
        self._tmp = Path(tempfile.mkdtemp(prefix="comfykit-pg-"))
        if os.geteuid() == 0:
            self._run_as = pwd.getpwnam("postgres")
            os.chown(self._tmp, self._run_as.pw_uid, self._run_as.pw_gid)
        self.port = free_port()
        try:
            self._run([
                self._tool("initdb"), "-D", str(self.data_dir), "-U", self.user,
                "--auth=trust", "--no-sync", "-E", "UTF8",
            ])  # fmt: skip
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self._tmp} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            self._run([
                self._tool("pg_ctl"), "-D", str(self.data_dir), "-o", options,
                "-l", str(self._tmp / "server.log"), "-w", "-t", str(int(self.start_timeout)),
                "start",
            ])  # fmt: skip
            self._wait_ready()
            self._run([
                self._tool("createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                "-U", self.user, self.database,
            ])  # fmt: skip
        except BaseException:
            log = self.log()
            self.stop()
            if log:
                raise PostgresStartError(f"PostgreSQL did not start:\n{log}") from None
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            done = self._run(
                [self._tool("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], check=False
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise PostgresStartError(f"PostgreSQL not ready after {self.start_timeout} s")
            time.sleep(0.1)

    def log(self) -> str:
        """The server's log so far."""
        if self._tmp is None:
            return ""
        with contextlib.suppress(OSError):
            return (self._tmp / "server.log").read_text(errors="replace")
        return ""

    def psql(self, sql: str) -> str:
        """Run one SQL command with ``psql`` and return its unaligned output."""
        done = self._run([
            self._tool("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
            "-d", self.database, "-Atc", sql,
        ])  # fmt: skip
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create another database in the cluster (a fresh one per test, say); its SQLAlchemy
        URL (asyncpg driver)."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove the cluster."""
        if self._tmp is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run(
                [self._tool("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                check=False,
            )
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None
