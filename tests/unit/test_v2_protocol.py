"""The sans-I/O half of the SDK's Comfy API v2 backend: the SSE parser, the job's events as the
tracker's, assets in graphs and results, the error envelope as comfykit's errors."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from comfykit import (
    APIStatusError,
    ExecutionError,
    InputError,
    JobInterrupted,
    JobLost,
    PromptValidationError,
    UnsupportedOperationError,
)
from comfykit._protocol.events import Executed, Executing, PreviewImage, Progress
from comfykit._protocol.tracker import JobStatus, JobTracker
from comfykit._protocol.v2 import (
    SSEParser,
    V2Feed,
    asset_id_of,
    check_api,
    is_v2_answer,
    output_refs,
    submit_error,
    unsupported_route,
    with_assets,
)
from comfykit._types import FileRef

pytestmark = pytest.mark.unit

OUTPUT = {
    "node_id": "9", "name": "sub/out_00001_.png", "type": "image", "content_type": "image/png",
    "size_bytes": 10, "id": "a-1", "hash": "blake3:00", "url": "http://h/api/v2/assets/a-1/content",
    "url_expires_at": "9999-12-31T23:59:59Z",
}  # fmt: skip


def test_sse_parser_across_chunks_comments_and_crlf() -> None:
    parser = SSEParser()
    stream = (
        b': keepalive\n\nevent: status\r\ndata: {"status":"running"}\r\n\r\n'
        b"event: log\ndata: one\ndata: two\n\ndata: {}\n\nevent: empty\n\n"
    )
    frames = [frame for i in range(len(stream)) for frame in parser.feed(stream[i : i + 1])]
    assert frames == [("status", {"status": "running"}), ("log", "one\ntwo"), ("message", {})]
    assert parser.feed(b"event: status\ndata: {") == []  # incomplete: kept for the next chunk
    assert parser.feed(b'"status":"queued"}\n\n') == [("status", {"status": "queued"})]


def test_api_argument_and_detection_answers() -> None:
    assert [check_api(a) for a in ("comfyui", "v2", "auto")] == ["comfyui", "v2", "auto"]
    for bad in ("V2", "cloud", None):
        with pytest.raises(InputError, match="api must be one of 'comfyui', 'v2', 'auto'"):
            check_api(bad)
    envelope = {"error": {"code": "not_found", "message": "no job"}}
    assert is_v2_answer(404, envelope) and is_v2_answer(401, None) and is_v2_answer(403, "x")
    assert not is_v2_answer(404, None) and not is_v2_answer(404, {"detail": "Not Found"})
    assert not is_v2_answer(200, {"error": "x"})
    error = unsupported_route("GET", "/history/abc")
    assert isinstance(error, UnsupportedOperationError) and error.backend == "v2"
    assert str(error).startswith("the history (history(), ") and "api='v2'" in str(error)
    assert unsupported_route("GET", "/queue_stats").operation == "GET /queue_stats"


def test_assets_in_graphs_and_results() -> None:
    graph: dict[str, Any] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "asset/a-7/photo.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "photo.png", "upload": "image"}},
        "3": {"class_type": "X", "inputs": {"text": "asset/a/b/c.png", "n": 3}},
    }
    out = with_assets(graph)
    assert out["1"]["inputs"]["image"] == {
        "__type": "core/ASSET", "info": {"id": "a-7", "file_path": "photo.png"}
    }  # fmt: skip
    assert out["2"] is graph["2"] and out["3"] is graph["3"]
    assert graph["1"]["inputs"]["image"] == "asset/a-7/photo.png"  # the caller's graph is kept

    refs = output_refs([OUTPUT, {"id": "t", "node_id": "4", "name": "x.txt", "type": "text"}, 5])
    image = refs["9"]["images"][0]
    assert image["filename"] == "out_00001_.png" and image["subfolder"] == "sub"
    assert image["type"] == "output" and image["asset_id"] == "a-1"
    assert refs["4"]["files"][0]["filename"] == "x.txt"
    ref = FileRef.model_validate(image)
    assert asset_id_of(ref) == "a-1" and asset_id_of(image) == "a-1"
    assert asset_id_of("asset/a-7/photo.png") == "a-7"
    assert asset_id_of("photo.png") is None and asset_id_of(FileRef(filename="x.png")) is None


def _feed() -> tuple[JobTracker, V2Feed]:
    tracker = JobTracker("job-1")
    return tracker, V2Feed(tracker)


def test_a_succeeded_job_as_comfyui_events() -> None:
    tracker, feed = _feed()
    feed.event("status", {"status": "queued", "queue_position": 2})
    assert feed.queue_position == 2 and tracker.status.value == "queued"
    snapshot = {"value": 0.5, "nodes_done": 1, "nodes_total": 3, "current_node": "2",
                "current_node_class": "KSampler", "step": 1, "steps": 4}  # fmt: skip
    feed.event("progress", snapshot)
    feed.event("progress", snapshot)  # a reconnect's snapshot again: nothing new
    feed.event("preview", {"node_id": "2", "content_type": "image/jpeg",
                           "data_base64": base64.b64encode(b"jpg").decode()})  # fmt: skip
    feed.event("preview", {"node_id": "2", "content_type": "image/jpeg", "data_base64": "%%"})
    feed.event("output", OUTPUT)
    assert tracker.status.value == "running" and tracker.history is None  # not done
    feed.event("status", {"status": "succeeded", "outputs": [OUTPUT]})
    kinds = [e.type for e in tracker.events]
    assert kinds == ["execution_start", "executing", "progress", "preview", "executed",
                     "execution_success", "executing"]  # fmt: skip
    executing = tracker.events[1]
    assert isinstance(executing, Executing) and executing.node == "2"
    progress = tracker.events[2]
    assert isinstance(progress, Progress) and (progress.value, progress.max) == (1, 4)
    preview = tracker.events[3]
    assert isinstance(preview, PreviewImage) and preview.image == b"jpg"
    assert isinstance(tracker.events[4], Executed)
    assert tracker.done and tracker.status is JobStatus.SUCCEEDED
    assert tracker.outputs["9"]["images"][0]["asset_id"] == "a-1"
    tracker.raise_for_status()
    feed.event("status", {"status": "failed"})  # after the end: ignored
    assert tracker.status is JobStatus.SUCCEEDED


def test_failed_canceled_and_expired_jobs_raise_the_job_errors() -> None:
    tracker, feed = _feed()
    error = {"code": "node_execution_error", "message": "boom", "node_id": "2",
             "class_type": "TestSyncError"}  # fmt: skip
    feed.job({"status": "failed", "error": error, "outputs": [], "progress": None})
    with pytest.raises(ExecutionError) as failed:
        tracker.raise_for_status()
    assert (failed.value.node_id, failed.value.node_type) == ("2", "TestSyncError")
    assert (
        failed.value.exception_type == "node_execution_error" and failed.value.prompt_id == "job-1"
    )

    tracker, feed = _feed()
    feed.job({"status": "running", "progress": {"value": 0, "nodes_done": 0, "nodes_total": 2,
                                                "current_node": "1"}, "outputs": []})  # fmt: skip
    feed.job({"status": "canceled", "outputs": []})
    with pytest.raises(JobInterrupted) as interrupted:
        tracker.raise_for_status()
    assert interrupted.value.node_id == "1" and tracker.status is JobStatus.INTERRUPTED

    tracker, feed = _feed()
    feed.job({"status": "expired", "outputs": []})
    with pytest.raises(JobLost, match="expired"):
        tracker.raise_for_status()


def _refused(body: Any, status: int = 422) -> APIStatusError:
    response = httpx.Response(status, json=body, request=httpx.Request("POST", "http://h/"))
    return APIStatusError("refused", status_code=status, body=body, response=response)


def test_refused_submissions_as_typed_errors() -> None:
    graph = {"2": {"class_type": "ImageInvert", "inputs": {}}, "1": {"class_type": "LoadImage"}}
    invalid = submit_error(
        _refused({"error": {"code": "invalid_workflow", "message": "bad graph", "details": {
            "node_errors": {"2": [{"field": "image", "reason": "required_input_missing",
                                   "message": "image is required"}]}}}}), graph,
    )  # fmt: skip
    assert isinstance(invalid, PromptValidationError) and invalid.error_type == "invalid_workflow"
    [problem] = invalid.errors
    assert (problem.node_id, problem.class_type, problem.input_name) == (
        "2",
        "ImageInvert",
        "image",
    )
    assert "node 2 (ImageInvert) input 'image'" in str(invalid)
    missing = submit_error(
        _refused({"error": {"code": "missing_asset", "message": "gone", "details": {
            "missing": [{"node_id": "1", "input": "image", "asset_id": "a", "reason": "not_found"}]
        }}}), graph,
    )  # fmt: skip
    assert isinstance(missing, PromptValidationError)
    assert [(p.node_id, p.class_type, p.input_name) for p in missing.errors] == [
        ("1", "LoadImage", "image")
    ]
    reused = submit_error(
        _refused({"error": {"code": "idempotency_key_reuse", "message": "x"}}), {}
    )
    assert type(reused) is APIStatusError and "submitted before" in str(reused)
    other = _refused({"error": {"code": "queue_full", "message": "full"}}, 429)
    assert submit_error(other, {}) is other
