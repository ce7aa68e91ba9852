"""Quotas (images per UTC day by role, counted from the store, so they hold across restarts),
the per-user queue cap, and rate limits: in memory, and in a real Redis shared by two service
instances (replicas)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfykit.testing import RedisServer, find_redis_server
from tests import graphs
from tests.server.test_auth import TEMPLATE, auth_settings, bearer, service, token


@pytest.fixture
def redis_url() -> Any:
    if find_redis_server() is None and not __import__("os").environ.get("CI"):
        pytest.skip("redis-server is not installed here (.ci/run installs it)")
    with RedisServer() as server:
        yield server.url


async def _template(http: httpx.AsyncClient, admin: str) -> str:
    made = await http.post("/api/v1/workflows", json=TEMPLATE, headers=bearer(admin))
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def test_daily_quota_counts_images_and_survives_a_restart(
    tmp_path: Path, comfyui_url: str, store_url: str
) -> None:
    settings = auth_settings(tmp_path, comfyui_url, quota_free=2, database_url=store_url)
    async with service(settings) as (http, state):
        admin = (await state.keys.create("root", "admin")).key
        alice = (await state.keys.create("alice", "free")).key
        template = await _template(http, admin)
        for color in (1, 2):
            r = await http.post(
                f"/api/v1/workflows/{template}/execute", json={"parameters": {"color": color}},
                headers={**bearer(alice), "Prefer": "wait=60"},
            )  # fmt: skip
            assert r.status_code == 201 and r.json()["status"] == "completed", r.text
        over = await http.post(
            f"/api/v1/workflows/{template}/execute", json={"parameters": {"color": 3}},
            headers=bearer(alice),
        )  # fmt: skip
        assert over.status_code == 429, over.text
        error = over.json()["error"]
        assert error["code"] == "QUOTA_EXCEEDED"
        assert "2 of 2 used today" in error["message"] and "resets at" in error["message"]
        reset = dt.datetime.fromisoformat(error["details"]["resets_at"])
        now = dt.datetime.now(dt.timezone.utc)
        assert reset.hour == 0 and reset.minute == 0 and 0 < (reset - now).total_seconds() <= 86400
        assert 0 < int(over.headers["retry-after"]) <= 86401
        # a generation request of batch_size 1 is one image too: refused the same way
        gen = await http.post(
            "/api/v1/generate", json={"prompt": "x", "width": 64, "height": 64, "steps": 1},
            headers=bearer(alice),
        )  # fmt: skip
        assert gen.status_code == 429 and gen.json()["error"]["code"] == "QUOTA_EXCEEDED"
        me = (await http.get("/api/v1/me", headers=bearer(alice))).json()
        assert me["usage"]["images_today"] == 2 and me["usage"]["remaining_images"] == 0
        # admins are not counted; another user has a quota of their own
        r = await http.post(
            f"/api/v1/workflows/{template}/execute", json={"parameters": {"color": 4}},
            headers=bearer(admin),
        )  # fmt: skip
        assert r.status_code == 201, r.text
        r = await http.post(
            f"/api/v1/workflows/{template}/execute", json={"parameters": {"color": 5}},
            headers=bearer(token("zoe", "free")),
        )  # fmt: skip
        assert r.status_code == 201, r.text
    # the count is the store's: a new process on the same store refuses too
    async with service(settings) as (http, _state):
        again = await http.post(
            f"/api/v1/workflows/{template}/execute", json={"parameters": {"color": 6}},
            headers=bearer(alice),
        )  # fmt: skip
        assert again.status_code == 429 and again.json()["error"]["code"] == "QUOTA_EXCEEDED"


async def test_failed_jobs_give_their_images_back(tmp_path: Path, comfyui_url: str) -> None:
    settings = auth_settings(tmp_path, comfyui_url, quota_pro=1, adhoc_workflows="pro")
    async with service(settings) as (http, state):
        pat = (await state.keys.create("pat", "pro")).key
        failing = await http.post(
            "/api/v1/jobs", json={"workflow": graphs.sync_error()},
            headers={**bearer(pat), "Prefer": "wait=60"},
        )  # fmt: skip
        assert failing.status_code == 201 and failing.json()["status"] == "failed", failing.text
        ok = await http.post(
            "/api/v1/jobs", json={"workflow": graphs.invert()},
            headers={**bearer(pat), "Prefer": "wait=60"},
        )  # fmt: skip
        assert ok.status_code == 201 and ok.json()["status"] == "completed", ok.text
        assert (await http.get("/api/v1/me", headers=bearer(pat))).json()["usage"][
            "images_today"
        ] == 1


async def test_a_user_cannot_fill_the_queue(tmp_path: Path, comfyui_url: str) -> None:
    settings = auth_settings(tmp_path, comfyui_url, user_max_queued=2, adhoc_workflows="pro")
    async with service(settings) as (http, state):
        pat = (await state.keys.create("pat", "pro")).key
        admin = (await state.keys.create("root", "admin")).key
        ids = []
        for _ in range(2):
            r = await http.post(
                "/api/v1/jobs", json={"workflow": graphs.sleep(3)}, headers=bearer(pat)
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["job_id"])
        third = await http.post(
            "/api/v1/jobs", json={"workflow": graphs.sleep(3)}, headers=bearer(pat)
        )
        assert third.status_code == 429, third.text
        assert third.json()["error"]["code"] == "TOO_MANY_JOBS"
        assert "at most 2" in third.json()["error"]["message"]
        assert third.headers["retry-after"]
        # an admin is not capped; cancelling frees a place at once
        assert (
            await http.post("/api/v1/jobs", json={"workflow": graphs.invert()},
                            headers=bearer(admin))
        ).status_code == 201  # fmt: skip
        for job_id in ids:
            cancelled = await http.delete(f"/api/v1/jobs/{job_id}", headers=bearer(pat))
            assert cancelled.status_code in (200, 409), cancelled.text
        r = await http.post("/api/v1/jobs", json={"workflow": graphs.invert()}, headers=bearer(pat))
        assert r.status_code == 201, r.text


async def test_rate_limit_per_key_and_per_ip(tmp_path: Path, comfyui_url: str) -> None:
    settings = auth_settings(tmp_path, comfyui_url, rate_limit="3/minute")
    async with service(settings) as (http, state):
        alice = (await state.keys.create("alice", "free")).key
        bob = (await state.keys.create("bob", "free")).key
        remaining = []
        for _ in range(3):
            r = await http.get("/api/v1/me", headers=bearer(alice))
            assert r.status_code == 200, r.text
            assert r.headers["ratelimit-limit"] == "3"
            remaining.append(int(r.headers["ratelimit-remaining"]))
            assert 0 < int(r.headers["ratelimit-reset"]) <= 60
        assert remaining == [2, 1, 0]
        over = await http.get("/api/v1/me", headers=bearer(alice))
        assert over.status_code == 429, over.text
        assert over.json()["error"]["code"] == "RATE_LIMITED"
        assert "3 per 1 minute" in over.json()["error"]["message"]
        assert 0 < int(over.headers["retry-after"]) <= 60
        assert over.headers["ratelimit-remaining"] == "0"
        # another key has its own budget; routes without credentials count per client IP
        assert (await http.get("/api/v1/me", headers=bearer(bob))).status_code == 200
        health = [(await http.get("/health")).status_code for _ in range(4)]
        assert health == [200, 200, 200, 429]


async def test_two_replicas_share_one_budget_in_redis(
    tmp_path: Path, comfyui_url: str, redis_url: str
) -> None:
    common = {"rate_limit": "4/minute", "rate_limit_storage": redis_url}
    one = auth_settings(tmp_path / "one", comfyui_url, **common)
    two = auth_settings(tmp_path / "two", comfyui_url, **common)
    user = bearer(token("shared-user", "pro"))
    async with service(one) as (http1, _s1), service(two) as (http2, _s2):
        answers = []
        for http in (http1, http2, http1, http2, http1, http2):
            answers.append((await http.get("/api/v1/me", headers=user)).status_code)
        assert answers == [200, 200, 200, 200, 429, 429]
        other = bearer(token("another-user", "pro"))
        assert (await http2.get("/api/v1/me", headers=other)).status_code == 200


async def test_rate_limit_storage_down_is_a_503(tmp_path: Path, comfyui_url: str) -> None:
    with RedisServer() as redis:
        settings = auth_settings(
            tmp_path, comfyui_url, rate_limit="100/minute", rate_limit_storage=redis.url
        )
        async with service(settings) as (http, _state):
            user = bearer(token("u", "pro"))
            assert (await http.get("/api/v1/me", headers=user)).status_code == 200
            redis.stop(remove=False)
            down = await http.get("/api/v1/me", headers=user)
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "RATE_LIMIT_UNAVAILABLE"
            redis.start()
            for _ in range(50):  # the client reconnects (bounded)
                back = await http.get("/api/v1/me", headers=user)
                if back.status_code == 200:
                    break
            assert back.status_code == 200, back.text
