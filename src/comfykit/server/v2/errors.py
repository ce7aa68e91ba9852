"""The Comfy API v2 error envelope: ``{"error": {"code", "message", "details", "request_id"}}``
with the contract's lower-case codes and statuses, for every failure of a ``/api/v2`` route.

Errors the v2 code raises carry their v2 code already (:func:`v2_error`); everything else (the
service's own errors, the framework's, the SDK's) goes through the service's one mapping
(:func:`~comfykit.server.errors.to_service_error`) and is translated here:

=============================  ==============================================================
service                        Comfy API v2
=============================  ==============================================================
400 (invalid input), 415       422 ``invalid_request`` (``details.errors``: field and rule)
401, 403, 404                  ``unauthorized``, ``forbidden``, ``not_found``
429 quota or queue cap         429 ``queue_full`` with ``Retry-After``
429 rate limit                 429 ``rate_limited`` (``queue_full`` on ``POST /api/v2/jobs``)
413                            413 ``payload_too_large``
500, 503, a bug                ``upstream_error`` with a generic message (details in the log)
=============================  ==============================================================

An operation whose contract declares no 422 answers invalid input with its own documented
error: ``POST /api/v2/assets/from-hash`` with 404 ``blob_not_found``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

from comfykit.server.errors import ServiceError, to_service_error
from comfykit.server.store import IdempotencyKeyReused
from comfykit.server.v2.models import ErrorBody, ErrorEnvelope

__all__ = ["OPERATION_INVALID", "v2_error", "v2_error_response"]

log = logging.getLogger("comfykit.server")

_BY_STATUS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
}
#: How an operation whose contract has no 422 answers invalid input (route name: status, code).
OPERATION_INVALID: dict[str, tuple[int, str]] = {"asset_from_hash": (404, "blob_not_found")}
_GENERIC = {
    500: "the service could not complete the request; the request id identifies it in its log",
    503: "a backend of the service (ComfyUI, the store) is unavailable; retry later",
}


def v2_error(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> ServiceError:
    """An error answered as is on the v2 routes (``code`` lower-case, from the contract)."""
    return ServiceError(
        status, message, code=code, details=dict(details) if details is not None else None,
        headers=headers,
    )  # fmt: skip


def _details(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    return {"errors": value}


def _translate(error: ServiceError, operation: str) -> ServiceError:
    """A service error (upper-case code) as the v2 envelope has it."""
    status, code = error.status_code, error.code
    headers = dict(error.headers)
    details = _details(error.details)
    if status in (400, 415, 422):
        if operation in OPERATION_INVALID:
            status, code = OPERATION_INVALID[operation]
            return v2_error(status, code, f"no blob to mint from: {error.message}", details)
        return v2_error(422, "invalid_request", error.message, details)
    if status == 429:
        headers.setdefault("Retry-After", "1")
        limited = code == "RATE_LIMITED" and operation != "post_jobs"
        new = "rate_limited" if limited else "queue_full"
        return v2_error(429, new, error.message, details, headers=headers)
    if status >= 500:
        log.warning("v2 %s answered %s: %s", operation, status, error.message)
        return v2_error(
            503 if status == 503 else 500, "upstream_error",
            _GENERIC[503 if status == 503 else 500], None, headers=headers,
        )  # fmt: skip
    new = _BY_STATUS.get(status, code.lower())
    return v2_error(status, new, error.message, details, headers=headers)


def v2_error_response(exc: BaseException, request_id: str | None, operation: str) -> JSONResponse:
    """The v2 envelope answer of any exception raised by the v2 route ``operation``. A bug is
    a 500 ``upstream_error`` whose body says nothing more; it goes to the log with the request
    id."""
    if isinstance(exc, IdempotencyKeyReused):
        exc = v2_error(
            422, "idempotency_key_reuse",
            "this Idempotency-Key was already used (keys are single-use for 24 hours); look "
            "for what the first request made instead of sending it again",
        )  # fmt: skip
    error = to_service_error(exc)
    if error is None:
        log.error(
            "unhandled error (request_id=%s)",
            request_id,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        error = ServiceError(500, "internal error")
    if not error.code.islower():
        error = _translate(error, operation)
    elif error.code == "invalid_request" and operation in OPERATION_INVALID:
        status, code = OPERATION_INVALID[operation]
        error = v2_error(status, code, f"no blob to mint from: {error.message}", error.details)
    body = ErrorEnvelope(
        error=ErrorBody(
            code=error.code,
            message=error.message,
            details=_details(error.details),
            request_id=request_id,
        )
    )
    headers = dict(error.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    return JSONResponse(body.model_dump(), status_code=error.status_code, headers=headers)
