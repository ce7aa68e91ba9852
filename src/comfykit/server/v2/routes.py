"""``/api/v2``: the Comfy API v2 routes (thin: parse, authorise, call a v2 service, shape the
answer). They answer errors in the v2 envelope (their route class) and are not in the service's
own OpenAPI document: their contract is Comfy's published one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile

from comfykit.server.auth import Policy, Principal
from comfykit.server.routers._common import base_path
from comfykit.server.v2.errors import v2_error
from comfykit.server.v2.models import FromHashBody, JobBody

if TYPE_CHECKING:
    from pydantic import BaseModel

    from comfykit.server.state import ServiceState

__all__ = ["build"]

_UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "content_type", "file_path"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CHUNK = 1 << 16
_FIELDS = ("content_type", "file_path", "expected_hash", "tags", "expires_in")

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def origin_of(request: Request) -> str:
    """Scheme, host and mount prefix: where the absolute URLs of assets start."""
    return f"{request.url.scheme}://{request.url.netloc}{base_path(request)}"


def _json(model: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json", exclude_none=False), status_code=status)


def _asset_json(model: BaseModel, status: int) -> JSONResponse:
    data = model.model_dump(mode="json")
    if data.get("created_new") is None:
        data.pop("created_new", None)
    return JSONResponse(data, status_code=status)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """The one range of a ``Range`` header (inclusive ends), ``None`` to send it all (no header,
    or one this route ignores: not ``bytes=``, several ranges), ``False`` when unsatisfiable."""
    if not header:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:
        length = int(last)
        if length == 0:
            return False
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        return False
    if end < start:
        return None
    return start, end


async def _send(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as fh:
        await fh.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = await fh.read(min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def build(state: ServiceState, route_class: type[APIRoute]) -> APIRouter:
    """The Comfy API v2 routes of one service."""
    router = APIRouter(tags=["comfy-api-v2"], route_class=route_class, include_in_schema=False)
    assets = state.assets
    v2 = state.v2
    limit = state.settings.max_upload_bytes
    user = Depends(state.auth.dependency(Policy.USER))
    # running an arbitrary workflow is an ad-hoc workflow: the same rule as POST /api/v1/jobs
    adhoc = Depends(state.auth.dependency(Policy.ADHOC))

    # -- assets -------------------------------------------------------------------------------
    @router.post("/api/v2/assets", openapi_extra=_UPLOAD, name="post_assets")
    async def post_assets(
        request: Request, idempotency_key: IdempotencyKey = None, who: Principal = user
    ) -> Response:
        """Multipart ``file``, ``content_type``, ``file_path``, optional ``expected_hash``,
        ``tags`` (repeated), ``expires_in``: 201 for bytes new to the service, 200 when they
        were there already (an asset is minted either way)."""
        ctype = request.headers.get("content-type", "")
        if ctype.split(";", 1)[0].strip().lower() != "multipart/form-data":
            raise v2_error(422, "invalid_request", "send the asset as multipart/form-data")
        if "boundary=" not in ctype.lower():
            raise v2_error(422, "invalid_request", "the multipart Content-Type has no boundary")
        values: dict[str, list[str]] = {}
        async with request.form(max_files=1, max_fields=64) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise v2_error(
                    422, "invalid_request", "file is required (a multipart file field)",
                    {"field": "file", "rule": "missing"},
                )  # fmt: skip
            for name in _FIELDS:
                texts = [v for v in form.getlist(name) if isinstance(v, str)]
                if texts:
                    values[name] = texts
            chunks = []
            size = 0
            while chunk := await file.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise v2_error(
                        413, "payload_too_large",
                        f"assets are limited to {limit} bytes (max_upload_bytes)",
                        {"limit": limit, "setting": "max_upload_bytes"},
                    )  # fmt: skip
                chunks.append(chunk)
        for name in ("content_type", "file_path"):
            if name not in values:
                raise v2_error(
                    422, "invalid_request", f"{name} is required",
                    {"field": name, "rule": "missing"},
                )  # fmt: skip
        expires_in = None
        if "expires_in" in values:
            text = values["expires_in"][0].strip()
            if not re.fullmatch(r"\d{1,7}", text) or not 60 <= int(text) <= 604800:
                raise v2_error(
                    422, "invalid_request", "expires_in must be an integer from 60 to 604800",
                    {"field": "expires_in", "rule": "range"},
                )  # fmt: skip
            expires_in = int(text)
        asset, blob, created = await assets.upload(
            b"".join(chunks), who, content_type=values["content_type"][0],
            file_path=values["file_path"][0],
            expected_hash=values["expected_hash"][0] if "expected_hash" in values else None,
            tags=values.get("tags", []), expires_in=expires_in, idempotency_key=idempotency_key,
        )  # fmt: skip
        view = assets.view(asset, blob, origin_of(request), created_new=created)
        return _asset_json(view, 201 if created else 200)

    @router.post("/api/v2/assets/from-hash", name="asset_from_hash")
    async def asset_from_hash(
        body: FromHashBody, request: Request, who: Principal = user
    ) -> Response:
        """Mint an asset over bytes the caller may use, by hash: 201 minted, 200 an identical
        record of the caller returned as it is, 404 ``blob_not_found``."""
        asset, blob, minted = await assets.from_hash(
            body.hash, who, file_path=body.file_path, tags=body.tags, expires_in=body.expires_in
        )
        view = assets.view(asset, blob, origin_of(request), created_new=False)
        return _asset_json(view, 201 if minted else 200)

    @router.head("/api/v2/assets/by-hash/{digest}", name="head_asset_by_hash")
    async def head_asset_by_hash(digest: str, who: Principal = user) -> Response:
        """200 when the caller may mint from the blob of this hash, 404 otherwise."""
        found = await assets.usable(digest, who)
        return Response(status_code=200 if found is not None else 404)

    @router.get("/api/v2/assets/{asset_id}", name="get_asset")
    async def get_asset(asset_id: str, request: Request, who: Principal = user) -> Response:
        """An asset with its content URL."""
        asset, blob = await assets.get(asset_id, who)
        return _asset_json(assets.view(asset, blob, origin_of(request)), 200)

    @router.delete("/api/v2/assets/{asset_id}", status_code=204, name="delete_asset")
    async def delete_asset(asset_id: str, who: Principal = user) -> Response:
        """Delete an asset record (204); its bytes stay while another asset uses them."""
        await assets.delete(asset_id, who)
        return Response(status_code=204)

    @router.get("/api/v2/assets/{asset_id}/content", name="get_asset_content")
    async def get_asset_content(asset_id: str, request: Request, who: Principal = user) -> Response:
        """The bytes (``application/octet-stream``: the asset's type is its ``content_type``),
        with ``Range`` (206, 416) and a strong ``ETag`` (its hash)."""
        path, asset, blob = await assets.content(asset_id, who)
        size = path.stat().st_size
        etag = f'"{blob.hash}"'
        name = (asset.file_path or asset.id).rsplit("/", 1)[-1]
        headers = {
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, max-age=3600",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name, safe='')}",
        }
        given = request.headers.get("if-none-match")
        if given and (etag in {t.strip().removeprefix("W/") for t in given.split(",")}):
            return Response(status_code=304, headers=headers)
        if_range = request.headers.get("if-range")
        wanted = _byte_range(request.headers.get("range"), size)
        if if_range is not None and if_range.strip() != etag:
            wanted = None
        if wanted is False:
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
            )
        start, end = wanted if isinstance(wanted, tuple) else (0, size - 1)
        status = 206 if isinstance(wanted, tuple) else 200
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(max(0, end - start + 1))
        return StreamingResponse(
            _send(path, start, end), status_code=status, headers=headers,
            media_type="application/octet-stream",
        )  # fmt: skip

    # -- jobs ---------------------------------------------------------------------------------
    @router.post("/api/v2/jobs", status_code=201, name="post_jobs")
    async def post_jobs(
        body: JobBody, request: Request, idempotency_key: IdempotencyKey = None,
        who: Principal = adhoc,
    ) -> Response:  # fmt: skip
        """Queue an API-format workflow (201); see :meth:`V2Jobs.submit`."""
        base = base_path(request)
        row = await v2.submit(body, who, idempotency_key=idempotency_key, base=base)
        return _json(await v2.view(row, origin_of(request), base), 201)

    @router.get("/api/v2/jobs/{job_id}", name="get_job")
    async def get_job(job_id: str, request: Request, who: Principal = user) -> Response:
        """The job object (status, queue position, progress, outputs, error, metrics, urls)."""
        row = await state.jobs.get(job_id, who)
        return _json(await v2.view(row, origin_of(request), base_path(request)))

    @router.get("/api/v2/jobs/{job_id}/workflow", name="get_job_workflow")
    async def get_job_workflow(job_id: str, who: Principal = user) -> Response:
        """The API-format graph behind the job (``format: api``)."""
        return _json(await v2.workflow(await state.jobs.get(job_id, who)))

    @router.get("/api/v2/jobs/{job_id}/events", name="get_job_events")
    async def get_job_events(job_id: str, request: Request, who: Principal = user) -> Response:
        """Server-Sent Events: ``status``, ``progress``, ``preview``, ``output``; the stream
        ends after the terminal ``status``."""
        await state.jobs.get(job_id, who)
        return StreamingResponse(
            v2.events(job_id, origin_of(request)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.post("/api/v2/jobs/{job_id}/cancel", name="cancel_job")
    async def cancel_job(job_id: str, request: Request, who: Principal = user) -> Response:
        """Ask for cancellation; the job (``canceling``, or its end state). Idempotent."""
        row = await v2.cancel(job_id, who)
        return _json(await v2.view(row, origin_of(request), base_path(request)))

    return router
