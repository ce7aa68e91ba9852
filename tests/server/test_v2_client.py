"""The SDK on the Comfy API v2 backend (``api="v2"`` / ``"auto"``) against comfykit's own v2
service, a real ``comfykit serve`` process with the real ComfyUI behind it: submit and result,
uploads as ``core/ASSET`` inputs, downloads, the SSE event stream, cancel, failed and refused
jobs as the typed errors, ``generate()``, detection, what v2 cannot do, the blocking client,
and API keys."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from PIL import Image

from comfykit import (
    APIStatusError,
    AsyncComfyClient,
    ComfyClient,
    Executing,
    ExecutionError,
    ExecutionStart,
    ExecutionSuccess,
    InputError,
    JobInterrupted,
    JobTimeoutError,
    Progress,
    PromptValidationError,
    UnsupportedOperationError,
)
from comfykit.testing import CHECKPOINT_NAME, free_port
from tests import graphs
from tests.server.conftest import Serve

pytestmark = pytest.mark.integration


def _serve(tmp: Path, comfyui_url: str, **env_extra: str) -> Serve:
    env = {**os.environ, "COMFYKIT_PORT": "1", **env_extra}
    env.pop("COMFYUI_URL", None)
    args = [
        "--comfyui-url", comfyui_url, "--port", str(free_port()),
        "--data-dir", str(tmp / "data"), "--retention-days", "7",
    ]  # fmt: skip
    serve = Serve(args, env, tmp / "serve.log")
    serve.start()
    return serve


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, comfyui_url: str) -> Iterator[str]:
    """One ``comfykit serve`` (no auth, loopback) for the module: its base URL."""
    serve = _serve(tmp_path_factory.mktemp("v2-service"), comfyui_url)
    try:
        yield serve.url
    finally:
        serve.stop()


def png(color: tuple[int, int, int], size: tuple[int, int] = (16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def pixel(data: bytes) -> Any:
    return Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))


# -------------------------------------------------------------------- submit, result, files


async def test_uploaded_image_runs_as_an_asset_and_the_output_downloads(
    service: str, tmp_path: Path
) -> None:
    async with AsyncComfyClient(service, api="v2") as comfy:
        assert comfy.api == "v2"
        uploaded = await comfy.upload_image(png((200, 100, 50)), filename="photo.png")
        assert uploaded.ref.startswith("asset/") and uploaded.ref.endswith("/photo.png")
        assert uploaded.model_extra is not None and uploaded.model_extra["hash"].startswith(
            "blake3:"
        )
        job = await comfy.submit(graphs.load_invert(uploaded.ref))
        assert job.prompt_id and job.status.value in ("queued", "running")
        result = await job.result(timeout=60)
        assert job.status.value == "succeeded" and job.done
        [image] = result.images
        assert image.node_id == "3" and image.filename.endswith(".png")
        data = await image.read()
        graphs.assert_rgb_close(pixel(data), (55, 155, 205))
        assert image.url.startswith(service + "/api/v2/assets/")
        saved = await image.save(tmp_path / "out" / "")
        assert saved is not None and saved.read_bytes() == data
        # a result's file is an asset: it feeds the next graph as it is (img2img-style)
        again = await comfy.run(graphs.load_invert(await comfy._image_ref(image, "image")))
        graphs.assert_rgb_close(pixel(await again.images[0].read()), (200, 100, 50))
        # a job handle by id, on the same client, catches up from the stream's snapshot
        follow = comfy.job(job.prompt_id)
        assert len((await follow.result(timeout=30)).images) == 1


async def test_a_text_output_is_a_text_file(service: str) -> None:
    async with AsyncComfyClient(service, api="v2") as comfy:
        result = await comfy.run(graphs.sleep(0.05, value=777), timeout=60)
        [text] = result.files
        assert text.node_id == "3" and text.filename == "3_text_0.txt"
        assert (await text.read()).decode() == "777"
        assert result.images == [] and result.text == {}


async def test_model_free_graph_and_its_events(service: str) -> None:
    async with AsyncComfyClient(service, api="v2") as comfy:
        result = await comfy.run(graphs.invert(0x102030), timeout=60)
        graphs.assert_rgb_close(pixel(await result.images[0].read()), graphs.inverted_rgb(0x102030))

        job = await comfy.submit(graphs.sleep(1.5))
        events = [event async for event in job.events(timeout=60)]
        kinds = [type(e) for e in events]
        assert kinds[0] is ExecutionStart and ExecutionSuccess in kinds, kinds
        assert any(isinstance(e, Executing) and e.node == "2" for e in events), events
        steps = [e for e in events if isinstance(e, Progress)]
        assert steps and steps[-1].max > 0 and steps[-1].node == "2"
        assert all(e.prompt_id == job.prompt_id for e in events)
        assert job.execution_ms is not None and job.execution_ms >= 1000
        await job.result()  # done: no error


async def test_cancel_a_running_job(service: str) -> None:
    async with AsyncComfyClient(service, api="v2") as comfy:
        job = await comfy.submit(graphs.sleep(30))
        async for event in job.events(timeout=60):
            if isinstance(event, Progress):
                break
        await job.cancel()
        with pytest.raises(JobInterrupted) as err:
            await job.result(timeout=30)
        assert err.value.prompt_id == job.prompt_id and job.status.value == "interrupted"


async def test_timeout_raises_and_cancels_when_asked(service: str) -> None:
    async with AsyncComfyClient(service, api="v2") as comfy:
        job = await comfy.submit(graphs.sleep(20))
        with pytest.raises(JobTimeoutError) as err:
            await job.result(timeout=0.5)
        assert err.value.job is job and not err.value.cancelled
        with pytest.raises(JobTimeoutError) as err:
            await job.result(timeout=0.5, cancel_on_timeout=True)
        assert err.value.cancelled
        with pytest.raises(JobInterrupted):
            await job.result(timeout=30)


async def test_failed_and_refused_jobs_are_the_typed_errors(service: str) -> None:
    async with AsyncComfyClient(service, api="v2") as comfy:
        with pytest.raises(ExecutionError) as failed:
            await comfy.run(graphs.sync_error(), timeout=60)
        assert failed.value.node_id == "2" and failed.value.node_type == "TestSyncError"
        assert failed.value.exception_type == "node_execution_error"

        broken = graphs.invert()
        del broken["2"]["inputs"]["image"]
        with pytest.raises(PromptValidationError) as refused:
            await comfy.submit(broken)
        assert refused.value.error_type == "invalid_workflow"
        assert refused.value.status_code == 422
        assert any(p.node_id == "2" for p in refused.value.errors), refused.value.errors

        gone = graphs.load_invert("asset/no-such-asset/photo.png")
        with pytest.raises(PromptValidationError) as missing:
            await comfy.submit(gone)
        assert missing.value.error_type == "missing_asset"
        assert [(p.node_id, p.input_name) for p in missing.value.errors] == [("1", "image")]

        # the prompt id is the Idempotency-Key: the same id again is refused, never run twice
        job = await comfy.submit(graphs.invert(), prompt_id="v2-client-once")
        with pytest.raises(APIStatusError) as reused:
            await comfy.submit(graphs.invert(), prompt_id="v2-client-once")
        assert reused.value.status_code == 422 and "submitted before" in str(reused.value)
        await job.result(timeout=60)


async def test_generate_with_a_named_model(service: str) -> None:
    async with AsyncComfyClient(service, api="v2") as comfy:
        done = await comfy.generate(
            "a red square", model=CHECKPOINT_NAME, width=64, height=64, steps=2, seed=7,
            timeout=120,
        )  # fmt: skip
        [image] = done.images
        assert image.size == (64, 64)
        with pytest.raises(UnsupportedOperationError, match="cannot list models"):
            await comfy.generate("x", width=64, height=64, steps=2)


# ---------------------------------------------------------------- detection, unsupported


async def test_auto_detects_v2_and_comfyui(service: str, comfyui_url: str) -> None:
    async with AsyncComfyClient(service, api="auto") as comfy:
        assert comfy.api == "auto"
        job = await comfy.submit(graphs.invert())
        assert comfy.api == "v2"
        await job.result(timeout=60)
    async with AsyncComfyClient(comfyui_url, api="auto") as comfy:
        stats = await comfy.system_stats()
        assert comfy.api == "comfyui" and stats.system.comfyui_version
    for bad in ("v3", "", None, 2):
        with pytest.raises(InputError, match="api must be one of 'comfyui', 'v2', 'auto'"):
            AsyncComfyClient(service, api=bad)  # type: ignore[arg-type]
    assert issubclass(InputError, ValueError)


async def test_what_v2_cannot_do_raises_the_typed_error(service: str) -> None:
    async with AsyncComfyClient(service, api="v2") as comfy:
        calls: list[tuple[str, Any]] = [
            ("the node catalog", comfy.object_info()),
            ("the node catalog", comfy.catalog()),
            ("the queue listing", comfy.queue()),
            ("the queue listing", comfy.clear_queue()),
            ("the history", comfy.history()),
            ("interrupt()", comfy.interrupt()),
            ("free()", comfy.free()),
            ("model listing", comfy.models("checkpoints")),
            ("system_stats()", comfy.system_stats()),
            ("upload_mask()", comfy.upload_mask(png((1, 2, 3)), original_ref="x.png")),
            ("validate=True", comfy.submit(graphs.invert(), validate=True)),
            ("queue priority", comfy.submit(graphs.invert(), front=True)),
        ]
        for operation, call in calls:
            with pytest.raises(UnsupportedOperationError) as err:
                await call
            assert err.value.operation.startswith(operation) and err.value.backend == "v2"
            assert "Comfy API v2 backend" in str(err.value), str(err.value)
    with pytest.raises(UnsupportedOperationError):
        async with AsyncComfyClient(service, api="v2", validate=True) as strict:
            await strict.submit(graphs.invert())


# ------------------------------------------------------------------------ blocking client


def test_blocking_client_on_v2(service: str) -> None:
    with ComfyClient(service, api="auto") as comfy:
        uploaded = comfy.upload_image(png((10, 20, 30)))
        result = comfy.run(graphs.load_invert(uploaded.ref), timeout=60)
        assert comfy.api == "v2"
        graphs.assert_rgb_close(pixel(result.images[0].read()), (245, 235, 225))
        job = comfy.submit(graphs.sleep(20))
        with pytest.raises(JobTimeoutError) as err:
            job.result(timeout=0.5, cancel_on_timeout=True)
        assert err.value.cancelled
        with pytest.raises(ExecutionError) as failed:
            comfy.run(graphs.sync_error(), timeout=60)
        assert failed.value.node_type == "TestSyncError"
        with pytest.raises(UnsupportedOperationError):
            comfy.history()


# ------------------------------------------------------------------------------- API keys


def test_api_key_auth(tmp_path: Path, comfyui_url: str) -> None:
    serve = _serve(tmp_path, comfyui_url, COMFYKIT_AUTH="required")
    try:
        code = "import sys; from comfykit.cli import main; sys.exit(main(sys.argv[1:]))"
        made = subprocess.run(
            [sys.executable, "-c", code, "keys", "create", "--name", "sdk", "--role", "admin",
             "--data-dir", str(tmp_path / "data")],
            env={k: v for k, v in os.environ.items() if k != "COMFYUI_URL"},
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        key = made.stdout.strip()
        with ComfyClient(serve.url, api="auto") as anonymous:
            with pytest.raises(APIStatusError) as err:
                anonymous.submit(graphs.invert())
            assert anonymous.api == "v2" and err.value.status_code == 401
        with ComfyClient(serve.url, api="v2", auth=key) as comfy:
            result = comfy.run(graphs.invert(0x000000), timeout=60)
            graphs.assert_rgb_close(pixel(result.images[0].read()), (255, 255, 255))
    finally:
        serve.stop()


# ------------------------------------------------------ what a real server cannot do on demand


@respx.mock(assert_all_mocked=True)
async def test_queue_full_is_retried_after_retry_after_with_the_same_key(
    respx_mock: respx.MockRouter,
) -> None:
    job: dict[str, Any] = {
        "id": "job-1", "status": "succeeded", "created_at": "2025-01-01T00:00:00Z",
        "started_at": None, "completed_at": None, "expires_at": "2025-01-02T00:00:00Z",
        "queue_position": None, "progress": None, "outputs": [], "error": None,
        "urls": {"self": "/", "events": "/", "cancel": "/"},
    }  # fmt: skip
    full = httpx.Response(
        429, headers={"Retry-After": "0"},
        json={"error": {"code": "queue_full", "message": "the queue is full"}},
    )  # fmt: skip
    route = respx_mock.post("http://v2.test/api/v2/jobs").mock(
        side_effect=[full, httpx.Response(201, json=job)]
    )
    async with AsyncComfyClient("http://v2.test", api="v2") as comfy:
        submitted = await comfy.submit(graphs.invert(), prompt_id="key-1")
        assert submitted.prompt_id == "job-1" and submitted.done
    keys = [call.request.headers["Idempotency-Key"] for call in route.calls]
    assert keys == ["key-1", "key-1"]
    route.side_effect = [full, full, full]
    async with AsyncComfyClient("http://v2.test", api="v2", max_retries=2) as comfy:
        with pytest.raises(APIStatusError) as err:
            await comfy.submit(graphs.invert())
    assert err.value.status_code == 429 and "queue_full" in str(err.value)


@respx.mock(assert_all_mocked=True)
async def test_without_an_event_stream_the_job_is_polled(respx_mock: respx.MockRouter) -> None:
    base: dict[str, Any] = {
        "id": "job-2", "created_at": "2025-01-01T00:00:00Z", "started_at": None,
        "completed_at": None, "expires_at": "2025-01-02T00:00:00Z", "queue_position": None,
        "progress": None, "outputs": [], "error": None,
        "urls": {"self": "/", "events": "/", "cancel": "/"},
    }  # fmt: skip
    output = {
        "node_id": "3", "name": "x_00001_.png", "type": "image", "content_type": "image/png",
        "size_bytes": 3, "id": "asset-9", "hash": None,
        "url": "http://v2.test/api/v2/assets/asset-9/content",
        "url_expires_at": "2025-01-02T00:00:00Z",
    }  # fmt: skip
    respx_mock.post("http://v2.test/api/v2/jobs").respond(201, json={**base, "status": "queued"})
    respx_mock.get("http://v2.test/api/v2/jobs/job-2/events").respond(
        501, json={"error": {"code": "not_implemented", "message": "no streaming here"}}
    )
    polled = respx_mock.get("http://v2.test/api/v2/jobs/job-2").mock(
        side_effect=[
            httpx.Response(200, json={**base, "status": "running"}),
            httpx.Response(200, json={**base, "status": "succeeded", "outputs": [output]}),
        ]
    )
    respx_mock.get("http://v2.test/api/v2/assets/asset-9/content").respond(200, content=b"png")
    async with AsyncComfyClient("http://v2.test", api="v2") as comfy:
        result = await (await comfy.submit(graphs.invert())).result(timeout=30)
        assert polled.call_count == 2
        assert [f.filename for f in result.images] == ["x_00001_.png"]
        assert await result.images[0].read() == b"png"
