"""Cancel at each state, and the SSE stream (to completion, resumed with Last-Event-ID)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from comfykit.server import create_app
from tests import graphs
from tests.server.conftest import make_settings, wait_for_job


def parse_sse(text: str) -> list[dict[str, Any]]:
    """The events of an SSE body: id, event, data (JSON)."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.lstrip(" ")
        if "event" in fields:
            events.append(
                {
                    "id": int(fields["id"]) if "id" in fields else None,
                    "event": fields["event"],
                    "data": json.loads(fields["data"]),
                }
            )
    return events


@pytest.fixture
async def one_at_a_time(
    tmp_path: Path, comfyui_url: str, store_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A service that feeds ComfyUI one job at a time (a second job waits in its queue)."""
    settings = make_settings(tmp_path, comfyui_url, dispatch_concurrency=1, database_url=store_url)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http


async def test_cancel_queued_running_and_finished(one_at_a_time: httpx.AsyncClient) -> None:
    http = one_at_a_time
    running = (await http.post("/api/v1/jobs", json={"workflow": graphs.sleep(30)})).json()
    waiting = (await http.post("/api/v1/jobs", json={"workflow": graphs.invert()})).json()
    await wait_for_job(http, running["job_id"], lambda j: j["status"] == "processing")
    queued = (await http.get(f"/api/v1/jobs/{waiting['job_id']}")).json()
    assert queued["status"] == "queued" and queued["queue_position"] == 1

    cancelled = await http.delete(f"/api/v1/jobs/{waiting['job_id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"

    stopped = await http.delete(f"/api/v1/jobs/{running['job_id']}")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "cancelled", stopped.json()

    again = await http.delete(f"/api/v1/jobs/{running['job_id']}")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "CONFLICT"
    missing = await http.delete("/api/v1/jobs/nope")
    assert missing.status_code == 404


async def test_cancel_a_job_pending_on_comfyui(client: httpx.AsyncClient) -> None:
    # two fed at once (the default): the second waits in ComfyUI's own queue
    first = (await client.post("/api/v1/jobs", json={"workflow": graphs.sleep(30)})).json()
    second = (await client.post("/api/v1/jobs", json={"workflow": graphs.sleep(30, 8)})).json()
    await wait_for_job(client, first["job_id"], lambda j: j["status"] == "processing")
    pending = (await client.get(f"/api/v1/jobs/{second['job_id']}")).json()
    assert pending["status"] == "queued"
    response = await client.delete(f"/api/v1/jobs/{second['job_id']}")
    assert response.json()["status"] == "cancelled", response.json()
    response = await client.delete(f"/api/v1/jobs/{first['job_id']}")
    assert response.json()["status"] == "cancelled", response.json()


async def test_sse_to_completion_and_resume(client: httpx.AsyncClient) -> None:
    job = (await client.post("/api/v1/jobs", json={"workflow": graphs.sleep(0.5)})).json()
    response = await client.get(f"/api/v1/jobs/{job['job_id']}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [e["event"] for e in events]
    assert names[0] == "queued" and names[-1] == "completed", names
    assert "started" in names and "progress" in names, names
    progress = next(e for e in events if e["event"] == "progress")
    assert {"value", "max"} <= set(progress["data"])
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    resumed = await client.get(
        f"/api/v1/jobs/{job['job_id']}/events", headers={"Last-Event-ID": str(ids[1])}
    )
    assert [e["id"] for e in parse_sse(resumed.text)] == ids[2:]
    missing = await client.get("/api/v1/jobs/nope/events")
    assert missing.status_code == 404


async def test_sse_of_a_failed_and_a_cancelled_job(client: httpx.AsyncClient) -> None:
    failed = (await client.post("/api/v1/jobs", json={"workflow": graphs.sync_error()})).json()
    events = parse_sse((await client.get(f"/api/v1/jobs/{failed['job_id']}/events")).text)
    assert events[-1]["event"] == "failed"
    assert events[-1]["data"]["error"]["code"] == "EXECUTION_ERROR"
    slow = (await client.post("/api/v1/jobs", json={"workflow": graphs.sleep(30)})).json()
    await wait_for_job(client, slow["job_id"], lambda j: j["status"] == "processing")
    await client.delete(f"/api/v1/jobs/{slow['job_id']}")
    events = parse_sse((await client.get(f"/api/v1/jobs/{slow['job_id']}/events")).text)
    assert events[-1]["event"] == "cancelled"
