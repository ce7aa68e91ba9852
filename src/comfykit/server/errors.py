"""The one error envelope, and the one place SDK and framework errors are mapped onto it.

Every error response is ``{"error": {"code", "message", "details", "request_id"}}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from comfykit import (
    ComfyConnectionError,
    InputError,
    PromptValidationError,
    WorkflowError,
)
from comfykit.generation import GenerationRequest
from comfykit.server.paths import UnsafePathError, scrub_paths
from comfykit.server.redact import redact

__all__ = [
    "BodyError",
    "ErrorBody",
    "ErrorEnvelope",
    "ServiceError",
    "error_response",
    "field_path",
    "to_service_error",
    "validation_message",
]

log = logging.getLogger("comfykit.server")

_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "INTERNAL_ERROR",
    503: "COMFYUI_UNAVAILABLE",
}


class ErrorBody(BaseModel):
    """What went wrong: a stable ``code``, a message for people, structured ``details``."""

    code: str
    message: str
    details: Any = None
    request_id: str | None = None


class ErrorEnvelope(BaseModel):
    """Every error response's body."""

    error: ErrorBody


class ServiceError(Exception):
    """An error the service answers with: HTTP status, code, message and details."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code or _CODES.get(status_code, f"HTTP_{status_code}")
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


class BodyError(StarletteHTTPException):
    """A request body refused while it is received or parsed (413, 400, 415).

    It is an HTTP exception so that FastAPI's own body parsing lets it through unchanged
    (any other exception there becomes a bare "error parsing the body"); it is answered in
    the envelope like a :class:`ServiceError`.
    """

    def __init__(self, status_code: int, message: str, *, details: Any = None) -> None:
        super().__init__(status_code, message)
        self.message = message
        self.details = details


def _bounds_of(model: type[BaseModel]) -> dict[str, tuple[Any, Any]]:
    bounds: dict[str, tuple[Any, Any]] = {}
    for name, field in model.model_fields.items():
        lo = hi = None
        for item in field.metadata:
            lo = getattr(item, "ge", lo)
            hi = getattr(item, "le", hi)
        if lo is not None or hi is not None:
            bounds[name] = (lo, hi)
    return bounds


_BOUNDS = _bounds_of(GenerationRequest)


def field_path(loc: Sequence[Any]) -> str:
    """A location as people write it: ``requests[0].prompt`` (``body`` for the whole)."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "body"


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _one(err: Mapping[str, Any]) -> str:
    loc = err.get("loc", ())
    where = field_path(loc)
    field = str(loc[-1]) if loc else ""
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        lo, hi = _BOUNDS.get(field, (None, None))
        if lo is not None and hi is not None:
            return f"{where} must be between {_fmt(lo)} and {_fmt(hi)}"
        if "ge" in ctx:
            return f"{where} must be at least {_fmt(ctx['ge'])}"
        if "le" in ctx:
            return f"{where} must be at most {_fmt(ctx['le'])}"
        if "gt" in ctx:
            return f"{where} must be greater than {_fmt(ctx['gt'])}"
        if "lt" in ctx:
            return f"{where} must be less than {_fmt(ctx['lt'])}"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return f"{where} must not be empty"
        return f"{where} must be at least {ctx.get('min_length')} characters long"
    if kind == "string_too_long":
        return f"{where} must be at most {ctx.get('max_length')} characters long"
    if kind == "missing":
        return f"{where} is required"
    if kind == "extra_forbidden":
        return f"{where} is not a known field"
    if kind == "json_invalid":
        return f"the body is not valid JSON: {ctx.get('error', err.get('msg'))}"
    msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
    if msg[:1].isupper() and not msg[:2].isupper():
        msg = msg[0].lower() + msg[1:]
    return f"{where}: {msg}" if not msg.startswith("must") else f"{where} {msg}"


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """One message naming each field and its rule, and the details list."""
    lines = [_one(e) for e in errors]
    details = []
    for e, line in zip(errors, lines, strict=True):
        loc = tuple(e.get("loc", ()))
        item: dict[str, Any] = {"field": field_path(loc), "rule": str(e.get("type", ""))}
        if item["rule"] == "json_invalid":
            # pydantic puts the character offset where a field name would be
            item["field"] = "body"
            if loc and isinstance(loc[-1], int):
                item["position"] = loc[-1]
        item["message"] = line
        details.append(item)
    return "; ".join(lines) or "invalid request", details


def _problems(problems: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for p in problems:
        out.append(
            {
                "node_id": getattr(p, "node_id", None),
                "class_type": getattr(p, "class_type", None),
                "input": getattr(p, "input_name", None),
                "message": scrub_paths(str(p)),
            }
        )
    return out


def to_service_error(exc: BaseException) -> ServiceError | None:
    """The envelope for a known error (SDK, framework or our own); ``None`` for a bug."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, BodyError):
        return ServiceError(exc.status_code, exc.message, details=exc.details)
    if isinstance(exc, RequestValidationError):
        message, details = validation_message(list(exc.errors()))
        return ServiceError(400, message, details=details)
    if isinstance(exc, ValidationError):
        message, details = validation_message(list(exc.errors()))
        return ServiceError(400, message, details=details)
    if isinstance(exc, WorkflowError):
        return ServiceError(400, scrub_paths(str(exc)), details=_problems(exc.problems))
    if isinstance(exc, PromptValidationError):
        return ServiceError(400, scrub_paths(str(exc)), details=_problems(exc.errors))
    if isinstance(exc, InputError):
        return ServiceError(400, scrub_paths(str(exc)))
    if isinstance(exc, UnsafePathError):
        return ServiceError(400, str(exc), details=[{"field": exc.what, "rule": "unsafe_path"}])
    if isinstance(exc, MultiPartException):
        return ServiceError(400, f"the multipart body is malformed: {exc.message}")
    if isinstance(exc, ComfyConnectionError):
        return ServiceError(503, f"ComfyUI is unreachable: {redact(scrub_paths(str(exc)))}")
    if isinstance(exc, StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such route"
        if exc.status_code == 405:
            detail = "method not allowed on this route"
        return ServiceError(exc.status_code, detail, headers=exc.headers)
    return None


def error_response(exc: BaseException, request_id: str | None) -> JSONResponse:
    """The envelope response for any exception. A bug becomes a 500 whose body says only
    that (no trace, path or message); the exception goes to the log with the request id."""
    error = to_service_error(exc)
    if error is None:
        log.error(
            "unhandled error (request_id=%s)",
            request_id,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        error = ServiceError(500, "internal error; the request id identifies it in the log")
    body = ErrorEnvelope(
        error=ErrorBody(
            code=error.code, message=error.message, details=error.details, request_id=request_id
        )
    )
    headers = dict(error.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    return JSONResponse(body.model_dump(), status_code=error.status_code, headers=headers)
