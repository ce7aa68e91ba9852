"""The OpenAPI document: complete (every route, request and error schema, examples), and a
schemathesis run against it on a real ``comfykit serve`` process: no server error, every
response inside the documented schemas, invalid input refused with a 4xx.

The run has a ComfyUI of its own (jobs the generated requests queue may be large; the server
is stopped with the module)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from comfykit.server import create_app
from comfykit.testing import ComfyUIServer, free_port
from tests.server.conftest import Serve, api_routes, make_settings

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, comfyui_server: ComfyUIServer | None
) -> Iterator[Serve]:
    """``comfykit serve`` on its own ComfyUI (the session's harness decides whether one can
    start: it skips locally and fails under CI when it cannot)."""
    if comfyui_server is None:
        pytest.skip("needs the harness (the run gets a ComfyUI of its own)")
    tmp = tmp_path_factory.mktemp("schemathesis")
    with ComfyUIServer(env=comfyui_server.env) as comfyui:
        env = {**os.environ, "COMFYKIT_DISPATCH_CONCURRENCY": "1"}
        env.pop("COMFYUI_URL", None)
        args = [
            "--comfyui-url", comfyui.url, "--port", str(free_port()),
            "--data-dir", str(tmp / "data"),
        ]  # fmt: skip
        serve = Serve(args, env, tmp / "serve.log")
        serve.start()
        try:
            yield serve
        finally:
            serve.stop()


@pytest.fixture(scope="module")
def service_with_auth(
    tmp_path_factory: pytest.TempPathFactory, comfyui_server: ComfyUIServer | None
) -> Iterator[tuple[Serve, str]]:
    """``comfykit serve`` with ``COMFYKIT_AUTH=required`` and an admin key made beforehand
    with ``comfykit keys create`` (on its own ComfyUI, like :func:`service`)."""
    if comfyui_server is None:
        pytest.skip("needs the harness (the run gets a ComfyUI of its own)")
    tmp = tmp_path_factory.mktemp("schemathesis-auth")
    data = str(tmp / "data")
    code = "import sys; from comfykit.cli import main; sys.exit(main(sys.argv[1:]))"
    made = subprocess.run(
        [sys.executable, "-c", code, "keys", "create", "--role", "admin", "--name", "st",
         "--data-dir", data],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    key = made.stdout.strip()
    with ComfyUIServer(env=comfyui_server.env) as comfyui:
        env = {**os.environ, "COMFYKIT_DISPATCH_CONCURRENCY": "1", "COMFYKIT_AUTH": "required"}
        env.pop("COMFYUI_URL", None)
        args = ["--comfyui-url", comfyui.url, "--port", str(free_port()), "--data-dir", data]
        serve = Serve(args, env, tmp / "serve.log")
        serve.start()
        try:
            yield serve, key
        finally:
            serve.stop()


def _document(data_dir: Path) -> dict[str, Any]:
    """The app's OpenAPI document (it does not depend on ComfyUI being up)."""
    app = create_app(make_settings(data_dir, "http://127.0.0.1:9"))
    return app.openapi()


DOCUMENT = _document(Path(tempfile.mkdtemp(prefix="comfykit-openapi-")))
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_served_document_is_the_one_tested(service: Serve) -> None:
    served = httpx.get(f"{service.url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == DOCUMENT


@schema.parametrize()
@hypothesis.settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_every_operation_keeps_its_contract(case: Any, service: Serve) -> None:
    if case.path.endswith("/events"):
        # a stream ends with its job; a generated id is unknown (404) or the call is bounded
        case.headers = {**(case.headers or {}), "Accept": "text/event-stream"}
    case.call_and_validate(base_url=service.url, checks=CHECKS, timeout=30)


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_every_operation_keeps_its_contract_with_auth(
    case: Any, service_with_auth: tuple[Serve, str]
) -> None:
    serve, key = service_with_auth
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
    if case.path.endswith("/events"):
        case.headers["Accept"] = "text/event-stream"
    case.call_and_validate(base_url=serve.url, checks=CHECKS, timeout=30)
    # and without credentials every route but the public ones is a documented 401
    if case.path not in ("/health", "/ready"):
        case.headers = {k: v for k, v in case.headers.items() if k != "Authorization"}
        response = case.call(base_url=serve.url, timeout=30)
        assert response.status_code in (400, 401, 404, 405, 413, 415), response.text
        if response.status_code == 401:
            assert response.json()["error"]["code"] == "UNAUTHORIZED"


# -- completeness of the document ------------------------------------------------------------


def test_every_route_is_documented_with_its_errors(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, "http://127.0.0.1:9"))
    doc = app.openapi()
    routes = {
        (method.lower(), route.path)
        for route in api_routes(app.routes)
        if route.include_in_schema
        for method in route.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert len(routes) >= 20, routes
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary") and op.get("description"), where
            responses = op["responses"]
            for code in ("400", "500"):
                schema_ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
                assert schema_ref.endswith("/ErrorEnvelope"), where
            assert "422" not in responses, f"{where} documents FastAPI's 422"
            if "{" in path:
                assert "404" in responses, where
            body = op.get("requestBody")
            if body is not None:
                content = body["content"]
                media = content.get("application/json") or content.get("multipart/form-data")
                assert media is not None, where
                ref = media["schema"].get("$ref", "")
                if ref:
                    component = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
                    assert component.get("examples") or component.get("example"), (where, ref)


def test_the_document_is_served_and_valid_json(tmp_path: Path) -> None:
    doc = _document(tmp_path)
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] and doc["info"]["version"]
    json.dumps(doc)  # serialisable as served
