"""Fixtures of the service tests: a real ComfyUI (the harness), the app through httpx's ASGI
transport with its lifespan running, and helpers that wait on state with deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from comfykit.server import Settings, create_app

pytestmark = pytest.mark.integration

FINISHED = ("completed", "failed", "cancelled")


def make_settings(tmp_path: Path, comfyui_url: str, **overrides: Any) -> Settings:
    """Settings for one test: its own data dir and SQLite file."""
    values: dict[str, Any] = {
        "comfyui_urls": [comfyui_url],
        "data_dir": tmp_path / "data",
        "retention_days": None,
        "reattach_timeout_seconds": 20,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, comfyui_url: str) -> Settings:
    """Settings of the service under test."""
    return make_settings(tmp_path, comfyui_url)


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
