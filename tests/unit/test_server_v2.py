"""The pure pieces of the Comfy API v2 routes: the status mapping, progress snapshots, output
kinds, ``Range`` parsing, ``core/ASSET`` discovery, hashes, and the error translation."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from comfykit.server.errors import ServiceError
from comfykit.server.store import IdempotencyKeyRow, JobRow, utcnow
from comfykit.server.v2.assets import find_asset_refs, parse_hash
from comfykit.server.v2.errors import v2_error_response
from comfykit.server.v2.jobs import output_type, progress_from, status_of
from comfykit.server.v2.routes import _byte_range

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 1, 31, 12, tzinfo=dt.timezone.utc)


def row(status: str, **values: Any) -> JobRow:
    defaults: dict[str, Any] = {
        "id": "j", "prompt_id": "p", "kind": "workflow", "status": status, "workflow": {},
        "uploads": {}, "meta": {}, "outputs": [], "cancel_requested": False,
        "created_at": NOW - dt.timedelta(hours=1), "completed_at": None,
    }  # fmt: skip
    return JobRow(**{**defaults, **values})


@pytest.mark.parametrize(
    ("status", "values", "expected"),
    [
        ("queued", {}, "queued"),
        ("queued", {"cancel_requested": True}, "canceling"),
        ("processing", {}, "running"),
        ("processing", {"cancel_requested": True}, "canceling"),
        ("completed", {"completed_at": NOW, "outputs": [{"index": 0}]}, "succeeded"),
        ("failed", {"completed_at": NOW - dt.timedelta(days=9)}, "failed"),
        ("cancelled", {"completed_at": NOW}, "canceled"),
        # retention removed the outputs: expired; nothing removed (no files): succeeded
        ("completed", {"completed_at": NOW - dt.timedelta(days=2), "outputs": [{"index": 0}]},
         "expired"),
        ("completed", {"completed_at": NOW - dt.timedelta(days=2)}, "succeeded"),
    ],
)  # fmt: skip
def test_status_mapping(status: str, values: dict[str, Any], expected: str) -> None:
    assert status_of(row(status, **values), 1, NOW) == expected
    if expected == "expired":
        assert status_of(row(status, **values), None, NOW) == "succeeded"  # no retention


def test_progress_snapshots() -> None:
    node = progress_from(
        "node", {"node": "2", "class_type": "KSampler", "nodes_done": 1, "nodes_total": 4}, 9
    )
    assert node.model_dump() == {
        "value": 0.25, "nodes_done": 1, "nodes_total": 4, "current_node": "2",
        "current_node_class": "KSampler", "step": None, "steps": None, "message": "KSampler",
    }  # fmt: skip
    step = progress_from(
        "progress",
        {"node": "2", "class_type": "KSampler", "nodes_done": 1, "nodes_total": 4,
         "value": 10, "max": 20},
        9,
    )  # fmt: skip
    assert step.value == pytest.approx(1.5 / 4) and step.message == "KSampler 10/20"
    old = progress_from("progress", {"node": "5", "value": 3, "max": 3}, 2)  # a v1-era event
    assert old.nodes_total == 2 and old.value == 0.5 and old.message == "node 5 3/3"
    assert progress_from("progress", {"value": 5, "max": 0}, 0).value == 0


def test_output_kinds() -> None:
    assert output_type("image/png", "a.png") == "image"
    assert output_type("video/mp4", "a.mp4") == "video"
    assert output_type("audio/flac", "a.flac") == "audio"
    assert output_type("text/plain", "a.txt") == "text"
    assert output_type("application/octet-stream", "a.latent") == "latent"
    assert output_type("application/octet-stream", "a.bin") == "file"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None), ("bytes=0-9", (0, 9)), ("bytes=5-", (5, 99)), ("bytes=-10", (90, 99)),
        ("bytes=90-200", (90, 99)), ("bytes=100-", False), ("bytes=-0", False),
        ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=9-2", None), ("bytes=-", None),
    ],
)  # fmt: skip
def test_byte_ranges(header: str | None, expected: object) -> None:
    assert _byte_range(header, 100) == expected


def test_asset_references_anywhere_in_a_graph() -> None:
    ref = {"__type": "core/ASSET", "info": {"id": "a1"}}
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": ref}},
        "2": {"class_type": "X", "inputs": {"list": [1, {"deep": ref}]}},
        "3": {"class_type": "Y", "inputs": {"image": {"__type": "core/ASSET"}}},
    }
    found = [(r.node_id, r.input, r.asset_id) for r in find_asset_refs(graph)]
    assert sorted(found, key=str) == sorted(
        [("1", "image", "a1"), ("2", None, "a1"), ("3", "image", None)], key=str
    )


def test_hashes() -> None:
    digest = "ab" * 32
    assert parse_hash(f"blake3:{digest}") == digest
    assert parse_hash(f"BLAKE3:{digest.upper()}") == digest
    for bad in ("", digest, "blake3:", "blake3:xyz", f"sha256:{digest}", f"blake3:{digest}00"):
        assert parse_hash(bad) is None


def body(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(bytes(response.body))
    return data


def test_error_translation() -> None:
    quota = ServiceError(429, "quota", code="QUOTA_EXCEEDED", headers={"Retry-After": "60"})
    answer = v2_error_response(quota, "rid", "post_jobs")
    assert answer.status_code == 429 and answer.headers["retry-after"] == "60"
    assert body(answer)["error"] == {
        "code": "queue_full", "message": "quota", "details": None, "request_id": "rid",
    }  # fmt: skip
    limited = ServiceError(429, "slow down", code="RATE_LIMITED")
    assert body(v2_error_response(limited, "r", "get_job"))["error"]["code"] == "rate_limited"
    assert body(v2_error_response(limited, "r", "post_jobs"))["error"]["code"] == "queue_full"
    assert v2_error_response(limited, "r", "get_job").headers["retry-after"] == "1"
    invalid = ServiceError(400, "bad", details=[{"field": "x"}])
    answer = v2_error_response(invalid, "r", "post_jobs")
    assert answer.status_code == 422
    assert body(answer)["error"]["details"] == {"errors": [{"field": "x"}]}
    answer = v2_error_response(invalid, "r", "asset_from_hash")
    assert answer.status_code == 404 and body(answer)["error"]["code"] == "blob_not_found"
    bug = v2_error_response(RuntimeError("/secret/path leaked"), "r", "get_job")
    assert bug.status_code == 500 and body(bug)["error"]["code"] == "upstream_error"
    assert "secret" not in bytes(bug.body).decode()
    down = v2_error_response(ServiceError(503, "ComfyUI at http://u:p@h is down"), "r", "x")
    assert down.status_code == 503 and "u:p" not in bytes(down.body).decode()
    for status, code in ((401, "unauthorized"), (403, "forbidden"), (404, "not_found")):
        assert body(v2_error_response(ServiceError(status, "m"), "r", "x"))["error"]["code"] == code


def test_key_rows_are_per_owner_scope_and_key() -> None:
    keys = [c.name for c in IdempotencyKeyRow.__table__.columns if c.primary_key]
    assert keys == ["owner", "scope", "key"]
    assert utcnow().tzinfo is not None
