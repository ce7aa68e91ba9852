"""The router mounted in a host app: two services with different settings side by side."""

from __future__ import annotations

from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from comfykit.server import create_router, lifespan, state_of
from tests import graphs
from tests.server.conftest import make_settings, wait_for_job


async def test_two_routers_with_their_own_settings(tmp_path: Path, comfyui_url: str) -> None:
    host = FastAPI()

    @host.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    first = create_router(make_settings(tmp_path / "a", comfyui_url, max_prompt_length=10))
    second = create_router(make_settings(tmp_path / "b", comfyui_url))
    host.include_router(first, prefix="/one")
    host.include_router(second, prefix="/two")
    assert state_of(first).store is not state_of(second).store
    assert state_of(first).metrics.registry is not state_of(second).metrics.registry

    async with LifespanManager(host, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://h") as http:
            assert (await http.get("/hello")).json() == {"hello": "world"}
            response = await http.post("/one/api/v1/jobs", json={"workflow": graphs.invert()})
            assert response.status_code == 201, response.text
            job = response.json()
            assert response.headers["location"] == f"/one/api/v1/jobs/{job['job_id']}"
            done = await wait_for_job(http, job["job_id"], prefix="/one")
            assert done["images"][0]["url"].startswith(f"/one/api/v1/jobs/{job['job_id']}/")
            assert (await http.get(done["images"][0]["url"])).status_code == 200
            # each service has its own store and its own limits
            assert (await http.get(f"/two/api/v1/jobs/{job['job_id']}")).status_code == 404
            long_prompt = {"prompt": "x" * 11, "width": 64, "height": 64, "steps": 1}
            one = await http.post("/one/api/v1/generate", json=long_prompt)
            assert one.status_code == 400
            assert "at most 10 characters" in one.json()["error"]["message"]
            assert one.headers["x-request-id"] == one.json()["error"]["request_id"]
            # FastAPI's own validation error inside a mounted router: still the envelope
            bad = await http.get("/two/api/v1/jobs", params={"limit": 0})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"
            metrics = (await http.get("/one/metrics")).text
            assert 'route="/one/api/v1/jobs"' in metrics
            assert 'route="/one/api/v1/jobs"' not in (await http.get("/two/metrics")).text


async def test_lifespan_by_hand(tmp_path: Path, comfyui_url: str) -> None:
    router = create_router(make_settings(tmp_path, comfyui_url))
    host = FastAPI()
    host.include_router(router)
    async with lifespan(router) as state:
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://h") as http:
            response = await http.post(
                "/api/v1/jobs", json={"workflow": graphs.invert()}, headers={"Prefer": "wait=60"}
            )
            assert response.json()["status"] == "completed"
        assert await state.store.ping()
