"""``comfykit serve`` as a real process on loopback: the CLI, a live SSE stream, and a
SIGKILL in the middle of jobs followed by a restart (every job ends, none stays running)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests import graphs

pytestmark = pytest.mark.slow

FINISHED = ("completed", "failed", "cancelled")


def wait_all(url: str, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    jobs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        jobs = {i: httpx.get(f"{url}/api/v1/jobs/{i}", timeout=10).json() for i in ids}
        if all(j["status"] in FINISHED for j in jobs.values()):
            return jobs
        time.sleep(0.1)
    raise AssertionError(f"not all jobs ended in {timeout} s: {jobs}")


def test_serve_streams_events_live(serve_factory: Any) -> None:
    serve = serve_factory()
    serve.start()
    health = httpx.get(f"{serve.url}/health").json()
    assert health["comfyui"] == "connected"
    job = httpx.post(f"{serve.url}/api/v1/jobs", json={"workflow": graphs.sleep(1.0)}).json()
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    with httpx.stream("GET", f"{serve.url}/api/v1/jobs/{job['job_id']}/events", timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name in FINISHED:
                    break
            if len(events) > 500:
                break
    names = [n for n, _ in events]
    assert names[0] == "queued" and names[-1] == "completed", names
    assert "progress" in names
    done = httpx.get(f"{serve.url}/api/v1/jobs/{job['job_id']}", headers={"X-Request-ID": "r-1"})
    assert done.json()["status"] == "completed"
    # one JSON access-log line per request, with the request id
    lines = [json.loads(x) for x in serve.log.read_text().splitlines() if x.startswith("{")]
    mine = [x for x in lines if x["request_id"] == "r-1"]
    assert len(mine) == 1, lines[-5:]
    assert mine[0]["route"] == "/api/v1/jobs/{job_id}" and mine[0]["status"] == 200
    assert mine[0]["duration_ms"] >= 0


def test_sigkill_mid_job_and_restart(serve_factory: Any, store_url: str) -> None:
    extra = {"COMFYKIT_DATABASE_URL": store_url} if store_url else {}
    serve = serve_factory(COMFYKIT_DISPATCH_CONCURRENCY="1", **extra)
    serve.start()
    running = httpx.post(f"{serve.url}/api/v1/jobs", json={"workflow": graphs.sleep(2.0)}).json()[
        "job_id"
    ]
    waiting = [
        httpx.post(f"{serve.url}/api/v1/jobs", json={"workflow": graphs.invert()}).json()["job_id"]
        for _ in range(2)
    ]
    deadline = time.monotonic() + 30
    while httpx.get(f"{serve.url}/api/v1/jobs/{running}").json()["status"] != "processing":
        assert time.monotonic() < deadline, "the first job never started"
        time.sleep(0.05)
    serve.kill()

    serve.start()
    jobs = wait_all(serve.url, [running, *waiting], timeout=90)
    assert all(j["status"] == "completed" for j in jobs.values()), jobs
    assert jobs[running]["started_at"] is not None
    for job_id in waiting:
        image = httpx.get(f"{serve.url}{jobs[job_id]['image_url']}")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
