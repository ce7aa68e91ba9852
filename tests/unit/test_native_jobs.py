"""ComfyUI's native jobs routes, for both ``AsyncComfyClient`` and ``ComfyClient``.

A server newer than 0.3.75 is played by respx with the answers recorded in
``tests/fixtures/native_jobs`` (built from ComfyUI's source: see the README there); a 0.3.75
one by its ``/system_stats`` version, the routes it has and none of the new ones. Each test
checks which requests were sent, not only what came back.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from comfykit import (
    APIStatusError,
    AssetsUnavailableError,
    AsyncComfyClient,
    ComfyClient,
    InputError,
    JobInfo,
    JobList,
    JobStatus,
)

URL = "http://comfy.test:8188"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "native_jobs"
OLD_STATS = {"system": {"os": "posix", "comfyui_version": "0.3.75"}, "devices": []}
OLD_FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
EMPTY_QUEUE: dict[str, list[Any]] = {"queue_running": [], "queue_pending": []}
#: What aiohttp answers for a path no route takes (a GET falls through to the static files).
NO_ROUTE = httpx.Response(404, text="404: Not Found")

P_DONE = "0d3b8b7e-4c2f-4a51-9d0e-6f1a2b3c4d01"
P_FAIL = "1e4c9c8f-5d30-4b62-8e1f-7a2b3c4d5e02"
P_CANC = "2f5dad90-6e41-4c73-9f20-8b3c4d5e6f03"
P_RUN = "3a6ebea1-7f52-4d84-8a31-9c4d5e6f7a04"
P_PEND = "4b7fcfb2-8a63-4e95-9b42-ad5e6f7a8b05"

Client = AsyncComfyClient | ComfyClient


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


async def call(value: Any) -> Any:
    """Await ``value`` when the async client returned a coroutine."""
    return await value if inspect.isawaitable(value) else value


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(kind: str) -> AsyncIterator[Client]:
    options: dict[str, Any] = {"ws": False, "validate": False}
    c = AsyncComfyClient(URL, **options) if kind == "async" else ComfyClient(URL, **options)
    yield c
    await call(c.close())


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


def newer(mock: respx.MockRouter) -> respx.Route:
    """A server with the native routes: its /system_stats and /features."""
    mock.get("/features").mock(return_value=httpx.Response(200, json=fixture("features.json")))
    return mock.get("/system_stats").mock(
        return_value=httpx.Response(200, json=fixture("system_stats.json"))
    )


def old(mock: respx.MockRouter) -> respx.Route:
    """ComfyUI 0.3.75: no /api/jobs*, no assets flag."""
    mock.get("/features").mock(return_value=httpx.Response(200, json=OLD_FEATURES))
    mock.get(url__regex=r"/api/jobs.*").mock(return_value=NO_ROUTE)
    mock.post(url__regex=r"/api/jobs.*").mock(return_value=httpx.Response(405, text="405"))
    return mock.get("/system_stats").mock(return_value=httpx.Response(200, json=OLD_STATS))


def queue_item(number: int, pid: str, prompt: dict[str, Any] | None = None) -> list[Any]:
    return [number, pid, prompt or {}, {"client_id": "c"}, ["1"]]


def history_of(job: str) -> dict[str, Any]:
    """The ``/history/{id}`` entry a detail fixture stands for (what 0.3.75 keeps)."""
    detail = fixture(job)
    workflow = detail["workflow"]
    prompt = [detail["priority"], detail["id"], workflow["prompt"], workflow["extra_data"], ["2"]]
    return {
        "prompt": prompt,
        "outputs": detail["outputs"],
        "status": detail["execution_status"],
        "meta": {},
    }


# -- detection ---------------------------------------------------------------------------


async def test_detection_is_one_request_shared_by_copies(
    client: Client, mock: respx.MockRouter
) -> None:
    stats = newer(mock)
    listing = mock.get("/api/jobs").mock(
        return_value=httpx.Response(200, json=fixture("jobs_list.json"))
    )
    await call(client.jobs())
    await call(client.with_options(timeout=5).jobs())
    caps = await call(client.server_capabilities())
    assert stats.call_count == 1
    assert listing.call_count == 2
    assert caps.comfyui_version == "0.38.1"
    assert caps.jobs_api and caps.job_cancel_api and caps.assets
    await call(client.server_capabilities(refresh=True))
    assert stats.call_count == 2


async def test_0_3_75_is_detected_without_the_routes(
    client: Client, mock: respx.MockRouter
) -> None:
    old(mock)
    caps = await call(client.server_capabilities())
    assert caps.comfyui_version == "0.3.75"
    assert not caps.jobs_api and not caps.job_cancel_api and not caps.assets


async def test_result_path_adds_no_request_before_detection(
    client: Client, mock: respx.MockRouter
) -> None:
    """A job's history lookup works on every server: it never triggers the look-up."""
    stats = newer(mock)
    history = mock.get(f"/history/{P_DONE}").mock(
        return_value=httpx.Response(200, json={P_DONE: history_of("job_completed.json")})
    )
    entry = await call(client._history_entry(P_DONE))
    assert entry is not None and entry.outputs["2"]["images"][0]["filename"]
    assert stats.call_count == 0 and history.call_count == 1


async def test_result_path_uses_the_job_detail_once_known(
    client: Client, mock: respx.MockRouter
) -> None:
    newer(mock)
    await call(client.server_capabilities())
    detail = mock.get(f"/api/jobs/{P_DONE}").mock(
        return_value=httpx.Response(200, json=fixture("job_completed.json"))
    )
    history = mock.get(f"/history/{P_DONE}").mock(return_value=httpx.Response(200, json={}))
    entry = await call(client._history_entry(P_DONE))
    assert detail.call_count == 1 and history.call_count == 0
    assert entry is not None and entry.prompt_id == P_DONE
    assert entry.status is not None and entry.status.status_str == "success"
    assert entry.outputs == fixture("job_completed.json")["outputs"]
    running = mock.get(f"/api/jobs/{P_RUN}").mock(
        return_value=httpx.Response(200, json=fixture("job_running.json"))
    )
    assert await call(client._history_entry(P_RUN)) is None
    assert running.call_count == 1


# -- listing and detail ------------------------------------------------------------------


async def test_jobs_from_the_native_route(client: Client, mock: respx.MockRouter) -> None:
    newer(mock)
    route = mock.get("/api/jobs").mock(
        return_value=httpx.Response(200, json=fixture("jobs_list_limit2.json"))
    )
    page = await call(
        client.jobs(status=["pending", "in_progress"], limit=2, offset=0, sort_order="desc")
    )
    assert isinstance(page, JobList)
    assert page.prompt_ids == [P_PEND, P_RUN]
    assert page.pagination.total == 5 and page.pagination.has_more
    params = route.calls.last.request.url.params
    assert params["status"] == "pending,in_progress"
    assert params["limit"] == "2" and params["sort_by"] == "created_at"
    assert "offset" not in params
    every = mock.get("/api/jobs").mock(
        return_value=httpx.Response(200, json=fixture("jobs_list.json"))
    )
    jobs = (await call(client.jobs(workflow_id="wf", offset=3))).jobs
    assert [j.status for j in jobs] == [
        "pending",
        "in_progress",
        "cancelled",
        "failed",
        "completed",
    ]
    assert every.calls.last.request.url.params["offset"] == "3"
    assert every.calls.last.request.url.params["workflow_id"] == "wf"
    failed = jobs[3]
    assert failed.execution_error is not None
    assert failed.execution_error["exception_message"] == "boom"
    assert jobs[4].preview_output is not None and jobs[4].execution_ms == 450


async def test_get_job_details(client: Client, mock: respx.MockRouter) -> None:
    newer(mock)
    for pid, name in [(P_DONE, "job_completed.json"), (P_PEND, "job_pending.json")]:
        mock.get(f"/api/jobs/{pid}").mock(return_value=httpx.Response(200, json=fixture(name)))
    mock.get(f"/api/jobs/{P_FAIL}").mock(
        return_value=httpx.Response(404, json=fixture("job_not_found.json"))
    )
    done = await call(client.get_job(P_DONE))
    assert isinstance(done, JobInfo) and done.finished
    assert done.outputs is not None and done.workflow is not None
    assert done.workflow.prompt["2"]["class_type"] == "SaveImage"
    pending = await call(client.get_job(P_PEND))
    assert pending.status == "pending" and not pending.finished and pending.outputs is None
    assert await call(client.get_job(P_FAIL)) is None


async def test_a_missing_route_falls_back_and_is_not_asked_again(
    client: Client, mock: respx.MockRouter
) -> None:
    """A server whose version says yes but whose route is not there (a fork, an older build)."""
    newer(mock)
    native = mock.get(url__regex=r"/api/jobs.*").mock(return_value=NO_ROUTE)
    mock.get(f"/history/{P_DONE}").mock(
        return_value=httpx.Response(200, json={P_DONE: history_of("job_completed.json")})
    )
    job = await call(client.get_job(P_DONE))
    assert job is not None and job.status == "completed" and job.outputs
    await call(client.get_job(P_DONE))
    assert native.call_count == 1
    assert not (await call(client.server_capabilities())).jobs_api


async def test_jobs_fallback_builds_the_same_model(client: Client, mock: respx.MockRouter) -> None:
    old(mock)
    mock.get("/queue").mock(
        return_value=httpx.Response(
            200,
            json={
                "queue_running": [queue_item(4, P_RUN)],
                "queue_pending": [queue_item(6, "later"), queue_item(5, P_PEND)],
            },
        )
    )
    history = {
        P_DONE: history_of("job_completed.json"),
        P_FAIL: history_of("job_failed.json"),
        P_CANC: history_of("job_cancelled.json"),
    }
    mock.get("/history").mock(return_value=httpx.Response(200, json=history))
    every = await call(client.jobs())
    assert every.prompt_ids == ["later", P_PEND, P_RUN, P_CANC, P_FAIL, P_DONE]
    native = fixture("jobs_list.json")["jobs"]
    for job in every.jobs[1:]:
        want = next(j for j in native if j["id"] == job.id)
        assert job.status == want["status"]
        assert job.execution_error == want.get("execution_error")
        assert job.outputs_count == want["outputs_count"]
    oldest = await call(client.jobs(status="completed", sort_order="asc"))
    assert oldest.prompt_ids == [P_DONE] and oldest.jobs[0].preview_output is not None
    page = await call(client.jobs(limit=2, offset=1))
    assert page.prompt_ids == [P_PEND, P_RUN]
    assert page.pagination.total == 6 and page.pagination.has_more


async def test_get_job_fallback(client: Client, mock: respx.MockRouter) -> None:
    old(mock)
    mock.get(f"/history/{P_FAIL}").mock(
        return_value=httpx.Response(200, json={P_FAIL: history_of("job_failed.json")})
    )
    mock.get(f"/history/{P_RUN}").mock(return_value=httpx.Response(200, json={}))
    mock.get("/history/nope").mock(return_value=httpx.Response(200, json={}))
    mock.get("/queue").mock(
        return_value=httpx.Response(
            200, json={"queue_running": [queue_item(4, P_RUN)], "queue_pending": []}
        )
    )
    failed = await call(client.get_job(P_FAIL))
    assert failed.status == "failed" and failed.execution_status.status_str == "error"
    running = await call(client.get_job(P_RUN))
    assert running.status == "in_progress" and running.workflow is not None
    assert await call(client.get_job("nope")) is None


# -- cancel --------------------------------------------------------------------------------


async def test_job_cancel_uses_the_cancel_route(client: Client, mock: respx.MockRouter) -> None:
    newer(mock)
    cancel = mock.post(f"/api/jobs/{P_RUN}/cancel").mock(
        return_value=httpx.Response(200, json=fixture("cancel_dispatched.json"))
    )
    detail = mock.get(f"/api/jobs/{P_RUN}").mock(
        return_value=httpx.Response(200, json={**fixture("job_cancelled.json"), "id": P_RUN})
    )
    dequeue = mock.post("/queue").mock(return_value=httpx.Response(200))
    interrupt = mock.post("/interrupt").mock(return_value=httpx.Response(200))
    queue = mock.get("/queue").mock(return_value=httpx.Response(200, json=EMPTY_QUEUE))
    job = client.job(P_RUN)
    await call(job.cancel())
    assert cancel.call_count == 1 and detail.call_count == 1  # caught up from the detail
    assert dequeue.call_count == interrupt.call_count == queue.call_count == 0
    assert job.status is JobStatus.INTERRUPTED


async def test_job_cancel_on_0_3_75_dequeues_and_interrupts_by_id(
    client: Client, mock: respx.MockRouter
) -> None:
    old(mock)
    dequeue = mock.post("/queue").mock(return_value=httpx.Response(200))
    interrupt = mock.post("/interrupt").mock(return_value=httpx.Response(200))
    mock.get("/queue").mock(return_value=httpx.Response(200, json=EMPTY_QUEUE))
    mock.get(f"/history/{P_PEND}").mock(return_value=httpx.Response(200, json={}))
    await call(client.job(P_PEND).cancel())
    assert json.loads(dequeue.calls.last.request.content) == {"delete": [P_PEND]}
    assert json.loads(interrupt.calls.last.request.content) == {"prompt_id": P_PEND}


async def test_cancel_route_missing_falls_back_once(client: Client, mock: respx.MockRouter) -> None:
    """Jobs routes there, cancel routes not yet (releases between the two)."""
    newer(mock)
    cancel = mock.post(url__regex=r"/api/jobs/.*cancel").mock(
        return_value=httpx.Response(405, text="405: Method Not Allowed")
    )
    mock.get(url__regex=r"/api/jobs/.+").mock(
        return_value=httpx.Response(200, json=fixture("job_pending.json"))
    )
    dequeue = mock.post("/queue").mock(return_value=httpx.Response(200))
    interrupt = mock.post("/interrupt").mock(return_value=httpx.Response(200))
    await call(client.job(P_PEND).cancel())
    await call(client.job(P_RUN).cancel())
    assert cancel.call_count == 1
    assert dequeue.call_count == interrupt.call_count == 2
    caps = await call(client.server_capabilities())
    assert caps.jobs_api and not caps.job_cancel_api


async def test_cancel_jobs_native(client: Client, mock: respx.MockRouter) -> None:
    newer(mock)
    batch = mock.post("/api/jobs/cancel").mock(
        return_value=httpx.Response(200, json=fixture("cancel_dispatched.json"))
    )
    assert await call(client.cancel_jobs([P_RUN, "not-a-uuid", P_PEND])) is True
    assert json.loads(batch.calls.last.request.content) == {"job_ids": [P_RUN, P_PEND]}
    assert await call(client.cancel_jobs("not-a-uuid")) is False  # no job of it has such an id
    assert batch.call_count == 1
    batch.mock(return_value=httpx.Response(200, json=fixture("cancel_noop.json")))
    assert await call(client.cancel_jobs(P_DONE)) is False
    batch.mock(return_value=httpx.Response(400, json=fixture("cancel_batch_not_a_list.json")))
    with pytest.raises(APIStatusError) as err:
        await call(client.cancel_jobs(P_DONE))
    assert err.value.status_code == 400


async def test_cancel_jobs_fallback(client: Client, mock: respx.MockRouter) -> None:
    old(mock)
    mock.get("/queue").mock(
        return_value=httpx.Response(
            200,
            json={"queue_running": [queue_item(4, P_RUN)], "queue_pending": [queue_item(5, "p")]},
        )
    )
    dequeue = mock.post("/queue").mock(return_value=httpx.Response(200))
    interrupt = mock.post("/interrupt").mock(return_value=httpx.Response(200))
    assert await call(client.cancel_jobs([P_RUN, "p", P_DONE, "p"])) is True
    assert json.loads(dequeue.calls.last.request.content) == {"delete": [P_RUN, "p"]}
    sent = [json.loads(c.request.content) for c in interrupt.calls]
    assert sent == [{"prompt_id": P_RUN}, {"prompt_id": "p"}]
    assert await call(client.cancel_jobs([P_DONE])) is False
    assert dequeue.call_count == 1


# -- assets ----------------------------------------------------------------------------------


async def test_check_assets(client: Client, mock: respx.MockRouter) -> None:
    newer(mock)
    await call(client.check_assets())
    features = mock.get("/features").mock(
        return_value=httpx.Response(200, json=fixture("features_assets_off.json"))
    )
    await call(client.server_capabilities(refresh=True))
    with pytest.raises(AssetsUnavailableError, match=r"ComfyUI 0\.38\.1 .* /api/assets") as err:
        await call(client.check_assets())
    assert err.value.comfyui_version == "0.38.1"
    assert features.call_count == 2  # the first look-up and the refresh: no more


async def test_check_assets_on_0_3_75(client: Client, mock: respx.MockRouter) -> None:
    old(mock)
    with pytest.raises(AssetsUnavailableError, match="--enable-assets"):
        await call(client.check_assets())


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {"status": "done"},
        {"status": []},
        {"limit": 0},
        {"offset": -1},
        {"sort_by": "name"},
        {"sort_order": "up"},
    ],
)
async def test_bad_jobs_arguments_send_nothing(
    client: Client, mock: respx.MockRouter, arguments: dict[str, Any]
) -> None:
    stats = newer(mock)
    with pytest.raises(InputError):
        await call(client.jobs(**arguments))
    assert stats.call_count == 0


async def test_bad_ids_send_nothing(client: Client, mock: respx.MockRouter) -> None:
    stats = newer(mock)
    with pytest.raises(InputError):
        await call(client.cancel_jobs([P_RUN, 7]))  # type: ignore[list-item]
    with pytest.raises(InputError):
        await call(client.get_job(""))
    assert stats.call_count == 0
