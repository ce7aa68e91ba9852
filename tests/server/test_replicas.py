"""Several service replicas on one PostgreSQL store and one storage dir, nginx in front (the
layout of ``deploy/``): any replica answers any job and its live events, a cancel reaches the
replica running the job, a replica SIGKILLed mid-run has its jobs taken over after its lease
(R4), and 1,000 concurrent submissions through two replicas all complete once (R6).

Every figure a fault test sees is printed and written to ``build/fault-figures/<test>.json``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfykit.testing import ComfyUIServer, PostgresServer, free_port
from tests.server.conftest import FINISHED, Serve
from tests.server.replicas import Nginx, find_nginx

pytestmark = pytest.mark.slow

FIGURES = Path(__file__).resolve().parents[2] / "build" / "fault-figures"
LEASE = 3.0


def slow_image(job_tag: int, seconds: float) -> dict[str, Any]:
    """EmptyImage -> TestSleep (progress) -> SaveImage: a file per run, named by the service
    after the job (so runs of one job on ComfyUI can be counted)."""
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": job_tag}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "r"}},
    }  # fmt: skip


def write_figures(name: str, figures: dict[str, Any]) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=2))
    sys.stdout.write(f"\n{name}: {json.dumps(figures)}\n")


@dataclass
class Cluster:
    comfyui: ComfyUIServer
    replicas: list[Serve]
    nginx: Nginx
    database_url: str
    storage: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.nginx.url


@pytest.fixture
def cluster(
    tmp_path: Path,
    comfyui_server: ComfyUIServer | None,
    postgres: PostgresServer,
) -> Iterator[Cluster]:
    """A ComfyUI of the test's own, two replicas (``COMFYKIT_LEASE_SECONDS=3``) on a fresh
    PostgreSQL database and one storage dir, and nginx in front of them."""
    if comfyui_server is None:
        pytest.skip("needs the harness (the cluster gets a ComfyUI of its own)")
    if find_nginx() is None:
        if os.environ.get("CI"):
            raise AssertionError("nginx is not installed under CI (.ci/run installs it)")
        pytest.skip("nginx is not installed here (.ci/run installs it)")
    database_url = postgres.create_database(f"replicas_{os.getpid()}_{free_port()}")
    storage = tmp_path / "storage"
    with ComfyUIServer(env=comfyui_server.env, checkpoint=False) as comfyui:
        replicas = []
        for i in range(2):
            env = {
                **os.environ, "COMFYKIT_LEASE_SECONDS": str(LEASE),
                "COMFYKIT_DISPATCH_CONCURRENCY": "2", "COMFYKIT_COMFYUI_TIMEOUT_SECONDS": "5",
            }  # fmt: skip
            env.pop("COMFYUI_URL", None)
            args = [
                "--comfyui-url", comfyui.url, "--port", str(free_port()),
                "--data-dir", str(tmp_path / f"data{i}"), "--storage-dir", str(storage),
                "--database-url", database_url,
            ]  # fmt: skip
            replicas.append(Serve(args, env, tmp_path / f"serve{i}.log"))
        try:
            for replica in replicas:
                replica.start()
            upstreams = [f"127.0.0.1:{r.port}" for r in replicas]
            with Nginx(upstreams) as nginx:
                yield Cluster(comfyui, replicas, nginx, database_url, storage)
        finally:
            for replica in replicas:
                replica.stop()


async def runs_on_comfyui(comfyui_url: str) -> dict[str, int]:
    """How many times ComfyUI ran each service job: prompts in its history by the job id in
    their save node's file name (``comfykit-server/<job id>/<node>``)."""
    async with httpx.AsyncClient(timeout=60) as raw:  # the test's own look at ComfyUI
        history = (await raw.get(f"{comfyui_url}/history", params={"max_items": 100_000})).json()
    runs: dict[str, int] = {}
    for entry in history.values():
        text = json.dumps(entry.get("prompt", []))
        start = text.find("comfykit-server/")
        if start >= 0:
            job_id = text[start + len("comfykit-server/") :].split("/", 1)[0]
            runs[job_id] = runs.get(job_id, 0) + 1
    return runs


async def wait_all(
    http: httpx.AsyncClient, ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll every job until it ends or ``timeout`` passes; the last view of each."""
    deadline = time.monotonic() + timeout
    last: dict[str, dict[str, Any]] = {}
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending)[:100]:
            try:
                r = await http.get(f"/api/v1/jobs/{job_id}")
            except httpx.TransportError:
                continue
            if r.status_code == 200:
                last[job_id] = r.json()
                if last[job_id]["status"] in FINISHED:
                    pending.discard(job_id)
        await asyncio.sleep(0.2)
    return last


async def test_any_replica_answers_any_job_and_its_live_events(cluster: Cluster) -> None:
    one, two = (httpx.AsyncClient(base_url=r.url, timeout=60) for r in cluster.replicas)
    async with one, two:
        job = (await one.post("/api/v1/jobs", json={"workflow": slow_image(1, 2.0)})).json()
        events: list[tuple[str, dict[str, Any]]] = []
        async with two.stream("GET", f"/api/v1/jobs/{job['job_id']}/events") as stream:
            name = ""
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    if name in FINISHED or len(events) > 2000:
                        break
        names = [n for n, _ in events]
        assert names[0] == "queued" and names[-1] == "completed", names
        assert "started" in names and "progress" in names, names
        for client in (one, two):
            seen = (await client.get(f"/api/v1/jobs/{job['job_id']}")).json()
            assert seen["status"] == "completed", seen
            image = await client.get(seen["images"][0]["url"])
            assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        # a cancel through the other replica reaches the one running the job
        running = (await one.post("/api/v1/jobs", json={"workflow": slow_image(2, 30)})).json()
        deadline = time.monotonic() + 30
        while (await two.get(f"/api/v1/jobs/{running['job_id']}")).json()["status"] != "processing":
            assert time.monotonic() < deadline, "the job never started"
            await asyncio.sleep(0.05)
        started = time.monotonic()
        cancelled = (await two.delete(f"/api/v1/jobs/{running['job_id']}")).json()
        assert cancelled["status"] == "cancelled", cancelled
        assert time.monotonic() - started < 15
        async with httpx.AsyncClient() as raw:  # ComfyUI really stopped it
            queue = (await raw.get(f"{cluster.comfyui.url}/queue")).json()
        assert running["prompt_id"] not in json.dumps(queue["queue_running"])


async def test_r4_a_replica_killed_mid_run_loses_nothing(cluster: Cluster) -> None:
    jobs_n = 30
    async with httpx.AsyncClient(base_url=cluster.url, timeout=60) as http:
        ids = []
        for i in range(jobs_n):
            r = await http.post("/api/v1/jobs", json={"workflow": slow_image(100 + i, 0.3)})
            assert r.status_code == 201, r.text
            ids.append(r.json()["job_id"])
        # wait until both replicas have work in flight, then SIGKILL the first
        deadline = time.monotonic() + 60
        while True:
            views = [(await http.get(f"/api/v1/jobs/{i}")).json() for i in ids]
            if sum(v["status"] in FINISHED for v in views) >= 5:
                break
            assert time.monotonic() < deadline, "no job finished"
            await asyncio.sleep(0.1)
        killed_at = time.monotonic()
        cluster.replicas[0].kill()
        last = await wait_all(http, ids, timeout=180)
        finished_after = time.monotonic() - killed_at
    runs = await runs_on_comfyui(cluster.comfyui.url)
    statuses = [last.get(i, {}).get("status") for i in ids]
    figures = {
        "jobs": jobs_n,
        "completed": statuses.count("completed"),
        "failed_with_reason": sum(
            1 for i in ids if last.get(i, {}).get("status") == "failed" and last[i]["error"]
        ),
        "hung": sum(1 for s in statuses if s not in FINISHED),
        "lost": sum(1 for i in ids if i not in last),
        "duplicated_on_comfyui": sum(max(0, runs.get(i, 0) - 1) for i in ids),
        "seconds_to_finish_after_kill": round(finished_after, 1),
    }
    write_figures("r4_replica_killed", figures)
    assert figures["completed"] == jobs_n, (figures, [last.get(i) for i in ids])
    assert figures["duplicated_on_comfyui"] == 0, figures
    assert all(runs.get(i) == 1 for i in ids), figures


async def test_r6_a_thousand_jobs_through_two_replicas(cluster: Cluster) -> None:
    n = 1000
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=cluster.url, timeout=120, limits=limits) as http:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(http.post("/api/v1/jobs", json={"workflow": slow_image(1000 + i, 0)})
              for i in range(n)),
            return_exceptions=True,
        )  # fmt: skip
        ids = [
            a.json()["job_id"]
            for a in answers
            if isinstance(a, httpx.Response) and a.status_code == 201
        ]
        refused = [a for a in answers if not isinstance(a, httpx.Response) or a.status_code != 201]
        last = await wait_all(http, ids, timeout=600)
        elapsed = time.monotonic() - started
    runs = await runs_on_comfyui(cluster.comfyui.url)
    statuses = [last.get(i, {}).get("status") for i in ids]
    figures = {
        "submitted": n,
        "accepted": len(ids),
        "refused": len(refused),
        "completed": statuses.count("completed"),
        "failed": statuses.count("failed"),
        "hung": sum(1 for s in statuses if s not in FINISHED),
        "duplicated_on_comfyui": sum(max(0, runs.get(i, 0) - 1) for i in ids),
        "ran_on_comfyui": sum(1 for i in ids if runs.get(i)),
        "seconds": round(elapsed, 1),
    }
    write_figures("r6_thousand_jobs_two_replicas", figures)
    assert figures["accepted"] == n, (figures, refused[:3], cluster.nginx.log()[-2000:])
    assert figures["completed"] == n, figures
    assert figures["duplicated_on_comfyui"] == 0 and figures["ran_on_comfyui"] == n, figures
