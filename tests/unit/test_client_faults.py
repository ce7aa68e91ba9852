"""Faults a real server cannot produce on demand, for both ``AsyncComfyClient`` and ``ComfyClient``.

HTTP faults are injected with respx; the WebSocket handshake is checked against a tiny local
``websockets`` server. The retry rules under test (``_request`` in ``_async/client.py``):

* ``ConnectError`` / ``ConnectTimeout`` / ``PoolTimeout``: retried for every method;
* 408/429/502/503/504: retried for idempotent requests, and 429/503 also for ``POST /prompt``
  (``Retry-After`` honoured); other statuses (500, 4xx) are never retried;
* other transport errors (``ReadError``, ...): retried for idempotent requests only; for
  ``POST /prompt`` the client asks ``/queue`` + ``/history`` whether the prompt arrived;
* at most ``max_retries + 1`` attempts per request.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from websockets.asyncio.server import ServerConnection, serve

from comfykit import (
    APIStatusError,
    AsyncComfyClient,
    ComfyClient,
    ComfyConnectionError,
    ComfyTimeoutError,
    JobStatus,
    NotFoundError,
    PromptValidationError,
    ServerError,
)

URL = "http://comfy.test:8188"
STATS = {"system": {"os": "posix", "comfyui_version": "0.3.75"}, "devices": []}
GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}
EMPTY_QUEUE: dict[str, list[Any]] = {"queue_running": [], "queue_pending": []}

Client = AsyncComfyClient | ComfyClient

#: A real 1x1 PNG: uploads are checked by decoding their header first.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def call(value: Any) -> Any:
    """Await ``value`` when the async client returned a coroutine."""
    return await value if inspect.isawaitable(value) else value


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without sleeping (``Retry-After`` still decides when it is sent)."""
    monkeypatch.setattr("comfykit._retry.backoff", lambda _attempt: 0.0)


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(kind: str, url: str = URL, **options: Any) -> Client:
    options.setdefault("ws", False)
    options.setdefault("validate", False)  # no /object_info round trip: these tests are about I/O
    if kind == "async":
        return AsyncComfyClient(url, **options)
    return ComfyClient(url, **options)


@pytest.fixture
async def client(kind: str) -> AsyncIterator[Client]:
    c = make(kind)
    yield c
    await call(c.close())


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


def refused_url() -> str:
    """A loopback URL nothing listens on (connection refused, fast)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def posted_prompt_ids(route: respx.Route) -> list[str]:
    return [json.loads(c.request.content)["prompt_id"] for c in route.calls]


def retry_503() -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": "0"}, text="busy")


# -- status retries ------------------------------------------------------------------------


async def test_503_with_retry_after_then_200_is_retried(
    client: Client, mock: respx.MockRouter
) -> None:
    route = mock.get("/system_stats").mock(
        side_effect=[retry_503(), httpx.Response(200, json=STATS)]
    )
    stats = await call(client.system_stats())
    assert stats.system.comfyui_version == "0.3.75"
    assert route.call_count == 2


async def test_503_beyond_max_retries_is_a_server_error(
    client: Client, mock: respx.MockRouter
) -> None:
    route = mock.get("/system_stats").mock(side_effect=lambda _request: retry_503())
    with pytest.raises(ServerError) as info:
        await call(client.system_stats())
    assert info.value.status_code == 503
    assert info.value.body == "busy"
    assert info.value.response is not None and info.value.request is not None
    assert route.call_count == client.max_retries + 1 == 3


@pytest.mark.parametrize("retries", [0, 4])
async def test_max_retries_bounds_the_attempts(
    kind: str, mock: respx.MockRouter, retries: int
) -> None:
    route = mock.get("/system_stats").mock(side_effect=lambda _request: retry_503())
    c = make(kind, max_retries=retries)
    try:
        with pytest.raises(ServerError):
            await call(c.system_stats())
    finally:
        await call(c.close())
    assert route.call_count == retries + 1


async def test_with_options_max_retries(client: Client, mock: respx.MockRouter) -> None:
    route = mock.get("/system_stats").mock(side_effect=lambda _request: retry_503())
    with pytest.raises(ServerError):
        await call(client.with_options(max_retries=0).system_stats())
    assert route.call_count == 1


async def test_429_is_an_api_status_error_after_retries(
    client: Client, mock: respx.MockRouter
) -> None:
    route = mock.get("/queue").mock(
        side_effect=lambda _request: httpx.Response(429, headers={"Retry-After": "0"})
    )
    with pytest.raises(APIStatusError) as info:
        await call(client.queue())
    assert not isinstance(info.value, ServerError)
    assert info.value.status_code == 429
    assert route.call_count == 3


async def test_500_on_idempotent_post_queue_is_not_retried(
    client: Client, mock: respx.MockRouter
) -> None:
    route = mock.post("/queue").mock(return_value=httpx.Response(500, text="boom"))
    with pytest.raises(ServerError) as info:
        await call(client.clear_queue())
    assert info.value.status_code == 500
    assert route.call_count == 1


@pytest.mark.parametrize("status", [408, 502, 503, 504])
async def test_retryable_statuses_on_idempotent_post_queue_are_retried(
    client: Client, mock: respx.MockRouter, status: int
) -> None:
    route = mock.post("/queue").mock(
        side_effect=[
            httpx.Response(status, headers={"Retry-After": "0"}),
            httpx.Response(200),
        ]
    )
    await call(client.delete_from_queue(["a", "b"]))
    assert route.call_count == 2
    assert json.loads(route.calls.last.request.content) == {"delete": ["a", "b"]}


async def test_read_error_on_idempotent_post_queue_is_retried(
    client: Client, mock: respx.MockRouter
) -> None:
    route = mock.post("/queue").mock(side_effect=[httpx.ReadError("reset"), httpx.Response(200)])
    await call(client.clear_queue())
    assert route.call_count == 2


async def test_get_read_error_is_retried_then_wrapped(
    client: Client, mock: respx.MockRouter
) -> None:
    route = mock.get("/system_stats").mock(side_effect=httpx.ReadError("reset"))
    with pytest.raises(ComfyConnectionError) as info:
        await call(client.system_stats())
    assert isinstance(info.value.__cause__, httpx.ReadError)
    assert route.call_count == 3


async def test_read_timeout_becomes_comfy_timeout_error(
    client: Client, mock: respx.MockRouter
) -> None:
    route = mock.get("/system_stats").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(ComfyTimeoutError) as info:
        await call(client.system_stats())
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert route.call_count == 3


@pytest.mark.parametrize(("status", "cls"), [(404, NotFoundError), (403, APIStatusError)])
async def test_client_errors_are_not_retried(
    client: Client, mock: respx.MockRouter, status: int, cls: type[APIStatusError]
) -> None:
    route = mock.get("/models/nope").mock(return_value=httpx.Response(status, json={"e": 1}))
    with pytest.raises(cls) as info:
        await call(client.models("nope"))
    assert info.value.status_code == status
    assert info.value.body == {"e": 1}
    assert route.call_count == 1


# -- POST /prompt: never queued twice ----------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_post_prompt_non_retryable_statuses_are_sent_once(
    client: Client, mock: respx.MockRouter, status: int
) -> None:
    route = mock.post("/prompt").mock(return_value=httpx.Response(status))
    with pytest.raises(ServerError):
        await call(client.submit(GRAPH))
    assert route.call_count == 1


async def test_post_prompt_503_is_retried(client: Client, mock: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if route.call_count == 0:
            return retry_503()
        pid = json.loads(request.content)["prompt_id"]
        return httpx.Response(200, json={"prompt_id": pid, "number": 1, "node_errors": {}})

    route = mock.post("/prompt").mock(side_effect=answer)
    job = await call(client.submit(GRAPH))
    assert route.call_count == 2
    ids = posted_prompt_ids(route)
    assert ids[0] == ids[1] == job.prompt_id


async def test_post_prompt_read_error_but_queued_is_not_posted_again(
    client: Client, mock: respx.MockRouter
) -> None:
    sent: list[str] = []

    def lost_answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content)["prompt_id"])
        raise httpx.ReadError("connection reset after the request was sent")

    def queue(_request: httpx.Request) -> httpx.Response:
        item = [3, sent[0], GRAPH, {"client_id": "c"}, ["2"]]
        return httpx.Response(200, json={"queue_running": [], "queue_pending": [item]})

    post = mock.post("/prompt").mock(side_effect=lost_answer)
    get_queue = mock.get("/queue").mock(side_effect=queue)
    job = await call(client.submit(GRAPH))
    assert post.call_count == 1
    assert get_queue.call_count == 1
    assert job.prompt_id == sent[0]
    assert job.status.value == "queued"


async def test_post_prompt_read_error_and_finished_is_found_in_history(
    client: Client, mock: respx.MockRouter
) -> None:
    sent: list[str] = []

    def lost_answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content)["prompt_id"])
        raise httpx.ReadError("reset")

    mock.post("/prompt").mock(side_effect=lost_answer)
    mock.get("/queue").mock(return_value=httpx.Response(200, json=EMPTY_QUEUE))
    history = mock.get(path__regex=r"^/history/.+").mock(
        side_effect=lambda _request: httpx.Response(
            200, json={sent[0]: {"prompt": [0, sent[0], GRAPH, {}, ["2"]], "outputs": {}}}
        )
    )
    job = await call(client.submit(GRAPH))
    assert len(sent) == 1 and job.prompt_id == sent[0]
    assert history.call_count == 1


async def test_post_prompt_read_error_and_unknown_is_posted_again_with_the_same_id(
    client: Client, mock: respx.MockRouter
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if post.call_count == 0:
            raise httpx.ReadError("reset before the server read it")
        pid = json.loads(request.content)["prompt_id"]
        return httpx.Response(200, json={"prompt_id": pid, "number": 4, "node_errors": {}})

    post = mock.post("/prompt").mock(side_effect=answer)
    mock.get("/queue").mock(return_value=httpx.Response(200, json=EMPTY_QUEUE))
    mock.get(path__regex=r"^/history/.+").mock(return_value=httpx.Response(200, json={}))
    job = await call(client.submit(GRAPH))
    ids = posted_prompt_ids(post)
    assert len(ids) == 2 and ids[0] == ids[1] == job.prompt_id
    assert job.number == 4


async def test_post_prompt_connect_error_twice_then_200_submits_once(
    client: Client, mock: respx.MockRouter
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if post.call_count < 2:
            raise httpx.ConnectError("refused")
        pid = json.loads(request.content)["prompt_id"]
        return httpx.Response(200, json={"prompt_id": pid, "number": 0, "node_errors": {}})

    post = mock.post("/prompt").mock(side_effect=answer)
    queue = mock.get("/queue").mock(return_value=httpx.Response(200, json=EMPTY_QUEUE))
    job = await call(client.submit(GRAPH))
    assert post.call_count == 3
    assert set(posted_prompt_ids(post)) == {job.prompt_id}
    assert queue.call_count == 0  # a refused connection never reached the server


async def test_a_prompt_no_attempt_of_which_reached_the_server_says_so(kind: str) -> None:
    # What lets a pool send such a job elsewhere at once (nothing can be there).
    refused = make(kind, refused_url(), max_retries=1)
    try:
        with pytest.raises(ComfyConnectionError) as info:
            await call(refused.submit(GRAPH))
        assert info.value._not_sent
    finally:
        await call(refused.close())


async def test_a_prompt_that_may_have_arrived_does_not_say_it_was_not_sent(
    client: Client, mock: respx.MockRouter
) -> None:
    def answer(_request: httpx.Request) -> httpx.Response:
        if post.call_count == 0:
            raise httpx.ReadError("reset after the request was sent")
        raise httpx.ConnectError("refused")

    post = mock.post("/prompt").mock(side_effect=answer)
    mock.get("/queue").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ComfyConnectionError) as info:
        await call(client.submit(GRAPH))
    assert post.call_count >= 2 and not info.value._not_sent


async def test_post_prompt_400_is_a_prompt_validation_error(
    client: Client, mock: respx.MockRouter
) -> None:
    body = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            "5": {
                "errors": [
                    {
                        "type": "value_smaller_than_min",
                        "message": "Value 0 smaller than min of 1",
                        "details": "steps",
                        "extra_info": {
                            "input_name": "steps",
                            "input_config": ["INT", {"default": 20, "min": 1, "max": 10000}],
                            "received_value": 0,
                        },
                    }
                ],
                "dependent_outputs": ["7"],
                "class_type": "KSampler",
            }
        },
    }
    route = mock.post("/prompt").mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(PromptValidationError) as info:
        await call(client.submit({"5": {"class_type": "KSampler", "inputs": {"steps": 0}}}))
    err = info.value
    assert route.call_count == 1
    assert err.status_code == 400
    assert err.error_type == "prompt_outputs_failed_validation"
    (problem,) = err.errors
    assert str(problem) == "node 5 (KSampler) input 'steps': value 0 smaller than min of 1"
    assert "node 5 (KSampler) input 'steps': value 0 smaller than min of 1" in str(err)
    assert str(err).startswith("Prompt outputs failed validation")
    assert (problem.input_name, problem.received_value) == ("steps", 0)
    assert err.node_errors == body["node_errors"]
    assert err.__cause__ is None and err.__suppress_context__
    # The failed submit leaves nothing tracked.
    assert dict(client._shared.stream.router.trackers) == {}


async def test_post_prompt_200_with_node_errors_is_a_partial_submit(
    client: Client, mock: respx.MockRouter
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        pid = json.loads(request.content)["prompt_id"]
        errors = {
            "3": {
                "errors": [
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": "images",
                        "extra_info": {"input_name": "images"},
                    }
                ],
                "dependent_outputs": ["3"],
                "class_type": "SaveImage",
            }
        }
        return httpx.Response(200, json={"prompt_id": pid, "number": 0, "node_errors": errors})

    mock.post("/prompt").mock(side_effect=answer)
    job = await call(client.submit(GRAPH))
    (problem,) = job.node_errors
    assert str(problem) == "node 3 (SaveImage) input 'images': required input is missing"


# -- connection refused ------------------------------------------------------------------


async def test_connection_refused_everywhere_is_a_comfy_connection_error(
    kind: str, tmp_path: Path
) -> None:
    c = make(kind, refused_url(), max_retries=1)
    try:
        for operation in (
            lambda: c.system_stats(),
            lambda: c.queue(),
            lambda: c.clear_queue(),
            lambda: c.history("p"),
            lambda: c.interrupt(),
            lambda: c.submit(GRAPH),
            lambda: c.download({"filename": "a.png"}),
            lambda: c.download({"filename": "a.png"}, tmp_path / "a.png"),
            lambda: c.upload_image(TINY_PNG, filename="a.png"),
        ):
            with pytest.raises(ComfyConnectionError) as info:
                await call(operation())
            assert isinstance(info.value.__cause__, httpx.ConnectError)
        assert not (tmp_path / "a.png").exists()
    finally:
        await call(c.close())


async def test_connection_refused_with_websocket_is_a_comfy_connection_error(kind: str) -> None:
    c = make(kind, refused_url(), max_retries=0, ws=True)
    try:
        with pytest.raises(ComfyConnectionError) as info:
            await call(c.submit(GRAPH))
        assert isinstance(info.value.__cause__, (httpx.TransportError, OSError))
        with pytest.raises(ComfyConnectionError):
            await call(c._shared.stream.ensure_connected(2.0))
    finally:
        await call(c.close())


async def test_closed_client_refuses_requests(kind: str, mock: respx.MockRouter) -> None:
    mock.get("/system_stats").mock(return_value=httpx.Response(200, json=STATS))
    c = make(kind)
    await call(c.close())
    await call(c.close())  # idempotent
    with pytest.raises(ComfyConnectionError):
        await call(c.system_stats())


async def test_refused_post_prompt_is_attempted_at_most_max_retries_plus_one(
    client: Client, mock: respx.MockRouter
) -> None:
    route = mock.post("/prompt").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ComfyConnectionError):
        await call(client.submit(GRAPH))
    assert route.call_count == client.max_retries + 1


# -- downloads ------------------------------------------------------------------------------


class _BrokenAsyncStream(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"\x89PNG first chunk"
        raise httpx.ReadError("peer closed mid-body")


class _BrokenSyncStream(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b"\x89PNG first chunk"
        raise httpx.ReadError("peer closed mid-body")


def broken_body(kind: str) -> httpx.Response:
    stream = _BrokenAsyncStream() if kind == "async" else _BrokenSyncStream()
    return httpx.Response(200, headers={"Content-Type": "image/png"}, stream=stream)


async def test_download_broken_mid_body_to_path(
    kind: str, client: Client, mock: respx.MockRouter, tmp_path: Path
) -> None:
    route = mock.get("/view").mock(side_effect=lambda _request: broken_body(kind))
    dest = tmp_path / "out.png"
    with pytest.raises(ComfyConnectionError) as info:
        await call(client.download({"filename": "out.png", "subfolder": "s"}, dest))
    assert isinstance(info.value.__cause__, httpx.ReadError)
    assert not dest.exists()
    assert route.call_count == 1
    assert dict(route.calls.last.request.url.params) == {
        "filename": "out.png",
        "subfolder": "s",
        "type": "output",
    }


async def test_download_broken_mid_body_keeps_an_existing_file(
    kind: str, client: Client, mock: respx.MockRouter, tmp_path: Path
) -> None:
    mock.get("/view").mock(side_effect=lambda _request: broken_body(kind))
    dest = tmp_path / "out.png"
    dest.write_bytes(b"previous")
    with pytest.raises(ComfyConnectionError):
        await call(client.download({"filename": "out.png"}, dest))
    assert dest.read_bytes() == b"previous"


async def test_download_broken_mid_body_leaves_no_part_file(
    kind: str, client: Client, mock: respx.MockRouter, tmp_path: Path
) -> None:
    mock.get("/view").mock(side_effect=lambda _request: broken_body(kind))
    with pytest.raises(ComfyConnectionError):
        await call(client.download({"filename": "out.png"}, tmp_path / "out.png"))
    assert list(tmp_path.iterdir()) == []


async def test_download_broken_mid_body_to_bytes_is_retried_then_wrapped(
    kind: str, client: Client, mock: respx.MockRouter
) -> None:
    route = mock.get("/view").mock(side_effect=lambda _request: broken_body(kind))
    with pytest.raises(ComfyConnectionError):
        await call(client.download({"filename": "out.png"}))
    assert route.call_count == 3


async def test_download_success_streams_into_the_destination(
    client: Client, mock: respx.MockRouter, tmp_path: Path
) -> None:
    mock.get("/view").mock(return_value=httpx.Response(200, content=b"\x89PNG whole"))
    dest = tmp_path / "ok.png"
    assert await call(client.download({"filename": "ok.png"}, dest)) == dest
    assert dest.read_bytes() == b"\x89PNG whole"
    assert list(tmp_path.iterdir()) == [dest]


async def test_download_404_is_not_found(
    client: Client, mock: respx.MockRouter, tmp_path: Path
) -> None:
    mock.get("/view").mock(return_value=httpx.Response(404, text="404: Not Found"))
    with pytest.raises(NotFoundError):
        await call(client.download({"filename": "missing.png"}, tmp_path / "m.png"))
    assert list(tmp_path.iterdir()) == []


# -- auth on HTTP and on the WebSocket handshake -------------------------------------------

BASIC = "Basic " + base64.b64encode(b"alice:s3cret").decode()
AUTH_CASES: list[tuple[Any, dict[str, str]]] = [
    (("alice", "s3cret"), {"authorization": BASIC}),
    ("tok-123", {"authorization": "Bearer tok-123"}),
    ({"X-API-Key": "k-9", "comfy-user": "bob"}, {"x-api-key": "k-9", "comfy-user": "bob"}),
]


@pytest.mark.parametrize(("auth", "expected"), AUTH_CASES)
async def test_auth_headers_on_http_requests(
    kind: str, mock: respx.MockRouter, auth: Any, expected: dict[str, str]
) -> None:
    stats = mock.get("/system_stats").mock(return_value=httpx.Response(200, json=STATS))
    post = mock.post("/interrupt").mock(return_value=httpx.Response(200))
    c = make(kind, auth=auth, headers={"X-Extra": "1"})
    try:
        await call(c.system_stats())
        await call(c.interrupt("p"))
        await call(c.with_options(timeout=5).system_stats())
    finally:
        await call(c.close())
    for request in [*(call_.request for call_ in stats.calls), post.calls.last.request]:
        for name, value in expected.items():
            assert request.headers[name] == value
        assert request.headers["x-extra"] == "1"
        assert request.headers["user-agent"].startswith("comfykit/")


STATUS_FRAME = {
    "type": "status",
    "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "x"},
}


@pytest.mark.parametrize(("auth", "expected"), AUTH_CASES)
async def test_auth_headers_on_the_websocket_handshake(
    kind: str, auth: Any, expected: dict[str, str]
) -> None:
    seen: list[dict[str, str]] = []
    received: list[str | bytes] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
        seen[-1]["path"] = ws.request.path
        await ws.send(json.dumps(STATUS_FRAME))
        async for message in ws:
            received.append(message)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        c = make(kind, f"http://127.0.0.1:{port}", auth=auth, ws=True, client_id="cid-1")
        stream = c._shared.stream
        try:
            if kind == "async":
                await call(stream.ensure_connected(5.0))
            else:
                await asyncio.to_thread(stream.ensure_connected, 5.0)
            assert stream.connected
            assert stream.router.sid == "x"
        finally:
            if kind == "async":
                await call(c.close())
            else:
                await asyncio.to_thread(c.close)
    (headers,) = seen
    for name, value in expected.items():
        assert headers[name] == value
    assert headers["user-agent"].startswith("comfykit/")
    assert headers["path"] == "/ws?clientId=cid-1"
    # The feature-flag handshake is the first (and only) message the client sends.
    assert [json.loads(m) for m in received] == [
        {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
    ]


async def test_close_ends_the_reader_s_reconnect_back_off_at_once(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server went away and the reader pauses before its next attempt: ``close()`` ends the
    pause instead of waiting it out (and leaving the reader behind after its join timeout)."""
    for twin in ("_async", "_sync"):
        monkeypatch.setattr(f"comfykit.{twin}._stream._RECONNECT_DELAYS", (0.0, 3600.0))

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps(STATUS_FRAME))
        await ws.recv()  # the feature flags
        await ws.close()  # then the server is gone (below)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        c = make(kind, f"http://127.0.0.1:{port}", ws=True)
        stream = c._shared.stream
        if kind == "async":
            await call(stream.ensure_connected(5.0))
        else:
            await asyncio.to_thread(stream.ensure_connected, 5.0)
        reader = stream._reader
        assert reader is not None
    # The listener is closed: the reader's first attempt is refused, the next is an hour away.
    for _ in range(500):
        if not stream.connected:
            break
        await asyncio.sleep(0.01)
    assert not stream.connected
    await asyncio.sleep(0.2)
    assert reader.alive  # pausing before its next attempt
    # Not the 5 s the close waits for the reader before giving up on it (cancelling a task;
    # leaving a thread behind).
    if kind == "async":
        await asyncio.wait_for(call(c.close()), 2.5)
    else:
        await asyncio.wait_for(asyncio.to_thread(c.close), 2.5)
    assert not reader.alive


async def test_a_job_polled_without_a_socket_is_caught_up_once_when_the_socket_returns(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WebSocket is refused (the HTTP side works), so a job submitted now is polled. When
    the socket opens again, its catch-up covers the job: ``/queue`` is asked once, not twice."""
    for twin in ("_async", "_sync"):
        monkeypatch.setattr(f"comfykit.{twin}._stream._RECONNECT_DELAYS", (0.0,))
    accepting = True
    pids: list[str] = []

    def gate(connection: ServerConnection, _request: Any) -> Any:
        return None if accepting else connection.respond(503, "no WebSocket now")

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps(STATUS_FRAME))
        await ws.recv()  # the feature flags
        for pid in pids:  # the job finishes on the reopened socket
            await ws.send(json.dumps({"type": "execution_success", "data": {"prompt_id": pid}}))
            await ws.send(
                json.dumps({"type": "executing", "data": {"node": None, "prompt_id": pid}})
            )
        await ws.wait_closed()

    async def run(fn: Any, *args: Any) -> Any:
        return await call(fn(*args)) if kind == "async" else await asyncio.to_thread(fn, *args)

    async with serve(handler, "127.0.0.1", 0, process_request=gate) as server:
        url = f"http://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
        with respx.mock(base_url=url, assert_all_called=False) as mock:
            mock.post("/prompt").mock(
                side_effect=lambda r: httpx.Response(
                    200,
                    json={"prompt_id": json.loads(r.content)["prompt_id"], "number": 0},
                )
            )
            queue = mock.get("/queue").mock(
                side_effect=lambda _r: httpx.Response(
                    200,
                    json={"queue_running": [[0, pids[0], GRAPH, {}, ["2"]]], "queue_pending": []},
                )
            )
            mock.get(path__regex=r"^/history/.+").mock(
                side_effect=lambda _r: httpx.Response(
                    200, json={pids[0]: {"prompt": [0, pids[0], GRAPH, {}, ["2"]], "outputs": {}}}
                )
            )
            c = make(kind, url, ws=True)
            stream = c._shared.stream
            try:
                assert await run(stream.ensure_connected, 5.0) is False  # a first socket
                assert await run(stream.ensure_connected, 5.0) is False  # open already
                accepting = False
                await run(stream.drop)  # the reader tries once more, is refused, and ends
                for _ in range(500):
                    if not stream.active:
                        break
                    await asyncio.sleep(0.01)
                assert not stream.active
                job = await run(c.submit, GRAPH)  # without a socket: polled
                pids.append(job.prompt_id)
                accepting = True
                assert await run(job.wait, 10.0) is JobStatus.SUCCEEDED
                assert stream.connects == 2
                assert queue.call_count == 1  # the reopened socket's catch-up, and only it
            finally:
                await run(c.close)


# -- URLs ------------------------------------------------------------------------------------


async def test_requests_go_to_base_url_with_its_path_prefix(kind: str) -> None:
    with respx.mock(assert_all_called=True) as router:
        stats = router.get("http://comfy.test:8188/comfy/system_stats").respond(json=STATS)
        history = router.get("http://comfy.test:8188/comfy/history/a%2Fb").respond(json={})
        c = make(kind, URL + "/comfy/")
        try:
            assert (await call(c.system_stats())).system.comfyui_version == "0.3.75"
            assert (await call(c.system_stats())).system.os == "posix"
            assert await call(c.history("a/b")) == {}
        finally:
            await call(c.close())
        assert stats.call_count == 2 and history.call_count == 1


async def system_stats_through(kind: str, http: httpx.AsyncClient | httpx.Client) -> int:
    """Call ``system_stats()`` on a client given ``http`` (closing both after); return how many
    requests reached ``URL``."""
    with respx.mock(assert_all_called=True) as router:
        route = router.get(f"{URL}/system_stats").respond(json=STATS)
        c = make(kind, http_client=http)
        try:
            await call(c.system_stats())
        finally:
            await call(c.close())
            if isinstance(http, httpx.AsyncClient):
                await http.aclose()
            else:
                http.close()
    return route.call_count


async def test_a_given_http_client_without_base_url_still_reaches_base_url(kind: str) -> None:
    http: httpx.AsyncClient | httpx.Client = (
        httpx.AsyncClient() if kind == "async" else httpx.Client()
    )
    assert await system_stats_through(kind, http) == 1


# -- what httpx's send() did for a client made here ------------------------------------------


async def test_cookies_the_server_sets_are_sent_back(kind: str, mock: respx.MockRouter) -> None:
    route = mock.get("/system_stats").mock(
        side_effect=[
            httpx.Response(200, json=STATS, headers={"Set-Cookie": "sticky=node-2; Path=/"}),
            httpx.Response(200, json=STATS),
        ]
    )
    c = make(kind)
    try:
        await call(c.system_stats())
        await call(c.system_stats())
    finally:
        await call(c.close())
    first, second = (call_.request for call_ in route.calls)
    assert "cookie" not in first.headers
    assert second.headers["cookie"] == "sticky=node-2"


async def test_a_status_error_carries_the_request_and_the_time_it_took(
    client: Client, mock: respx.MockRouter
) -> None:
    mock.get("/system_stats").respond(404, text="nope")
    with pytest.raises(NotFoundError) as info:
        await call(client.system_stats())
    response = info.value.response
    assert response is not None
    assert response.request.url == f"{URL}/system_stats"
    assert response.request.headers["user-agent"].startswith("comfykit/")
    assert response.elapsed.total_seconds() >= 0
    assert response.text == "nope"


async def test_a_given_http_client_keeps_its_event_hooks(kind: str) -> None:
    seen: list[str] = []

    def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async def async_hook(request: httpx.Request) -> None:
        hook(request)

    http: httpx.AsyncClient | httpx.Client = (
        httpx.AsyncClient(event_hooks={"request": [async_hook]})
        if kind == "async"
        else httpx.Client(event_hooks={"request": [hook]})
    )
    assert await system_stats_through(kind, http) == 1
    assert seen == ["/system_stats"]


async def test_an_http_proxy_from_the_environment_is_used(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``comfy.test`` does not resolve: only the proxy can answer, as httpx's send() had it."""
    listener = socket.create_server(("127.0.0.1", 0))
    lines: list[bytes] = []

    def proxy() -> None:
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            lines.append(head.split(b"\r\n", 1)[0])
            body = json.dumps(STATS).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
    c = make(kind)
    try:
        stats = await call(c.system_stats())
    finally:
        await call(c.close())
        listener.close()
    thread.join(5)
    assert stats.system.comfyui_version == "0.3.75"
    assert lines == [b"GET http://comfy.test:8188/system_stats HTTP/1.1"]
