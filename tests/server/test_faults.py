"""Faults with real processes: ComfyUI unreachable, and ComfyUI killed and restarted with
jobs on it (a running one fails with a reason, one it never started is requeued and runs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from comfykit.server import create_app
from comfykit.testing import ComfyUIServer, free_port
from tests import graphs
from tests.server.conftest import make_settings, wait_for_job


async def test_no_comfyui_is_503_and_degraded(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    app = create_app(make_settings(tmp_path, dead, comfyui_timeout_seconds=2))
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            health = (await http.get("/health")).json()
            assert health["status"] == "degraded" and health["comfyui"] == "disconnected"
            ready = await http.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "COMFYUI_UNAVAILABLE"
            generate = await http.post("/api/v1/generate", json={"prompt": "x"})
            assert generate.status_code == 503, generate.text
            assert generate.json()["error"]["code"] == "COMFYUI_UNAVAILABLE"
            up = await http.get("/metrics")
            assert f'comfykit_comfyui_up{{server="{dead}"}} 0.0' in up.text


@pytest.fixture
def own_comfyui(comfyui_server: ComfyUIServer | None) -> Iterator[ComfyUIServer]:
    """A ComfyUI of this test's own, to kill and restart. The session's harness decides whether
    one can start (it skips locally and fails under CI when it cannot)."""
    if comfyui_server is None:
        pytest.skip("needs the harness (this test kills and restarts its own server)")
    with ComfyUIServer(env=comfyui_server.env) as server:
        yield server


@pytest.mark.slow
async def test_comfyui_restarted_under_jobs(
    tmp_path: Path, own_comfyui: ComfyUIServer, store_url: str
) -> None:
    settings = make_settings(
        tmp_path, own_comfyui.url, reattach_timeout_seconds=120, database_url=store_url
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
            running = (await http.post("/api/v1/jobs", json={"workflow": graphs.sleep(30)})).json()
            pending = (await http.post("/api/v1/jobs", json={"workflow": graphs.invert()})).json()
            await wait_for_job(http, running["job_id"], lambda j: j["status"] == "processing")
            deadline = time.monotonic() + 10
            while pending["prompt_id"] not in str(await _queue(own_comfyui.url)):
                assert time.monotonic() < deadline, "the second job never reached ComfyUI"
            own_comfyui.kill()
            own_comfyui.restart()
            lost = await wait_for_job(http, running["job_id"], timeout=120)
            assert lost["status"] == "failed", lost
            assert lost["error"]["code"] == "JOB_LOST", lost
            requeued = await wait_for_job(http, pending["job_id"], timeout=120)
            assert requeued["status"] == "completed", requeued["error"]
            assert requeued["images"]


async def _queue(url: str) -> object:
    async with httpx.AsyncClient() as raw:  # test-side look at ComfyUI's queue
        return (await raw.get(f"{url}/queue")).json()


@pytest.mark.slow
async def test_a_job_comfyui_ran_and_forgot_is_not_run_again(
    tmp_path: Path, own_comfyui: ComfyUIServer
) -> None:
    """The service stops with a job waiting on ComfyUI; ComfyUI runs it unwatched, then is
    restarted (its history gone). On the service's next start ComfyUI no longer knows the job,
    but its output file exists: the job is failed with that evidence, never queued again. A
    job that had not run by then is requeued and runs once."""
    settings = make_settings(tmp_path, own_comfyui.url, dispatch_concurrency=2)

    async def service() -> LifespanManager:
        return LifespanManager(create_app(settings), startup_timeout=60, shutdown_timeout=30)

    async with await service() as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
            blocker = (await http.post("/api/v1/jobs", json={"workflow": graphs.sleep(1.5)})).json()
            ran = (await http.post("/api/v1/jobs", json={"workflow": graphs.invert()})).json()
            await wait_for_job(http, blocker["job_id"], lambda j: j["status"] == "processing")
            deadline = time.monotonic() + 10
            while ran["prompt_id"] not in str(await _queue(own_comfyui.url)):
                assert time.monotonic() < deadline, "the job never reached ComfyUI"
            assert (await http.get(f"/api/v1/jobs/{ran['job_id']}")).json()["status"] == "queued"
    # the service is down; ComfyUI runs the job unwatched, then forgets it
    deadline = time.monotonic() + 30
    while ran["prompt_id"] not in str(await _history(own_comfyui.url)):
        assert time.monotonic() < deadline, "ComfyUI never ran the job"
        await asyncio.sleep(0.1)
    own_comfyui.kill()
    own_comfyui.restart()
    async with await service() as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
            lost = await wait_for_job(http, ran["job_id"], timeout=60)
            assert lost["status"] == "failed", lost
            assert lost["error"]["code"] == "JOB_LOST", lost
            evidence = lost["error"]["details"]["evidence"]
            assert evidence == f"comfykit-server/{ran['job_id']}/3_00001_.png", lost
            assert "not run again" in lost["error"]["message"]
            # ComfyUI was not asked to run it a second time
            assert ran["job_id"] not in str(await _history(own_comfyui.url))
            assert ran["job_id"] not in str(await _queue(own_comfyui.url))


async def _history(url: str) -> object:
    async with httpx.AsyncClient() as raw:  # test-side look at ComfyUI's history
        return (await raw.get(f"{url}/history")).json()


@pytest.fixture
def small_storage(tmp_path: Path) -> Iterator[Path]:
    """A storage dir on a tmpfs of 1 MiB, to fill up or make read-only (needs ``mount``: as
    root, as CI runs; elsewhere the test is skipped, under CI it fails)."""
    import os
    import subprocess

    where = tmp_path / "storage"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        if os.environ.get("CI"):
            raise AssertionError(f"cannot mount a tmpfs under CI: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _remount(where: Path, mode: str) -> None:
    import subprocess

    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


@pytest.mark.slow
async def test_storage_full_or_read_only_fails_the_job_with_a_reason(
    tmp_path: Path, comfyui_url: str, small_storage: Path
) -> None:
    """R5: the storage dir is full, then read-only, while a job's outputs are copied: each job
    fails with STORAGE_ERROR and a reason (no path in it); once there is room again jobs
    complete; nothing is left half-written."""
    settings = make_settings(tmp_path, comfyui_url, storage_dir=small_storage)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
            filler = small_storage / "filler"
            with open(filler, "wb") as out:  # fill the tmpfs to the last block
                try:
                    while True:
                        out.write(b"\0" * 65536)
                        out.flush()
                except OSError:
                    pass
            r = await http.post("/api/v1/jobs", json={"workflow": graphs.invert()},
                                headers={"Prefer": "wait=60"})  # fmt: skip
            full = r.json()
            assert full["status"] == "failed", full
            assert full["error"]["code"] == "STORAGE_ERROR", full["error"]
            assert "No space left" in full["error"]["message"], full["error"]
            assert str(small_storage) not in full["error"]["message"]
            filler.unlink()
            ok = (await http.post("/api/v1/jobs", json={"workflow": graphs.invert()},
                                  headers={"Prefer": "wait=60"})).json()  # fmt: skip
            assert ok["status"] == "completed", ok
            _remount(small_storage, "ro")
            try:
                answer = await http.post("/api/v1/jobs", json={"workflow": graphs.invert()},
                                         headers={"Prefer": "wait=60"})  # fmt: skip
                ro = answer.json()
                assert answer.status_code == 201 and ro["status"] == "failed", ro
                assert ro["error"]["code"] == "STORAGE_ERROR", ro["error"]
                assert "Read-only file system" in ro["error"]["message"], ro["error"]
            finally:
                _remount(small_storage, "rw")
            again = (await http.post("/api/v1/jobs", json={"workflow": graphs.invert()},
                                     headers={"Prefer": "wait=60"})).json()  # fmt: skip
            assert again["status"] == "completed", again
            assert (await http.get("/health")).json()["status"] == "healthy"
            leftovers = [p.name for p in small_storage.rglob("*") if p.name.endswith(".part")]
            assert leftovers == []


@pytest.mark.slow
async def test_r1_comfyui_killed_and_restarted_in_the_middle_of_50_jobs(
    tmp_path: Path, own_comfyui: ComfyUIServer
) -> None:
    """R1 (service): 50 jobs; ComfyUI is SIGKILLed and restarted after a few complete. Every
    job ends completed, or failed with a reason (the one running when it died); none hangs;
    every completed job keeps its output; none runs twice."""
    from tests.server.test_replicas import runs_on_comfyui, slow_image, write_figures

    n = 50
    settings = make_settings(tmp_path, own_comfyui.url, reattach_timeout_seconds=120)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
            ids = []
            for i in range(n):
                r = await http.post("/api/v1/jobs", json={"workflow": slow_image(300 + i, 0.2)})
                assert r.status_code == 201, r.text
                ids.append(r.json()["job_id"])
            deadline = time.monotonic() + 60
            while True:
                done = [(await http.get(f"/api/v1/jobs/{i}")).json()["status"] for i in ids]
                if done.count("completed") >= 10:
                    break
                assert time.monotonic() < deadline, done
                await asyncio.sleep(0.05)
            completed_before = [i for i, s in zip(ids, done, strict=True) if s == "completed"]
            own_comfyui.kill()
            own_comfyui.restart()
            last = {}
            for job_id in ids:
                last[job_id] = await wait_for_job(http, job_id, timeout=180)
            kept = 0
            for job_id in completed_before:
                image = await http.get(f"/api/v1/jobs/{job_id}/outputs/0")
                kept += image.status_code == 200 and image.content.startswith(b"\x89PNG")
    runs = await runs_on_comfyui(own_comfyui.url)  # history since the restart only
    statuses = [last[i]["status"] for i in ids]
    figures: dict[str, Any] = {
        "jobs": n,
        "completed": statuses.count("completed"),
        "failed_with_reason": sum(
            1 for i in ids if last[i]["status"] == "failed" and last[i]["error"]["message"]
        ),
        "failed_codes": sorted({last[i]["error"]["code"] for i in ids if last[i]["error"]}),
        "hung": sum(1 for s in statuses if s not in ("completed", "failed", "cancelled")),
        "completed_before_kill": len(completed_before),
        "completed_results_kept": kept,
        "ran_twice_after_restart": sum(1 for v in runs.values() if v > 1),
    }
    write_figures("r1_service_comfyui_restarted", figures)
    assert figures["hung"] == 0, figures
    assert figures["completed"] + figures["failed_with_reason"] == n, figures
    assert figures["completed_results_kept"] == len(completed_before), figures
    assert figures["ran_twice_after_restart"] == 0, figures
    assert set(figures["failed_codes"]) <= {"JOB_LOST"}, figures


@pytest.mark.slow
async def test_r5_comfyui_answering_503_then_stalling(
    tmp_path: Path, own_comfyui: ComfyUIServer
) -> None:
    """R5: the service reaches ComfyUI through a proxy that answers 503 to everything for 4 s,
    later stalls every byte for 10 s, while jobs are queued. Each job ends completed, or failed
    with a reason; none hangs, none is lost, none runs twice."""
    from comfykit.testing import TcpProxy
    from tests.server.test_replicas import runs_on_comfyui, slow_image, write_figures

    with TcpProxy(own_comfyui.url) as proxy:
        settings = make_settings(
            tmp_path, proxy.url, comfyui_timeout_seconds=3, reattach_timeout_seconds=60
        )
        app = create_app(settings)
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://t", timeout=60
            ) as http:
                warm = await http.post(
                    "/api/v1/jobs", json={"workflow": slow_image(500, 0)},
                    headers={"Prefer": "wait=60"},
                )  # fmt: skip
                assert warm.json()["status"] == "completed", warm.text
                ids: list[str] = []
                proxy.answer(503)
                for i in range(5):
                    r = await http.post("/api/v1/jobs", json={"workflow": slow_image(510 + i, 0)})
                    assert r.status_code == 201, r.text
                    ids.append(r.json()["job_id"])
                await asyncio.sleep(4)
                proxy.answer(None)
                proxy.stall(10)
                for i in range(5):
                    r = await http.post("/api/v1/jobs", json={"workflow": slow_image(520 + i, 0)})
                    assert r.status_code == 201, r.text
                    ids.append(r.json()["job_id"])
                last = {i: await wait_for_job(http, i, timeout=120) for i in ids}
    runs = await runs_on_comfyui(own_comfyui.url)
    statuses = [last[i]["status"] for i in ids]
    figures: dict[str, Any] = {
        "jobs": len(ids),
        "completed": statuses.count("completed"),
        "failed_with_reason": sum(
            1 for i in ids if last[i]["status"] == "failed" and last[i]["error"]["message"]
        ),
        "failed_codes": sorted({last[i]["error"]["code"] for i in ids if last[i]["error"]}),
        "failure_examples": sorted({last[i]["error"]["message"] for i in ids if last[i]["error"]}),
        "hung": sum(1 for s in statuses if s not in ("completed", "failed", "cancelled")),
        "duplicated_on_comfyui": sum(max(0, runs.get(i, 0) - 1) for i in ids),
    }
    write_figures("r5_comfyui_503_then_stalled", figures)
    assert "INTERNAL_ERROR" not in figures["failed_codes"], figures
    assert figures["hung"] == 0, figures
    assert figures["completed"] + figures["failed_with_reason"] == len(ids), figures
    assert figures["duplicated_on_comfyui"] == 0, figures
