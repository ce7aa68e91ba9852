"""``/api/v1/workflows``: workflow templates (CRUD) and running them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute

from comfykit.server.auth import Policy, Principal
from comfykit.server.routers._common import PreferHeader, base_path, created_job, errors
from comfykit.server.schemas import (
    ExecuteBody,
    JobResponse,
    TemplateBody,
    TemplateList,
    TemplateResponse,
)

if TYPE_CHECKING:
    from comfykit.server.state import ServiceState

__all__ = ["build"]


def build(state: ServiceState, route_class: type[APIRoute]) -> APIRouter:
    """The template routes of one service."""
    router = APIRouter(tags=["workflows"], route_class=route_class)
    templates = state.templates
    user = Depends(state.auth.dependency(Policy.USER))
    admin = [Depends(state.auth.dependency(Policy.ADMIN))]

    @router.get("/api/v1/workflows", response_model=TemplateList, responses=errors(),
                dependencies=[user], summary="List workflow templates")  # fmt: skip
    async def list_workflows() -> TemplateList:
        """Built-in templates (txt2img, img2img, inpaint, upscale), then stored ones."""
        return TemplateList(workflows=await templates.list())

    @router.post("/api/v1/workflows", status_code=201, response_model=TemplateResponse,
                 responses=errors(415), dependencies=admin,
                 summary="Store a workflow template (admin)")  # fmt: skip
    async def create_workflow(
        body: TemplateBody, request: Request, response: Response
    ) -> TemplateResponse:
        """Store a template; its workflow and parameters are checked against the catalog."""
        created = await templates.create(body)
        response.headers["Location"] = f"{base_path(request)}/api/v1/workflows/{created.id}"
        return created

    @router.get("/api/v1/workflows/{template_id}", response_model=TemplateResponse,
                responses=errors(), dependencies=[user],
                summary="A workflow template")  # fmt: skip
    async def get_workflow(template_id: str) -> TemplateResponse:
        """The template, its parameters and their JSON Schema."""
        return await templates.get(template_id)

    @router.put("/api/v1/workflows/{template_id}", response_model=TemplateResponse,
                responses=errors(409, 415), dependencies=admin,
                summary="Replace a workflow template (admin)")  # fmt: skip
    async def replace_workflow(template_id: str, body: TemplateBody) -> TemplateResponse:
        """Replace a stored template (built-ins are read-only: 409)."""
        return await templates.replace(template_id, body)

    @router.delete("/api/v1/workflows/{template_id}", status_code=204, response_class=Response,
                   responses=errors(409), dependencies=admin,
                   summary="Delete a workflow template (admin)")  # fmt: skip
    async def delete_workflow(template_id: str) -> Response:
        """Delete a stored template (built-ins: 409)."""
        await templates.delete(template_id)
        return Response(status_code=204)

    @router.post("/api/v1/workflows/{template_id}/execute", status_code=201,
                 response_model=JobResponse, responses=errors(415),
                 summary="Run a workflow template")  # fmt: skip
    async def execute_workflow(
        template_id: str,
        body: ExecuteBody,
        request: Request,
        response: Response,
        prefer: PreferHeader = None,
        who: Principal = user,
    ) -> JobResponse:
        """Queue a job with the given parameter values (each validated; 400 names it); with
        ``Prefer: wait=N`` wait up to N s for its end."""
        row = await templates.execute(
            template_id, body.parameters, who, webhook_url=body.webhook_url,
            base=base_path(request),
        )  # fmt: skip
        return await created_job(state, row, request, response, prefer, "/api/v1/jobs/{id}")

    return router
