# Generated from comfykit/_async by scripts/unasync.py. Do not edit: edit _async instead.
"""ComfyUI's native jobs and assets routes, used when the server has them.

:class:`AssetRoutes` sends the assets API's calls (``/api/assets*``, ``/api/tags``), each after
the arguments are checked and :meth:`NativeRoutes.check_assets` found the API there.

:class:`NativeRoutes` is a client's door to them: it looks the server up once (the version in
``/system_stats`` for the jobs routes, ``/features`` for the assets API; kept in the client's
shared state, so its copies do not ask again) and answers each call from the native route, or
the way every release answers it (``/queue``, ``/history``, ``/interrupt``). Which paths look
the server up: the calls that need the answer (job listing and detail, cancelling); the ones
that work either way (a job's history, the catch-up) use the native route only once it is
known, and never add a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from comfykit._exceptions import (
    APIStatusError,
    AssetsUnavailableError,
    ComfyError,
    InputError,
    NotFoundError,
)
from comfykit._protocol import assets as wire
from comfykit._protocol.native import (
    NativeState,
    canonical_ids,
    history_entry_of,
    job_from_history,
    job_from_queue,
    jobs_from_queue_and_history,
    jobs_params,
    route_missing,
    statuses,
)
from comfykit._sync import _v2
from comfykit._types import (
    Asset,
    AssetCreated,
    AssetList,
    AssetTagList,
    AssetTagsAdded,
    AssetTagsRemoved,
    Features,
    HistoryEntry,
    JobInfo,
    JobList,
    ServerCapabilities,
    SystemStats,
)
from comfykit._uploads import read_file_input

if TYPE_CHECKING:
    import httpx

    from comfykit._protocol.tracker import JobTracker
    from comfykit._sync._core import ClientCore
    from comfykit._uploads import FileInput

__all__ = ["AssetRoutes", "NativeRoutes"]


class NativeRoutes:
    """One client's use of the native routes (made per call: all its state is shared)."""

    def __init__(self, client: ClientCore, state: NativeState) -> None:
        self._client = client
        self._state = state

    # -- detection -------------------------------------------------------------------------
    def jobs_api(self) -> bool:
        """Whether ``/api/jobs`` is there, looked up once (``GET /system_stats``)."""
        state = self._state
        if state.jobs_api is None:
            stats = SystemStats.model_validate(self._client._get_json("/system_stats"))
            state.apply_version(stats.system.comfyui_version)
        return bool(state.jobs_api)

    def assets_api(self) -> bool:
        """Whether ``/api/assets`` is there, looked up once (``GET /features``)."""
        state = self._state
        if state.assets is None:
            features = Features.model_validate(self._client._get_json("/features"))
            state.assets = getattr(features, "assets", None) is True
        return state.assets

    def capabilities(self, *, refresh: bool) -> ServerCapabilities:
        """Both looked up (again with ``refresh``)."""
        state = self._state
        if refresh:
            state.jobs_api = state.job_cancel_api = state.assets = None
        self.jobs_api()
        self.assets_api()
        return state.capabilities()

    def check_assets(self) -> None:
        """Raise :class:`AssetsUnavailableError` unless the server serves ``/api/assets``."""
        if self.assets_api():
            return
        version = self._state.comfyui_version
        if version is None:
            try:
                self.jobs_api()
            except ComfyError:
                pass
            version = self._state.comfyui_version
        where = f"ComfyUI {version}" if version else "this ComfyUI"
        raise AssetsUnavailableError(
            f"{where} at {self._client.base_url} does not serve /api/assets (its /features has "
            "no assets flag): it predates the assets API, or was started without it "
            "(--enable-assets where it is opt-in, no --disable-assets where it is on by default)",
            comfyui_version=version,
        )

    def _known(self) -> bool:
        """True when the jobs routes are known to be there (no look-up)."""
        return bool(self._state.jobs_api)

    def _missing(self, exc: APIStatusError, attribute: str) -> bool:
        """True (and the route marked absent) when ``exc`` says the route does not exist."""
        if not route_missing(exc.status_code, exc.body):
            return False
        setattr(self._state, attribute, False)
        if attribute == "jobs_api":
            self._state.job_cancel_api = False
        return True

    # -- jobs ------------------------------------------------------------------------------
    def list_jobs(
        self,
        *,
        status: str | Iterable[str] | None,
        workflow_id: str | None,
        sort_by: str,
        sort_order: str,
        limit: int | None,
        offset: int,
    ) -> JobList:
        wanted = statuses(status)
        params = jobs_params(
            status=wanted, workflow_id=workflow_id, sort_by=sort_by, sort_order=sort_order,
            limit=limit, offset=offset,
        )  # fmt: skip
        client = self._client
        if self.jobs_api():
            try:
                return JobList.model_validate(client._get_json("/api/jobs", params))
            except APIStatusError as exc:
                if not self._missing(exc, "jobs_api"):
                    raise
        queue = client.queue()
        history = client.history()
        return jobs_from_queue_and_history(
            queue, history, status=wanted, workflow_id=workflow_id, sort_by=sort_by,
            sort_order=sort_order, limit=limit, offset=offset,
        )  # fmt: skip

    def get_job(self, prompt_id: str, *, detect: bool = True) -> JobInfo | None:
        """The job's detail, ``None`` when the server does not know it. Without ``detect``,
        the native route is used only if already known to be there."""
        if not isinstance(prompt_id, str) or not prompt_id:
            raise InputError(f"prompt_id must be a non-empty string, got {prompt_id!r}")
        native = self.jobs_api() if detect else bool(self._state.jobs_api)
        client = self._client
        if native:
            try:
                data = client._get_json(f"/api/jobs/{_seg(prompt_id)}")
            except APIStatusError as exc:
                if exc.status_code == 404 and not route_missing(404, exc.body):
                    return None
                if not self._missing(exc, "jobs_api"):
                    raise
            else:
                return JobInfo.model_validate(data)
        entry = (client.history(prompt_id)).get(prompt_id)
        if entry is not None:
            return job_from_history(prompt_id, entry, detail=True)
        queue = client.queue()
        for item in queue.running:
            if item.prompt_id == prompt_id:
                return job_from_queue(item, running=True, detail=True)
        for item in queue.pending:
            if item.prompt_id == prompt_id:
                return job_from_queue(item, running=False, detail=True)
        return None

    def history_entry(self, prompt_id: str) -> HistoryEntry | None:
        """A finished prompt's history entry: from ``/api/jobs/{id}`` once that is known to
        be there, else from ``/history/{id}`` (no look-up is added)."""
        if self._known():
            job = self.get_job(prompt_id, detect=False)
            if self._known():
                return history_entry_of(job) if job is not None else None
        return (self._client.history(prompt_id)).get(prompt_id)

    def prompt_known(self, prompt_id: str) -> bool:
        """True when the server has the prompt queued, running or finished."""
        try:
            if self._known():
                job = self.get_job(prompt_id, detect=False)
                if self._known():
                    return job is not None
            if prompt_id in self._client.queue():
                return True
            return bool(self._client.history(prompt_id))
        except ComfyError:
            return False

    def reconcile(self, trackers: list[JobTracker]) -> bool:
        """Catch the trackers up from ``/api/jobs/{id}`` once that is known to be there;
        False (nothing done) otherwise, for the ``/queue`` and ``/history`` catch-up."""
        if not self._known():
            return False
        jobs: list[tuple[JobTracker, JobInfo | None]] = []
        for tracker in trackers:
            job = self.get_job(tracker.prompt_id, detect=False)
            if not self._known():
                return False
            jobs.append((tracker, job))
        for tracker, job in jobs:
            entry = history_entry_of(job) if job is not None else None
            if job is None:
                tracker.apply_missing()
            elif entry is not None:
                tracker.apply_history(entry)
            else:
                tracker.apply_queue(running=job.status == "in_progress")
        return True

    # -- cancel ----------------------------------------------------------------------------
    def cancel(self, prompt_id: str) -> None:
        """Cancel one prompt: ``POST /api/jobs/{id}/cancel`` where the server has it (by id,
        queued or running), else dequeue it and interrupt it if it is the one running."""
        if self._cancel_api():
            try:
                self._client._request(
                    "POST", f"/api/jobs/{_seg(prompt_id)}/cancel", idempotent=True
                )
                return
            except APIStatusError as exc:
                if not self._missing(exc, "job_cancel_api"):
                    raise
        self._client.delete_from_queue([prompt_id])
        self._client.interrupt(prompt_id)

    def cancel_many(self, prompt_ids: str | Iterable[str]) -> bool:
        """Cancel prompts by id; True when at least one was queued or running."""
        canonical, other = canonical_ids(prompt_ids)
        client = self._client
        if self._cancel_api():
            if not canonical:
                return False  # no job of this server has any other id
            try:
                response = client._request(
                    "POST", "/api/jobs/cancel", json={"job_ids": canonical}, idempotent=True
                )
                return bool(_body(response).get("cancelled"))
            except APIStatusError as exc:
                if not self._missing(exc, "job_cancel_api"):
                    raise
        ids = canonical + other
        if not ids:
            return False
        queue = client.queue()
        queued = [pid for pid in dict.fromkeys(ids) if pid in queue]
        if not queued:
            return False
        client.delete_from_queue(queued)
        for pid in queued:
            client.interrupt(pid)  # only if it is the one running
        return True

    def _cancel_api(self) -> bool:
        if self._state.job_cancel_api is None:
            self.jobs_api()
        return bool(self._state.job_cancel_api)


class AssetRoutes:
    """One client's use of ComfyUI's assets API (made per call: all its state is shared).

    Each call checks its arguments (:class:`~comfykit.InputError`, nothing sent), then that the
    server serves the API (:class:`~comfykit.AssetsUnavailableError` otherwise, nothing else
    sent), then sends its request; a 503 ``SERVICE_DISABLED`` answer (the API turned off while
    the server runs) is an ``AssetsUnavailableError`` too."""

    def __init__(self, client: ClientCore, state: NativeState) -> None:
        self._client = client
        self._state = state

    def _unavailable(self, exc: APIStatusError, method: str, path: str) -> ComfyError:
        if exc.status_code != 503 or not wire.service_disabled(exc.body):
            return exc
        self._state.assets = False
        return AssetsUnavailableError(
            f"{method} {path}: the assets API of {self._client.base_url} is disabled (503 "
            "SERVICE_DISABLED): start the server with --enable-assets",
            comfyui_version=self._state.comfyui_version,
        )

    def _ready(self, method: str, path: str) -> None:
        """Raise unless the request can be sent: a client on the v2 backend has no ComfyUI
        route (:class:`~comfykit.UnsupportedOperationError` naming this one), a server without
        the assets API an :class:`AssetsUnavailableError`."""
        if self._client._v2.choice != "comfyui":
            _v2.require_comfyui(self._client, method, path)
        NativeRoutes(self._client, self._state).check_assets()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self._ready(method, path)
        try:
            return self._client._request(method, path, **kwargs)
        except APIStatusError as exc:
            raise self._unavailable(exc, method, path) from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise APIStatusError(
                f"{method} {path}: expected JSON, got {response.text[:200]!r}",
                status_code=response.status_code, body=response.text, response=response,
            ) from exc  # fmt: skip

    def list_assets(
        self,
        *,
        include_tags: str | Iterable[str] | None,
        exclude_tags: str | Iterable[str] | None,
        name_contains: str | None,
        metadata_filter: Mapping[str, Any] | None,
        limit: int | None,
        offset: int,
        sort: str,
        order: str,
    ) -> AssetList:
        params = wire.assets_params(
            include_tags=include_tags, exclude_tags=exclude_tags, name_contains=name_contains,
            metadata_filter=metadata_filter, limit=limit, offset=offset, sort=sort, order=order,
        )  # fmt: skip
        return AssetList.model_validate(self._json("GET", "/api/assets", params=params))

    def get(self, asset_id: str) -> Asset:
        aid = wire.asset_id(asset_id)
        return Asset.model_validate(self._json("GET", f"/api/assets/{aid}"))

    def download(
        self, asset_id: str, dest: str | Path | IO[bytes] | None, *, overwrite: bool
    ) -> bytes | Path | None:
        aid = wire.asset_id(asset_id)
        path = f"/api/assets/{aid}/content"
        self._ready("GET", path)

        def name(response: httpx.Response) -> str:
            return wire.attachment_name(response.headers.get("content-disposition")) or aid

        try:
            return self._client._fetch(path, {}, dest, name=name, overwrite=overwrite)
        except APIStatusError as exc:
            raise self._unavailable(exc, "GET", path) from exc

    def upload(
        self,
        data: FileInput,
        *,
        tags: str | Iterable[str],
        name: str | None,
        user_metadata: Mapping[str, Any] | None,
        filename: str | None,
    ) -> AssetCreated:
        content, stored_as, _ = read_file_input(data, filename)
        files, form = wire.upload_form(
            content, stored_as, tags=tags, name=name, user_metadata=user_metadata
        )
        body = self._json("POST", "/api/assets", files=files, data=form)
        return AssetCreated.model_validate(body)

    def from_hash(
        self,
        hash: str,
        *,
        name: str | None,
        tags: str | Iterable[str] | None,
        user_metadata: Mapping[str, Any] | None,
    ) -> AssetCreated:
        body = wire.from_hash_body(hash, name=name, tags=tags, user_metadata=user_metadata)
        data = self._json("POST", "/api/assets/from-hash", json=body)
        return AssetCreated.model_validate(data)

    def has_hash(self, hash: str) -> bool:
        checked = wire.blake3_hash(hash)
        try:
            self._send("HEAD", f"/api/assets/hash/{_seg(checked)}")
        except NotFoundError:
            return False
        return True

    def update(
        self, asset_id: str, *, name: str | None, user_metadata: Mapping[str, Any] | None
    ) -> Asset:
        aid = wire.asset_id(asset_id)
        body = wire.update_body(name=name, user_metadata=user_metadata)
        data = self._json("PUT", f"/api/assets/{aid}", json=body, idempotent=True)
        return Asset.model_validate(data)

    def delete(self, asset_id: str) -> None:
        aid = wire.asset_id(asset_id)
        self._send("DELETE", f"/api/assets/{aid}")

    def tags(
        self, *, prefix: str | None, limit: int | None, offset: int, order: str, include_zero: bool
    ) -> AssetTagList:
        params = wire.tags_params(
            prefix=prefix, limit=limit, offset=offset, order=order, include_zero=include_zero
        )
        return AssetTagList.model_validate(self._json("GET", "/api/tags", params=params))

    def add_tags(self, asset_id: str, tags: str | Iterable[str]) -> AssetTagsAdded:
        aid = wire.asset_id(asset_id)
        body = {"tags": wire.tag_list(tags)}
        data = self._json("POST", f"/api/assets/{aid}/tags", json=body, idempotent=True)
        return AssetTagsAdded.model_validate(data)

    def remove_tags(self, asset_id: str, tags: str | Iterable[str]) -> AssetTagsRemoved:
        aid = wire.asset_id(asset_id)
        body = {"tags": wire.tag_list(tags)}
        data = self._json("DELETE", f"/api/assets/{aid}/tags", json=body, idempotent=True)
        return AssetTagsRemoved.model_validate(data)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of an answer (``{}`` for anything else: the flag reads as false)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
