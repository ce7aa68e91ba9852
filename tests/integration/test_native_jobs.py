"""The jobs calls on a real ComfyUI 0.3.75, which has none of the native ``/api/jobs`` routes:
detection says so, and each call is answered the 0.3.75 way (``/queue``, ``/history``,
``/interrupt``) in the same models the native routes give."""

from __future__ import annotations

import random
import uuid

import pytest

from comfykit import (
    AssetsUnavailableError,
    AsyncComfyClient,
    ComfyClient,
    JobInterrupted,
    JobStatus,
    Progress,
)
from tests import graphs


async def _started(job_events: object) -> None:
    async for event in job_events:  # type: ignore[attr-defined]
        if isinstance(event, Progress):
            return


async def test_detection_finds_no_native_routes(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        caps = await comfy.server_capabilities()
        assert caps.comfyui_version == "0.3.75"
        assert not caps.jobs_api and not caps.job_cancel_api and not caps.assets
        with pytest.raises(AssetsUnavailableError, match="0.3.75"):
            await comfy.check_assets()


async def test_jobs_and_get_job_through_a_jobs_life(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        running = await comfy.submit(graphs.sleep(20, value=random.randrange(10**6)))
        pending = await comfy.submit(graphs.text("pending", uuid.uuid4().hex))
        await _started(running.events(timeout=60))

        listed = await comfy.jobs(status=["in_progress", "pending"])
        states = {job.id: job.status for job in listed.jobs}
        assert states[running.prompt_id] == "in_progress"
        assert states[pending.prompt_id] == "pending"
        assert listed.prompt_ids[:2] == [pending.prompt_id, running.prompt_id]  # newest first
        detail = await comfy.get_job(pending.prompt_id)
        assert detail is not None and detail.status == "pending"
        assert detail.workflow is not None and detail.workflow.prompt == pending.prompt

        await running.cancel()
        with pytest.raises(JobInterrupted):
            await running.result(timeout=30)
        result = await pending.result(timeout=60)

        done = await comfy.get_job(pending.prompt_id)
        assert done is not None and done.status == "completed" and done.finished
        assert done.outputs is not None and done.outputs["2"]["text"][0] == result.text["2"][0]
        cancelled = await comfy.get_job(running.prompt_id)
        assert cancelled is not None and cancelled.status == "cancelled"
        assert (await comfy.jobs(status="cancelled", limit=1)).prompt_ids == [running.prompt_id]
        assert await comfy.get_job(str(uuid.uuid4())) is None


async def test_cancel_of_a_queued_and_of_a_running_job(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        running = await comfy.submit(graphs.sleep(20, value=random.randrange(10**6)))
        queued = await comfy.submit(graphs.text("never", uuid.uuid4().hex))
        await _started(running.events(timeout=60))
        await queued.cancel()
        assert queued.prompt_id not in await comfy.queue()
        with pytest.raises(JobInterrupted, match="cancelled before it ran"):
            await queued.result(timeout=10)
        await running.cancel()
        with pytest.raises(JobInterrupted):
            await running.result(timeout=30)
        assert running.status is JobStatus.INTERRUPTED


async def test_cancel_jobs_cancels_queued_and_running_at_once(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        running = await comfy.submit(graphs.sleep(20, value=random.randrange(10**6)))
        queued = [await comfy.submit(graphs.text("never", uuid.uuid4().hex)) for _ in range(2)]
        await _started(running.events(timeout=60))
        ids = [running.prompt_id, *(job.prompt_id for job in queued)]
        assert await comfy.cancel_jobs(ids) is True
        queue = await comfy.queue()
        assert not any(pid in queue for pid in ids[1:])
        with pytest.raises(JobInterrupted):
            await running.result(timeout=30)
        assert await comfy.cancel_jobs(ids) is False  # nothing left to cancel
        assert (await comfy.get_job(running.prompt_id)).status == "cancelled"  # type: ignore[union-attr]
        assert await comfy.get_job(queued[0].prompt_id) is None  # dequeued: never ran


def test_sync_client_jobs_and_cancel_jobs(comfyui_url: str) -> None:
    with ComfyClient(comfyui_url) as comfy:
        blocker = comfy.submit(graphs.sleep(5, value=random.randrange(10**6)))
        queued = comfy.submit(graphs.text("never", uuid.uuid4().hex))
        assert queued.prompt_id in comfy.jobs(status="pending").prompt_ids
        assert comfy.cancel_jobs(queued.prompt_id) is True
        assert comfy.get_job(queued.prompt_id) is None
        comfy.cancel_jobs(blocker.prompt_id)
        with pytest.raises(JobInterrupted):
            blocker.result(timeout=30)
