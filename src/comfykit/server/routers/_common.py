"""What the routers share: the mount prefix, ``Prefer: wait``, stored-file responses."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import Header, Request, Response
from fastapi.responses import FileResponse

from comfykit.server.errors import ErrorEnvelope

if TYPE_CHECKING:
    from comfykit.server.schemas import JobResponse
    from comfykit.server.state import ServiceState
    from comfykit.server.store import JobRow

__all__ = [
    "BASE_KEY",
    "ERRORS",
    "REQUEST_ID_KEY",
    "PreferHeader",
    "base_path",
    "created_job",
    "file_response",
    "prefer_wait",
]

REQUEST_ID_KEY = "comfykit.request_id"
BASE_KEY = "comfykit.base"
#: What a path may keep unencoded (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

#: The error responses every route may give, for the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "Invalid request (VALIDATION_ERROR)"},
    404: {"model": ErrorEnvelope, "description": "Not found (NOT_FOUND)"},
    413: {
        "model": ErrorEnvelope,
        "description": "Request body over max_body_bytes (PAYLOAD_TOO_LARGE)",
    },
    500: {"model": ErrorEnvelope, "description": "Internal error (INTERNAL_ERROR)"},
    503: {"model": ErrorEnvelope, "description": "ComfyUI unreachable (COMFYUI_UNAVAILABLE)"},
    # Every other client error is the same envelope (this also keeps FastAPI from documenting
    # its 422, which the service never answers: invalid input is a 400).
    "4XX": {"model": ErrorEnvelope, "description": "Other client errors (405, 413, 415, ...)"},
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The envelope responses of ``codes`` plus the common ones."""
    extra = {
        409: "Conflict (CONFLICT)",
        413: "Payload too large (PAYLOAD_TOO_LARGE)",
        415: "Unsupported media type (UNSUPPORTED_MEDIA_TYPE)",
    }
    out = dict(ERRORS)
    for code in codes:
        out[code] = {"model": ErrorEnvelope, "description": extra.get(code, "Error")}
    return out


def base_path(request: Request) -> str:
    """The path prefix the service is mounted under (``""`` standalone), percent-encoded:
    it goes into ``Location`` headers and URLs, never as raw client bytes."""
    return quote(str(request.scope.get(BASE_KEY, "")), safe=_PATH_SAFE)


def prefer_wait(header: str | None, limit: float) -> float | None:
    """The ``wait=N`` preference of a ``Prefer`` header (RFC 7240), capped at ``limit``."""
    if not header:
        return None
    for item in header.split(","):
        token = item.split(";", 1)[0].strip()
        name, _, value = token.partition("=")
        if name.strip().lower() == "wait":
            text = value.strip().strip('"')
            if len(text) > 32:
                return None
            try:
                seconds = float(text)
            except ValueError:
                return None
            if not math.isfinite(seconds) or seconds < 0:
                return None
            return min(seconds, limit)
    return None


#: The ``Prefer`` request header of the routes that create a job.
PreferHeader = Annotated[
    str | None,
    Header(description="RFC 7240: `wait=N` waits up to N seconds for the job to end"),
]


def _prefer_value(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


async def created_job(
    state: ServiceState,
    row: JobRow,
    request: Request,
    response: Response,
    prefer: str | None,
    path: str,
) -> JobResponse:
    """The answer of every route that creates a job: ``Prefer: wait=N`` honoured (and echoed
    in ``Preference-Applied``), ``Location`` at ``path`` (``{id}`` is the job id)."""
    wait = prefer_wait(prefer, state.settings.max_wait_seconds)
    if wait is not None:
        row = await state.jobs.wait(row.id, wait)
        response.headers["Preference-Applied"] = f"wait={_prefer_value(wait)}"
    base = base_path(request)
    response.headers["Location"] = base + path.format(id=row.id)
    return await state.jobs.view(row, base)


def file_response(request: Request, path: Path, record: dict[str, Any]) -> Response:
    """A stored file, streamed, with its ETag; 304 when ``If-None-Match`` matches."""
    etag = f'"{record.get("etag", "")}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    given = request.headers.get("if-none-match")
    if given:
        tags = [t.strip().removeprefix("W/") for t in given.split(",")]
        if "*" in tags or etag in tags:
            return Response(status_code=304, headers=headers)
    return FileResponse(
        path, media_type=str(record.get("content_type") or "application/octet-stream"),
        headers=headers,
    )  # fmt: skip
