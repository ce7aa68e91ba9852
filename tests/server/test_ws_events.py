"""A job's live events over a WebSocket (``/api/v1/jobs/{id}/ws``) from a real ``comfykit
serve`` and ComfyUI: the same events as the SSE stream, in order, closed after the terminal
one; resumable; refusals as close codes; credentials in a header or ``?access_token=``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests import graphs
from tests.server.conftest import Serve


def _ws(url: str, path: str) -> str:
    return url.replace("http://", "ws://", 1) + path


async def _messages(uri: str, **kwargs: Any) -> tuple[list[dict[str, Any]], int | None, str]:
    """Every message until the server closes: the messages, the close code and reason."""
    received: list[dict[str, Any]] = []
    async with connect(uri, open_timeout=10, **kwargs) as ws:
        try:
            while True:
                received.append(json.loads(await ws.recv()))
        except ConnectionClosed:
            pass
        return received, ws.close_code, ws.close_reason or ""


def _sse(url: str, job_id: str) -> list[tuple[int, str]]:
    """The job's events as the SSE stream gives them (id, event), once it has ended."""
    events: list[tuple[int, str]] = []
    with httpx.stream("GET", f"{url}/api/v1/jobs/{job_id}/events", timeout=30) as response:
        current: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(("id:", "event:")):
                key, _, value = line.partition(":")
                current[key] = value.strip()
            elif not line and "event" in current:
                events.append((int(current["id"]), current["event"]))
                current = {}
    return events


async def test_the_websocket_gives_a_jobs_events_in_order_and_resumes(
    serve_factory: Callable[..., Serve],
) -> None:
    serve = serve_factory()
    serve.start()
    created = httpx.post(
        f"{serve.url}/api/v1/jobs", json={"workflow": graphs.sleep(1.0)}, timeout=30
    ).json()
    job_id = created["job_id"]
    messages, code, _ = await _messages(_ws(serve.url, f"/api/v1/jobs/{job_id}/ws"))
    assert code == 1000
    names = [m["event"] for m in messages]
    assert names[0] == "queued" and names[-1] == "completed", names
    assert "started" in names and "progress" in names
    ids = [m["id"] for m in messages if m["id"] is not None]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert all(m["data"]["job_id"] == job_id for m in messages)
    # the same stored events as the SSE stream (previews are live only, in neither here)
    assert [(m["id"], m["event"]) for m in messages if m["id"] is not None] == _sse(
        serve.url, job_id
    )
    # resumed after the second event: the rest, then closed again
    after = ids[1]
    rest, code, _ = await _messages(
        _ws(serve.url, f"/api/v1/jobs/{job_id}/ws?last_event_id={after}")
    )
    assert code == 1000
    assert [m["id"] for m in rest] == [i for i in ids if i > after]


async def test_an_unknown_job_closes_the_socket_with_4404(
    serve_factory: Callable[..., Serve],
) -> None:
    serve = serve_factory()
    serve.start()
    messages, code, reason = await _messages(_ws(serve.url, "/api/v1/jobs/nope/ws"))
    assert (messages, code) == ([], 4404) and "no job nope" in reason


async def test_credentials_in_a_header_or_the_query(
    serve_factory: Callable[..., Serve], tmp_path: Path
) -> None:
    serve = serve_factory(COMFYKIT_AUTH="required")
    code = "import sys; from comfykit.cli import main; sys.exit(main(sys.argv[1:]))"
    made = subprocess.run(
        [sys.executable, "-c", code, "keys", "create", "--name", "ws", "--role", "admin",
         "--data-dir", str(tmp_path / "data")],
        env={k: v for k, v in os.environ.items() if k != "COMFYUI_URL"},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    key = made.stdout.strip()
    serve.start()
    job = httpx.post(
        f"{serve.url}/api/v1/jobs",
        json={"workflow": graphs.invert()},
        headers={"Authorization": f"Bearer {key}", "Prefer": "wait=60"},
        timeout=90,
    ).json()
    assert job["status"] == "completed", job
    path = f"/api/v1/jobs/{job['job_id']}/ws"
    for query, headers, expected in [
        ("", {}, 4401),
        ("?access_token=ck_not-a-real-key-at-all", {}, 4401),
        ("", {"X-API-Key": key}, 1000),
        (f"?access_token={key}", {}, 1000),
    ]:
        messages, close, reason = await _messages(
            _ws(serve.url, path + query), additional_headers=headers
        )
        assert close == expected, (query, headers, reason)
        if expected == 1000:
            assert [m["event"] for m in messages][-1] == "completed"
        else:
            assert messages == [] and reason
    assert key not in serve.log.read_text()  # the query's key is not logged


@pytest.mark.parametrize("bad", ["x", "-5"])
async def test_a_bad_last_event_id_starts_from_the_first_event(
    serve_factory: Callable[..., Serve], bad: str
) -> None:
    serve = serve_factory()
    serve.start()
    job = httpx.post(
        f"{serve.url}/api/v1/jobs",
        json={"workflow": graphs.invert()},
        headers={"Prefer": "wait=60"},
        timeout=90,
    ).json()
    messages, code, _ = await _messages(
        _ws(serve.url, f"/api/v1/jobs/{job['job_id']}/ws?last_event_id={bad}")
    )
    assert code == 1000 and messages[0]["event"] == "queued"
