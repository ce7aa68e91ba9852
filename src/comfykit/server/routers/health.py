"""``/health``, ``/ready`` and ``/metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from comfykit.server.auth import Policy
from comfykit.server.errors import ServiceError
from comfykit.server.metrics import CONTENT_TYPE
from comfykit.server.routers._common import errors
from comfykit.server.schemas import HealthResponse

if TYPE_CHECKING:
    from comfykit.server.state import ServiceState

__all__ = ["build"]


def build(state: ServiceState, route_class: type[APIRoute]) -> APIRouter:
    """The health, readiness and metrics routes of one service."""
    router = APIRouter(tags=["health"], route_class=route_class)
    auth = state.auth

    @router.get(
        "/health", response_model=HealthResponse, responses=errors(), summary="Service health",
        dependencies=[Depends(auth.dependency(Policy.PUBLIC))],
    )  # fmt: skip
    async def health() -> HealthResponse:
        """``healthy`` when the database and at least one ComfyUI answer, else ``degraded``."""
        servers = await state.dispatcher.probe()
        connected = any(s["status"] == "connected" for s in servers.values())
        db_ok = await state.store.ping()
        counts = await state.store.count_by_status() if db_ok else {}
        return HealthResponse(
            status="healthy" if connected and db_ok else "degraded",
            comfyui="connected" if connected else "disconnected",
            servers=servers,
            database="ok" if db_ok else "unavailable",
            queue={
                "queued": counts.get("queued", 0),
                "processing": counts.get("processing", 0),
            },
        )

    @router.get("/ready", responses=errors(), summary="Readiness",
                dependencies=[Depends(auth.dependency(Policy.READY))])  # fmt: skip
    async def ready() -> dict[str, Any]:
        """200 when a ComfyUI answers and the queue is under ``max_queue``; else 503."""
        servers = await state.dispatcher.probe()
        if not any(s["status"] == "connected" for s in servers.values()):
            raise ServiceError(503, "no ComfyUI server is reachable", details=servers)
        queued = await state.store.queued_count()
        if queued > state.settings.max_queue:
            raise ServiceError(
                503, f"the queue is full ({queued} jobs > {state.settings.max_queue})",
                code="QUEUE_FULL", details={"queued": queued},
            )  # fmt: skip
        return {"status": "ready", "queued": queued}

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            **errors(),
            200: {
                "content": {CONTENT_TYPE: {}, "application/json": {}},
                "description": "Prometheus text, or the JSON summary",
            },
        },
        summary="Prometheus metrics",
        dependencies=[Depends(auth.dependency(Policy.METRICS))],
    )
    async def metrics(request: Request) -> Response:
        """Prometheus text; the JSON summary with ``Accept: application/json``."""
        counts = await state.store.count_by_status()
        state.metrics.set_job_counts(counts)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({**state.metrics.summary(), "jobs": counts})
        return Response(state.metrics.text(), media_type=CONTENT_TYPE)

    return router
