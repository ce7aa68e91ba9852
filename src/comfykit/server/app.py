"""The app factory, the mountable router, its lifespan, the request middleware and the
exception handlers (one error envelope)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from fastapi import APIRouter, FastAPI, Request, Response, params
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from comfykit import AsyncComfyClient, __version__
from comfykit.server.bodies import UPLOAD_OVERHEAD, service_request
from comfykit.server.errors import error_response
from comfykit.server.redact import install_redaction
from comfykit.server.routers import generate, health, jobs, keys, uploads, workflows
from comfykit.server.routers._common import BASE_KEY, REQUEST_ID_KEY
from comfykit.server.settings import Settings
from comfykit.server.state import ServiceState
from comfykit.server.v2 import routes as v2_routes
from comfykit.server.v2.errors import v2_error_response

__all__ = ["RequestContextMiddleware", "create_app", "create_router", "lifespan", "state_of"]

_REQUEST_ID = REQUEST_ID_KEY
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Where a route's own path starts in its template (after a mount prefix).
_API_PATH = re.compile(r"/api/v\d+/")


def _request_id(value: str | None) -> str:
    if value and _VALID_ID.match(value):
        return value
    return uuid.uuid4().hex


class _ServiceRoute(APIRoute):
    """The routes of one service: request id, body limits and strict JSON (413, 400, 415),
    the error envelope, metrics and access log, even when the router is mounted in a host
    app with its own middleware."""

    service: ClassVar[ServiceState]
    #: The response headers that carry the request id.
    request_id_headers: ClassVar[tuple[str, ...]] = ("X-Request-ID",)

    def answer_error(self, exc: BaseException, request_id: str) -> Response:
        """The answer of a failed request (the service's error envelope)."""
        return error_response(exc, request_id)

    def takes_upload(self) -> bool:
        """Whether the route's documented body is a multipart upload (its body limit is
        ``max_upload_bytes`` plus the form's overhead, not ``max_body_bytes``)."""
        body = (self.openapi_extra or {}).get("requestBody") or {}
        return "multipart/form-data" in (body.get("content") or {})

    def takes_json(self) -> bool:
        """Whether the route has a JSON body (parsed by FastAPI)."""
        field = self.body_field
        return field is not None and not isinstance(field.field_info, params.Form)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        state = self.service
        settings = state.settings
        if self.takes_upload():
            max_body, setting = (
                settings.max_upload_bytes + UPLOAD_OVERHEAD,
                "max_upload_bytes plus the form's overhead",
            )
        else:
            max_body, setting = settings.max_body_bytes, "max_body_bytes"
        json_body = self.takes_json()
        template = self.path_format
        # The route's path inside the service (FastAPI may or may not prefix it when the
        # router is included); what the request path has before it is the mount prefix.
        found = _API_PATH.search(template)
        relative = template[found.start() :] if found else template[template.rfind("/") :]

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
                limited = service_request(
                    request, max_body=max_body, setting=setting,
                    max_depth=settings.max_json_depth, json_body=json_body,
                )  # fmt: skip
                response = await original(limited)
            except Exception as exc:
                response = self.answer_error(exc, rid)
            for name in self.request_id_headers:
                response.headers[name] = rid
            if outer is None:
                state.observe(
                    request.method, str(request.scope.get(BASE_KEY, "")) + relative,
                    request.url.path, response.status_code,
                    time.perf_counter() - started, rid,
                )  # fmt: skip
            return response

        return handler


class _V2Route(_ServiceRoute):
    """The Comfy API v2 routes: the v2 error envelope, the request id also in
    ``X-Comfy-Request-Id`` (where Comfy's clients read it)."""

    request_id_headers = ("X-Request-ID", "X-Comfy-Request-Id")

    def answer_error(self, exc: BaseException, request_id: str) -> Response:
        """The answer of a failed request (the Comfy API v2 envelope)."""
        return v2_error_response(exc, request_id, self.name)


def create_router(
    settings: Settings | None = None, *, client: AsyncComfyClient | None = None
) -> APIRouter:
    """The service as a router for an existing FastAPI app::

        app.include_router(create_router(Settings(...)), prefix="/comfy")

    The router has its own lifespan, which FastAPI runs with the host app's (it opens and
    closes the ComfyUI clients, the store and the dispatcher); :func:`lifespan` runs it by
    hand. ``client`` is used for the first ComfyUI instead of one made from the settings (it
    is not closed by the service). The service's loggers get the redacting filter
    (:mod:`comfykit.server.redact`).
    """
    install_redaction()
    state = ServiceState(settings or Settings(), client=client)
    route_class = type("ServiceRoute", (_ServiceRoute,), {"service": state})
    v2_class = type("ServiceV2Route", (_V2Route,), {"service": state})

    @asynccontextmanager
    async def router_lifespan(_app: Any) -> AsyncIterator[None]:
        async with state.running():
            yield

    router = APIRouter(route_class=route_class, lifespan=router_lifespan)
    for build in (
        jobs.build,
        generate.build,
        workflows.build,
        uploads.build,
        keys.build,
        health.build,
    ):
        # the routes themselves, not the sub-router: one flat table is matched per request,
        # in order, so the job routes (the most requested: a job's status) come first (no two
        # groups' paths overlap, so the order changes no match)
        router.routes.extend(build(state, route_class).routes)
    router.routes.extend(v2_routes.build(state, v2_class).routes)
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
        observed = False

        def observe() -> None:
            nonlocal observed
            observed = True
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.state.observe(
                scope.get("method", ""), label, scope.get("path", ""), status,
                time.perf_counter() - started, rid,
            )  # fmt: skip

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                hdrs = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                hdrs.append((b"x-request-id", rid.encode()))
                message["headers"] = hdrs
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # recorded before the last bytes go out: a client that has its answer can
                # already find the request in the log and the metrics
                observe()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not observed:
                observe()


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
        lifespan=router.lifespan_context,
    )
    # the router's routes themselves (one flat table to match, not a router inside the app's)
    app.router.routes.extend(router.routes)

    async def on_error(request: Request, exc: Exception) -> Response:
        rid = request.scope.get(_REQUEST_ID)
        rid = rid if isinstance(rid, str) else None
        if "/api/v2/" in request.url.path:
            return v2_error_response(exc, rid, "")
        return error_response(exc, rid)

    app.add_exception_handler(StarletteHTTPException, on_error)
    app.add_exception_handler(RequestValidationError, on_error)
    app.add_exception_handler(Exception, on_error)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=list(settings.cors_methods),
            allow_headers=list(settings.cors_headers),
            expose_headers=[
                "X-Request-ID",
                "X-Comfy-Request-Id",
                "Location",
                "Preference-Applied",
                "ETag",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],  # fmt: skip
        )
    app.add_middleware(RequestContextMiddleware, state=state)
    app.state.comfykit = state
    return app
