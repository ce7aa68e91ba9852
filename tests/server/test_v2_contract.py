"""The Comfy API v2 contract against a real ``comfykit serve`` (auth required, a comfykit API key
as the bearer) on the real ComfyUI:

* schemathesis with the **vendored** spec (``tests/fixtures/comfy_api_v2/openapi.yaml``, not the
  service's own document): no server error, every response inside the contract, invalid input
  refused; the figures go to ``build/v2-schemathesis.md``;
* Comfy Org's official client (``comfy-sdk``) driving the service: upload an asset, run a
  workflow that loads it, stream its events, wait, download the output, cancel another job,
  resubmit under a used idempotency key. Every request the client made is recorded (and checked
  against the contract) in ``build/v2-operations.md``.
"""

from __future__ import annotations

import collections
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from comfykit import ComfyClient
from comfykit.testing import free_port
from tests import graphs
from tests.server.comfy_v2 import (
    SPEC,
    SPEC_PATH,
    check_event,
    json_schema,
    operation,
    parse_sse,
    validate,
)
from tests.server.conftest import Serve

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
BUILD = Path(__file__).parents[2] / "build"
#: What the schemathesis run sent: per operation, how many calls and which statuses.
CALLS: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, comfyui_url: str
) -> Iterator[tuple[Serve, str]]:
    """``comfykit serve`` with ``COMFYKIT_AUTH=required`` (ad-hoc workflows for the pro role)
    and a pro key made beforehand with ``comfykit keys create``."""
    tmp = tmp_path_factory.mktemp("v2-contract")
    data = str(tmp / "data")
    code = "import sys; from comfykit.cli import main; sys.exit(main(sys.argv[1:]))"
    made = subprocess.run(
        [sys.executable, "-c", code, "keys", "create", "--role", "pro", "--name", "sdk",
         "--data-dir", data],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    key = made.stdout.strip()
    env = {
        **os.environ, "COMFYKIT_AUTH": "required", "COMFYKIT_ADHOC_WORKFLOWS": "pro",
        "COMFYKIT_DISPATCH_CONCURRENCY": "1", "COMFYKIT_USER_MAX_QUEUED": "1000",
        "COMFYKIT_QUOTA_PRO": "100000",
    }  # fmt: skip
    env.pop("COMFYUI_URL", None)
    args = ["--comfyui-url", comfyui_url, "--port", str(free_port()), "--data-dir", data]
    serve = Serve(args, env, tmp / "serve.log")
    serve.start()
    try:
        yield serve, key
    finally:
        serve.stop()


# -- schemathesis with the vendored contract --------------------------------------------------

schema = schemathesis.openapi.from_path(str(SPEC_PATH))


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    """Writes what the schemathesis run sent to ``build/v2-schemathesis.md`` at the end."""
    yield
    if not CALLS:
        return
    lines = [
        "# schemathesis with the vendored Comfy API v2 contract",
        "",
        f"{len(CALLS)} operations, {sum(sum(c.values()) for c in CALLS.values())} requests; "
        "checks: " + ", ".join(c.__name__ for c in CHECKS),
        "",
        "| operation | requests | statuses |",
        "| --- | --- | --- |",
    ]
    for name, counts in sorted(CALLS.items()):
        shown = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
        lines.append(f"| {name} | {sum(counts.values())} | {shown} |")
    BUILD.mkdir(exist_ok=True)
    (BUILD / "v2-schemathesis.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def seeds(service: tuple[Serve, str]) -> dict[str, str]:
    """Real ids for the run: an asset, a finished job and its output asset."""
    serve, key = service
    with httpx.Client(
        base_url=serve.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        asset = http.post(
            "/api/v2/assets", files={"file": ("s.png", png((1, 2, 3)), "image/png")},
            data={"content_type": "image/png", "file_path": "seed.png"},
        ).json()  # fmt: skip
        job = http.post("/api/v2/jobs", json={"workflow": graphs.invert()}).json()
        for _ in range(600):
            job = http.get(f"/api/v2/jobs/{job['id']}").json()
            if job["status"] == "succeeded":
                break
            time.sleep(0.05)
    assert job["status"] == "succeeded", job
    return {
        "asset": asset["id"], "hash": asset["hash"], "job": job["id"],
        "output": job["outputs"][0]["id"],
    }  # fmt: skip


SEEDED: collections.Counter[str] = collections.Counter()


def seed(case: Any, seeds: dict[str, str]) -> None:
    """Every other positive case of an operation gets real ids and a real body part: the
    operation's success paths are exercised too, not only its refusals of unknown ids."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    label = case.operation.label
    SEEDED[label] += 1
    if SEEDED[label] % 2:
        return
    path = case.operation.path
    params = case.path_parameters if case.path_parameters is not None else {}
    if path == "/api/v2/assets/by-hash/{hash}":
        params["hash"] = seeds["hash"]
    elif path.startswith("/api/v2/assets/{id}"):
        params["id"] = seeds["output"] if case.method.upper() == "DELETE" else seeds["asset"]
    elif path.startswith("/api/v2/jobs/{id}"):
        params["id"] = seeds["job"]
    elif path == "/api/v2/assets/from-hash" and isinstance(case.body, dict):
        case.body["hash"] = seeds["hash"]
    elif path == "/api/v2/assets" and isinstance(case.body, dict):
        shade = SEEDED[label] % 256
        case.body.update(file=png((shade, 0, 255 - shade)), content_type="image/png")
        case.body.pop("expected_hash", None)
    elif path == "/api/v2/jobs" and isinstance(case.body, dict):
        case.body["workflow"] = graphs.invert(SEEDED[label])
    case.path_parameters = params


@schema.parametrize()
@hypothesis.settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_every_operation_keeps_the_contract(
    case: Any, service: tuple[Serve, str], seeds: dict[str, str]
) -> None:
    serve, key = service
    seed(case, seeds)
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
    if case.path.endswith("/events"):
        case.headers["Accept"] = "text/event-stream"
    response = case.call(base_url=serve.url, timeout=30)
    CALLS[case.operation.label][response.status_code] += 1
    checks = CHECKS
    if case.path.endswith("/events") and response.status_code == 200:
        # The contract (OpenAPI 3.0.3) declares the stream's body as `type: string` and each
        # event's payload under `x-sse-events`; schemathesis reads a text/event-stream schema
        # as the schema of every event (3.2's itemSchema), which no stream can satisfy here.
        # The frames are checked against the contract's own event catalog instead.
        checks = [c for c in CHECKS if c is not response_schema_conformance]
        text = response.content.decode("utf-8")
        assert "\nid:" not in text and not text.startswith("id:"), text[:200]
        frames = parse_sse(text)
        assert frames and frames[-1]["event"] == "status", text[:300]
        for frame in frames:
            check_event(frame["event"], frame["data"])
    case.validate_response(response, checks=checks)


# -- the official client ------------------------------------------------------------------------


class Recorder:
    """Every request the official client makes: checked against the contract and kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, str]] = []
        self.step = ""

    def __call__(self, response: httpx.Response) -> None:
        request = response.request
        template, op = operation(request.method, request.url.path)
        status = response.status_code
        assert str(status) in op["responses"], f"{request.method} {template}: {status}"
        media = response.headers.get("content-type", "").split(";", 1)[0]
        if media == "application/json" and request.method != "HEAD":
            response.read()
            declared = op["responses"][str(status)]
            while "$ref" in declared:
                declared = SPEC["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
            schema_ref = declared["content"]["application/json"]["schema"]
            validate(response.json(), json_schema(schema_ref))
        self.calls.append((op["operationId"], self.step, status, request.method))


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buf, "PNG")
    return buf.getvalue()


def test_the_official_client_drives_the_service(
    service: tuple[Serve, str], comfyui_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from comfy_sdk import Comfy, IdempotencyKeyReuse, NotFound, StatusChange, Unauthorized
    from comfy_sdk.events import OutputReady, Progress

    serve, key = service
    monkeypatch.setenv("COMFY_BASE_URL", serve.url)
    monkeypatch.delenv("COMFY_API_KEY", raising=False)
    record = Recorder()
    outcomes: dict[str, str] = {}
    with Comfy(api_key=key, timeout=60) as client:
        client._low._client.event_hooks["response"].append(record)

        # an asset: blake3 locally, HEAD by-hash (a miss), a multipart upload
        record.step = "assets.from_bytes(...).commit()"
        color = (30, 120, 220)
        asset = client.assets.from_bytes(png(color), filename="photo.png")
        asset_id = asset.commit()
        assert asset.created_new is True and asset.hash.startswith("blake3:")
        outcomes["upload"] = f"asset {asset_id} minted over new bytes ({asset.hash[:19]}...)"

        # a workflow loading it through core/ASSET, submitted under an idempotency key
        record.step = "submit(workflow with the asset, idempotency_key=K)"
        workflow = client.workflows.from_json(
            {
                "1": {"class_type": "LoadImage", "inputs": {}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["2", 0], "filename_prefix": "sdk"},
                },
            }  # fmt: skip
        )
        workflow.set_input("1", "image", asset)
        idem = f"sdk-{time.time_ns()}"
        job = client.submit(workflow, idempotency_key=idem)
        assert job.status in ("queued", "running")

        record.step = "job.events()"
        seen = list(job.events())
        kinds = [type(e).__name__ for e in seen]
        assert isinstance(seen[-1], StatusChange) and seen[-1].status == "succeeded", kinds
        assert any(isinstance(e, OutputReady) for e in seen), kinds
        assert all(0 <= e.value <= 1 for e in seen if isinstance(e, Progress))

        record.step = "job.wait() / job.result()"
        job.wait(timeout=60)
        job.result()
        [output] = job.get_outputs("3")
        assert output.type == "image" and output.job_id == job.id

        record.step = "output.to_bytes() / to_bytes(range=...) / get_download_url()"
        data = output.to_bytes()
        pixel = Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))
        graphs.assert_rgb_close(pixel, tuple(255 - c for c in color))  # type: ignore[arg-type]
        assert output.to_bytes(range=(0, 9)) == data[:10]
        url = output.get_download_url()
        assert url.url.endswith(f"/api/v2/assets/{output.id}/content") and url.expires_at is None
        outcomes["output"] = f"{len(data)} bytes, pixel {pixel} (the input inverted)"

        record.step = "job.get_workflow()"
        graph = job.get_workflow()
        assert (
            graph.format == "api" and graph.graph["1"]["inputs"]["image"]["info"]["id"] == asset_id
        )

        # the same bytes again: the dedup fast path (HEAD by-hash hit, then from-hash)
        record.step = "assets.from_bytes(same bytes, another name).commit()"
        again = client.assets.from_bytes(png(color), filename="again.png")
        again.commit()
        assert again.created_new is False and again.hash == asset.hash
        record.step = "assets.get(id)"
        assert client.assets.get(again.id or "").hash == asset.hash
        record.step = "asset.delete()"
        again.delete()
        with pytest.raises(NotFound):
            client.assets.get(asset_id + "0")

        # cancel a running job: canceled, and ComfyUI has stopped it
        record.step = "submit(TestSleep 30 s); job.refresh() until running"
        slow = client.submit(client.workflows.from_json(graphs.sleep(30)))
        deadline = time.monotonic() + 30
        while slow.refresh().status != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert slow.status == "running"
        record.step = "job.cancel()"
        slow.cancel()
        assert slow.status in ("canceling", "canceled")
        record.step = "job.wait() (canceled)"
        slow.wait(timeout=30)
        assert slow.status == "canceled"
        prompt_id = httpx.get(
            f"{serve.url}/api/v1/jobs/{slow.id}", headers={"Authorization": f"Bearer {key}"}
        ).json()["prompt_id"]
        with ComfyClient(comfyui_url) as comfy:
            assert prompt_id not in comfy.queue().prompt_ids
            entry = comfy.history(prompt_id)[prompt_id]
            messages = [m[0] for m in entry.status.messages] if entry.status else []
            assert "execution_interrupted" in messages, messages
        outcomes["cancel"] = "canceled; ComfyUI's history: execution_interrupted, not queued"
        record.step = "job.cancel() again (idempotent)"
        assert slow.cancel().status == "canceled"

        # the same idempotency key again: refused, never run twice
        record.step = "submit(same workflow, same idempotency_key=K)"
        with pytest.raises(IdempotencyKeyReuse) as reused:
            client.submit(workflow, idempotency_key=idem)
        assert reused.value.code == "idempotency_key_reuse" and reused.value.http_status == 422
        assert reused.value.request_id
        outcomes["reuse"] = "IdempotencyKeyReuse (422 idempotency_key_reuse)"

        record.step = "jobs.get(unknown id)"
        with pytest.raises(NotFound):
            client.jobs.get("no-such-job")
    with Comfy(api_key="ck_" + "x" * 43) as stranger:
        stranger._low._client.event_hooks["response"].append(record)
        record.step = "a client with a key the service does not know: jobs.get(id)"
        with pytest.raises(Unauthorized):
            stranger.jobs.get(job.id)

    used = {name for name, _, _, _ in record.calls}
    every = {op["operationId"] for ops in SPEC["paths"].values() for op in ops.values()}
    assert used == every, every - used
    _write_operations(record, outcomes)


def _write_operations(record: Recorder, outcomes: dict[str, str]) -> None:
    """The per-operation table of what the official client did (``build/v2-operations.md``)."""
    by_op: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for name, step, status, _ in record.calls:
        if (step, status) not in by_op[name]:
            by_op[name].append((step, status))
    lines = [
        "# Comfy API v2 operations as the official client (comfy-sdk 0.5.0) used them",
        "",
        "| operation | what the client did | HTTP statuses |",
        "| --- | --- | --- |",
    ]
    for ops in SPEC["paths"].values():
        for method, op in ops.items():
            name = op["operationId"]
            steps = "; ".join(dict.fromkeys(step for step, _ in by_op[name]))
            statuses = ", ".join(str(s) for s in sorted({s for _, s in by_op[name]}))
            lines.append(f"| `{method.upper()}` {name} | {steps} | {statuses} |")
    lines += ["", "Outcomes:", ""] + [f"- {k}: {v}" for k, v in outcomes.items()]
    lines += ["", f"{len(record.calls)} requests in all, each checked against the contract."]
    BUILD.mkdir(exist_ok=True)
    (BUILD / "v2-operations.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_sse_frames_of_the_contract_validate(service: tuple[Serve, str]) -> None:
    """The stream as a raw client sees it over a socket: frames arrive live, each valid."""
    serve, key = service
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=serve.url, headers=headers, timeout=60) as http:
        job = http.post("/api/v2/jobs", json={"workflow": graphs.sleep(2)}).json()
        started = time.monotonic()
        arrivals: list[tuple[float, str]] = []
        with http.stream("GET", job["urls"]["events"]) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            event = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    check_event(event, json.loads(line.removeprefix("data: ")))
                    arrivals.append((time.monotonic() - started, event))
                elif line.startswith("id:"):
                    raise AssertionError("the v2 stream carries no event ids")
    progress = [t for t, e in arrivals if e == "progress"]
    assert len(progress) >= 2, arrivals
    gaps = [b - a for a, b in zip(progress, progress[1:], strict=False)]
    assert min(gaps) >= 0.4, gaps  # throttled to about 2 a second
    assert arrivals[-1][1] == "status"
