"""The REST API end to end on the real ComfyUI, through httpx's ASGI transport."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import httpx
import pytest

from comfykit.testing import CHECKPOINT_NAME
from tests import graphs
from tests.server.conftest import wait_for_job

TINY = {"width": 64, "height": 64, "steps": 1}


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}, error
    assert error["code"] == code, error
    assert error["request_id"] == response.headers["x-request-id"]
    return dict(error)


async def test_generate_answers_201_with_location_at_once(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/generate", json={"prompt": "a lighthouse", **TINY})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] in ("queued", "processing")
    assert response.headers["location"] == f"/api/v1/generate/{job['job_id']}"
    for key in ("job_id", "status", "image_url", "images", "error", "metadata", "created_at",
                "completed_at", "queue_position"):  # fmt: skip
        assert key in job
    assert job["metadata"]["model"] == CHECKPOINT_NAME
    assert isinstance(job["metadata"]["seed"], int)
    done = await wait_for_job(client, job["job_id"], timeout=120)
    assert done["status"] == "completed", done
    assert done["image_url"] == f"/api/v1/generate/{job['job_id']}/image"
    assert len(done["images"]) == 1 and done["images"][0]["content_type"] == "image/png"
    assert done["metadata"]["timings"]["total_ms"] > 0
    same = await client.get(response.headers["location"])
    assert same.json()["status"] == "completed"

    image = await client.get(done["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    etag = image.headers["etag"]
    again = await client.get(done["image_url"], headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    by_index = await client.get(done["image_url"], params={"index": 0})
    assert by_index.content == image.content
    missing = await client.get(done["image_url"], params={"index": 3})
    assert_envelope(missing, 404, "NOT_FOUND")
    output = await client.get(f"/api/v1/jobs/{job['job_id']}/outputs/0")
    assert output.content == image.content


async def test_prefer_wait_returns_the_finished_job(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/jobs", json={"workflow": graphs.invert()}, headers={"Prefer": "wait=60"}
    )
    assert response.status_code == 201, response.text
    assert response.headers["preference-applied"] == "wait=60"
    job = response.json()
    assert job["status"] == "completed", job
    assert job["completed_at"] is not None and job["images"]
    # the metadata the store keeps comes back with it (graph and timings)
    assert job["metadata"]["graph"]["2"]["class_type"] == "ImageInvert", job
    timings = job["metadata"]["timings"]
    assert timings["total_ms"] > 0 and timings["execution_ms"] >= 0, timings


async def test_prefer_wait_gives_up_after_n_seconds(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/jobs", json={"workflow": graphs.sleep(3)}, headers={"Prefer": "wait=0.2"}
    )
    assert response.status_code == 201
    assert response.json()["status"] in ("queued", "processing")
    done = await wait_for_job(client, response.json()["job_id"])
    assert done["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"prompt": "x", "width": 4000}, "width", "width must be between 64 and 2048"),
        ({"prompt": "x", "height": 100}, "height", "height must be a multiple of 8"),
        ({"prompt": "x", "steps": 0}, "steps", "steps must be between 1 and 150"),
        ({"prompt": "x", "cfg_scale": 31}, "cfg_scale", "cfg_scale must be between 1 and 30"),
        ({"prompt": ""}, "prompt", "prompt must not be empty"),
        ({"width": 64}, "prompt", "prompt is required"),
        ({"prompt": "x", "colour": 1}, "colour", "colour is not a known field"),
        ({"prompt": "x", "width": "64"}, "width", "width"),
    ],
)
async def test_validation_errors_are_400_naming_field_and_rule(
    client: httpx.AsyncClient, body: dict[str, object], field: str, text: str
) -> None:
    response = await client.post("/api/v1/generate", json=body)
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert text in str(error["message"]), error
    assert any(d["field"] == field for d in error["details"]), error


async def test_the_prompt_cap_is_the_services(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/generate", json={"prompt": "x" * 5001, **TINY})
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "prompt must be at most 5000 characters" in str(error["message"])


async def test_unknown_model_and_sampler_alias(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/generate", json={"prompt": "x", "model": "nope"})
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert CHECKPOINT_NAME in str(error["message"])
    response = await client.post(
        "/api/v1/generate", json={"prompt": "x", "sampler": "euler_a", **TINY}
    )
    assert response.status_code == 201, response.text
    assert response.json()["metadata"]["request"]["sampler"] == "euler_ancestral"
    await wait_for_job(client, response.json()["job_id"], timeout=120)


async def test_malformed_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/generate", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert error["message"].startswith("the body is not valid JSON"), error
    assert error["details"][0]["field"] == "body", error
    assert error["details"][0]["position"] == 1, error


async def test_404_405_envelopes_and_request_id(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/api/v1/nowhere"), 404, "NOT_FOUND")
    assert_envelope(await client.get("/api/v1/jobs/unknown"), 404, "NOT_FOUND")
    assert_envelope(await client.get("/api/v1/generate/unknown"), 404, "NOT_FOUND")
    assert_envelope(await client.get("/api/v1/batches/unknown"), 404, "NOT_FOUND")
    assert_envelope(await client.put("/api/v1/generate", json={}), 405, "METHOD_NOT_ALLOWED")
    given = await client.get("/api/v1/jobs/unknown", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    assert given.json()["error"]["request_id"] == "abc-123"
    fresh = await client.get("/health")
    assert len(fresh.headers["x-request-id"]) >= 16


async def test_adhoc_workflow_is_checked_against_the_catalog(client: httpx.AsyncClient) -> None:
    bad = graphs.invert()
    bad["1"]["inputs"]["width"] = 0
    error = assert_envelope(
        await client.post("/api/v1/jobs", json={"workflow": bad}), 400, "VALIDATION_ERROR"
    )
    assert "node 1" in str(error["message"]) and "width" in str(error["message"])
    assert error["details"][0]["node_id"] == "1"
    assert error["details"][0]["input"] == "width"
    unknown = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    error = assert_envelope(
        await client.post("/api/v1/jobs", json={"workflow": unknown}), 400, "VALIDATION_ERROR"
    )
    assert "NoSuchNode" in str(error["message"])
    neither = await client.post("/api/v1/jobs", json={"workflow": {"a": 1}})
    assert_envelope(neither, 400, "VALIDATION_ERROR")


async def test_a_pngs_embedded_graph_runs(client: httpx.AsyncClient) -> None:
    first = await client.post(
        "/api/v1/jobs", json={"workflow": graphs.invert()}, headers={"Prefer": "wait=60"}
    )
    png = (await client.get(first.json()["images"][0]["url"])).content
    response = await client.post(
        "/api/v1/jobs",
        json={"png": base64.b64encode(png).decode()},
        headers={"Prefer": "wait=60"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "completed"
    assert response.json()["metadata"]["graph"]["2"]["class_type"] == "ImageInvert"


async def test_batch_and_its_aggregate(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/generate/batch",
        json={"request": {"prompt": "a cat", **TINY}, "seeds": [1, 2]},
    )
    assert response.status_code == 201, response.text
    batch = response.json()
    assert response.headers["location"] == f"/api/v1/batches/{batch['batch_id']}"
    assert [j["metadata"]["seed"] for j in batch["jobs"]] == [1, 2]
    for job in batch["jobs"]:
        await wait_for_job(client, job["job_id"], timeout=180)
    final = (await client.get(response.headers["location"])).json()
    assert final["status"] == "completed" and final["counts"] == {"completed": 2}
    bad = await client.post("/api/v1/generate/batch", json={"requests": [{"prompt": ""}]})
    error = assert_envelope(bad, 400, "VALIDATION_ERROR")
    assert "requests[0].prompt" in str(error["message"])


async def test_job_listing_filters_and_pages_newest_first(client: httpx.AsyncClient) -> None:
    ids = []
    for _ in range(3):
        r = await client.post("/api/v1/jobs", json={"workflow": graphs.text("a", "b")})
        ids.append(r.json()["job_id"])
    for job_id in ids:
        await wait_for_job(client, job_id)
    page = (await client.get("/api/v1/jobs", params={"limit": 2})).json()
    assert [j["job_id"] for j in page["jobs"]] == ids[::-1][:2]
    assert page["next_cursor"]
    rest = await client.get("/api/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]})
    assert [j["job_id"] for j in rest.json()["jobs"]] == ids[:1]
    assert rest.json()["next_cursor"] is None
    completed = (await client.get("/api/v1/jobs", params={"status": "completed"})).json()
    assert {j["job_id"] for j in completed["jobs"]} == set(ids)
    assert (await client.get("/api/v1/jobs", params={"status": "failed"})).json()["jobs"] == []
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    later = await client.get("/api/v1/jobs", params={"created_after": future})
    assert later.json()["jobs"] == []
    bad = await client.get("/api/v1/jobs", params={"status": "bogus"})
    assert_envelope(bad, 400, "VALIDATION_ERROR")
    assert_envelope(
        await client.get("/api/v1/jobs", params={"cursor": "zzz"}), 400, "VALIDATION_ERROR"
    )


async def test_a_failing_node_fails_the_job_with_its_reason(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/jobs", json={"workflow": graphs.sync_error()})
    done = await wait_for_job(client, response.json()["job_id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "EXECUTION_ERROR"
    assert done["error"]["details"]["node_type"] == "TestSyncError"


async def test_health_ready_metrics(client: httpx.AsyncClient) -> None:
    health = (await client.get("/health")).json()
    assert health["status"] == "healthy" and health["comfyui"] == "connected"
    assert health["database"] == "ok"
    assert all(s["status"] == "connected" for s in health["servers"].values())
    ready = await client.get("/ready")
    assert ready.status_code == 200, ready.text
    await client.get("/api/v1/jobs/nope")
    text = await client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    body = text.text
    assert (
        'comfykit_http_requests_total{method="GET",route="/api/v1/jobs/{job_id}",status="404"}'
        in body
    )
    assert "comfykit_http_request_duration_seconds_bucket" in body
    assert 'comfykit_jobs{state="queued"}' in body
    assert "comfykit_queue_depth" in body
    assert "comfykit_comfyui_up{" in body
    summary = (await client.get("/metrics", headers={"Accept": "application/json"})).json()
    for key in ("requests", "avg_time", "p50", "p95", "p99", "error_rate"):
        assert key in summary
    assert summary["requests"] >= 3
