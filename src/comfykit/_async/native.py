"""ComfyUI's native jobs and assets routes, used when the server has them.

:class:`NativeRoutes` is a client's door to them: it looks the server up once (the version in
``/system_stats`` for the jobs routes, ``/features`` for the assets API; kept in the client's
shared state, so its copies do not ask again) and answers each call from the native route, or
the way every release answers it (``/queue``, ``/history``, ``/interrupt``). Which paths look
the server up: the calls that need the answer (job listing and detail, cancelling); the ones
that work either way (a job's history, the catch-up) use the native route only once it is
known, and never add a request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from comfykit._exceptions import APIStatusError, AssetsUnavailableError, ComfyError, InputError
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
from comfykit._types import (
    Features,
    HistoryEntry,
    JobInfo,
    JobList,
    ServerCapabilities,
    SystemStats,
)

if TYPE_CHECKING:
    import httpx

    from comfykit._async._core import AsyncClientCore
    from comfykit._protocol.tracker import JobTracker

__all__ = ["NativeRoutes"]


class NativeRoutes:
    """One client's use of the native routes (made per call: all its state is shared)."""

    def __init__(self, client: AsyncClientCore, state: NativeState) -> None:
        self._client = client
        self._state = state

    # -- detection -------------------------------------------------------------------------
    async def jobs_api(self) -> bool:
        """Whether ``/api/jobs`` is there, looked up once (``GET /system_stats``)."""
        state = self._state
        if state.jobs_api is None:
            stats = SystemStats.model_validate(await self._client._get_json("/system_stats"))
            state.apply_version(stats.system.comfyui_version)
        return bool(state.jobs_api)

    async def assets_api(self) -> bool:
        """Whether ``/api/assets`` is there, looked up once (``GET /features``)."""
        state = self._state
        if state.assets is None:
            features = Features.model_validate(await self._client._get_json("/features"))
            state.assets = getattr(features, "assets", None) is True
        return state.assets

    async def capabilities(self, *, refresh: bool) -> ServerCapabilities:
        """Both looked up (again with ``refresh``)."""
        state = self._state
        if refresh:
            state.jobs_api = state.job_cancel_api = state.assets = None
        await self.jobs_api()
        await self.assets_api()
        return state.capabilities()

    async def check_assets(self) -> None:
        """Raise :class:`AssetsUnavailableError` unless the server serves ``/api/assets``."""
        if await self.assets_api():
            return
        version = self._state.comfyui_version
        if version is None:
            try:
                await self.jobs_api()
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
    async def list_jobs(
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
        if await self.jobs_api():
            try:
                return JobList.model_validate(await client._get_json("/api/jobs", params))
            except APIStatusError as exc:
                if not self._missing(exc, "jobs_api"):
                    raise
        queue = await client.queue()
        history = await client.history()
        return jobs_from_queue_and_history(
            queue, history, status=wanted, workflow_id=workflow_id, sort_by=sort_by,
            sort_order=sort_order, limit=limit, offset=offset,
        )  # fmt: skip

    async def get_job(self, prompt_id: str, *, detect: bool = True) -> JobInfo | None:
        """The job's detail, ``None`` when the server does not know it. Without ``detect``,
        the native route is used only if already known to be there."""
        if not isinstance(prompt_id, str) or not prompt_id:
            raise InputError(f"prompt_id must be a non-empty string, got {prompt_id!r}")
        native = await self.jobs_api() if detect else bool(self._state.jobs_api)
        client = self._client
        if native:
            try:
                data = await client._get_json(f"/api/jobs/{_seg(prompt_id)}")
            except APIStatusError as exc:
                if exc.status_code == 404 and not route_missing(404, exc.body):
                    return None
                if not self._missing(exc, "jobs_api"):
                    raise
            else:
                return JobInfo.model_validate(data)
        entry = (await client.history(prompt_id)).get(prompt_id)
        if entry is not None:
            return job_from_history(prompt_id, entry, detail=True)
        queue = await client.queue()
        for item in queue.running:
            if item.prompt_id == prompt_id:
                return job_from_queue(item, running=True, detail=True)
        for item in queue.pending:
            if item.prompt_id == prompt_id:
                return job_from_queue(item, running=False, detail=True)
        return None

    async def history_entry(self, prompt_id: str) -> HistoryEntry | None:
        """A finished prompt's history entry: from ``/api/jobs/{id}`` once that is known to
        be there, else from ``/history/{id}`` (no look-up is added)."""
        if self._known():
            job = await self.get_job(prompt_id, detect=False)
            if self._known():
                return history_entry_of(job) if job is not None else None
        return (await self._client.history(prompt_id)).get(prompt_id)

    async def prompt_known(self, prompt_id: str) -> bool:
        """True when the server has the prompt queued, running or finished."""
        try:
            if self._known():
                job = await self.get_job(prompt_id, detect=False)
                if self._known():
                    return job is not None
            if prompt_id in await self._client.queue():
                return True
            return bool(await self._client.history(prompt_id))
        except ComfyError:
            return False

    async def reconcile(self, trackers: list[JobTracker]) -> bool:
        """Catch the trackers up from ``/api/jobs/{id}`` once that is known to be there;
        False (nothing done) otherwise, for the ``/queue`` and ``/history`` catch-up."""
        if not self._known():
            return False
        jobs: list[tuple[JobTracker, JobInfo | None]] = []
        for tracker in trackers:
            job = await self.get_job(tracker.prompt_id, detect=False)
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
    async def cancel(self, prompt_id: str) -> None:
        """Cancel one prompt: ``POST /api/jobs/{id}/cancel`` where the server has it (by id,
        queued or running), else dequeue it and interrupt it if it is the one running."""
        if await self._cancel_api():
            try:
                await self._client._request(
                    "POST", f"/api/jobs/{_seg(prompt_id)}/cancel", idempotent=True
                )
                return
            except APIStatusError as exc:
                if not self._missing(exc, "job_cancel_api"):
                    raise
        await self._client.delete_from_queue([prompt_id])
        await self._client.interrupt(prompt_id)

    async def cancel_many(self, prompt_ids: str | Iterable[str]) -> bool:
        """Cancel prompts by id; True when at least one was queued or running."""
        canonical, other = canonical_ids(prompt_ids)
        client = self._client
        if await self._cancel_api():
            if not canonical:
                return False  # no job of this server has any other id
            try:
                response = await client._request(
                    "POST", "/api/jobs/cancel", json={"job_ids": canonical}, idempotent=True
                )
                return bool(_body(response).get("cancelled"))
            except APIStatusError as exc:
                if not self._missing(exc, "job_cancel_api"):
                    raise
        ids = canonical + other
        if not ids:
            return False
        queue = await client.queue()
        queued = [pid for pid in dict.fromkeys(ids) if pid in queue]
        if not queued:
            return False
        await client.delete_from_queue(queued)
        for pid in queued:
            await client.interrupt(pid)  # only if it is the one running
        return True

    async def _cancel_api(self) -> bool:
        if self._state.job_cancel_api is None:
            await self.jobs_api()
        return bool(self._state.job_cancel_api)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of an answer (``{}`` for anything else: the flag reads as false)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
