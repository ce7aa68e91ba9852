"""A corpus of hostile requests against the service (on both stores): traversal names, bombs,
wrong types, huge numbers, unicode tricks, header injection, oversized bodies. Each gets its
documented status and the error envelope, no response carries a trace, a file system path or
a raw client header, and afterwards the service is healthy and still runs a job.

The table observed (case → status, code per store) is written to ``build/hostile-corpus.md``
and to the test's tmp dir."""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfykit.server import Settings
from tests import hostile_images as images
from tests.hostile_images import chunk

REPO = Path(__file__).resolve().parents[2]
BOUNDARY = "hostile-boundary-7c1f"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
JSON = {"Content-Type": "application/json"}
TINY = {"width": 64, "height": 64, "steps": 1}
#: What no response may hold (the storage dir is under the test's /tmp dir).
LEAKS = ("Traceback", "/root", "/tmp", "site-packages", 'File "')
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UPLOAD_NAME = re.compile(r"^[0-9a-f-]{36}\.(png|jpg|webp|gif|bmp|tiff)$")


def empty_image_graph(prefix: str = "hostile") -> dict[str, Any]:
    """A model-free job: EmptyImage -> SaveImage."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x336699},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def multipart(
    filename: bytes, data: bytes, *, name: bytes = b"file", extra_files: int = 0
) -> bytes:
    """A multipart body written byte by byte (so that any file name can be sent)."""
    part = (
        b"--" + BOUNDARY.encode() + b"\r\n"
        b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename + b'"\r\n'
        b"Content-Type: image/png\r\n\r\n" + data + b"\r\n"
    )
    return part * (1 + extra_files) + b"--" + BOUNDARY.encode() + b"--\r\n"


async def chunked(total: int, piece: int = 1 << 16) -> AsyncIterator[bytes]:
    """A body without Content-Length (Transfer-Encoding: chunked)."""
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        sent += size
        yield b" " * size


async def chunked_upload(size: int) -> AsyncIterator[bytes]:
    """A well-formed multipart upload of ``size`` bytes, sent without Content-Length."""
    head, _, tail = multipart(b"big.png", b"<data>").partition(b"<data>")
    yield head
    async for piece in chunked(size):
        yield piece
    yield tail


@dataclass
class Context:
    """What the cases refer to: a finished job, an upload, the storage dir."""

    http: httpx.AsyncClient
    storage: Path
    job: str = ""
    upload: str = ""
    created: list[str] = field(default_factory=list)


Check = Callable[[httpx.Response, Context], Awaitable[None]]
Body = Callable[[], bytes | AsyncIterator[bytes]]
NO_JSON = object()


@dataclass(frozen=True)
class Case:
    """One hostile request and what the service must answer."""

    id: str
    method: str
    path: str
    status: int
    code: str | None = None
    headers: Mapping[str, str | bytes] = field(default_factory=dict)
    json: Any = NO_JSON
    body: Body | None = None
    check: Check | None = None


# -- checks made on top of status, envelope and leaks ----------------------------------------


def upload_named(shown: str) -> Check:
    async def check(response: httpx.Response, ctx: Context) -> None:
        record = response.json()
        assert record["filename"] == shown, record
        stored = sorted(p.name for p in (ctx.storage / "uploads").iterdir())
        assert all(UPLOAD_NAME.match(n) for n in stored), stored
        assert f"{record['upload_id']}.png" in stored

    return check


def message_has(*parts: str) -> Check:
    async def check(response: httpx.Response, _ctx: Context) -> None:
        message = response.json()["error"]["message"]
        for part in parts:
            assert part in message, message

    return check


def field_named(name: str) -> Check:
    async def check(response: httpx.Response, _ctx: Context) -> None:
        details = response.json()["error"]["details"]
        assert any(d.get("field") == name for d in details), details

    return check


def request_id_replaced(given: bytes) -> Check:
    async def check(response: httpx.Response, _ctx: Context) -> None:
        rid = response.headers["x-request-id"]
        assert rid.encode() != given and REQUEST_ID.match(rid) and len(rid) == 32, rid
        assert response.json()["error"]["request_id"] == rid

    return check


def job_created(*, cancel: bool) -> Check:
    async def check(response: httpx.Response, ctx: Context) -> None:
        job = response.json()
        ctx.created.append(job["job_id"])
        assert "preference-applied" not in response.headers
        assert (
            response.headers["location"] == f"/api/v1/jobs/{job['job_id']}"
            or response.headers["location"] == f"/api/v1/generate/{job['job_id']}"
        )
        if cancel:
            await ctx.http.delete(f"/api/v1/jobs/{job['job_id']}")

    return check


async def streamed_events(response: httpx.Response, _ctx: Context) -> None:
    assert response.headers["content-type"].startswith("text/event-stream")
    assert b"event: completed" in response.content


async def an_image(response: httpx.Response, _ctx: Context) -> None:
    assert response.content.startswith(b"\x89PNG")


# -- the corpus ------------------------------------------------------------------------------

TRAVERSAL = "../../etc/passwd"
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n"
DEEP = 10_000

CASES: list[Case] = [
    # uploads: names (kept only as cleaned display names), bombs, damaged and foreign files
    Case("upload-name-posix-traversal", "POST", "/api/v1/uploads", 201, headers=MULTIPART,
         body=lambda: multipart(b"../../etc/passwd.png", images.png()),
         check=upload_named("passwd.png")),
    Case("upload-name-backslash-traversal", "POST", "/api/v1/uploads", 201, headers=MULTIPART,
         body=lambda: multipart(b"..\\..\\x.png", images.png()), check=upload_named("x.png")),
    Case("upload-name-absolute", "POST", "/api/v1/uploads", 201, headers=MULTIPART,
         body=lambda: multipart(b"/etc/x.png", images.png()), check=upload_named("x.png")),
    Case("upload-name-nul", "POST", "/api/v1/uploads", 201, headers=MULTIPART,
         body=lambda: multipart(b"evil\x00.sh.png", images.png()),
         check=upload_named("evil.sh.png")),
    Case("upload-name-bidi-override", "POST", "/api/v1/uploads", 201, headers=MULTIPART,
         body=lambda: multipart("invoice\u202egnp.exe.png".encode(), images.png()),
         check=upload_named("invoicegnp.exe.png")),
    Case("upload-name-1000-chars", "POST", "/api/v1/uploads", 201, headers=MULTIPART,
         body=lambda: multipart(b"n" * 1000 + b".png", images.png()),
         check=upload_named("n" * 116 + ".png")),
    Case("upload-name-5000-chars", "POST", "/api/v1/uploads", 400, "VALIDATION_ERROR",
         MULTIPART, body=lambda: multipart(b"n" * 5000 + b".png", images.png()),
         check=message_has("multipart")),
    Case("upload-decompression-bomb-100000x100000", "POST", "/api/v1/uploads", 400,
         "VALIDATION_ERROR", MULTIPART, body=lambda: multipart(b"bomb.png", images.header_bomb()),
         check=message_has("10000000000 pixels", "limit is 40000000 pixels")),
    Case("upload-pixel-flood-8000x8000", "POST", "/api/v1/uploads", 400, "VALIDATION_ERROR",
         MULTIPART, body=lambda: multipart(b"flood.png", images.pixel_flood()),
         check=message_has("8000x8000 = 64000000 pixels", "max_image_pixels")),
    Case("upload-png-ztxt-bomb", "POST", "/api/v1/uploads", 400, "VALIDATION_ERROR", MULTIPART,
         body=lambda: multipart(b"text.png", images.text_chunk_bomb()),
         check=message_has("text metadata is too large")),
    Case("upload-png-text-memory-bomb", "POST", "/api/v1/uploads", 400, "VALIDATION_ERROR",
         MULTIPART, body=lambda: multipart(b"texts.png", images.text_memory_bomb())),
    Case("upload-truncated-png", "POST", "/api/v1/uploads", 400, "VALIDATION_ERROR", MULTIPART,
         body=lambda: multipart(b"cut.png", images.truncated_png()),
         check=message_has("the image is damaged")),
    Case("upload-text-named-png", "POST", "/api/v1/uploads", 415, "UNSUPPORTED_MEDIA_TYPE",
         MULTIPART, body=lambda: multipart(b"evil.png", b"#!/bin/sh\nrm -rf /\n")),
    Case("upload-eps-named-png", "POST", "/api/v1/uploads", 415, "UNSUPPORTED_MEDIA_TYPE",
         MULTIPART, body=lambda: multipart(b"x.png", EPS)),
    Case("upload-without-file-field", "POST", "/api/v1/uploads", 400, "VALIDATION_ERROR",
         MULTIPART, body=lambda: multipart(b"a.png", images.png(), name=b"other")),
    Case("upload-two-files", "POST", "/api/v1/uploads", 400, "VALIDATION_ERROR", MULTIPART,
         body=lambda: multipart(b"a.png", images.png(), extra_files=1)),
    Case("upload-multipart-without-boundary", "POST", "/api/v1/uploads", 400, "VALIDATION_ERROR",
         {"Content-Type": "multipart/form-data"}, body=lambda: b"--x\r\n\r\n--x--"),
    Case("upload-malformed-multipart", "POST", "/api/v1/uploads", 400, "VALIDATION_ERROR",
         MULTIPART, body=lambda: b"garbage without any boundary\r\n" * 10),
    Case("upload-as-json", "POST", "/api/v1/uploads", 415, "UNSUPPORTED_MEDIA_TYPE", JSON,
         json={"file": base64.b64encode(images.png()).decode()}),
    Case("upload-over-cap-with-content-length", "POST", "/api/v1/uploads", 413,
         "PAYLOAD_TOO_LARGE", MULTIPART,
         body=lambda: multipart(b"big.png", images.png() + b"\0" * (21 * 1024 * 1024))),
    Case("upload-over-cap-chunked", "POST", "/api/v1/uploads", 413, "PAYLOAD_TOO_LARGE",
         MULTIPART, body=lambda: chunked_upload(21 * 1024 * 1024)),
    # bodies over max_body_bytes
    Case("body-2mb-with-content-length", "POST", "/api/v1/jobs", 413, "PAYLOAD_TOO_LARGE", JSON,
         body=lambda: b'{"workflow": {"1": "' + b"a" * (2 << 20) + b'"}}',
         check=message_has("larger than 1048576 bytes (max_body_bytes)")),
    Case("body-2mb-chunked", "POST", "/api/v1/generate", 413, "PAYLOAD_TOO_LARGE", JSON,
         body=lambda: chunked(2 << 20)),
    Case("body-content-length-not-a-number", "POST", "/api/v1/jobs", 400, "VALIDATION_ERROR",
         {**JSON, "Content-Length": "12abc"}, body=lambda: b'{"workflow":{}}'),
    # JSON that is too deep, too big, or not JSON at all
    Case("json-10000-nested-arrays", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR", JSON,
         body=lambda: b"[" * DEEP + b"]" * DEEP, check=message_has("max_json_depth")),
    Case("json-10000-nested-objects-in-workflow", "POST", "/api/v1/jobs", 400,
         "VALIDATION_ERROR", JSON,
         body=lambda: b'{"workflow":' + b'{"a":' * DEEP + b"1" + b"}" * (DEEP + 1),
         check=message_has("nested deeper than 64 levels")),
    Case("json-huge-array", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR", JSON,
         body=lambda: ("[" + ",".join(["1"] * 400_000) + "]").encode()),
    Case("json-nan", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR", JSON,
         body=lambda: b'{"prompt": "x", "cfg_scale": NaN}', check=message_has("NaN")),
    Case("json-infinity", "POST", "/api/v1/jobs", 400, "VALIDATION_ERROR", JSON,
         body=lambda: b'{"workflow": {"1": {"class_type": "EmptyImage", "inputs": {"width": '
                      b"-Infinity}}}}"),
    Case("json-1e400-overflows", "POST", "/api/v1/workflows", 400, "VALIDATION_ERROR", JSON,
         body=lambda: b'{"name": "x", "workflow": {}, "description": "", "parameters": {"a": '
                      b'{"node": "1", "input": "x", "default": 1e400}}}'),
    Case("json-invalid-utf8", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR", JSON,
         body=lambda: b'{"prompt": "caf\xe9 \xff"}', check=message_has("not valid UTF-8")),
    Case("json-utf16", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR", JSON,
         body=lambda: '{"prompt": "x"}'.encode("utf-16")),
    Case("json-5000-digit-integer", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR", JSON,
         body=lambda: b'{"prompt": "x", "seed": ' + b"9" * 5000 + b"}"),
    Case("json-duplicate-keys-last-wins", "POST", "/api/v1/jobs", 201, headers=JSON,
         body=lambda: b'{"workflow": 1, "workflow": ' + json.dumps(empty_image_graph()).encode()
                      + b"}",
         check=job_created(cancel=False)),
    # wrong types and huge numbers
    Case("prompt-as-list", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR",
         json={"prompt": ["a", "b"], **TINY}, check=field_named("prompt")),
    Case("width-as-string", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR",
         json={"prompt": "x", "width": "512"}, check=field_named("width")),
    Case("steps-1e308", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR",
         json={"prompt": "x", "steps": 1e308}, check=field_named("steps")),
    Case("seed-2-pow-80", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR",
         json={"prompt": "x", "seed": 2**80}, check=field_named("seed")),
    Case("batch-seeds-negative", "POST", "/api/v1/generate/batch", 400, "VALIDATION_ERROR",
         json={"request": {"prompt": "x"}, "seeds": [-1]}),
    Case("template-width-10-pow-30", "POST", "/api/v1/workflows/txt2img/execute", 400,
         "VALIDATION_ERROR", json={"parameters": {"prompt": "x", "width": 10**30}},
         check=message_has("parameters.width must be between")),
    Case("output-index-negative", "GET", "/api/v1/jobs/{job}/outputs/-1", 400,
         "VALIDATION_ERROR"),
    Case("output-index-absurd", "GET", "/api/v1/jobs/{job}/outputs/99999999999999999999999",
         400, "VALIDATION_ERROR"),
    Case("image-index-1e308", "GET", "/api/v1/generate/{job}/image?index=1e308", 400,
         "VALIDATION_ERROR"),
    Case("list-limit-huge", "GET", "/api/v1/jobs?limit=99999999999999999999", 400,
         "VALIDATION_ERROR"),
    # unicode in prompts: NUL and lone surrogates refused naming the field, bidi accepted
    Case("prompt-nul", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR",
         json={"prompt": "a\x00b", **TINY}, check=field_named("prompt")),
    Case("prompt-lone-surrogate", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR", JSON,
         body=lambda: b'{"prompt": "a\\ud800b", "width": 64, "height": 64, "steps": 1}',
         check=field_named("prompt")),
    Case("negative-prompt-nul-in-batch", "POST", "/api/v1/generate/batch", 400,
         "VALIDATION_ERROR", json={"requests": [{"prompt": "ok", "negative_prompt": "\x00"}]},
         check=field_named("requests[0].negative_prompt")),
    Case("prompt-too-long", "POST", "/api/v1/generate", 400, "VALIDATION_ERROR",
         json={"prompt": "x" * 5001, **TINY}, check=message_has("at most 5000 characters")),
    Case("workflow-key-with-nul", "POST", "/api/v1/jobs", 400, "VALIDATION_ERROR",
         json={"workflow": {"1\x00": {"class_type": "EmptyImage", "inputs": {}}}}),
    Case("prompt-rtl-override-accepted", "POST", "/api/v1/generate", 201,
         json={"prompt": "a cat \u202etac a\u202c", **TINY}, check=job_created(cancel=True)),
    # traversal through ids, upload ids and node ids
    Case("template-image-traversal", "POST", "/api/v1/workflows/upscale/execute", 400,
         "VALIDATION_ERROR", json={"parameters": {"image": TRAVERSAL}},
         check=message_has("must be an upload id")),
    Case("template-image-encoded-traversal", "POST", "/api/v1/workflows/upscale/execute", 400,
         "VALIDATION_ERROR", json={"parameters": {"image": "%2e%2e%2f%2e%2e%2fetc%2fpasswd"}}),
    Case("template-image-absolute", "POST", "/api/v1/workflows/img2img/execute", 400,
         "VALIDATION_ERROR", json={"parameters": {"prompt": "x", "image": "/etc/passwd"}}),
    Case("job-upload-id-traversal", "POST", "/api/v1/jobs", 400, "VALIDATION_ERROR",
         json={"upload_id": TRAVERSAL}),
    Case("save-node-id-traversal", "POST", "/api/v1/jobs", 400, "VALIDATION_ERROR",
         json={"workflow": {"1": empty_image_graph()["1"],
                            "../../../evil": empty_image_graph()["2"]}},
         check=message_has("node id '../../../evil'")),
    Case("job-id-encoded-traversal", "GET", "/api/v1/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 404,
         "NOT_FOUND"),
    Case("job-id-dotdot", "GET", "/api/v1/jobs/%2e%2e", 404, "NOT_FOUND"),
    Case("upload-id-backslash-traversal", "GET", "/api/v1/uploads/..%5c..%5cwin.ini", 404,
         "NOT_FOUND"),
    Case("output-index-traversal", "GET", "/api/v1/jobs/{job}/outputs/..%2f..%2fetc%2fpasswd",
         404, "NOT_FOUND"),
    Case("output-index-not-a-number", "GET", "/api/v1/jobs/{job}/outputs/%00", 400,
         "VALIDATION_ERROR"),
    Case("png-workflow-ztxt-bomb", "POST", "/api/v1/jobs", 400, "VALIDATION_ERROR",
         json={"png": base64.b64encode(
             images.PNG_SIGNATURE + chunk(b"zTXt", b"prompt\0\0" + zlib.compress(b"{" * (8 << 20)))
             + chunk(b"IEND", b"")).decode()},
         check=message_has("larger than 1048576 bytes")),
    # queries
    Case("cursor-not-ours", "GET", "/api/v1/jobs?cursor=c2VxOi0xOyBEUk9QIFRBQkxFIGpvYnM", 400,
         "VALIDATION_ERROR"),
    Case("cursor-too-long", "GET", "/api/v1/jobs?cursor=" + "A" * 5000, 400, "VALIDATION_ERROR"),
    Case("date-not-iso-8601", "GET", "/api/v1/jobs?created_after=yesterday", 400,
         "VALIDATION_ERROR"),
    Case("date-as-epoch-number", "GET", "/api/v1/jobs?created_before=1700000000", 400,
         "VALIDATION_ERROR"),
    Case("status-sql-injection", "GET", "/api/v1/jobs?status=queued'%20OR%201=1--", 400,
         "VALIDATION_ERROR"),
    # headers
    Case("request-id-crlf-injection", "GET", "/api/v1/jobs/nope", 404, "NOT_FOUND",
         {"X-Request-ID": b"abc\r\nSet-Cookie: session=evil"},
         check=request_id_replaced(b"abc\r\nSet-Cookie: session=evil")),
    Case("request-id-non-ascii", "GET", "/api/v1/jobs/nope", 404, "NOT_FOUND",
         {"X-Request-ID": "r\u00e9q-\u202e1".encode()},
         check=request_id_replaced("r\u00e9q-\u202e1".encode())),
    Case("request-id-8kb", "GET", "/api/v1/jobs/nope", 404, "NOT_FOUND",
         {"X-Request-ID": "r" * 8192}, check=request_id_replaced(b"r" * 8192)),
    Case("prefer-8kb-garbage", "POST", "/api/v1/jobs", 201,
         headers={"Prefer": "wait=" + "9" * 8192 + ";\x7f,;;=,wait=nan"},
         json={"workflow": empty_image_graph()}, check=job_created(cancel=False)),
    Case("last-event-id-garbage", "GET", "/api/v1/jobs/{job}/events", 200,
         headers={"Last-Event-ID": b"9" * 8192 + "\u0661".encode(),
                  "Accept": "text/event-stream"}, check=streamed_events),
    Case("if-none-match-8kb-garbage", "GET", "/api/v1/jobs/{job}/outputs/0", 200,
         headers={"If-None-Match": 'W/"' + "\x01" * 4 + "x" * 8192}, check=an_image),
    # media types, routes and methods
    Case("json-route-text-plain", "POST", "/api/v1/generate", 415, "UNSUPPORTED_MEDIA_TYPE",
         {"Content-Type": "text/plain"}, body=lambda: b'{"prompt": "x"}'),
    Case("json-route-form-urlencoded", "POST", "/api/v1/jobs", 415, "UNSUPPORTED_MEDIA_TYPE",
         {"Content-Type": "application/x-www-form-urlencoded"}, body=lambda: b"workflow=1"),
    Case("json-route-no-content-type", "POST", "/api/v1/workflows", 415,
         "UNSUPPORTED_MEDIA_TYPE", body=lambda: b'{"name": "x"}'),
    Case("unknown-route", "GET", "/api/v1/../../etc/passwd", 404, "NOT_FOUND"),
    # under /api/v2 (Comfy API v2) even an unknown route answers in the v2 envelope
    Case("unknown-route-deep", "GET", "/api/v2/" + "a/" * 500, 404, "not_found"),
    Case("wrong-method", "PATCH", "/api/v1/jobs", 405, "METHOD_NOT_ALLOWED"),
    Case("wrong-method-with-body", "PUT", "/api/v1/generate", 405, "METHOD_NOT_ALLOWED",
         json={"prompt": "x"}),
]  # fmt: skip

#: case id → store → (status, code), for the table written at the end.
OBSERVED: dict[str, dict[str, tuple[int, str]]] = {}
STORES = ("sqlite", "postgresql")


def _table() -> str:
    lines = [
        "# Hostile request corpus (tests/server/test_hostile.py)",
        "",
        "| # | case | expected | " + " | ".join(STORES) + " |",
        "|---|------|----------|" + "|".join("---" for _ in STORES) + "|",
    ]
    for number, case in enumerate(CASES, 1):
        seen = OBSERVED.get(case.id, {})
        cells = [
            " ".join(str(x) for x in seen[s] if x) if s in seen else "(not run)" for s in STORES
        ]
        expected = f"{case.status} {case.code or ''}".strip()
        lines.append(f"| {number} | {case.id} | {expected} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_table(tmp_path: Path) -> None:
    text = _table()
    (tmp_path / "hostile-corpus.md").write_text(text)
    build = REPO / "build"
    build.mkdir(exist_ok=True)
    (build / "hostile-corpus.md").write_text(text)


def assert_clean(response: httpx.Response, storage: Path) -> None:
    """No trace, no file system path, no raw client bytes in what the service answered."""
    text = response.content.decode("utf-8", "replace")
    for leak in (*LEAKS, str(storage), str(storage.resolve())):
        assert leak not in text, (leak, text[:500])
    for name, value in response.headers.items():
        assert "\r" not in value and "\n" not in value, (name, value)
    assert REQUEST_ID.match(response.headers["x-request-id"])


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["request_id"] == response.headers["x-request-id"], error


async def send(http: httpx.AsyncClient, case: Case, ctx: Context) -> httpx.Response:
    path = case.path.format(job=ctx.job, upload=ctx.upload)
    kwargs: dict[str, Any] = {"headers": dict(case.headers)}
    if case.json is not NO_JSON:
        kwargs["json"] = case.json
    elif case.body is not None:
        kwargs["content"] = case.body()
    request = http.build_request(case.method, path, **kwargs)
    if "Content-Length" in case.headers:
        request.headers["Content-Length"] = str(case.headers["Content-Length"])
    return await http.send(request)


@pytest.fixture
def settings(tmp_path: Path, comfyui_url: str, store_url: str) -> Settings:
    """The default limits (those the documentation gives), on each store."""
    from tests.server.conftest import make_settings

    return make_settings(tmp_path, comfyui_url, database_url=store_url)


async def test_the_hostile_corpus(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    assert len(CASES) >= 35 and len({c.id for c in CASES}) == len(CASES)
    store = "sqlite" if not settings.database_url.startswith("postgresql") else "postgresql"
    storage = settings.storage_path
    ctx = Context(client, storage)
    first = await client.post(
        "/api/v1/jobs", json={"workflow": empty_image_graph()}, headers={"Prefer": "wait=60"}
    )
    assert first.status_code == 201 and first.json()["status"] == "completed", first.text
    ctx.job = first.json()["job_id"]

    failures: list[str] = []
    for case in CASES:
        response = await send(client, case, ctx)
        code = ""
        if response.status_code >= 400:
            try:
                code = str(response.json()["error"]["code"])
            except (ValueError, KeyError, TypeError):
                code = "(no envelope)"
        OBSERVED.setdefault(case.id, {})[store] = (response.status_code, code)
        try:
            assert_clean(response, storage)
            if case.code is not None:
                assert_error(response, case.status, case.code)
            else:
                assert response.status_code == case.status, response.text[:500]
            if case.check is not None:
                await case.check(response, ctx)
        except AssertionError as err:
            failures.append(f"{case.id}: {err}")
    _write_table(tmp_path)
    assert not failures, "\n".join(failures)

    # the service is still healthy and still runs a job
    health = await client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "healthy", health.text
    job = await client.post(
        "/api/v1/jobs", json={"workflow": empty_image_graph("after")},
        headers={"Prefer": "wait=60"},
    )  # fmt: skip
    assert job.status_code == 201, job.text
    assert job.json()["status"] == "completed", job.json()
    image = await client.get(job.json()["images"][0]["url"])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    for job_id in ctx.created:
        final = (await client.get(f"/api/v1/jobs/{job_id}")).json()
        assert final["status"] in ("queued", "processing", "completed", "cancelled"), final


# -- beyond single requests ------------------------------------------------------------------


async def test_the_limits_hold_in_a_mounted_router(tmp_path: Path, comfyui_url: str) -> None:
    """The route class enforces the limits, so a host app's router gets them too (its own
    middleware and exception handlers are not involved)."""
    from asgi_lifespan import LifespanManager
    from fastapi import FastAPI

    from comfykit.server import create_router
    from tests.server.conftest import make_settings

    host = FastAPI()
    router = create_router(
        make_settings(tmp_path, comfyui_url, max_body_bytes=4096, max_json_depth=8)
    )
    host.include_router(router, prefix="/comfy")
    async with LifespanManager(host, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://h") as http:
            big = await http.post("/comfy/api/v1/jobs", content=b" " * 5000, headers=JSON)
            assert_error(big, 413, "PAYLOAD_TOO_LARGE")
            assert "4096 bytes (max_body_bytes)" in big.json()["error"]["message"]
            streamed = await http.post(
                "/comfy/api/v1/generate", content=chunked(5000), headers=JSON
            )
            assert_error(streamed, 413, "PAYLOAD_TOO_LARGE")
            deep = await http.post("/comfy/api/v1/generate", content=b"[" * 9 + b"]" * 9,
                                   headers=JSON)  # fmt: skip
            assert_error(deep, 400, "VALIDATION_ERROR")
            assert "nested deeper than 8 levels" in deep.json()["error"]["message"]
            plain = await http.post("/comfy/api/v1/generate", content=b"{}",
                                    headers={"Content-Type": "text/plain"})  # fmt: skip
            assert_error(plain, 415, "UNSUPPORTED_MEDIA_TYPE")
            # an upload is held to max_upload_bytes, not max_body_bytes
            upload = await http.post(
                "/comfy/api/v1/uploads", content=multipart(b"a.png", images.png((90, 90))),
                headers=MULTIPART,
            )  # fmt: skip
            assert upload.status_code == 201, upload.text
            assert upload.headers["location"].startswith("/comfy/api/v1/uploads/")


async def test_an_unsafe_output_name_from_comfyui_fails_the_job(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ComfyUI that reports an output named ``../../escape.png`` (or in an absolute
    subfolder): the job fails with UNSAFE_PATH and nothing is stored or downloaded."""
    from comfykit._async import results

    original = results._iter_file_refs

    def hostile(outputs: dict[str, dict[str, Any]]) -> Any:
        for node, key, ref in original(outputs):
            yield node, key, {**ref, "filename": "../../escape.png", "subfolder": "/etc"}

    monkeypatch.setattr(results, "_iter_file_refs", hostile)
    response = await client.post(
        "/api/v1/jobs", json={"workflow": empty_image_graph()}, headers={"Prefer": "wait=60"}
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "UNSAFE_PATH", job["error"]
    assert "cannot be stored" in job["error"]["message"], job["error"]
    assert job["images"] == []
    outputs = settings.storage_path / "outputs"
    assert not (outputs / job["job_id"]).exists()
    assert not (settings.storage_path.parent / "escape.png").exists()
    assert_clean(response, settings.storage_path)


async def test_outputs_symlinked_out_of_the_storage_dir_fail_the_job(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    """A storage dir tampered with (its outputs folder a symlink to elsewhere): nothing is
    written there, the job fails with STORAGE_ERROR, and no path is in the answer."""
    outside = tmp_path / "outside"
    outside.mkdir()
    outputs = settings.storage_path / "outputs"
    outputs.rmdir()
    outputs.symlink_to(outside, target_is_directory=True)
    response = await client.post(
        "/api/v1/jobs", json={"workflow": empty_image_graph()}, headers={"Prefer": "wait=60"}
    )
    job = response.json()
    assert job["status"] == "failed" and job["error"]["code"] == "STORAGE_ERROR", job
    assert "leads out of it" in job["error"]["message"]
    assert list(outside.iterdir()) == []
    assert_clean(response, settings.storage_path)
