"""``/api/v1/jobs``: ad-hoc workflows, listing, cancel, outputs, live events (SSE and a
WebSocket)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BeforeValidator

from comfykit.server.auth import Policy, Principal
from comfykit.server.errors import ServiceError
from comfykit.server.events import TERMINAL_EVENTS, JobEvent, follow, sse_frame
from comfykit.server.routers._common import (
    PreferHeader,
    base_path,
    created_job,
    errors,
    file_response,
)
from comfykit.server.schemas import (
    JobList,
    JobResponse,
    JobStatusName,
    WebhookDelivery,
    WorkflowJobBody,
)

if TYPE_CHECKING:
    from comfykit.server.state import ServiceState

__all__ = ["build"]

_HEARTBEAT = 15.0


def _iso_only(value: Any) -> Any:
    """A date-time in a query is ISO 8601 text (pydantic would also take a bare number)."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


#: A date-time query parameter (ISO 8601; without a zone it is UTC).
IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_only)]


def build(state: ServiceState, route_class: type[APIRoute]) -> APIRouter:
    """The job routes of one service."""
    router = APIRouter(tags=["jobs"], route_class=route_class)
    jobs = state.jobs
    hub = state.hub
    user = Depends(state.auth.dependency(Policy.USER))
    adhoc = Depends(state.auth.dependency(Policy.ADHOC))

    @router.post(
        "/api/v1/jobs", status_code=201, response_model=JobResponse, responses=errors(415),
        summary="Run an ad-hoc workflow",
    )  # fmt: skip
    async def create_job(
        body: WorkflowJobBody,
        request: Request,
        response: Response,
        prefer: PreferHeader = None,
        who: Principal = adhoc,
    ) -> JobResponse:
        """Queue a workflow (API format, UI format, or a PNG's embedded graph), checked
        against the node catalog first."""
        row = await jobs.create_workflow_job(body, who, base=base_path(request))
        return await created_job(state, row, request, response, prefer, "/api/v1/jobs/{id}")

    @router.get("/api/v1/jobs", response_model=JobList, responses=errors(), summary="List jobs")
    async def list_jobs(
        request: Request,
        status: Annotated[JobStatusName | None, Query()] = None,
        created_after: Annotated[
            IsoDateTime | None, Query(description="Jobs created at or after (ISO 8601)")
        ] = None,
        created_before: Annotated[
            IsoDateTime | None, Query(description="Jobs created before (ISO 8601)")
        ] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        who: Principal = user,
    ) -> JobList:
        """Jobs newest first (the caller's own; an admin's: every job), filtered by status
        and creation time; ``next_cursor`` pages."""
        return await jobs.list(
            status=status, created_after=_utc(created_after), created_before=_utc(created_before),
            cursor=cursor, limit=limit, base=base_path(request), who=who,
        )  # fmt: skip

    @router.get(
        "/api/v1/jobs/{job_id}", response_model=JobResponse, responses=errors(), summary="A job"
    )
    async def get_job(job_id: str, request: Request, who: Principal = user) -> JobResponse:
        """The job as the store holds it."""
        return await jobs.view(await jobs.get(job_id, who), base_path(request))

    @router.delete(
        "/api/v1/jobs/{job_id}", response_model=JobResponse, responses=errors(409),
        summary="Cancel a job",
    )  # fmt: skip
    async def cancel_job(job_id: str, request: Request, who: Principal = user) -> JobResponse:
        """Dequeue a queued job, interrupt a running one; 409 when it has already ended."""
        return await jobs.view(await jobs.cancel(job_id, who), base_path(request))

    @router.post(
        "/api/v1/jobs/{job_id}/webhooks/{delivery_id}/redeliver",
        status_code=202, response_model=WebhookDelivery, responses=errors(409),
        dependencies=[Depends(state.auth.dependency(Policy.ADMIN))],
        summary="Redeliver a job's webhook message (admin)",
    )  # fmt: skip
    async def redeliver_webhook(job_id: str, delivery_id: str) -> WebhookDelivery:
        """Send a delivered or failed webhook message again (an admin's route): it is pending
        and due at once, with the same ``webhook-id`` (receivers deduplicate by it); its
        attempts count on, and ``webhook_max_attempts`` more are made at most. 409 while it
        is pending."""
        return await jobs.redeliver(job_id, delivery_id)

    @router.get(
        "/api/v1/jobs/{job_id}/outputs/{n}",
        response_class=Response,
        responses={
            **errors(),
            200: {"content": {"image/png": {}}, "description": "The file"},
            304: {"description": "Not modified (If-None-Match)"},
        },
        summary="One output file of a job",
    )
    async def get_job_output(
        job_id: str, request: Request, n: int = Path(ge=0, le=10_000), who: Principal = user
    ) -> Response:
        """Output ``n`` (any kind of file), streamed from storage with an ETag."""
        path, record = state.files.output_path(await jobs.get(job_id, who), n)
        return file_response(request, path, record)

    @router.get(
        "/api/v1/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={
            **errors(),
            200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        },
        summary="Live events of a job (SSE)",
    )
    async def job_events(
        job_id: str,
        last_event_id: str | None = Header(default=None),
        who: Principal = user,
    ) -> StreamingResponse:
        """Named events ``queued``, ``started``, ``progress``, ``preview``, ``completed``,
        ``failed``, ``cancelled`` with JSON data; resume with ``Last-Event-ID``."""
        await jobs.get(job_id, who)
        after = _event_id(last_event_id)
        stored = _stored_events(state, job_id)

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n\n"
            async for item in follow(hub, job_id, stored, after=after, tick=_HEARTBEAT):
                yield b": keepalive\n\n" if item is None else sse_frame(item)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.websocket("/api/v1/jobs/{job_id}/ws")
    async def job_events_ws(
        websocket: WebSocket,
        job_id: str,
        last_event_id: Annotated[str | None, Query()] = None,
        access_token: Annotated[str | None, Query()] = None,
    ) -> None:
        """The events of ``/events`` over a WebSocket: one JSON text message per event
        (``{"id", "event", "data"}``), closed (1000) after the terminal one; resume with
        ``?last_event_id=``. Credentials as for every route, or ``?access_token=`` where a
        client cannot set headers (a browser). A refusal closes the socket with 4000 + the
        HTTP status (4401, 4403, 4404, 4429, 4503) and the error's message as the reason."""
        await websocket.accept()
        headers = websocket.headers
        authorization = headers.get("authorization")
        if authorization is None and access_token:
            authorization = f"Bearer {access_token}"
        try:
            who, _ = await state.auth.admit(
                Policy.USER, authorization=authorization, api_key=headers.get("x-api-key"),
                client=websocket.client.host if websocket.client else "unknown",
            )  # fmt: skip
            await jobs.get(job_id, who)
        except ServiceError as exc:
            await websocket.close(code=4000 + exc.status_code, reason=exc.message[:120])
            return
        after = _event_id(last_event_id or headers.get("last-event-id"))
        stored = _stored_events(state, job_id)

        async def send() -> None:
            async for item in follow(hub, job_id, stored, after=after, tick=_HEARTBEAT):
                if item is None:
                    continue
                message = {"id": item.id, "event": item.event, "data": item.data}
                await websocket.send_text(json.dumps(message, separators=(",", ":")))
                if item.event in TERMINAL_EVENTS:
                    return

        async def hang_up() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # the client has nothing to say; it may only close

        sender = asyncio.ensure_future(send())
        receiver = asyncio.ensure_future(hang_up())
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
        if sender.done() and not sender.cancelled() and sender.exception() is None:
            await websocket.close(code=1000)

    return router


def _event_id(value: str | None) -> int:
    """The event id to resume after (``Last-Event-ID``): 0 when absent or not a number."""
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0


def _stored_events(state: ServiceState, job_id: str) -> Callable[[int], Awaitable[list[JobEvent]]]:
    """How :func:`~comfykit.server.events.follow` reads a job's stored events."""

    async def stored(after: int) -> list[JobEvent]:
        return [
            JobEvent(job_id, ev.event, ev.data, ev.id)
            for ev in await state.store.events_after(job_id, after)
        ]

    return stored


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value
