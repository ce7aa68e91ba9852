"""The vendored Comfy API v2 contract (``tests/fixtures/comfy_api_v2/openapi.yaml``) as a checker
of the service's answers: the status is one the operation documents, the media type one it
declares, the body valid against the declared schema (OpenAPI 3.0 ``nullable`` and ``$ref``
turned into JSON Schema), and each SSE frame against its ``x-sse-events`` schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import schemathesis

__all__ = [
    "SPEC",
    "SPEC_PATH",
    "check",
    "check_event",
    "json_schema",
    "operation",
    "parse_sse",
    "schema_of",
    "validate",
]

SPEC_PATH = Path(__file__).parents[1] / "fixtures" / "comfy_api_v2" / "openapi.yaml"
SPEC: dict[str, Any] = schemathesis.openapi.from_path(str(SPEC_PATH)).raw_schema
_TEMPLATES = [
    (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path) for path in SPEC["paths"]
]


def _resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        section, kind, name = node["$ref"].lstrip("#/").split("/")
        node = SPEC[section][kind][name]
    return node


def json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema (refs inlined; ``nullable`` as a null alternative)."""
    node = _resolve(node)
    if isinstance(node, list):
        return [json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: json_schema(v)
        for k, v in node.items()
        if k not in ("nullable", "example", "examples", "description")
    }
    if isinstance(node.get("properties"), dict):
        out["properties"] = {k: json_schema(v) for k, v in node["properties"].items()}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def validate(instance: Any, schema: Any) -> None:
    """JSON Schema validation, formats (``date-time``, ``uri``) checked."""
    jsonschema_rs.validate(schema, instance, validate_formats=True)


def schema_of(name: str) -> dict[str, Any]:
    """A component schema as JSON Schema."""
    converted = json_schema({"$ref": f"#/components/schemas/{name}"})
    assert isinstance(converted, dict)
    return converted


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The spec's path template and operation of a request."""
    for pattern, template in _TEMPLATES:
        if pattern.match(path):
            ops = SPEC["paths"][template]
            if method.lower() in ops:
                return template, ops[method.lower()]
    raise AssertionError(f"{method} {path} is no operation of the contract")


def check(response: httpx.Response) -> httpx.Response:
    """Assert ``response`` is inside the contract; return it."""
    request = response.request
    template, op = operation(request.method, request.url.path)
    where = f"{request.method} {template} -> {response.status_code}: {response.text[:300]}"
    declared = op["responses"].get(str(response.status_code))
    assert declared is not None, f"undocumented status: {where}"
    declared = _resolve(declared)
    content = declared.get("content") or {}
    for header, spec in (declared.get("headers") or {}).items():
        value = response.headers.get(header)
        if value is not None and _resolve(spec).get("schema", {}).get("type") == "integer":
            assert value.isdigit(), f"{header} is not an integer: {where}"
    if not content or request.method == "HEAD":
        return response
    media = response.headers.get("content-type", "").split(";", 1)[0].strip()
    assert media in content, f"media type {media!r} not in {sorted(content)}: {where}"
    if media == "application/json":
        schema = json_schema(content[media]["schema"])
        validate(response.json(), schema)
        if response.status_code >= 400:
            body = response.json()["error"]
            assert body["code"] == body["code"].lower(), where
            assert body["request_id"] == response.headers["x-request-id"], where
    if media == "text/event-stream":
        for event in parse_sse(response.text):
            check_event(event["event"], event["data"])
    return response


def check_event(name: str, data: Any) -> None:
    """Assert one SSE frame's data is valid for its event (every event is in the catalog)."""
    catalog = SPEC["paths"]["/api/v2/jobs/{id}/events"]["get"]["x-sse-events"]
    assert name in catalog, f"event {name!r} is not in the contract"
    schema_name = catalog[name]["schema"].rsplit("/", 1)[1]
    validate(data, schema_of(schema_name))


def parse_sse(text: str) -> list[dict[str, Any]]:
    """The frames of an SSE body: ``event``, ``data`` (JSON) and ``id`` (``None``)."""
    frames = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")
        if "event" in fields:
            frames.append(
                {
                    "event": fields["event"],
                    "data": json.loads(fields["data"]),
                    "id": fields.get("id"),
                }
            )
    return frames
