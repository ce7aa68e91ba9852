"""The app factory, the mountable router, its lifespan, the request middleware and the
exception handlers (one error envelope)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from comfykit import AsyncComfyClient, __version__
from comfykit.server.errors import error_response
from comfykit.server.routers import generate, health, jobs, uploads, workflows
from comfykit.server.routers._common import BASE_KEY, REQUEST_ID_KEY
from comfykit.server.settings import Settings
from comfykit.server.state import ServiceState

__all__ = ["RequestContextMiddleware", "create_app", "create_router", "lifespan", "state_of"]

_REQUEST_ID = REQUEST_ID_KEY
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _request_id(value: str | None) -> str:
    if value and _VALID_ID.match(value):
        return value
    return uuid.uuid4().hex


class _ServiceRoute(APIRoute):
    """The routes of one service: request id, the error envelope, metrics and access log,
    even when the router is mounted in a host app with its own middleware."""

    service: ClassVar[ServiceState]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        state = self.service
        template = self.path_format
        # The route's path inside the service (FastAPI may or may not prefix it when the
        # router is included); what the request path has before it is the mount prefix.
        start = template.find("/api/v1/")
        relative = template[start:] if start >= 0 else template[template.rfind("/") :]

        async def handler(request: Request) -> Response:
            outer = request.scope.get(_REQUEST_ID)
            rid = (
                outer
                if isinstance(outer, str)
                else _request_id(request.headers.get("x-request-id"))
            )
            path = str(request.scope.get("path", ""))
            try:
                tail = relative.format(**request.path_params)
            except (KeyError, IndexError, ValueError):
                tail = relative
            request.scope[BASE_KEY] = path[: -len(tail)] if tail and path.endswith(tail) else ""
            request.state.request_id = rid
            started = time.perf_counter()
            try:
                response = await original(request)
            except Exception as exc:
                response = error_response(exc, rid)
            response.headers["X-Request-ID"] = rid
            if outer is None:
                state.observe(
                    request.method, str(request.scope.get(BASE_KEY, "")) + relative,
                    request.url.path, response.status_code,
                    time.perf_counter() - started, rid,
                )  # fmt: skip
            return response

        return handler


def create_router(
    settings: Settings | None = None, *, client: AsyncComfyClient | None = None
) -> APIRouter:
    """The service as a router for an existing FastAPI app::

        app.include_router(create_router(Settings(...)), prefix="/comfy")

    The router has its own lifespan, which FastAPI runs with the host app's (it opens and
    closes the ComfyUI clients, the store and the dispatcher); :func:`lifespan` runs it by
    hand. ``client`` is used for the first ComfyUI instead of one made from the settings (it
    is not closed by the service).
    """
    state = ServiceState(settings or Settings(), client=client)
    route_class = type("ServiceRoute", (_ServiceRoute,), {"service": state})

    @asynccontextmanager
    async def router_lifespan(_app: Any) -> AsyncIterator[None]:
        async with state.running():
            yield

    router = APIRouter(route_class=route_class, lifespan=router_lifespan)
    for build in (jobs.build, generate.build, workflows.build, uploads.build, health.build):
        # the routes themselves, not the sub-router: one flat table is matched per request,
        # in order, so the job routes (the most requested: a job's status) come first (no two
        # groups' paths overlap, so the order changes no match)
        router.routes.extend(build(state, route_class).routes)
    router.comfykit_state = state  # type: ignore[attr-defined]
    return router


def state_of(router: APIRouter) -> ServiceState:
    """The service state behind a router made by :func:`create_router`."""
    state = getattr(router, "comfykit_state", None)
    if not isinstance(state, ServiceState):
        raise TypeError("not a router made by comfykit.server.create_router()")
    return state


@asynccontextmanager
async def lifespan(router: APIRouter) -> AsyncIterator[ServiceState]:
    """Open a router's service (client, store, dispatcher) for the block; its state.

    Hosts whose app does not run router lifespans call it from their own lifespan::

        router = create_router(settings)

        @asynccontextmanager
        async def app_lifespan(app):
            async with comfykit.server.lifespan(router):
                yield
    """
    async with state_of(router).running() as state:
        yield state


class RequestContextMiddleware:
    """ASGI middleware of the standalone app: a request id for every request (taken from
    ``X-Request-ID`` when valid), echoed in the response, one JSON access-log line and the
    request metrics, for routed and unrouted (404/405) requests alike."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"x-request-id")
        rid = _request_id(raw.decode("latin-1") if raw else None)
        scope[_REQUEST_ID] = rid
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                hdrs = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                hdrs.append((b"x-request-id", rid.encode()))
                message["headers"] = hdrs
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.state.observe(
                scope.get("method", ""), label, scope.get("path", ""), status,
                time.perf_counter() - started, rid,
            )  # fmt: skip


def create_app(settings: Settings | None = None) -> FastAPI:
    """The standalone service: the router at the root, the request middleware, CORS from the
    settings, and every error (FastAPI's own included) in the one envelope."""
    settings = settings or Settings()
    router = create_router(settings)
    state = state_of(router)
    app = FastAPI(
        title="comfykit service",
        version=__version__,
        description="A REST service in front of ComfyUI, built on the comfykit SDK.",
    )
    app.include_router(router)

    async def on_error(request: Request, exc: Exception) -> Response:
        rid = request.scope.get(_REQUEST_ID)
        return error_response(exc, rid if isinstance(rid, str) else None)

    app.add_exception_handler(StarletteHTTPException, on_error)
    app.add_exception_handler(RequestValidationError, on_error)
    app.add_exception_handler(Exception, on_error)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", "X-Request-ID", "Prefer", "Last-Event-ID"],
            expose_headers=["X-Request-ID", "Location", "Preference-Applied", "ETag"],
        )
    app.add_middleware(RequestContextMiddleware, state=state)
    app.state.comfykit = state
    return app
