"""How a new job reaches ComfyUI: written already handed to a server when one has a free slot
and nothing older waits (no claim of its own), else left in the service's queue, in order."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from comfykit.server import create_app
from comfykit.server.state import ServiceState
from tests import graphs
from tests.server.conftest import make_settings, wait_for_job


async def test_a_job_a_server_can_take_is_written_handed_to_it(
    tmp_path: Path, comfyui_url: str, store_url: str
) -> None:
    settings = make_settings(tmp_path, comfyui_url, dispatch_concurrency=1, database_url=store_url)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        state: ServiceState = app.state.comfykit
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
            warm = await http.post(
                "/api/v1/jobs", json={"workflow": graphs.invert()}, headers={"Prefer": "wait=60"}
            )
            assert warm.json()["status"] == "completed"  # the server is known to be up
            first = (await http.post("/api/v1/jobs", json={"workflow": graphs.sleep(5.0)})).json()
            # written already handed to the server: one attempt, a dispatch time, its URL
            row = await state.store.get_job(first["job_id"])
            assert row is not None and row.server_url == comfyui_url and row.attempts == 1
            assert row.dispatched_at is not None and row.status in ("queued", "processing")
            # the slot is taken: the next jobs wait in the service's queue, unclaimed
            second = (await http.post("/api/v1/jobs", json={"workflow": graphs.invert()})).json()
            third = (await http.post("/api/v1/jobs", json={"workflow": graphs.invert()})).json()
            for job in (second, third):
                waiting = await state.store.get_job(job["job_id"])
                assert waiting is not None and waiting.server_url is None
            done = [await wait_for_job(http, j["job_id"]) for j in (first, second, third)]
            assert [j["status"] for j in done] == ["completed"] * 3
            assert done[1]["started_at"] <= done[2]["started_at"]  # oldest first
            rows = [await state.store.get_job(j["job_id"]) for j in done]
            assert [r.attempts for r in rows if r is not None] == [1, 1, 1]


async def test_a_slot_is_given_back_when_the_job_is_not_written(
    tmp_path: Path, comfyui_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(make_settings(tmp_path, comfyui_url))
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        state: ServiceState = app.state.comfykit
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
            warm = await http.post(
                "/api/v1/jobs", json={"workflow": graphs.invert()}, headers={"Prefer": "wait=60"}
            )
            assert warm.json()["status"] == "completed"

            async def broken(*_args: object) -> None:
                raise RuntimeError("the database is gone")

            monkeypatch.setattr(state.store, "add_jobs", broken)
            failed = await http.post("/api/v1/jobs", json={"workflow": graphs.invert()})
            assert failed.status_code == 500
            assert state.dispatcher._active == {}  # no slot kept for a job never written
            monkeypatch.undo()
            again = await http.post(
                "/api/v1/jobs", json={"workflow": graphs.invert()}, headers={"Prefer": "wait=60"}
            )
            assert again.json()["status"] == "completed"


async def test_a_jobs_event_writes_keep_their_order_and_coalesce_progress() -> None:
    """The follower's writes run in the order they were added, off its path; a progress event
    still waiting for its turn is replaced by the newest, and ``drain`` waits for all."""
    import asyncio

    from comfykit.server.services.dispatcher import _Writes

    done: list[object] = []
    gate = asyncio.Event()
    writes = _Writes("job")

    async def slow_first() -> None:
        await gate.wait()
        done.append("node-1")

    async def step(name: str) -> None:
        done.append(name)

    async def progress(data: dict[str, int]) -> None:
        done.append(("progress", data["value"]))

    writes.add(slow_first)
    for value in range(1, 101):  # all while the first write waits
        writes.progress({"value": value}, progress)
    writes.add(lambda: step("node-2"))
    writes.progress({"value": 101}, progress)
    await asyncio.sleep(0)
    assert done == []  # nothing overtook the first write
    gate.set()
    await writes.drain()
    assert done == ["node-1", ("progress", 100), "node-2", ("progress", 101)]
