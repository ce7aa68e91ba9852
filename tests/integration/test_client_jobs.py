"""Jobs over the one WebSocket: events, results, errors, cancel, caching, concurrency."""

from __future__ import annotations

import asyncio
import gc
import random
import uuid

import pytest

from comfykit import (
    AsyncComfyClient,
    ComfyClient,
    ComfyTimeoutError,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionErrorEvent,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    InputError,
    JobInterrupted,
    JobStatus,
    PreviewImage,
    Progress,
    ProgressState,
    ProgressText,
    PromptValidationError,
    WorkflowError,
)
from comfykit.testing import ComfyUIServer
from tests import graphs


def _color() -> int:
    return random.randrange(0, 0xFFFFFF)


async def test_events_and_result_of_one_job(comfyui_url: str) -> None:
    color = _color()
    async with AsyncComfyClient(comfyui_url) as comfy:
        job = await comfy.submit(graphs.invert(color))
        assert not job.status.finished
        events = [e async for e in job.events(timeout=60)]
        kinds = [type(e) for e in events]
        assert kinds[0] is ExecutionStart
        assert ExecutionCached in kinds and ProgressState in kinds
        assert [e.node for e in events if isinstance(e, Executing)] == ["1", "2", "3", None]
        assert kinds.index(ExecutionSuccess) < len(kinds) - 1  # executing(null) comes last
        assert all(e.prompt_id == job.prompt_id for e in events)
        result = await job.result(timeout=60)
        assert job.status is JobStatus.SUCCEEDED and job.done
        (image,) = result.images
        assert image.node_id == "3" and image.type == "output" and image.kind == "image"
        pil = await image.to_pil()
        assert pil.size == (32, 24)
        graphs.assert_rgb_close(pil.convert("RGB").getpixel((3, 3)), graphs.inverted_rgb(color))
        executed = [e for e in events if isinstance(e, Executed)]
        assert executed[0].output["images"][0]["filename"] == image.filename
        assert result.history is not None and result.history.status is not None


async def test_identical_resubmission_is_served_from_cache(comfyui_url: str) -> None:
    graph = graphs.invert(_color())
    async with AsyncComfyClient(comfyui_url) as comfy:
        first = await comfy.run(graph, timeout=60)
        job = await comfy.submit(graph)
        second = await job.result(timeout=60)
        assert sorted(second.cached_nodes) == ["1", "2", "3"]
        assert [f.filename for f in second.images] == [f.filename for f in first.images]
        kinds = {type(e) for e in job._tracker.events}
        assert Executed in kinds and ExecutionSuccess in kinds
        assert [e.node for e in job._tracker.events if isinstance(e, Executing)] == [None]


async def test_progress_events_from_testsleep(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        job = await comfy.submit(graphs.sleep(0.4, value=random.randrange(10**6)))
        progress = [e async for e in job.events(timeout=60) if isinstance(e, Progress)]
        assert len(progress) >= 3
        assert {p.node for p in progress} == {"2"}
        assert progress[-1].max == pytest.approx(0.4)
        values = [p.value for p in progress]
        assert values == sorted(values)
        result = await job.result()
        assert result.text["3"] and result.files == []


async def test_binary_text_frame_is_routed_to_its_job(comfyui_url: str) -> None:
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 20, "height": 10, "batch_size": 2, "color": _color()},
        },
        "2": {"class_type": "GetImageSize", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    async with AsyncComfyClient(comfyui_url) as comfy:
        job = await comfy.submit(graph)
        texts = [e async for e in job.events(timeout=60) if isinstance(e, ProgressText)]
        assert len(texts) == 1
        assert texts[0].node_id == "2" and texts[0].prompt_id == job.prompt_id
        assert "width: 20, height: 10" in texts[0].text
        assert (await job.result()).text["3"] == ["20"]


async def test_previews_with_metadata_from_txt2img(
    comfyui_url: str, comfyui_server: ComfyUIServer | None
) -> None:
    if comfyui_server is None or comfyui_server.preview_method != "latent2rgb":
        pytest.skip("needs the harness's own server with --preview-method latent2rgb")
    async with AsyncComfyClient(comfyui_url) as comfy:
        job = await comfy.submit(graphs.txt2img(seed=random.randrange(10**9), steps=3))
        previews = [e async for e in job.events(timeout=120) if isinstance(e, PreviewImage)]
        assert len(previews) == 3
        for p in previews:
            assert p.prompt_id == job.prompt_id and p.node_id == "5"
            assert p.mime_type == "image/jpeg"
            assert p.to_pil().size == (512, 512)  # scaled up to --preview-size
        result = await job.result()
        assert (await result.images[0].to_pil()).size == (64, 64)


async def test_validation_error_names_node_input_and_value(comfyui_url: str) -> None:
    bad = graphs.txt2img()
    bad["5"]["inputs"]["steps"] = 0
    bad["5"]["_meta"] = {"title": "Sampler"}
    bad["4"]["inputs"].pop("width")
    bad["5"]["inputs"]["sampler_name"] = "no_such_sampler"
    async with AsyncComfyClient(comfyui_url) as comfy:
        with pytest.raises(PromptValidationError) as info:
            await comfy.submit(bad, validate=False)
        err = info.value
        assert err.status_code == 400 and err.error_type == "prompt_outputs_failed_validation"
        found = {(e.node_id, e.input_name, e.type) for e in err.errors}
        assert ("5", "steps", "value_smaller_than_min") in found
        assert ("4", "width", "required_input_missing") in found
        assert ("5", "sampler_name", "value_not_in_list") in found
        steps = next(e for e in err.errors if e.input_name == "steps")
        assert steps.received_value == 0 and steps.class_type == "KSampler"
        assert "node 5 (KSampler 'Sampler') input 'steps': value 0 smaller than min of 1" in str(
            err
        )
        # The rejected prompt is not tracked.
        assert dict(comfy._shared.stream.router.trackers) == {}


async def test_local_validation_lists_every_problem_and_sends_nothing(comfyui_url: str) -> None:
    bad = graphs.txt2img()
    bad["5"]["inputs"]["steps"] = 0
    bad["4"]["inputs"].pop("width")
    bad["5"]["inputs"]["sampler_name"] = "no_such_sampler"
    async with AsyncComfyClient(comfyui_url) as comfy:
        before = len(await comfy.history())
        with pytest.raises(WorkflowError) as info:
            await comfy.submit(bad)
        found = {(p.node_id, p.input_name, p.code) for p in info.value.problems}
        assert found == {
            ("5", "steps", "value_smaller_than_min"),
            ("4", "width", "required_input_missing"),
            ("5", "sampler_name", "value_not_in_list"),
        }
        assert "node 5 (KSampler) input 'steps'" in str(info.value)
        assert len(await comfy.history()) == before and not (await comfy.queue()).pending
        with pytest.raises(WorkflowError, match="NoSuchNode"):
            await comfy.submit({"1": {"class_type": "NoSuchNode", "inputs": {}}})


async def test_unknown_node_type_is_rejected(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        with pytest.raises(PromptValidationError) as info:
            await comfy.submit({"1": {"class_type": "NoSuchNode", "inputs": {}}}, validate=False)
        assert info.value.error_type == "invalid_prompt"
        assert "NoSuchNode" in str(info.value)


async def test_bad_prompt_shapes_fail_before_sending(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        with pytest.raises(InputError, match="empty"):
            await comfy.submit({})
        with pytest.raises(InputError, match="class_type"):
            await comfy.submit({"1": {"inputs": {}}})
        with pytest.raises(InputError, match="UI-format"):
            await comfy.submit({"nodes": [], "links": [], "version": 0.4})
        with pytest.raises(InputError, match="request body"):
            await comfy.submit({"prompt": graphs.text("a", "b"), "client_id": "x"})


async def test_partial_validation_surfaces_node_errors(comfyui_url: str) -> None:
    graph = graphs.invert(_color())
    graph["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    del graph["3"]["inputs"]["filename_prefix"]
    async with AsyncComfyClient(comfyui_url) as comfy:
        job = await comfy.submit(graph, validate=False)
        assert [(e.node_id, e.input_name, e.type) for e in job.node_errors] == [
            ("3", "filename_prefix", "required_input_missing")
        ]
        result = await job.result(timeout=60)
        assert list(result.outputs) == ["4"]


async def test_execution_error_carries_node_and_traceback(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        job = await comfy.submit(graphs.sync_error())
        with pytest.raises(ExecutionError) as info:
            await job.result(timeout=60)
        err = info.value
        assert (err.node_id, err.node_type) == ("2", "TestSyncError")
        assert err.exception_type == "RuntimeError"
        assert "Intentional sync execution error" in err.exception_message
        assert err.traceback and err.prompt_id == job.prompt_id
        assert job.status is JobStatus.FAILED
        assert any(isinstance(e, ExecutionErrorEvent) for e in job._tracker.events)


async def test_cancel_running_job_interrupts_only_it(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        running = await comfy.submit(graphs.sleep(20, value=random.randrange(10**6)))
        after = await comfy.submit(graphs.text("after", uuid.uuid4().hex))
        async for event in running.events(timeout=60):
            if isinstance(event, Progress):
                break
        await running.cancel()
        with pytest.raises(JobInterrupted) as info:
            await running.result(timeout=30)
        assert info.value.node_id == "2" and running.status is JobStatus.INTERRUPTED
        assert any(isinstance(e, ExecutionInterrupted) for e in running._tracker.events)
        assert (await after.result(timeout=60)).text["2"][0].startswith("after-")


async def test_cancel_pending_job_removes_it_from_queue(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        blocker = await comfy.submit(graphs.sleep(1.0, value=random.randrange(10**6)))
        pending = await comfy.submit(graphs.text("never", uuid.uuid4().hex))
        await pending.cancel()
        assert pending.prompt_id not in await comfy.queue()
        with pytest.raises(JobInterrupted, match="cancelled before it ran"):
            await pending.result(timeout=10)
        await blocker.result(timeout=60)
        assert await comfy.history(pending.prompt_id) == {}


async def test_cancel_from_another_task_wakes_the_task_waiting_for_the_job(
    comfyui_url: str,
) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        blocker = await comfy.submit(graphs.sleep(5.0, value=random.randrange(10**6)))
        pending = await comfy.submit(graphs.text("never", uuid.uuid4().hex))
        # The blocker's waiter reads the socket; the pending job's waiter sleeps until woken.
        blocker_result = asyncio.create_task(blocker.result(timeout=60))
        pending_result = asyncio.create_task(pending.result(timeout=60))
        async for event in blocker.events(timeout=30):
            if isinstance(event, Progress):
                break
        await pending.cancel()
        with pytest.raises(JobInterrupted, match="cancelled before it ran"):
            await pending_result
        # Woken by the cancel itself, not by the blocker finishing seconds later.
        assert not blocker.done and not blocker_result.done()
        await blocker.cancel()
        with pytest.raises(JobInterrupted):
            await blocker_result


async def test_finished_jobs_are_not_kept_by_the_client(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        router = comfy._shared.stream.router
        kept = await comfy.submit(graphs.invert(_color()))
        for _ in range(5):
            job = await comfy.submit(graphs.invert(_color()))
            await job.result(timeout=60)
        del job
        await kept.result(timeout=60)
        gc.collect()
        # Only the job somebody still holds is tracked; the rest are gone with their handles.
        assert list(router.trackers) == [kept.prompt_id]


async def test_result_timeout_is_typed(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        job = await comfy.submit(graphs.sleep(3, value=random.randrange(10**6)))
        with pytest.raises(ComfyTimeoutError, match="did not finish within 0.3 s"):
            await job.result(timeout=0.3)
        await job.cancel()
        with pytest.raises(JobInterrupted):
            await job.result(timeout=30)


async def test_64_jobs_in_flight_over_one_socket(comfyui_url: str) -> None:
    colors = random.sample(range(0xFFFFFF), 64)
    async with AsyncComfyClient(comfyui_url) as comfy:
        jobs = await asyncio.gather(*(comfy.submit(graphs.invert(c)) for c in colors))
        results = await asyncio.gather(*(j.result(timeout=120) for j in jobs))
        assert comfy._shared.stream.connects == 1
        assert len({r.prompt_id for r in results}) == 64
        for color, result in zip(colors, results, strict=True):
            pixel = (await result.images[0].to_pil()).convert("RGB").getpixel((0, 0))
            graphs.assert_rgb_close(pixel, graphs.inverted_rgb(color))


async def test_polling_without_websocket(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url, ws=False) as comfy:
        job = await comfy.submit(graphs.text("poll", uuid.uuid4().hex))
        events = [e async for e in job.events(timeout=60)]
        assert isinstance(events[-1], ExecutionSuccess)
        result = await job.result()
        assert result.text["2"][0].startswith("poll-")
        assert not comfy._shared.stream.connected
        failing = await comfy.submit(graphs.sync_error())
        with pytest.raises(ExecutionError):
            await failing.result(timeout=60)


async def test_attach_to_existing_prompt(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as a, AsyncComfyClient(comfyui_url) as b:
        job = await a.submit(graphs.text("shared", uuid.uuid4().hex))
        other = b.job(job.prompt_id)
        assert (await other.result(timeout=60)).text == (await job.result()).text


def test_sync_client_job(comfyui_url: str) -> None:
    color = _color()
    with ComfyClient(comfyui_url) as comfy:
        job = comfy.submit(graphs.invert(color))
        kinds = [type(e) for e in job.events(timeout=60)]
        assert kinds[0] is ExecutionStart and kinds[-1] is Executing
        result = job.result()
        pixel = result.images[0].to_pil().convert("RGB").getpixel((0, 0))
        graphs.assert_rgb_close(pixel, graphs.inverted_rgb(color))
        with pytest.raises(ExecutionError):
            comfy.run(graphs.sync_error(), timeout=60)


async def test_sync_client_inside_a_running_event_loop(comfyui_url: str) -> None:
    asyncio.get_running_loop()  # as in a notebook cell
    with ComfyClient(comfyui_url) as comfy:
        result = comfy.run(graphs.text("loop", uuid.uuid4().hex), timeout=60)
        assert result.text["2"][0].startswith("loop-")


async def test_progress_of_one_job_flows_while_another_waits(comfyui_url: str) -> None:
    """A waiter on a later job must not hold up the events of the running one."""
    async with AsyncComfyClient(comfyui_url) as comfy:
        first = await comfy.submit(graphs.sleep(1.0, value=random.randrange(10**6)))
        second = await comfy.submit(graphs.text("second", uuid.uuid4().hex))
        waiting = asyncio.create_task(second.result(timeout=60))  # starts reading first
        await asyncio.sleep(0)
        seen: list[float] = []
        async for event in first.events(timeout=60):
            if isinstance(event, Progress):
                seen.append(event.value)
                if len(seen) == 3:
                    assert not waiting.done()  # progress arrived while the job still ran
        assert len(seen) >= 3
        assert (await waiting).text["2"][0].startswith("second-")


def test_sync_client_shared_by_threads(comfyui_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    colors = random.sample(range(0xFFFFFF), 24)
    with ComfyClient(comfyui_url) as comfy:

        def run(color: int) -> tuple[int, object]:
            result = comfy.run(graphs.invert(color), timeout=120)
            return color, result.images[0].to_pil().convert("RGB").getpixel((0, 0))

        with ThreadPoolExecutor(max_workers=8) as pool:
            for color, pixel in pool.map(run, colors):
                graphs.assert_rgb_close(pixel, graphs.inverted_rgb(color))
        assert comfy._shared.stream.connects == 1
