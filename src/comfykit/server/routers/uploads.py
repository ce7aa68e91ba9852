"""``/api/v1/uploads``: images and masks, checked by content and size-capped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile

from comfykit.server.auth import Policy, Principal
from comfykit.server.errors import ServiceError
from comfykit.server.routers._common import base_path, errors
from comfykit.server.schemas import UploadResponse

if TYPE_CHECKING:
    from comfykit.server.state import ServiceState

__all__ = ["build"]

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def build(state: ServiceState, route_class: type[APIRoute]) -> APIRouter:
    """The upload route of one service."""
    router = APIRouter(tags=["uploads"], route_class=route_class)
    limit = state.settings.max_upload_bytes
    user = Depends(state.auth.dependency(Policy.USER))

    @router.post(
        "/api/v1/uploads", status_code=201, response_model=UploadResponse,
        responses=errors(413, 415), openapi_extra=_BODY, summary="Upload an image or mask",
    )  # fmt: skip
    async def upload_image(
        request: Request, response: Response, who: Principal = user
    ) -> UploadResponse:
        """Multipart field ``file``: at most ``max_upload_bytes`` (413), decoded with Pillow
        (not judged by its name) under ``max_image_pixels`` (400), stored under a generated
        name; the client's file name is kept only as a cleaned display name. Returns its
        ``upload_id``."""
        ctype = request.headers.get("content-type", "")
        if ctype.split(";", 1)[0].strip().lower() != "multipart/form-data":
            raise ServiceError(415, "send the file as multipart/form-data in the field 'file'")
        if "boundary=" not in ctype.lower():
            raise ServiceError(400, "the multipart Content-Type has no boundary")
        # the route class counts the whole body (max_upload_bytes plus the form's overhead)
        async with request.form(max_files=1, max_fields=5) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise ServiceError(400, "file is required (a multipart file field)")
            chunks = []
            size = 0
            while chunk := await file.read(1 << 16):
                size += len(chunk)
                if size > limit:
                    raise ServiceError(
                        413, f"uploads are limited to {limit} bytes (max_upload_bytes)",
                        details={"limit": limit, "setting": "max_upload_bytes"},
                    )  # fmt: skip
                chunks.append(chunk)
            name = file.filename or ""
        row = await state.files.save_upload(b"".join(chunks), name, who.user)
        response.headers["Location"] = f"{base_path(request)}/api/v1/uploads/{row.id}"
        return UploadResponse(
            upload_id=row.id, filename=row.original_name, content_type=row.content_type,
            size=row.size, width=row.width, height=row.height, created_at=row.created_at,
        )  # fmt: skip

    @router.get("/api/v1/uploads/{upload_id}", response_model=UploadResponse, responses=errors(),
                summary="An upload's record")  # fmt: skip
    async def get_upload(upload_id: str, who: Principal = user) -> UploadResponse:
        """What was stored for an upload id (the caller's own; an admin's: any)."""
        row = await state.store.get_upload(upload_id)
        if row is None or not who.may_see(row.owner):
            raise ServiceError(404, f"no upload {upload_id}")
        return UploadResponse(
            upload_id=row.id, filename=row.original_name, content_type=row.content_type,
            size=row.size, width=row.width, height=row.height, created_at=row.created_at,
        )  # fmt: skip

    return router
