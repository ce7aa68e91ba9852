"""Fixtures of the service tests: a real ComfyUI (the harness), the app through httpx's ASGI
transport with its lifespan running, and helpers that wait on state with deadlines."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi.routing import APIRoute

from comfykit.server import Settings, create_app
from comfykit.testing import PostgresServer, find_postgres_bin, free_port

pytestmark = pytest.mark.integration

FINISHED = ("completed", "failed", "cancelled")


_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throw-away PostgreSQL cluster for the session (skipped only where PostgreSQL is not
    installed and this is not CI; ``.ci/run`` installs it)."""
    if find_postgres_bin() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
    with PostgresServer(database="comfykit") as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The job store under test: ``""`` (the default SQLite file in the data dir) or a fresh
    database of the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        return ""
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"test_{os.getpid()}_{next(_databases)}")


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every API route of an app or router, included routers walked into (FastAPI keeps them
    nested: ``original_router``)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from api_routes(inner.routes)


def make_settings(tmp_path: Path, comfyui_url: str, **overrides: Any) -> Settings:
    """Settings for one test: its own data dir and (by default) SQLite file."""
    values: dict[str, Any] = {
        "comfyui_urls": [comfyui_url],
        "data_dir": tmp_path / "data",
        "retention_days": None,
        "reattach_timeout_seconds": 20,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, comfyui_url: str, store_url: str) -> Settings:
    """Settings of the service under test (on each store)."""
    return make_settings(tmp_path, comfyui_url, database_url=store_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the standalone app (lifespan running)."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=60
        ) as http:
            yield http


async def wait_for_job(
    http: httpx.AsyncClient,
    job_id: str,
    predicate: Callable[[dict[str, Any]], bool] = lambda j: j["status"] in FINISHED,
    *,
    timeout: float = 60.0,
    prefix: str = "",
) -> dict[str, Any]:
    """Poll the job until ``predicate`` holds (bounded in time and count)."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    for _ in range(10_000):
        response = await http.get(f"{prefix}/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if predicate(job):
            return job
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach the state in {timeout} s: {job}")


class Serve:
    """One ``comfykit serve`` process (the CLI as users run it)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.port = int(args[args.index("--port") + 1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        code = "import sys; from comfykit.cli import main; sys.exit(main(sys.argv[1:]))"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, "serve", *self.args],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not answer: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def serve_factory(tmp_path: Path, comfyui_url: str) -> Iterator[Callable[..., Serve]]:
    """Makes ``comfykit serve`` processes (stopped at the end of the test); keyword arguments
    are extra environment variables, ``comfyui`` another ComfyUI URL."""
    started: list[Serve] = []

    def make(comfyui: str | None = None, **env_extra: str) -> Serve:
        env = {**os.environ, "COMFYKIT_PORT": "1", **env_extra}  # the flag must win
        env.pop("COMFYUI_URL", None)
        args = [
            "--comfyui-url", comfyui or comfyui_url, "--port", str(free_port()),
            "--data-dir", str(tmp_path / "data"), "--retention-days", "7",
        ]  # fmt: skip
        serve = Serve(args, env, tmp_path / "serve.log")
        started.append(serve)
        return serve

    yield make
    for serve in started:
        serve.stop()
