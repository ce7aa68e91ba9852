"""The core of ``AsyncComfyClient``: every ComfyUI route, one WebSocket, typed jobs.

``AsyncClientCore`` holds the connection (HTTP pool, WebSocket, retries) and the routes;
``AsyncGenerateMixin`` (``generate.py``) adds the high-level calls on top of it and
``AsyncComfyClient`` (``client.py``) is the two together. The blocking client is generated from
these files by ``scripts/unasync.py``.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json as _jsonlib
import logging
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from comfykit._async import _v2
from comfykit._async._stream import AsyncEventStream
from comfykit._async.jobs import AsyncJob, AsyncJobContext
from comfykit._async.native import AssetRoutes, NativeRoutes
from comfykit._async.results import AsyncResult
from comfykit._backends import asyncio as backend
from comfykit._compat import transport_for_url
from comfykit._config import (
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    Auth,
    ClientOptions,
    NotGiven,
    auth_headers,
    normalize_base_url,
    retry_after_seconds,
    to_timeout,
)
from comfykit._exceptions import (
    APIStatusError,
    ComfyConnectionError,
    ComfyError,
    ComfyTimeoutError,
    EventLoopError,
    InputError,
    NotFoundError,
    ServerError,
)
from comfykit._files import FileWriter
from comfykit._protocol.assets import AssetOrder, AssetSort, TagOrder
from comfykit._protocol.native import NativeState, SortBy, SortOrder
from comfykit._protocol.prompt import (
    PromptInput,
    node_errors_from_body,
    parse_prompt_error,
    prompt_to_api,
)
from comfykit._protocol.tracker import JobTracker
from comfykit._retry import RETRY_STATUSES, Retry, decide, never_sent
from comfykit._retry import delay as retry_delay
from comfykit._types import (
    Asset,
    AssetCreated,
    AssetList,
    AssetTagList,
    AssetTagsAdded,
    AssetTagsRemoved,
    Features,
    FileRef,
    HistoryEntry,
    JobInfo,
    JobList,
    PromptResponse,
    QueueState,
    ServerCapabilities,
    SystemStats,
    UploadedFile,
)
from comfykit._uploads import FileInput, file_ref, read_upload, upload_form
from comfykit._version import __version__

if TYPE_CHECKING:
    from tenacity import RetryCallState
    from typing_extensions import Self

    from comfykit.graph import NodeCatalog

__all__ = ["AsyncClientCore"]


#: Node catalogs per server URL, shared by every client in the process.
_CATALOGS: dict[str, NodeCatalog] = {}


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _AlreadyQueued(Exception):
    """A resend of ``POST /prompt`` found the prompt on the server already."""


log = logging.getLogger("comfykit")


class _Shared:
    """State shared by a client and the copies ``with_options()`` makes."""

    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        stream: AsyncEventStream,
        *,
        owns_http: bool,
        clients: weakref.WeakSet[AsyncClientCore],
    ) -> None:
        self.http = http
        self.stream = stream
        self.owns_http = owns_http
        self.closed = False
        self.loop: object | None = None  # the event loop the socket and pool were first used on
        self.clients = clients  # the client and its copies: the stream catches up through them
        self.native = NativeState()  # the native routes found on the server (_async/native.py)
        if owns_http:
            stream.on_loop_end = http.aclose
        # Dropped without close(): once neither the client nor a copy of it is left, its socket,
        # reader and pool are closed soon, instead of living as long as the process (a notebook
        # cell run again and again would pile them up).
        weakref.finalize(self, _close_abandoned, stream, http if owns_http else None).atexit = False
        root = base_url.rstrip("/")
        # A client made here has no auth flow, cookies, redirects or event hooks of its own (its
        # headers are set per request), so a whole request goes straight to the transport httpx
        # would pick for the server (its own, or a proxy's from the environment): ~45 us less
        # per request than ``send()``. A client passed in keeps all of ``send()``.
        self.transport: httpx.AsyncBaseTransport | None = (
            transport_for_url(http, httpx.URL(root)) if owns_http else None
        )

        # A URL object per path, parsed once: httpx parses and joins a relative path on every
        # request (~20 us); the routes a client calls over and over stay in the cache.
        @functools.lru_cache(maxsize=128)
        def url(path: str) -> httpx.URL:
            return httpx.URL(root + path)

        self.url = url

    def check_loop(self) -> None:
        """Refuse to run on another event loop than the first one (its sockets live there)."""
        loop = backend.event_loop()
        if loop is self.loop:
            return
        if self.loop is None:
            self.loop = loop
            return
        raise EventLoopError(
            "this AsyncComfyClient was first used on another event loop, which its WebSocket "
            "and connection pool belong to (each asyncio.run() makes a new loop): make one "
            "client per loop, e.g. `async with AsyncComfyClient(url) as comfy:` inside the "
            "coroutine you run, or use the blocking ComfyClient"
        )

    async def send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        """Send ``request``; unless ``stream``, the response is read and closed."""
        transport = self.transport
        if transport is None or stream:
            return await self.http.send(request, stream=stream)
        start = backend.monotonic()
        response = await transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        response.elapsed = datetime.timedelta(seconds=backend.monotonic() - start)
        if "set-cookie" in response.headers:
            self.http.cookies.extract_cookies(response)  # as httpx's own send() keeps them
        return response


class AsyncClientCore:
    """The connection and the routes of :class:`~comfykit.AsyncComfyClient` (its constructor
    arguments are documented there)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
        auth: Auth | None = None,
        ws: bool = True,
        validate: bool | None = None,
        client_id: str | None = None,
        max_connections: int = 8,
        http_client: httpx.AsyncClient | None = None,
        api: str = "comfyui",
    ) -> None:
        self._v2 = _v2.V2State(api)
        if max_connections < 1:
            raise InputError(f"max_connections must be >= 1, got {max_connections}")
        all_headers = {
            "User-Agent": f"comfykit/{__version__}",
            **auth_headers(auth),
            **dict(headers or {}),
        }
        self._options = ClientOptions(
            base_url=normalize_base_url(base_url),
            timeout=to_timeout(timeout),
            max_retries=max_retries,
            headers=all_headers,
        )
        self._use_ws = ws
        self._validate = True if validate is None else validate
        self._validate_given = validate
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        http = http_client
        if http is None:
            http = httpx.AsyncClient(
                base_url=self._options.base_url, timeout=self._options.timeout, limits=limits
            )
            backend.guard_http_pool(http, limits)
        cid = client_id or uuid.uuid4().hex
        # The stream holds its clients weakly, so that a client nobody holds can be collected.
        clients: weakref.WeakSet[AsyncClientCore] = weakref.WeakSet()
        stream = AsyncEventStream(
            self._options.ws_url + "?" + urlencode({"clientId": cid}),
            client_id=cid,
            headers=all_headers,
            open_timeout=self._options.timeout.connect,
            reconcile=functools.partial(_reconcile_through, clients),
        )
        self._shared = _Shared(
            self._options.base_url, http, stream, owns_http=http_client is None, clients=clients
        )
        clients.add(self)
        self._jobs = _JobSupport(self)

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The server's base URL."""
        return self._options.base_url

    @property
    def api(self) -> str:
        """The API the client speaks: ``"comfyui"`` or ``"v2"`` (``"auto"`` until its first
        request has detected which)."""
        return self._v2.detected or self._v2.choice

    async def _speaks_v2(self) -> bool:
        """True when the server is a Comfy API v2 one (detected on first use for ``"auto"``)."""
        return self._v2.choice != "comfyui" and await _v2.backend_of(self) == "v2"

    @property
    def client_id(self) -> str:
        """The WebSocket client id this client's jobs are submitted with."""
        return self._shared.stream.client_id

    @property
    def timeout(self) -> httpx.Timeout:
        """The per-request timeout."""
        return self._options.timeout

    @property
    def max_retries(self) -> int:
        """Retries of idempotent requests."""
        return self._options.max_retries

    def with_options(
        self,
        *,
        timeout: float | httpx.Timeout | None | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        headers: Mapping[str, str] | NotGiven = NOT_GIVEN,
    ) -> Self:
        """A copy with other options that shares this client's connection pool and WebSocket."""
        clone = copy.copy(self)
        clone._options = self._options.copy_with(
            timeout=timeout, max_retries=max_retries, headers=headers
        )
        clone._jobs = _JobSupport(clone)
        self._shared.clients.add(clone)
        return clone

    async def close(self) -> None:
        """Close the WebSocket and (unless it was passed in) the HTTP pool."""
        shared = self._shared
        if shared.closed:
            return
        shared.closed = True
        if not backend.loop_is_running(shared.loop):
            # Its sockets belong to another (usually finished) event loop: nothing of them can
            # be awaited here, so they are let go instead of closed.
            shared.stream.abandon()
            return
        await _close_parts(shared.stream, shared.http if shared.owns_http else None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url}>"

    # -- HTTP -----------------------------------------------------------------------------
    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        files: Any = None,
        data: Mapping[str, str | list[str]] | None = None,
        idempotent: bool | None = None,
        timeout: httpx.Timeout | NotGiven = NOT_GIVEN,
        stream: bool = False,
        prompt_id: str | None = None,
    ) -> httpx.Response:
        """Send a request, retried as :mod:`comfykit._retry` decides; map failures to comfykit
        errors. With ``prompt_id`` (``POST /prompt``), a request that may have arrived is resent
        only after the server says that prompt is not there; if it is, :class:`_AlreadyQueued`
        is raised instead."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        shared = self._shared
        if shared.closed:
            raise ComfyConnectionError("the client is closed")
        if self._v2.choice != "comfyui" and not path.startswith("/api/v2/"):
            await _v2.require_comfyui(self, method, path)
        shared.check_loop()
        safe = method in ("GET", "HEAD", "OPTIONS") if idempotent is None else idempotent
        http = shared.http

        last: list[BaseException] = []  # the latest failure, for the check before a resend
        reached = [False]  # an attempt may have reached the server

        def should_retry(exc: BaseException) -> bool:
            last[:] = [exc]
            reached[0] = reached[0] or not never_sent(exc)
            decision = _decide(exc, safe)
            return decision is Retry.YES or (decision is Retry.IF_ABSENT and prompt_id is not None)

        headers = dict(self._options.headers)
        content: bytes | None = None
        if json is not None:
            # ComfyUI reads NaN/Infinity literals; httpx's own encoder refuses them.
            content = _jsonlib.dumps(json, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        request = http.build_request(
            method,
            shared.url(path),
            params=params,
            content=content,
            files=files,
            data=data,
            headers=headers,
            timeout=self._options.timeout if isinstance(timeout, NotGiven) else timeout,
        )
        tries = self._options.max_retries + 1

        async def send() -> httpx.Response:
            response = await shared.send(request, stream=stream)
            if response.status_code in RETRY_STATUSES:
                await response.aread()
                raise _RetryableStatus(response)
            return response

        async def resend(_state: RetryCallState) -> None:
            # Before sending again what may have arrived: is the prompt there already?
            if prompt_id is not None and last and _decide(last[0], safe) is Retry.IF_ABSENT:
                if await self._prompt_known(prompt_id):
                    raise _AlreadyQueued(prompt_id) from last[0]

        response: httpx.Response
        try:
            try:
                response = await send()  # the common case: no retry machinery at all
            except (httpx.TransportError, _RetryableStatus) as first:
                if tries == 1 or not should_retry(first):
                    raise
                await backend.sleep(_delay(first, 1))
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(tries - 1),
                    wait=lambda state: _delay(_outcome_error(state), state.attempt_number + 1),
                    retry=retry_if_exception(should_retry),
                    before=resend,
                    reraise=True,
                ):
                    with attempt:
                        response = await send()
        except _RetryableStatus as exc:
            response = exc.response
        except httpx.TransportError as exc:
            if prompt_id is not None and _decide(exc, safe) is Retry.IF_ABSENT:
                if await self._prompt_known(prompt_id):
                    raise _AlreadyQueued(prompt_id) from exc
            error = (
                ComfyTimeoutError(f"{method} {path}: timed out ({exc!r})")
                if isinstance(exc, httpx.TimeoutException)
                else ComfyConnectionError(
                    f"{method} {path}: cannot reach {self.base_url} ({exc!r})"
                )
            )
            error._not_sent = prompt_id is not None and not reached[0] and never_sent(exc)
            raise error from exc
        if response.is_error:
            if stream:
                await response.aread()
                await response.aclose()
            raise _status_error(method, path, response)
        return response

    async def _get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        response = await self._request("GET", path, params=params)
        return _json(response)

    @property
    def _native(self) -> NativeRoutes:
        return NativeRoutes(self, self._shared.native)

    # -- routes ---------------------------------------------------------------------------
    async def system_stats(self) -> SystemStats:
        """``GET /system_stats``: versions, RAM, devices."""
        return SystemStats.model_validate(await self._get_json("/system_stats"))

    async def features(self) -> Features:
        """``GET /features``: server capability flags."""
        return Features.model_validate(await self._get_json("/features"))

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """``GET /object_info[/{node_class}]``: node definitions (``{}`` for an unknown class)."""
        path = "/object_info" if node_class is None else f"/object_info/{_seg(node_class)}"
        data = await self._get_json(path)
        if not isinstance(data, dict):
            raise APIStatusError(f"GET {path}: expected an object", status_code=200, body=data)
        return data

    async def queue(self) -> QueueState:
        """``GET /queue``: the running prompt and the pending ones in execution order."""
        return QueueState.from_wire(await self._get_json("/queue"))

    async def clear_queue(self) -> None:
        """Remove every pending prompt (the running one is not affected)."""
        await self._request("POST", "/queue", json={"clear": True}, idempotent=True)

    async def delete_from_queue(self, prompt_ids: str | Iterable[str]) -> None:
        """Remove pending prompts by id (running ones are not affected: use :meth:`interrupt`)."""
        ids = [prompt_ids] if isinstance(prompt_ids, str) else list(prompt_ids)
        await self._request("POST", "/queue", json={"delete": ids}, idempotent=True)

    async def history(
        self,
        prompt_id: str | None = None,
        *,
        max_items: int | None = None,
        offset: int | None = None,
    ) -> dict[str, HistoryEntry]:
        """``GET /history`` (oldest first) or ``GET /history/{prompt_id}`` (``{}`` if unknown)."""
        if prompt_id is not None:
            data = await self._get_json(f"/history/{_seg(prompt_id)}")
        else:
            params: dict[str, int] = {}
            if max_items is not None:
                if max_items < 1:
                    raise InputError(f"max_items must be >= 1, got {max_items}")
                params["max_items"] = max_items
            if offset is not None:
                if offset < 0:
                    raise InputError(f"offset must be >= 0, got {offset}")
                params["offset"] = offset
            data = await self._get_json("/history", params or None)
        return {k: HistoryEntry.model_validate(v) for k, v in dict(data).items()}

    async def clear_history(self) -> None:
        """Forget every finished prompt."""
        await self._request("POST", "/history", json={"clear": True}, idempotent=True)

    async def delete_history(self, prompt_ids: str | Iterable[str]) -> None:
        """Forget finished prompts by id."""
        ids = [prompt_ids] if isinstance(prompt_ids, str) else list(prompt_ids)
        await self._request("POST", "/history", json={"delete": ids}, idempotent=True)

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the running prompt; with ``prompt_id``, only if that one is running."""
        body = {"prompt_id": prompt_id} if prompt_id else {}
        await self._request("POST", "/interrupt", json=body, idempotent=True)

    async def free(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        """Unload models and/or drop the node cache after the current prompt."""
        body = {"unload_models": unload_models, "free_memory": free_memory}
        await self._request("POST", "/free", json=body, idempotent=True)

    # -- native jobs and assets routes (_async/native.py) ----------------------------------
    async def server_capabilities(self, *, refresh: bool = False) -> ServerCapabilities:
        """What the server serves beyond the routes of every release: the jobs routes (from
        the version in ``/system_stats``) and the assets API (from ``/features``).

        Looked up once per client (its copies share it); ``refresh=True`` looks again."""
        return await self._native.capabilities(refresh=refresh)

    async def jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        workflow_id: str | None = None,
        sort_by: SortBy = "created_at",
        sort_order: SortOrder = "desc",
        limit: int | None = None,
        offset: int = 0,
    ) -> JobList:
        """Queued, running and finished jobs, newest first: ``GET /api/jobs`` where the server
        has it, else built from ``/queue`` and ``/history`` into the same model.

        Args:
            status: keep only these states (``"pending"``, ``"in_progress"``,
                ``"completed"``, ``"failed"``, ``"cancelled"``).
            workflow_id: keep only jobs of this UI workflow.
            sort_by: ``"created_at"`` or ``"execution_duration"``.
            sort_order: ``"desc"`` (default) or ``"asc"``.
            limit: at most this many jobs (``None``: all).
            offset: skip this many first.
        """
        return await self._native.list_jobs(
            status=status, workflow_id=workflow_id, sort_by=sort_by, sort_order=sort_order,
            limit=limit, offset=offset,
        )  # fmt: skip

    async def get_job(self, prompt_id: str) -> JobInfo | None:
        """One job with its outputs and workflow, ``None`` if the server does not know it:
        ``GET /api/jobs/{id}`` where the server has it, else ``/history`` and ``/queue``."""
        return await self._native.get_job(prompt_id)

    async def cancel_jobs(self, prompt_ids: str | Iterable[str]) -> bool:
        """Cancel jobs by id, queued or running; True when at least one was.

        ``POST /api/jobs/cancel`` where the server has it (ids that are already finished or
        unknown are no-ops); else the pending ones are removed from the queue and each is
        interrupted only if it is the one running."""
        return await self._native.cancel_many(prompt_ids)

    async def check_assets(self) -> None:
        """Raise :class:`~comfykit.AssetsUnavailableError` unless the server serves
        ``/api/assets`` (the ``assets`` flag of ``/features``)."""
        await self._native.check_assets()

    @property
    def _assets(self) -> AssetRoutes:
        return AssetRoutes(self, self._shared.native)

    async def assets(
        self,
        *,
        include_tags: str | Iterable[str] | None = None,
        exclude_tags: str | Iterable[str] | None = None,
        name_contains: str | None = None,
        metadata_filter: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        sort: AssetSort = "created_at",
        order: AssetOrder = "desc",
    ) -> AssetList:
        """One page of the server's assets: ``GET /api/assets``.

        Like every asset call, it first checks that the server serves the assets API
        (:class:`~comfykit.AssetsUnavailableError` otherwise; nothing else is sent).

        Args:
            include_tags: only assets carrying every one of these tags.
            exclude_tags: no asset carrying any of these.
            name_contains: only assets whose name contains this (case-insensitive).
            metadata_filter: only assets whose ``user_metadata`` matches these keys.
            limit: at most this many (1 to 500; ``None``: the server's default, 20).
            offset: skip this many first.
            sort: ``"name"``, ``"created_at"``, ``"updated_at"``, ``"size"`` or
                ``"last_access_time"``.
            order: ``"desc"`` (default) or ``"asc"``.
        """
        return await self._assets.list_assets(
            include_tags=include_tags, exclude_tags=exclude_tags, name_contains=name_contains,
            metadata_filter=metadata_filter, limit=limit, offset=offset, sort=sort, order=order,
        )  # fmt: skip

    async def get_asset(self, asset_id: str) -> Asset:
        """One asset: ``GET /api/assets/{id}`` (:class:`~comfykit.NotFoundError` if there is
        none with that id)."""
        return await self._assets.get(asset_id)

    async def download_asset(
        self,
        asset_id: str,
        dest: str | Path | IO[bytes] | None = None,
        *,
        overwrite: bool = False,
    ) -> bytes | Path | None:
        """An asset's content: ``GET /api/assets/{id}/content``, as bytes or streamed into
        ``dest`` under :meth:`download`'s save rule (in a folder, the file takes the name the
        server gives it). Returns the path written."""
        return await self._assets.download(asset_id, dest, overwrite=overwrite)

    async def upload_asset(
        self,
        data_or_path: FileInput,
        *,
        tags: str | Iterable[str],
        name: str | None = None,
        user_metadata: Mapping[str, Any] | None = None,
        filename: str | None = None,
    ) -> AssetCreated:
        """Upload a file (bytes, path, binary file or PIL image) as an asset: multipart
        ``POST /api/assets``. Content the server holds already is not stored twice
        (``created_new`` is then False).

        Args:
            tags: in order; the first is the root, ``"models"``, ``"input"`` or ``"output"``
                (``"models"`` takes the model folder next, e.g. ``["models", "loras"]``).
            name: the asset's name (default: the server's choice, from the file name).
            user_metadata: a JSON object kept with the asset.
            filename: the file name sent (default: the path's, or one made up for bytes).
        """
        return await self._assets.upload(
            data_or_path, tags=tags, name=name, user_metadata=user_metadata, filename=filename
        )

    async def asset_from_hash(
        self,
        hash: str,
        *,
        name: str | None = None,
        tags: str | Iterable[str] | None = None,
        user_metadata: Mapping[str, Any] | None = None,
    ) -> AssetCreated:
        """A new asset for content the server already holds, by its ``blake3:<hex>`` hash:
        ``POST /api/assets/from-hash`` (:class:`~comfykit.NotFoundError` if it holds none)."""
        return await self._assets.from_hash(hash, name=name, tags=tags, user_metadata=user_metadata)

    async def has_asset_hash(self, hash: str) -> bool:
        """Whether the server holds content with this ``blake3:<hex>`` hash:
        ``HEAD /api/assets/hash/{hash}``."""
        return await self._assets.has_hash(hash)

    async def update_asset(
        self,
        asset_id: str,
        *,
        name: str | None = None,
        user_metadata: Mapping[str, Any] | None = None,
    ) -> Asset:
        """Rename an asset and/or replace its ``user_metadata``: ``PUT /api/assets/{id}``
        (give at least one). Tags change with :meth:`add_asset_tags` and
        :meth:`remove_asset_tags`."""
        return await self._assets.update(asset_id, name=name, user_metadata=user_metadata)

    async def delete_asset(self, asset_id: str) -> None:
        """Delete an asset: ``DELETE /api/assets/{id}`` (:class:`~comfykit.NotFoundError` if
        there is none with that id)."""
        await self._assets.delete(asset_id)

    async def asset_tags(
        self,
        *,
        prefix: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        order: TagOrder = "count_desc",
        include_zero: bool = True,
    ) -> AssetTagList:
        """The tags in use and how many assets carry each: ``GET /api/tags``.

        Args:
            prefix: only tags starting with this.
            limit: at most this many (1 to 1000; ``None``: the server's default, 100).
            offset: skip this many first.
            order: ``"count_desc"`` (default) or ``"name_asc"``.
            include_zero: also tags no asset carries any more.
        """
        return await self._assets.tags(
            prefix=prefix, limit=limit, offset=offset, order=order, include_zero=include_zero
        )

    async def add_asset_tags(self, asset_id: str, tags: str | Iterable[str]) -> AssetTagsAdded:
        """Tag an asset: ``POST /api/assets/{id}/tags``."""
        return await self._assets.add_tags(asset_id, tags)

    async def remove_asset_tags(self, asset_id: str, tags: str | Iterable[str]) -> AssetTagsRemoved:
        """Untag an asset: ``DELETE /api/assets/{id}/tags``."""
        return await self._assets.remove_tags(asset_id, tags)

    async def models(self, folder: str | None = None) -> list[str]:
        """Model folder names, or the files of one folder (e.g. ``"checkpoints"``)."""
        path = "/models" if folder is None else f"/models/{_seg(folder)}"
        return [str(x) for x in await self._get_json(path)]

    async def embeddings(self) -> list[str]:
        """Embedding names (without extension)."""
        return [str(x) for x in await self._get_json("/embeddings")]

    async def extensions(self) -> list[str]:
        """URL paths of the frontend extension scripts."""
        return [str(x) for x in await self._get_json("/extensions")]

    async def upload_image(
        self,
        data_or_path: FileInput,
        *,
        filename: str | None = None,
        subfolder: str | None = None,
        overwrite: bool = False,
        type: str = "input",
    ) -> UploadedFile:
        """Upload an image (bytes, path, binary file or PIL image); feed ``.ref`` to LoadImage.

        The content is checked first: anything Pillow cannot read as an image is an
        :class:`~comfykit.InputError` and nothing is sent."""
        return await self._upload(
            "/upload/image", data_or_path, filename=filename, subfolder=subfolder,
            overwrite=overwrite, type=type, original_ref=None,
        )  # fmt: skip

    async def upload_mask(
        self,
        data_or_path: FileInput,
        *,
        original_ref: FileRef | Mapping[str, Any] | str,
        filename: str | None = None,
        subfolder: str | None = None,
        overwrite: bool = False,
        type: str = "input",
    ) -> UploadedFile:
        """Upload a mask: its alpha is applied to the image ``original_ref`` points at."""
        return await self._upload(
            "/upload/mask", data_or_path, filename=filename, subfolder=subfolder,
            overwrite=overwrite, type=type, original_ref=original_ref,
        )  # fmt: skip

    async def _upload(
        self,
        path: str,
        data_or_path: FileInput,
        *,
        filename: str | None,
        subfolder: str | None,
        overwrite: bool,
        type: str,
        original_ref: FileRef | Mapping[str, Any] | str | None,
        argument: str = "data_or_path",
    ) -> UploadedFile:
        content, name = read_upload(data_or_path, filename, argument=argument)
        if path == "/upload/image" and await self._speaks_v2():
            return await _v2.upload(self, content, name)
        files, form = upload_form(
            name, content, subfolder=subfolder, overwrite=overwrite, type=type,
            original_ref=original_ref,
        )  # fmt: skip
        response = await self._request("POST", path, files=files, data=form, idempotent=True)
        return UploadedFile.model_validate(_json(response))

    def view_url(self, ref: FileRef | Mapping[str, Any] | str) -> str:
        """The ``/view`` URL of a file the server holds (a v2 file: its asset's content URL)."""
        found = _v2.asset_url(ref)
        return found or f"{self.base_url}/view?{urlencode(file_ref(ref).view_params())}"

    async def download(
        self,
        ref: FileRef | Mapping[str, Any] | str,
        dest: str | Path | IO[bytes] | None = None,
        *,
        overwrite: bool = False,
    ) -> bytes | Path | None:
        """Fetch a file: its bytes, or streamed in chunks into ``dest``.

        ``dest`` is a binary file object, or a path under the save rule: a trailing separator or
        an existing folder means a folder (created; the file keeps its name), anything else the
        file's path; an existing name is never overwritten unless ``overwrite=True`` (the next
        free ``name-1.ext`` is taken, unless the existing file holds the same bytes). Returns the
        path written. File-system failures raise ``FileSaveError`` naming ``dest``.
        """
        fref = file_ref(ref)
        path, params = "/view", fref.view_params()
        if await self._speaks_v2():
            path, params = _v2.content_path(ref), {}
        return await self._fetch(path, params, dest, name=fref.filename, overwrite=overwrite)

    async def _fetch(
        self,
        path: str,
        params: Mapping[str, str],
        dest: str | Path | IO[bytes] | None,
        *,
        name: str | Callable[[httpx.Response], str],
        overwrite: bool,
    ) -> bytes | Path | None:
        """``GET path``: the bytes, or streamed into ``dest`` under the save rule of
        :meth:`download`. ``name`` is the file's name, or read from the answer's headers (then
        ``dest`` is checked once they arrive)."""
        if dest is None:
            response = await self._request("GET", path, params=params or None)
            return response.content
        target = dest if isinstance(dest, (str, Path)) else None
        writer = (
            FileWriter(target, name, overwrite=overwrite).open()
            if target is not None and isinstance(name, str)
            else None
        )
        try:
            response = await self._request("GET", path, params=params or None, stream=True)
            try:
                if target is not None and writer is None and not isinstance(name, str):
                    writer = FileWriter(target, name(response), overwrite=overwrite).open()
                async for chunk in response.aiter_bytes():
                    if writer is not None:
                        writer.write(chunk)
                    else:
                        assert not isinstance(dest, (str, Path))
                        dest.write(chunk)
            except httpx.TransportError as exc:
                label = name if isinstance(name, str) else path
                raise ComfyConnectionError(f"download of {label} broke: {exc!r}") from exc
            finally:
                await response.aclose()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        return writer.commit() if writer is not None else None

    async def _has_file(self, ref: FileRef) -> bool:
        """True when the server holds the file (``GET /view`` finds it; nothing is read)."""
        try:
            response = await self._request("GET", "/view", params=ref.view_params(), stream=True)
        except NotFoundError:
            return False
        await response.aclose()
        return True

    async def _image_ref(self, image: FileInput | FileRef, argument: str) -> str:
        """How a graph names ``image`` on this server (for the high-level calls).

        A file already on the server (a ``FileRef``, or a ``"sub/name.png"`` string that is not
        a local file) is used as it is; anything else is checked and uploaded first."""
        if await self._speaks_v2():
            return await _v2.image_ref(self, image, argument)
        if isinstance(image, FileRef):
            return image.ref
        if isinstance(image, str) and not Path(image).is_file():
            ref = file_ref(image, default_type="input")
            if not await self._has_file(ref):
                raise InputError(
                    f"{argument}: {image!r} is neither a local file nor a file on the server"
                )
            return ref.ref
        uploaded = await self._upload(
            "/upload/image", image, filename=None, subfolder="comfykit", overwrite=False,
            type="input", original_ref=None, argument=argument,
        )  # fmt: skip
        return uploaded.ref

    # -- catalog --------------------------------------------------------------------------
    async def catalog(self, *, refresh: bool = False) -> NodeCatalog:
        """The server's node catalog, built from ``/object_info``.

        Cached per server URL for the whole process; re-read with ``refresh=True``, and
        automatically when a graph fails local validation against it (new nodes or model files).
        """
        from comfykit.graph import NodeCatalog

        cached = None if refresh else _CATALOGS.get(self.base_url)
        if cached is None:
            cached = NodeCatalog.from_object_info(await self.object_info())
            _CATALOGS[self.base_url] = cached
        return cached

    async def validate(
        self, prompt: PromptInput, *, params: Mapping[str, Any] | None = None
    ) -> None:
        """Check a graph against the server's catalog; raise one ``WorkflowError`` listing every
        problem. A stale catalog is re-read once before failing."""
        from comfykit._exceptions import WorkflowError

        api = prompt_to_api(prompt, params)
        catalog = await self.catalog()
        problems = catalog.problems(api)
        if problems:
            fresh = await self.catalog(refresh=True)
            if fresh.fingerprint != catalog.fingerprint:
                problems = fresh.problems(api)
            if problems:
                raise WorkflowError(problems)

    # -- jobs -----------------------------------------------------------------------------
    async def submit(
        self,
        prompt: PromptInput,
        *,
        params: Mapping[str, Any] | None = None,
        validate: bool | None = None,
        extra_data: Mapping[str, Any] | None = None,
        front: bool = False,
        number: float | None = None,
        output_nodes: Sequence[str] | None = None,
        prompt_id: str | None = None,
    ) -> AsyncJob:
        """Queue a prompt and return its job handle.

        Args:
            prompt: an API-format dict or a :class:`~comfykit.Workflow`.
            params: values for the workflow's named parameters.
            validate: check the graph against the server's catalog first (raises
                :class:`~comfykit.WorkflowError` listing every problem; nothing is sent).
            extra_data: stored with the job (``extra_pnginfo``, ...).
            front: put it ahead of every auto-numbered pending prompt.
            number: explicit queue priority (lower runs first).
            output_nodes: run only these output nodes (``partial_execution_targets``).
            prompt_id: the id to use (default: a fresh UUID, made here so a retried submit
                can tell whether the first attempt arrived and never queues a prompt twice).
        """
        api = prompt_to_api(prompt, params)
        if await self._speaks_v2():
            return await _v2.submit(
                self, api, validate=self._validate_given if validate is None else validate,
                extra_data=extra_data, front=front, number=number, output_nodes=output_nodes,
                prompt_id=prompt_id,
            )  # fmt: skip
        if self._validate if validate is None else validate:
            await self.validate(api)
        pid = prompt_id or str(uuid.uuid4())
        self._shared.check_loop()
        stream = self._shared.stream
        if self._use_ws:
            try:
                await stream.ensure_connected()
            except ComfyConnectionError:
                # Without a socket the job is still tracked, by polling; if HTTP is down too,
                # the POST below says so.
                pass
        tracker = stream.router.register(pid)
        body: dict[str, Any] = {"prompt": api, "client_id": stream.client_id, "prompt_id": pid}
        if extra_data:
            body["extra_data"] = dict(extra_data)
        if number is not None:
            body["number"] = number
        elif front:
            body["front"] = True
        if output_nodes:
            body["partial_execution_targets"] = [str(n) for n in output_nodes]
        connects = stream.connects
        try:
            answer = await self._post_prompt(body, pid)
        except BaseException:
            stream.router.unregister(pid)
            raise
        tracker.mark_submitted()
        if stream.connects != connects:
            # The socket was reopened while the prompt was on its way: the catch-up after the
            # reconnect could not see it yet, so this one catches it up.
            try:
                await self._reconcile([tracker])
            except ComfyError as exc:
                log.info("catching up prompt %s after a reconnect failed: %s", pid, exc)
        return AsyncJob(
            self._jobs, tracker, api, node_errors_from_body(answer.node_errors, api),
            number=answer.number,
        )  # fmt: skip

    async def run(
        self,
        prompt: PromptInput,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
        **submit_options: Any,
    ) -> AsyncResult:
        """Submit and wait: ``submit(prompt, **options)`` then ``result(timeout)``.

        A job not finished within ``timeout`` raises :class:`~comfykit.JobTimeoutError`, which
        carries the job (still running on the server unless ``cancel_on_timeout``)."""
        job = await self.submit(prompt, **submit_options)
        return await job.result(timeout=timeout, cancel_on_timeout=cancel_on_timeout)

    def job(self, prompt_id: str) -> AsyncJob:
        """A handle on a prompt already queued or finished (by this or another client); on
        the v2 backend (``api="v2"``, or ``"auto"`` once detected), on a job by its id."""
        if self._v2.detected == "v2":
            return _v2.follow(self, prompt_id)
        tracker = self._shared.stream.router.register(prompt_id)
        tracker.mark_submitted()
        return AsyncJob(self._jobs, tracker, {}, [], poll_only=True)

    async def _follow(self, prompt_id: str, prompt: dict[str, Any]) -> AsyncJob:
        """A handle on a prompt this server has (queued, running or finished), fed by the
        socket like a submitted one and caught up from ``/queue`` and ``/history`` first (a
        pool picks a job up again this way after losing sight of it)."""
        self._shared.check_loop()
        stream = self._shared.stream
        if self._use_ws:
            try:
                await stream.ensure_connected()
            except ComfyConnectionError:
                pass  # followed by polling; if HTTP is down too, the catch-up below says so
        tracker = stream.router.register(prompt_id)
        tracker.mark_submitted()
        await self._reconcile([tracker])
        return AsyncJob(self._jobs, tracker, prompt, [])

    async def _post_prompt(self, body: dict[str, Any], pid: str) -> PromptResponse:
        try:
            response = await self._request(
                "POST", "/prompt", json=body, idempotent=False, prompt_id=pid
            )
        except _AlreadyQueued:
            return PromptResponse(prompt_id=pid)
        except APIStatusError as exc:
            if exc.status_code == 400 and isinstance(exc.body, dict):
                raise parse_prompt_error(exc.body, body["prompt"], exc.response) from None
            raise
        return PromptResponse.model_validate(_json(response))

    async def _prompt_known(self, prompt_id: str) -> bool:
        """True when the server has the prompt queued, running or finished."""
        return await self._native.prompt_known(prompt_id)

    async def _history_entry(self, prompt_id: str) -> HistoryEntry | None:
        return await self._native.history_entry(prompt_id)

    async def _reconcile(self, trackers: list[JobTracker]) -> None:
        """Catch unfinished jobs up from ``/queue`` then ``/history`` (that order is race-free:
        a prompt leaves the queue only once its history entry is written)."""
        open_ = [t for t in trackers if not t.done]
        if not open_:
            return
        if await self._native.reconcile(open_):  # GET /api/jobs/{id}, once known to be there
            self._shared.stream.notify([t.prompt_id for t in open_])
            return
        queue = await self.queue()
        running = {q.prompt_id for q in queue.running}
        for tracker in open_:
            if tracker.prompt_id in queue:
                tracker.apply_queue(running=tracker.prompt_id in running)
                continue
            entry = await self._history_entry(tracker.prompt_id)
            if entry is not None:
                tracker.apply_history(entry)
            else:
                tracker.apply_missing()
        self._shared.stream.notify([t.prompt_id for t in open_])


class _JobSupport(AsyncJobContext):
    """A client's side of its jobs (:class:`AsyncJobContext`)."""

    def __init__(self, client: AsyncClientCore) -> None:
        self._client = client

    @property
    def client(self) -> AsyncClientCore:
        return self._client

    @property
    def stream(self) -> AsyncEventStream:
        shared = self._client._shared
        shared.check_loop()
        return shared.stream

    @property
    def use_ws(self) -> bool:
        return self._client._use_ws

    async def history_entry(self, prompt_id: str) -> HistoryEntry | None:
        return await self._client._history_entry(prompt_id)

    async def reconcile(self, trackers: list[JobTracker]) -> None:
        await self._client._reconcile(trackers)

    async def cancel(self, prompt_id: str) -> None:
        await self._client._native.cancel(prompt_id)


async def _reconcile_through(
    clients: weakref.WeakSet[AsyncClientCore], trackers: list[JobTracker]
) -> None:
    """The stream's catch-up after a reconnect, made by any client still sharing it."""
    for client in list(clients):
        await client._reconcile(trackers)
        return


async def _close_parts(stream: AsyncEventStream, http: httpx.AsyncClient | None) -> None:
    """Close the stream, then the HTTP pool (``None``: one passed in, not ours to close)."""
    await stream.close()
    if http is not None:
        await http.aclose()


def _close_abandoned(stream: AsyncEventStream, http: httpx.AsyncClient | None) -> None:
    """Finalizer of a client's shared state: close what nobody closed, soon and elsewhere."""
    if not stream.closed:
        stream.close_soon(functools.partial(_close_parts, stream, http))


def _outcome_error(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


def _delay(exc: BaseException | None, attempt: int) -> float:
    """Seconds before retry number ``attempt``: ``Retry-After`` when the server sent one."""
    response = exc.response if isinstance(exc, _RetryableStatus) else None
    return retry_delay(attempt, retry_after_seconds(response))


def _decide(exc: BaseException, idempotent: bool) -> Retry:
    status = exc.response.status_code if isinstance(exc, _RetryableStatus) else None
    return decide(None if status is not None else exc, status, idempotent=idempotent)


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise APIStatusError(
            f"{response.request.method} {response.request.url.path}: expected JSON, got "
            f"{response.text[:200]!r}",
            status_code=response.status_code,
            body=response.text,
            response=response,
        ) from exc


def _status_error(method: str, path: str, response: httpx.Response) -> APIStatusError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    detail = body if isinstance(body, str) else str(body)
    message = f"{method} {path} returned {response.status_code}: {detail[:500]}"
    cls: type[APIStatusError] = APIStatusError
    if response.status_code == 404:
        cls = NotFoundError
    elif response.status_code >= 500:
        cls = ServerError
    return cls(message, status_code=response.status_code, body=body, response=response)
