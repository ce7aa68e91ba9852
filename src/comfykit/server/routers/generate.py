"""``/api/v1/generate``: text to image, batches, a job's first image."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute

from comfykit.server.auth import Policy, Principal
from comfykit.server.errors import ServiceError
from comfykit.server.routers._common import (
    PreferHeader,
    base_path,
    created_job,
    errors,
    file_response,
)
from comfykit.server.schemas import BatchBody, BatchResponse, GenerateBody, JobResponse

if TYPE_CHECKING:
    from comfykit.server.state import ServiceState

__all__ = ["build"]


def build(state: ServiceState, route_class: type[APIRoute]) -> APIRouter:
    """The generation routes of one service."""
    router = APIRouter(tags=["generate"], route_class=route_class)
    jobs = state.jobs
    user = Depends(state.auth.dependency(Policy.USER))

    @router.post(
        "/api/v1/generate",
        status_code=201,
        response_model=JobResponse,
        responses=errors(415),
        summary="Queue a text-to-image job",
    )
    async def generate_image(
        body: GenerateBody,
        request: Request,
        response: Response,
        prefer: PreferHeader = None,
        who: Principal = user,
    ) -> JobResponse:
        """Queue a job (201 at once); with ``Prefer: wait=N`` wait up to N s for its end."""
        row = await jobs.create_generation(body, who, base=base_path(request))
        return await created_job(state, row, request, response, prefer, "/api/v1/generate/{id}")

    @router.post(
        "/api/v1/generate/batch",
        status_code=201,
        response_model=BatchResponse,
        responses=errors(415),
        summary="Queue several generation jobs as one batch",
    )
    async def generate_batch(
        body: BatchBody, request: Request, response: Response, who: Principal = user
    ) -> BatchResponse:
        """One job per request (or per seed / prompt of one request), under a batch id."""
        base = base_path(request)
        batch, _rows = await jobs.create_batch(body, who, base=base)
        response.headers["Location"] = f"{base}/api/v1/batches/{batch.id}"
        return await jobs.batch_view(batch.id, base, who)

    @router.get(
        "/api/v1/batches/{batch_id}", response_model=BatchResponse, responses=errors(),
        tags=["generate"], summary="A batch and its jobs",
    )  # fmt: skip
    async def get_batch(batch_id: str, request: Request, who: Principal = user) -> BatchResponse:
        """The batch's jobs and their counts by state."""
        return await jobs.batch_view(batch_id, base_path(request), who)

    @router.get(
        "/api/v1/generate/{job_id}", response_model=JobResponse, responses=errors(),
        summary="A generation job",
    )  # fmt: skip
    async def get_generation(job_id: str, request: Request, who: Principal = user) -> JobResponse:
        """The job (any job id works here)."""
        return await jobs.view(await jobs.get(job_id, who), base_path(request))

    @router.get(
        "/api/v1/generate/{job_id}/image",
        responses={
            **errors(),
            200: {"content": {"image/png": {}}, "description": "The image"},
            304: {"description": "Not modified (If-None-Match)"},
        },
        response_class=Response,
        summary="A job's image",
    )
    async def get_generation_image(
        job_id: str,
        request: Request,
        index: int = Query(default=0, ge=0, le=10_000),
        who: Principal = user,
    ) -> Response:
        """The job's ``index``-th image (default the first), with an ETag."""
        row = await jobs.get(job_id, who)
        images = [
            o for o in row.outputs or [] if str(o.get("content_type", "")).startswith("image/")
        ]
        if not images:
            raise ServiceError(404, f"job {job_id} has no image ({row.status})")
        if index >= len(images):
            raise ServiceError(404, f"job {job_id} has no image {index} (it has {len(images)})")
        path, record = state.files.output_path(row, int(images[index]["index"]))
        return file_response(request, path, record)

    return router
