"""Comfy API v2 (``/api/v2``) on the real ComfyUI, on both stores where the store matters: assets
(dedup by BLAKE3, ownership, Range, deletes), jobs with ``core/ASSET`` inputs, the
``Idempotency-Key``, the event stream, cancel (confirmed by ComfyUI's queue and history),
retention's ``expired``, a mounted router. Every v2 answer is checked against the vendored
contract (:func:`tests.server.comfy_v2.check`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from blake3 import blake3
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import update

from comfykit import AsyncComfyClient
from comfykit.server import Settings, create_app, create_router
from comfykit.server.state import ServiceState
from comfykit.server.store import AssetRow, IdempotencyKeyRow
from tests import graphs
from tests.server.comfy_v2 import check, parse_sse
from tests.server.conftest import make_settings, wait_for_job
from tests.server.test_auth import auth_settings, bearer, service

TERMINAL = ("succeeded", "failed", "canceled", "expired")


def png(color: tuple[int, int, int] = (10, 200, 30), size: tuple[int, int] = (16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def blake(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def loads_asset(asset_id: str) -> dict[str, Any]:
    """LoadImage (its image an asset) -> ImageInvert -> SaveImage."""
    return {
        "1": {
            "class_type": "LoadImage",
            "inputs": {"image": {"__type": "core/ASSET", "info": {"id": asset_id}}},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "v2"}},
    }


async def upload(
    http: httpx.AsyncClient,
    data: bytes,
    *,
    content_type: str = "image/png",
    file_path: str = "photo.png",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx.Response:
    form: dict[str, Any] = {"content_type": content_type, "file_path": file_path, **fields}
    return check(
        await http.post(
            "/api/v2/assets",
            files={"file": ("upload.bin", data, content_type)},
            data=form,
            headers=headers,
        )  # fmt: skip
    )


async def wait_v2(
    http: httpx.AsyncClient,
    job_id: str,
    predicate: Callable[[dict[str, Any]], bool] = lambda j: j["status"] in TERMINAL,
    *,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Poll ``GET /api/v2/jobs/{id}`` until ``predicate`` holds (bounded in time and count)."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    for _ in range(10_000):
        job = check(await http.get(f"/api/v2/jobs/{job_id}", headers=headers)).json()
        if predicate(job):
            return job
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach the state in {timeout} s: {job}")


async def store_execute(state: ServiceState, statement: Any) -> None:
    """Run a statement in a transaction of the service's own store (on SQLite its statements
    run on the loop thread: a second engine writing from another thread would deadlock)."""
    async with state.store._session() as s, s.begin():
        await s.execute(statement)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceState]]:
    """The standalone app on ``settings`` (lifespan running) and its state."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=60
        ) as http:
            yield http, app.state.comfykit


@pytest.fixture
async def v2(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceState]]:
    """The app on each store, with its state."""
    async with running(settings) as pair:
        yield pair


@pytest.fixture
async def one_at_a_time(
    tmp_path: Path, comfyui_url: str, store_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceState]]:
    """A service feeding ComfyUI one job at a time (on each store)."""
    settings = make_settings(tmp_path, comfyui_url, dispatch_concurrency=1, database_url=store_url)
    async with running(settings) as pair:
        yield pair


# -- assets -----------------------------------------------------------------------------------


async def test_uploads_are_deduplicated_by_hash_and_served_with_ranges(
    v2: tuple[httpx.AsyncClient, ServiceState],
) -> None:
    http, state = v2
    data = png()
    first = await upload(http, data, expected_hash=blake(data), tags=["input"])
    assert first.status_code == 201, first.text
    asset = first.json()
    assert asset["created_new"] is True and asset["hash"] == blake(data)
    assert asset["size_bytes"] == len(data) and asset["content_type"] == "image/png"
    assert asset["file_path"] == "photo.png" and asset["job_id"] is None
    assert asset["url"] == f"http://test/api/v2/assets/{asset['id']}/content"
    assert first.headers["x-comfy-request-id"] == first.headers["x-request-id"]

    again = await upload(http, data, file_path="other/name.png")
    assert again.status_code == 200 and again.json()["created_new"] is False
    assert again.json()["id"] != asset["id"] and again.json()["hash"] == asset["hash"]
    digest = asset["hash"].removeprefix("blake3:")
    blob = state.blobs.path(digest)
    assert blob.read_bytes() == data
    assert sorted(p.name for p in blob.parent.iterdir()) == [digest]  # stored once

    head = check(await http.head(f"/api/v2/assets/by-hash/{asset['hash']}"))
    assert head.status_code == 200
    unknown = blake(b"never uploaded")
    assert check(await http.head(f"/api/v2/assets/by-hash/{unknown}")).status_code == 404
    assert check(await http.head("/api/v2/assets/by-hash/not-a-hash")).status_code == 404

    minted = check(
        await http.post(
            "/api/v2/assets/from-hash", json={"hash": asset["hash"], "file_path": "x.png"}
        )
    )
    assert minted.status_code == 201 and minted.json()["created_new"] is False
    same = check(
        await http.post(
            "/api/v2/assets/from-hash", json={"hash": asset["hash"], "file_path": "x.png"}
        )
    )
    assert same.status_code == 200 and same.json()["id"] == minted.json()["id"]
    missing = check(await http.post("/api/v2/assets/from-hash", json={"hash": unknown}))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "blob_not_found"

    got = check(await http.get(f"/api/v2/assets/{asset['id']}"))
    assert {k: v for k, v in got.json().items() if k != "created_new"} == {
        k: v for k, v in asset.items() if k != "created_new"
    }
    assert "created_new" not in got.json()
    url = f"/api/v2/assets/{asset['id']}/content"
    whole = check(await http.get(url))
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "application/octet-stream"
    etag = whole.headers["etag"]
    assert etag == f'"{digest}"'
    part = check(await http.get(url, headers={"Range": "bytes=2-9"}))
    assert part.status_code == 206 and part.content == data[2:10]
    assert part.headers["content-range"] == f"bytes 2-9/{len(data)}"
    tail = check(await http.get(url, headers={"Range": "bytes=-5"}))
    assert tail.status_code == 206 and tail.content == data[-5:]
    beyond = check(await http.get(url, headers={"Range": f"bytes={len(data)}-"}))
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
    ignored = check(await http.get(url, headers={"Range": "bytes=0-1,4-5"}))
    assert ignored.status_code == 200 and ignored.content == data
    stale = check(await http.get(url, headers={"Range": "bytes=0-1", "If-Range": '"other"'}))
    assert stale.status_code == 200
    assert (await http.get(url, headers={"If-None-Match": etag})).status_code == 304

    # deleting a record never deletes bytes another record uses
    assert check(await http.delete(url.removesuffix("/content"))).status_code == 204
    gone = check(await http.delete(url.removesuffix("/content")))
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert check(await http.get(url)).status_code == 404
    assert blob.is_file()
    for other in (again.json()["id"], minted.json()["id"]):
        assert check(await http.delete(f"/api/v2/assets/{other}")).status_code == 204
    assert not blob.exists()  # the last record gone: the blob is collected
    assert check(await http.head(f"/api/v2/assets/by-hash/{asset['hash']}")).status_code == 404


async def test_bad_uploads_are_refused_and_nothing_is_minted(client: httpx.AsyncClient) -> None:
    data = png((1, 2, 3))
    wrong = await upload(client, data, expected_hash=blake(b"something else"))
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "hash_mismatch"
    assert wrong.json()["error"]["details"]["hash"] == blake(data)
    head = await client.head(f"/api/v2/assets/by-hash/{blake(data)}")
    assert check(head).status_code == 404  # nothing minted

    cases: list[tuple[dict[str, Any], str]] = [
        ({"content_type": "image/png", "data": b"not an image"}, "not an image"),
        ({"file_path": "../etc/passwd"}, "file_path"),
        ({"file_path": "a/../../b.png"}, "file_path"),
        ({"expires_in": "10"}, "expires_in"),
        ({"expires_in": "soon"}, "expires_in"),
        ({"content_type": "nonsense"}, "content_type"),
    ]
    for fields, needle in cases:
        body = fields.pop("data", data)
        r = await upload(client, body, **fields)
        assert r.status_code == 422, (fields, r.text)
        assert r.json()["error"]["code"] == "invalid_request", r.text
        assert needle in r.json()["error"]["message"], r.text
    form = {"content_type": "x/y", "file_path": "a"}
    no_file = check(await client.post("/api/v2/assets", data=form, files={"other": ("a", b"x")}))
    assert no_file.status_code == 422 and "file is required" in no_file.json()["error"]["message"]
    not_form = check(await client.post("/api/v2/assets", json={"file": "x"}))
    assert not_form.status_code == 422

    # a non-image asset is kept as it is (its declared type)
    text = await upload(client, b"hello", content_type="text/plain", file_path="notes/a.txt")
    assert text.status_code == 201 and text.json()["content_type"] == "text/plain"
    body = check(await client.get(f"/api/v2/assets/{text.json()['id']}/content"))
    assert body.content == b"hello"
    # from-hash declares no 422: invalid input there is its 404 blob_not_found
    for bad in ({"hash": 5}, {}, {"hash": text.json()["hash"], "expires_in": 1}, [1]):
        r = check(await client.post("/api/v2/assets/from-hash", json=bad))
        assert r.status_code == 404 and r.json()["error"]["code"] == "blob_not_found", r.text
    assert check(await client.get("/api/v2/assets/nope")).status_code == 404


async def test_assets_and_jobs_belong_to_their_owner(tmp_path: Path, comfyui_url: str) -> None:
    settings = auth_settings(
        tmp_path, comfyui_url, adhoc_workflows="pro", user_max_queued=1, max_upload_bytes=4096
    )
    async with service(settings) as (http, state):
        alice = bearer((await state.keys.create("alice", "pro")).key)
        bob = bearer((await state.keys.create("bob", "pro")).key)
        admin = bearer((await state.keys.create("root", "admin")).key)
        anonymous = check(await http.get("/api/v2/jobs/nope"))
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert check(await http.head(f"/api/v2/assets/by-hash/{blake(b'x')}")).status_code == 401

        data = png((200, 100, 50))
        mine = (await upload(http, data, headers=alice)).json()
        url = f"/api/v2/assets/{mine['id']}"
        for r in (
            await http.get(url, headers=bob),
            await http.get(url + "/content", headers=bob),
            await http.delete(url, headers=bob),
        ):
            assert check(r).status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert (
            check(
                await http.head(f"/api/v2/assets/by-hash/{mine['hash']}", headers=bob)
            ).status_code
            == 404
        )
        theirs = check(
            await http.post("/api/v2/assets/from-hash", json={"hash": mine["hash"]}, headers=bob)
        )
        assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "blob_not_found"
        # an admin sees everything; the owner mints again from her own bytes
        assert check(await http.get(url, headers=admin)).status_code == 200
        again = await http.post(
            "/api/v2/assets/from-hash", json={"hash": mine["hash"]}, headers=alice
        )
        assert check(again).status_code in (200, 201)
        # bob cannot run alice's asset
        r = check(
            await http.post("/api/v2/jobs", json={"workflow": loads_asset(mine["id"])}, headers=bob)
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "missing_asset"
        assert r.json()["error"]["details"]["missing"][0]["node_id"] == "1"

        # over max_upload_bytes: 413 (a status the contract does not list; the only one here)
        octets = "application/octet-stream"
        big = await http.post(
            "/api/v2/assets", files={"file": ("big.bin", b"x" * 5000, octets)},
            data={"content_type": octets, "file_path": "big.bin"}, headers=alice,
        )  # fmt: skip
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"

        # the queue cap is queue_full with Retry-After; the key of a refused submission is free
        slow = check(
            await http.post("/api/v2/jobs", json={"workflow": graphs.sleep(30)}, headers=alice)
        )
        assert slow.status_code == 201, slow.text
        key = {"Idempotency-Key": "cap-then-retry", **alice}
        full = check(
            await http.post("/api/v2/jobs", json={"workflow": graphs.invert()}, headers=key)
        )
        assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"
        assert int(full.headers["retry-after"]) >= 1
        other = check(await http.get(f"/api/v2/jobs/{slow.json()['id']}", headers=bob))
        assert other.status_code == 404
        cancelled = check(await http.post(slow.json()["urls"]["cancel"], headers=alice))
        assert cancelled.json()["status"] in ("canceling", "canceled")
        await wait_v2(http, slow.json()["id"], headers=alice)
        ok = check(await http.post("/api/v2/jobs", json={"workflow": graphs.invert()}, headers=key))
        assert ok.status_code == 201, ok.text
        done = await wait_v2(http, ok.json()["id"], headers=alice)
        assert done["status"] == "succeeded"
        output = done["outputs"][0]
        assert (
            check(await http.get(f"/api/v2/assets/{output['id']}", headers=bob)).status_code == 404
        )
        assert (
            check(await http.get(f"/api/v2/assets/{output['id']}", headers=alice)).status_code
            == 200
        )


# -- jobs -------------------------------------------------------------------------------------


async def test_a_job_loads_an_asset_and_its_outputs_are_assets(
    v2: tuple[httpx.AsyncClient, ServiceState],
) -> None:
    http, _ = v2
    color = (10, 200, 30)
    asset = (await upload(http, png(color))).json()
    submitted = check(await http.post("/api/v2/jobs", json={"workflow": loads_asset(asset["id"])}))
    assert submitted.status_code == 201, submitted.text
    job = submitted.json()
    assert job["status"] in ("queued", "running") and job["outputs"] == []
    assert job["urls"] == {
        "self": f"/api/v2/jobs/{job['id']}",
        "events": f"/api/v2/jobs/{job['id']}/events",
        "cancel": f"/api/v2/jobs/{job['id']}/cancel",
    }
    done = await wait_v2(http, job["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == {
        "value": 1.0, "nodes_done": 3, "nodes_total": 3, "current_node": None,
        "current_node_class": None, "step": None, "steps": None, "message": None,
    }  # fmt: skip
    assert done["error"] is None and done["queue_position"] is None
    assert isinstance(done["metrics"]["queue_ms"], int)
    assert isinstance(done["metrics"]["execution_ms"], int)
    [output] = done["outputs"]
    assert output["node_id"] == "3" and output["type"] == "image"
    assert output["content_type"] == "image/png" and output["job_id"] == job["id"]
    assert output["name"].startswith("3_") and output["name"].endswith(".png")
    content = check(await http.get(output["url"].removeprefix("http://test")))
    assert content.content and blake(content.content) == output["hash"]
    pixel = Image.open(io.BytesIO(content.content)).convert("RGB").getpixel((0, 0))
    graphs.assert_rgb_close(pixel, (255 - color[0], 255 - color[1], 255 - color[2]))
    record = check(await http.get(f"/api/v2/assets/{output['id']}")).json()
    assert record["job_id"] == job["id"] and record["hash"] == output["hash"]
    # a job's output is held while the job is retained
    held = check(await http.delete(f"/api/v2/assets/{output['id']}"))
    assert held.status_code == 409 and held.json()["error"]["code"] == "asset_in_use"
    # the v1 view of the same job, and its output route, are unchanged
    v1 = (await http.get(f"/api/v1/jobs/{job['id']}")).json()
    assert v1["status"] == "completed"
    assert (await http.get(v1["images"][0]["url"])).content == content.content
    workflow = check(await http.get(f"/api/v2/jobs/{job['id']}/workflow")).json()
    assert workflow == {"workflow": loads_asset(asset["id"]), "format": "api"}
    # a finished job's cancel is a no-op returning it
    again = check(await http.post(f"/api/v2/jobs/{job['id']}/cancel"))
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
    for path in ("/api/v2/jobs/nope", "/api/v2/jobs/nope/workflow", "/api/v2/jobs/nope/events"):
        r = check(await http.get(path))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert check(await http.post("/api/v2/jobs/nope/cancel")).status_code == 404


UI_INVERT = {
    "last_node_id": 3,
    "last_link_id": 2,
    "version": 0.4,
    "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
    "nodes": [
        {"id": 1, "type": "EmptyImage", "mode": 0, "inputs": [],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
         "widgets_values": [16, 8, 1, 0x102030]},
        {"id": 2, "type": "ImageInvert", "mode": 0,
         "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}], "widgets_values": []},
        {"id": 3, "type": "SaveImage", "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 2}], "outputs": [],
         "widgets_values": ["ui"]},
    ],
}  # fmt: skip


async def test_submissions_are_checked_before_anything_is_queued(client: httpx.AsyncClient) -> None:
    async def post(body: Any, **kw: Any) -> httpx.Response:
        return check(await client.post("/api/v2/jobs", json=body, **kw))

    ui = await post({"workflow": UI_INVERT})
    assert ui.status_code == 422 and ui.json()["error"]["code"] == "workflow_format_ui"
    converted = await post({"workflow": UI_INVERT, "x-comfykit-convert-ui": True})
    assert converted.status_code == 201, converted.text
    done = await wait_v2(client, converted.json()["id"])
    assert done["status"] == "succeeded" and done["outputs"][0]["type"] == "image"

    unknown = graphs.invert()
    unknown["2"]["class_type"] = "NoSuchNode"
    bad = await post({"workflow": unknown})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_workflow"
    assert "2" in bad.json()["error"]["details"]["node_errors"]
    wrong = graphs.invert()
    wrong["1"]["inputs"]["width"] = "wide"
    bad = await post({"workflow": wrong})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_workflow"
    [problem] = bad.json()["error"]["details"]["node_errors"]["1"]
    assert problem["field"] == "width"

    for workflow, reason in (
        (loads_asset("00000000-0000-4000-8000-000000000000"), "not_found"),
        ({**loads_asset("x"), "1": {"class_type": "LoadImage",
          "inputs": {"image": {"__type": "core/ASSET", "info": {}}}}}, "malformed"),
    ):  # fmt: skip
        r = await post({"workflow": workflow})
        assert r.status_code == 422 and r.json()["error"]["code"] == "missing_asset", r.text
        missing = r.json()["error"]["details"]["missing"][0]
        assert missing == {**missing, "node_id": "1", "input": "image", "reason": reason}
        assert "node 1 input 'image'" in r.json()["error"]["message"]
    text = (await upload(client, b"plain", content_type="text/plain")).json()
    r = await post({"workflow": loads_asset(text["id"])})
    assert r.json()["error"]["details"]["missing"][0]["reason"] == "not_an_image"

    bodies: list[Any] = [
        {"workflow": graphs.invert(), "webhook_url": "https://example.com/hook"},
        {"workflow": graphs.invert(), "inputs": {}},
        {"workflow": graphs.invert(), "extra_data": {"unknown": 1}},
        {"workflow": []},
        {},
        {"workflow": {"1": {"inputs": {}}}},
    ]
    for body in bodies:
        r = await post(body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["code"] in ("invalid_request", "invalid_workflow"), r.text
    wrong_type = check(
        await client.post("/api/v2/jobs", content=b"{}", headers={"Content-Type": "text/plain"})
    )
    assert wrong_type.status_code == 422
    bad_key = await post({"workflow": graphs.invert()}, headers={"Idempotency-Key": "x" * 256})
    assert bad_key.status_code == 422 and "Idempotency-Key" in bad_key.json()["error"]["message"]
    # extra_data is accepted and never stored
    secret = "comfyui-not-a-real-key-0123456789"
    ok = await post({"workflow": graphs.invert(), "extra_data": {"api_key_comfy_org": secret}})
    assert ok.status_code == 201, ok.text
    await wait_v2(client, ok.json()["id"])
    v1 = await client.get(f"/api/v1/jobs/{ok.json()['id']}")
    assert secret not in v1.text
    graph = check(await client.get(f"/api/v2/jobs/{ok.json()['id']}/workflow"))
    assert secret not in graph.text


async def test_an_idempotency_key_is_single_use(v2: tuple[httpx.AsyncClient, ServiceState]) -> None:
    http, state = v2

    async def post(workflow: Any, key: str) -> httpx.Response:
        return check(
            await http.post(
                "/api/v2/jobs", json={"workflow": workflow}, headers={"Idempotency-Key": key}
            )
        )

    async def jobs() -> int:
        listed = (await http.get("/api/v1/jobs", params={"limit": 200})).json()
        return len(listed["jobs"])

    first = await post(graphs.invert(), "k-1")
    assert first.status_code == 201
    for workflow in (graphs.invert(), graphs.invert(0x203040)):  # a retry, another body
        again = await post(workflow, "k-1")
        assert again.status_code == 422 and again.json()["error"]["code"] == "idempotency_key_reuse"
    assert await jobs() == 1

    # a submission refused before it is written leaves its key free
    broken = graphs.invert()
    broken["2"]["class_type"] = "NoSuchNode"
    assert (await post(broken, "k-2")).status_code == 422
    assert (await post(graphs.invert(), "k-2")).status_code == 201
    assert await jobs() == 2

    # concurrent duplicates: exactly one job
    answers = await asyncio.gather(*(post(graphs.invert(), "k-3") for _ in range(5)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 422, 422, 422, 422], [a.text for a in answers]
    assert await jobs() == 3

    # keys are per caller and operation, and expire after 24 hours
    asset = await upload(http, png(), headers={"Idempotency-Key": "k-1"})
    assert asset.status_code == 201
    reused = await upload(http, png((9, 9, 9)), headers={"Idempotency-Key": "k-1"})
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reuse"
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    await store_execute(
        state,
        update(IdempotencyKeyRow).where(IdempotencyKeyRow.key == "k-1").values(expires_at=past),
    )
    assert (await post(graphs.invert(), "k-1")).status_code == 201
    # the jobs key was claimed anew; the expired assets one is swept
    assert (await state.run_cleanup())["assets"]["idempotency_keys"] == 1
    for answer in (first, *answers):
        if answer.status_code == 201:
            await wait_v2(http, answer.json()["id"])


async def test_the_event_stream(v2: tuple[httpx.AsyncClient, ServiceState]) -> None:
    http, state = v2
    job = check(await http.post("/api/v2/jobs", json={"workflow": graphs.sleep(1.5)})).json()
    stream = check(await http.get(job["urls"]["events"]))
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert "\nid:" not in stream.text and not stream.text.startswith("id:")
    frames = parse_sse(stream.text)
    names = [f["event"] for f in frames]
    assert names[0] == "status" and frames[0]["data"]["status"] in ("queued", "running")
    assert names[-1] == "status" and frames[-1]["data"]["status"] == "succeeded", names
    statuses = [f["data"]["status"] for f in frames if f["event"] == "status"]
    assert "running" in statuses and len(statuses) == len(set(statuses)), statuses
    progress = [f["data"] for f in frames if f["event"] == "progress"]
    assert progress and any(p["steps"] for p in progress), frames
    assert all(0 <= p["value"] <= 1 and p["nodes_total"] == 3 for p in progress)
    values = [p["value"] for p in progress]
    assert values == sorted(values)
    stored = await state.store.events_after(job["id"], 0)
    assert len(progress) < sum(1 for e in stored if e.event == "progress")  # throttled
    step = next(p for p in progress if p["steps"])
    assert step["current_node_class"] == "TestSleep" and step["message"].startswith("TestSleep ")
    # a finished job's stream: its outputs (here PreviewAny's text), its terminal status, the end
    after = parse_sse(check(await http.get(job["urls"]["events"])).text)
    assert [f["event"] for f in after] == ["output", "status"], after
    assert after[0]["data"]["type"] == "text" and after[0]["data"]["node_id"] == "3"
    assert after[1]["data"]["status"] == "succeeded"


async def test_cancel_queued_and_running_jobs(
    one_at_a_time: tuple[httpx.AsyncClient, ServiceState], comfyui_url: str
) -> None:
    http, _ = one_at_a_time
    running = check(await http.post("/api/v2/jobs", json={"workflow": graphs.sleep(30)})).json()
    waiting = check(await http.post("/api/v2/jobs", json={"workflow": graphs.invert()})).json()
    await wait_v2(http, running["id"], lambda j: j["status"] == "running")
    queued = check(await http.get(waiting["urls"]["self"])).json()
    assert queued["status"] == "queued" and queued["queue_position"] == 1
    assert queued["progress"] is None

    stream = asyncio.create_task(http.get(running["urls"]["events"]))
    dequeued = check(await http.post(waiting["urls"]["cancel"]))
    assert dequeued.status_code == 200 and dequeued.json()["status"] == "canceled"
    stopped = check(await http.post(running["urls"]["cancel"]))
    assert stopped.status_code == 200 and stopped.json()["status"] in ("canceling", "canceled")
    done = await wait_v2(http, running["id"])
    assert done["status"] == "canceled" and done["completed_at"] is not None
    again = check(await http.post(running["urls"]["cancel"]))
    assert again.status_code == 200 and again.json()["status"] == "canceled"
    frames = parse_sse(check(await asyncio.wait_for(stream, 30)).text)
    assert frames[-1] == {"event": "status", "data": {"status": "canceled", "queue_position": None,
                                                       "outputs": []}, "id": None}  # fmt: skip
    # ComfyUI confirms: the prompt ran, was interrupted, and is gone from its queue
    prompt_id = (await http.get(f"/api/v1/jobs/{running['id']}")).json()["prompt_id"]
    async with AsyncComfyClient(comfyui_url) as comfy:
        queue = await comfy.queue()
        assert prompt_id not in queue.prompt_ids
        history = (await comfy.history(prompt_id))[prompt_id]
        messages = [m[0] for m in history.status.messages] if history.status else []
        assert "execution_interrupted" in messages, history


async def test_previews_stream_while_a_sampler_runs(client: httpx.AsyncClient) -> None:
    seed = uuid.uuid4().int % 10**9  # never ComfyUI's cache: the sampler must run
    workflow = graphs.txt2img(seed=seed, steps=3)
    job = check(await client.post("/api/v2/jobs", json={"workflow": workflow}))
    assert job.status_code == 201, job.text
    frames = parse_sse(check(await client.get(job.json()["urls"]["events"])).text)
    previews = [f["data"] for f in frames if f["event"] == "preview"]
    assert previews, [f["event"] for f in frames]
    assert previews[0]["node_id"] == "5" and previews[0]["content_type"] == "image/jpeg"
    image = Image.open(io.BytesIO(base64.b64decode(previews[0]["data_base64"])))
    assert image.format == "JPEG"
    outputs = [f["data"] for f in frames if f["event"] == "output"]
    assert len(outputs) == 1 and outputs == frames[-1]["data"]["outputs"]


async def test_retention_expires_succeeded_jobs_only(
    tmp_path: Path, comfyui_url: str, store_url: str
) -> None:
    settings = make_settings(tmp_path, comfyui_url, retention_days=1, database_url=store_url)
    async with running(settings) as (http, state):
        ok = check(await http.post("/api/v2/jobs", json={"workflow": graphs.invert()})).json()
        failed = check(
            await http.post("/api/v2/jobs", json={"workflow": graphs.sync_error()})
        ).json()
        done = await wait_v2(http, ok["id"])
        bad = await wait_v2(http, failed["id"])
        assert bad["status"] == "failed" and bad["error"]["code"] == "node_execution_error"
        assert bad["error"]["node_id"] == "2" and bad["error"]["class_type"] == "TestSyncError"
        deadline = dt.datetime.fromisoformat(done["expires_at"].replace("Z", "+00:00"))
        completed = dt.datetime.fromisoformat(done["completed_at"].replace("Z", "+00:00"))
        assert deadline - completed == dt.timedelta(days=1)
        output = done["outputs"][0]

        old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
        for job_id in (ok["id"], failed["id"]):
            await state.store.update_job(job_id, {"completed_at": old})
        # a job lost in a restart is failed with its reason, never expired
        await state.store.update_job(
            failed["id"], {"error": {"code": "JOB_LOST", "message": "ComfyUI was restarted"}}
        )
        expired = check(await http.get(f"/api/v2/jobs/{ok['id']}")).json()
        assert expired["status"] == "expired" and expired["outputs"] == []
        lost = check(await http.get(f"/api/v2/jobs/{failed['id']}")).json()
        assert lost["status"] == "failed" and lost["error"]["code"] == "job_lost"
        assert check(await http.get(f"/api/v2/jobs/{ok['id']}/workflow")).status_code == 404
        # the output asset expires with the job; the cleanup removes it and its bytes
        asset_row = await state.store.get_asset(output["id"])
        assert asset_row is not None
        await _expire_asset(state, output["id"])
        report = await state.run_cleanup()
        assert output["id"] in report["assets"]["assets"] and report["assets"]["blobs"] == 1
        assert check(await http.get(f"/api/v2/assets/{output['id']}")).status_code == 404
        assert not state.blobs.path(output["hash"].removeprefix("blake3:")).exists()


async def _expire_asset(state: ServiceState, asset_id: str) -> None:
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    await store_execute(
        state, update(AssetRow).where(AssetRow.id == asset_id).values(expires_at=past)
    )


async def test_an_asset_a_queued_job_uses_is_held(
    one_at_a_time: tuple[httpx.AsyncClient, ServiceState],
) -> None:
    http, _ = one_at_a_time
    asset = (await upload(http, png((5, 6, 7)))).json()
    blocker = check(await http.post("/api/v2/jobs", json={"workflow": graphs.sleep(30)})).json()
    user = check(
        await http.post("/api/v2/jobs", json={"workflow": loads_asset(asset["id"])})
    ).json()
    held = check(await http.delete(f"/api/v2/assets/{asset['id']}"))
    assert held.status_code == 409 and held.json()["error"]["code"] == "asset_in_use"
    check(await http.post(blocker["urls"]["cancel"]))
    done = await wait_v2(http, user["id"])
    assert done["status"] == "succeeded"
    assert check(await http.delete(f"/api/v2/assets/{asset['id']}")).status_code == 204


async def test_a_mounted_router_links_under_its_prefix(tmp_path: Path, comfyui_url: str) -> None:
    host = FastAPI()
    host.include_router(create_router(make_settings(tmp_path, comfyui_url)), prefix="/comfy")
    async with LifespanManager(host, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://h") as http:
            asset = await http.post(
                "/comfy/api/v2/assets", files={"file": ("a.png", png(), "image/png")},
                data={"content_type": "image/png", "file_path": "a.png"},
            )  # fmt: skip
            assert asset.status_code == 201, asset.text
            assert asset.json()["url"].startswith("http://h/comfy/api/v2/assets/")
            job = await http.post(
                "/comfy/api/v2/jobs", json={"workflow": loads_asset(asset.json()["id"])}
            )
            assert job.status_code == 201, job.text
            links = job.json()["urls"]
            assert links["self"] == f"/comfy/api/v2/jobs/{job.json()['id']}"
            await wait_for_job(http, job.json()["id"], prefix="/comfy")
            done = (await http.get(links["self"])).json()
            assert done["status"] == "succeeded"
            assert (
                await http.get(done["outputs"][0]["url"].removeprefix("http://h"))
            ).status_code == 200
            missing = await http.get("/comfy/api/v2/jobs/nope")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_a_text_output_is_an_asset(v2: tuple[httpx.AsyncClient, ServiceState]) -> None:
    """A node's text output (PreviewAny) is one of the job's outputs, ``type: text``, whose
    content is the text; nothing a job made is dropped."""
    http, _ = v2
    value = 424242
    job = check(
        await http.post("/api/v2/jobs", json={"workflow": graphs.sleep(0.05, value=value)})
    ).json()
    done = await wait_v2(http, job["id"])
    assert done["status"] == "succeeded", done
    (output,) = done["outputs"]
    assert output["type"] == "text" and output["node_id"] == "3", output
    assert output["content_type"].startswith("text/plain")
    content = check(await http.get(output["url"]))
    assert content.status_code == 200 and content.text == str(value)
    assert output["size_bytes"] == len(str(value))
    asset = check(await http.get(f"/api/v2/assets/{output['id']}")).json()
    assert asset["id"] == output["id"]


async def test_a_v1_jobs_outputs_become_assets_when_read_through_v2(
    v2: tuple[httpx.AsyncClient, ServiceState],
) -> None:
    """A job of ``/api/v1`` records its outputs (files and texts) as assets when it is first
    read through ``/api/v2``, with the same ids every time."""
    http, state = v2
    job = (
        await http.post(
            "/api/v1/jobs", json={"workflow": graphs.invert()}, headers={"Prefer": "wait=60"}
        )
    ).json()
    assert job["status"] == "completed"
    assert await state.store.assets_of_job(job["job_id"]) == []  # not on the job's path
    first = check(await http.get(f"/api/v2/jobs/{job['job_id']}")).json()
    (output,) = first["outputs"]
    assert output["type"] == "image" and output["content_type"] == "image/png"
    again = check(await http.get(f"/api/v2/jobs/{job['job_id']}")).json()
    assert again["outputs"] == first["outputs"]
    content = check(await http.get(output["url"]))
    assert content.content == (await http.get(job["images"][0]["url"])).content
