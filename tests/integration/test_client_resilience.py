"""Losing the socket or the server mid-job: typed errors, no hangs, nothing run twice."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from comfykit import (
    AsyncComfyClient,
    ComfyClient,
    ComfyConnectionError,
    JobLost,
    JobStatus,
    Progress,
)
from comfykit.testing import ComfyUIServer
from tests import graphs


@pytest.fixture
def own_server(comfyui_server: ComfyUIServer | None) -> Iterator[ComfyUIServer]:
    """A private server these tests may kill or restart."""
    if comfyui_server is None:
        pytest.skip("needs the harness (these tests kill and restart their own server)")
    with ComfyUIServer(env=comfyui_server.env, checkpoint=False) as server:
        yield server


async def test_websocket_dropped_mid_job_still_delivers(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        job = await comfy.submit(graphs.sleep(1.0, value=random.randrange(10**6)))
        async for event in job.events(timeout=60):
            if isinstance(event, Progress):
                break
        await comfy._shared.stream.drop()
        result = await job.result(timeout=60)
        assert result.text["3"]
        assert comfy._shared.stream.connects == 2


def test_websocket_dropped_mid_job_still_delivers_sync(comfyui_url: str) -> None:
    from comfykit._backends.blocking_ws import BlockingWebSocket

    with ComfyClient(comfyui_url) as comfy:
        job = comfy.submit(graphs.sleep(1.0, value=random.randrange(10**6)))
        stream = comfy._shared.stream
        for event in job.events(timeout=60):
            if isinstance(event, Progress):
                break
        # The sync client reads its socket itself (no websockets thread).
        assert stream._ws is not None and isinstance(stream._ws._conn, BlockingWebSocket)
        stream.drop()
        result = job.result(timeout=60)
        assert result.text["3"]
        assert stream.connects == 2


async def test_job_finished_while_disconnected_is_caught_up_from_history(
    comfyui_url: str,
) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        job = await comfy.submit(graphs.sleep(0.3, value=random.randrange(10**6)))
        await comfy._shared.stream.drop()
        # Let it finish while nobody listens; the events are lost for good.
        deadline = time.monotonic() + 30
        while not await comfy.history(job.prompt_id):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        result = await job.result(timeout=30)
        assert result.text["3"] and job.status is JobStatus.SUCCEEDED


async def test_server_killed_mid_job_is_a_typed_error_fast(own_server: ComfyUIServer) -> None:
    async with AsyncComfyClient(own_server.url, max_retries=1, timeout=5) as comfy:
        job = await comfy.submit(graphs.sleep(60))
        async for event in job.events(timeout=60):
            if isinstance(event, Progress):
                break
        own_server.kill()
        started = time.monotonic()
        with pytest.raises(ComfyConnectionError):
            await job.result(timeout=120)
        assert time.monotonic() - started < 30
        assert job.status is JobStatus.LOST


def test_server_killed_mid_job_sync(own_server: ComfyUIServer) -> None:
    with ComfyClient(own_server.url, max_retries=1, timeout=5) as comfy:
        job = comfy.submit(graphs.sleep(60))
        for event in job.events(timeout=60):
            if isinstance(event, Progress):
                break
        own_server.kill()
        started = time.monotonic()
        with pytest.raises(ComfyConnectionError):
            job.result(timeout=120)
        assert time.monotonic() - started < 30


async def test_server_restarted_mid_job_reports_job_lost(own_server: ComfyUIServer) -> None:
    async with AsyncComfyClient(own_server.url) as comfy:
        job = await comfy.submit(graphs.sleep(60))
        async for event in job.events(timeout=60):
            if isinstance(event, Progress):
                break
        await asyncio.to_thread(own_server.restart)
        with pytest.raises(JobLost, match="neither queued nor in the history"):
            await job.result(timeout=120)
        # The client keeps working against the new process.
        result = await comfy.run(graphs.text("after", "restart"), timeout=60)
        assert result.text["2"] == ["after-restart"]


async def test_an_idle_async_client_keeps_reading_the_broadcasts(comfyui_url: str) -> None:
    # ComfyUI broadcasts a status frame to every socket on each queue change; an unread socket
    # fills up and then stalls the server's event delivery to everybody.
    async with AsyncComfyClient(comfyui_url) as idle, AsyncComfyClient(comfyui_url) as busy:
        await idle.run(graphs.text("idle", str(random.random())), timeout=60)
        router = idle._shared.stream.router
        blocker = await busy.submit(graphs.sleep(1.0, value=random.randrange(10**6)))
        queued = [await busy.submit(graphs.text(str(i), str(random.random()))) for i in range(3)]
        deadline = time.monotonic() + 30
        while (router.queue_remaining or 0) < 3:  # the idle client never calls anything
            assert time.monotonic() < deadline, router.queue_remaining
            await asyncio.sleep(0.02)
        for job in [blocker, *queued]:
            await job.result(timeout=60)
        while router.queue_remaining != 0:
            assert time.monotonic() < deadline, router.queue_remaining
            await asyncio.sleep(0.02)


def test_an_idle_sync_client_keeps_reading_the_broadcasts(comfyui_url: str) -> None:
    with ComfyClient(comfyui_url) as idle, ComfyClient(comfyui_url) as busy:
        idle.run(graphs.text("idle", str(random.random())), timeout=60)
        stream = idle._shared.stream
        reader = stream._reader
        assert reader is not None and reader.alive
        blocker = busy.submit(graphs.sleep(1.0, value=random.randrange(10**6)))
        queued = [busy.submit(graphs.text(str(i), str(random.random()))) for i in range(3)]
        deadline = time.monotonic() + 30
        while (stream.router.queue_remaining or 0) < 3:
            assert time.monotonic() < deadline, stream.router.queue_remaining
            time.sleep(0.02)
        for job in [blocker, *queued]:
            job.result(timeout=60)
    assert not reader.alive  # close() ended the reader thread


async def test_submit_right_after_the_socket_dropped(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        await comfy.run(graphs.text("a", str(random.random())), timeout=60)
        stream = comfy._shared.stream
        await stream.drop()
        # The background reader is reopening the socket while this submit goes out.
        jobs = [await comfy.submit(graphs.text(str(i), str(random.random()))) for i in range(3)]
        for job in jobs:
            assert (await job.result(timeout=60)).text["2"]
        assert stream.connects == 2


def test_submit_right_after_the_socket_dropped_sync(comfyui_url: str) -> None:
    with ComfyClient(comfyui_url) as comfy:
        comfy.run(graphs.text("a", str(random.random())), timeout=60)
        stream = comfy._shared.stream
        stream.drop()
        jobs = [comfy.submit(graphs.text(str(i), str(random.random()))) for i in range(3)]
        for job in jobs:
            assert job.result(timeout=60).text["2"]
        assert stream.connects == 2


# -- a client nobody closed ------------------------------------------------------------------


def _open(stream: Any, reader: Any, http: httpx.Client | httpx.AsyncClient) -> bool:
    """True while any part of a dropped client is still open."""
    return bool(reader.alive or stream.connected or not http.is_closed)


def _wait_closed(stream: Any, reader: Any, http: httpx.Client, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while _open(stream, reader, http):
        assert time.monotonic() < deadline, "the dropped client's socket or pool stayed open"
        time.sleep(0.02)
    assert stream.closed


def test_a_sync_client_nobody_closed_closes_itself_once_collected(comfyui_url: str) -> None:
    comfy = ComfyClient(comfyui_url)
    comfy.run(graphs.text("dropped", str(random.random())), timeout=60)
    stream, http = comfy._shared.stream, comfy._shared.http
    reader = stream._reader
    assert reader is not None and reader.alive and stream.connected
    del comfy
    gc.collect()
    _wait_closed(stream, reader, http)


def test_a_copy_keeps_the_socket_of_a_dropped_client_and_catches_up_through_it(
    comfyui_url: str,
) -> None:
    comfy = ComfyClient(comfyui_url)
    copy_ = comfy.with_options(timeout=60)
    job = copy_.submit(graphs.sleep(1.0, value=random.randrange(10**6)))
    stream, http = comfy._shared.stream, comfy._shared.http
    del comfy
    gc.collect()
    for event in job.events(timeout=60):
        if isinstance(event, Progress):
            break
    assert stream.connected and not stream.closed  # the copy still uses it
    stream.drop()  # the reopened socket catches the job up through the copy
    assert job.result(timeout=60).text["3"]
    assert stream.connects == 2
    reader = stream._reader
    del copy_, job
    gc.collect()
    _wait_closed(stream, reader, http)


async def test_an_async_client_nobody_closed_closes_itself_once_collected(
    comfyui_url: str,
) -> None:
    comfy = AsyncComfyClient(comfyui_url)
    await comfy.run(graphs.text("dropped", str(random.random())), timeout=60)
    stream, http = comfy._shared.stream, comfy._shared.http
    reader = stream._reader
    assert reader is not None and reader.alive and stream.connected
    del comfy
    gc.collect()
    deadline = time.monotonic() + 10
    while _open(stream, reader, http):
        assert time.monotonic() < deadline, "the dropped client's socket or pool stayed open"
        await asyncio.sleep(0.02)
    assert stream.closed


def _image_sleep(seconds: float, color: int) -> dict[str, Any]:
    """EmptyImage -> TestSleep -> SaveImage: an image output after ``seconds``."""
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage",
              "inputs": {"images": ["2", 0], "filename_prefix": "survive"}},
    }  # fmt: skip


async def test_finished_jobs_keep_their_results_when_the_server_dies(
    own_server: ComfyUIServer,
) -> None:
    """Ten 0.2 s jobs; once five have succeeded the server is SIGKILLed: those five still
    return their results (their completion and outputs were seen), the rest end with a typed
    error, and after a restart with an empty history the five still hold (no JobLost)."""
    async with AsyncComfyClient(own_server.url, max_retries=0) as comfy:
        jobs = [
            await comfy.submit(_image_sleep(0.2, random.randrange(0xFFFFFF))) for _ in range(10)
        ]
        # The client's socket reader updates the jobs; nobody asks for a result yet.
        deadline = time.monotonic() + 60
        while sum(j.status is JobStatus.SUCCEEDED for j in jobs) < 5:
            assert time.monotonic() < deadline, [j.status for j in jobs]
            await asyncio.sleep(0.02)
        done = [j for j in jobs if j.status is JobStatus.SUCCEEDED]
        own_server.kill()
        for job in done:
            result = await job.result(timeout=30)
            assert job.status is JobStatus.SUCCEEDED
            assert [f.filename for f in result.images] and result.images[0].type == "output"
        others = [j for j in jobs if j not in done]
        outcomes = await asyncio.gather(
            *(j.result(timeout=30) for j in others), return_exceptions=True
        )
        for job, outcome in zip(others, outcomes, strict=True):
            if isinstance(outcome, BaseException):  # ran unseen, or never ran
                assert isinstance(outcome, (ComfyConnectionError, JobLost)), repr(outcome)
            else:
                assert job.status is JobStatus.SUCCEEDED
        own_server.start()
        for job in done:  # an empty history after the restart changes nothing
            assert (await job.result(timeout=30)).images and job.status is JobStatus.SUCCEEDED
