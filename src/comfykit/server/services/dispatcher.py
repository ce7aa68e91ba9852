"""The dispatcher: the only code that talks to ComfyUI, always through the SDK.

It keeps the service's own queue (job rows with status ``queued`` and no ``server_url``),
feeds each ComfyUI at most ``dispatch_concurrency`` jobs at once, follows them through the
SDK's job handles and writes every change to the store before publishing it. On start-up it
re-attaches to the jobs a previous process had handed to a ComfyUI, by prompt id; those that
ComfyUI no longer knows are requeued when they had not started, failed with a reason otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import datetime as dt
import errno
import functools
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from comfykit import (
    APIStatusError,
    AsyncComfyClient,
    ComfyConnectionError,
    ComfyError,
    ComfyTimeoutError,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionStart,
    ExecutionSuccess,
    JobInterrupted,
    JobLost,
    JobTimeoutError,
    NotFoundError,
    PreviewImage,
    Progress,
    PromptValidationError,
    ServerError,
    WorkflowError,
)
from comfykit.generation import GenerationRequest
from comfykit.graph import NodeCatalog
from comfykit.server.events import EventHub, JobEvent, within
from comfykit.server.paths import UnsafePathError, safe_relative_path, scrub_paths
from comfykit.server.redact import redact
from comfykit.server.services.blobs import text_outputs
from comfykit.server.services.files import StorageError
from comfykit.server.store import FINISHED, JobRow, Store, ref_asset_id, utcnow
from comfykit.server.webhooks import deliveries_for

if TYPE_CHECKING:
    from comfykit import AsyncJob
    from comfykit.server.metrics import Metrics
    from comfykit.server.services.blobs import BlobStore
    from comfykit.server.services.files import Files, OutputPrefetch
    from comfykit.server.settings import Settings
    from comfykit.server.webhooks import WebhookWorker

__all__ = ["Dispatcher"]

log = logging.getLogger("comfykit.server.dispatcher")

_T = TypeVar("_T")
_STARTED = (ExecutionStart, Executing, Progress, ExecutionCached)
#: Where ComfyUI saves a job's files: ``comfykit-server/<job id>/<node id>_00001_.png`` ...
OUTPUT_FOLDER = "comfykit-server"
#: Save nodes whose first file name is known in advance (``<prefix>_00001_.png``).
_PNG_SAVERS = frozenset({"SaveImage"})
#: The most per-prompt ``extra_data`` entries held in memory at once.
_MAX_EXTRA = 10_000


def output_prefix(job_id: str, node_id: str) -> str:
    """The ``filename_prefix`` the service gives a job's save node: unique per job and node,
    so the files of one run can be told from any other's. The node id comes from the client's
    graph: :class:`~comfykit.server.paths.UnsafePathError` when it cannot be a file name."""
    return str(safe_relative_path(node_id, f"{OUTPUT_FOLDER}/{job_id}"))


@dataclass
class _Active:
    job_id: str
    server_url: str
    handle: AsyncJob | None = None
    cancel: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[Any] | None = None
    #: A submission of the job was sent and not confirmed (it may still land on ComfyUI).
    unconfirmed: bool = False
    #: When (``time.monotonic()``) this replica's lease on the job was taken or last renewed.
    leased_at: float | None = None


class _Writes:
    """A job's event writes and publications, in order, off its follow loop's path: the loop
    goes on to the next event (and to the job's end) while they are written. A progress event
    still waiting for its turn is replaced by a newer one (ComfyUI may send hundreds a
    second)."""

    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._steps: collections.deque[Callable[[], Awaitable[None]]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._progress: dict[str, Any] | None = None

    def add(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` after the ones added before it."""
        self._progress = None  # a waiting progress event is no longer the last one
        self._steps.append(step)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def progress(
        self, data: dict[str, Any], write: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        """Write a progress event (``write(data)``), or update the last one added when it is
        still waiting."""
        if self._progress is not None:
            self._progress.clear()
            self._progress.update(data)
            return
        waiting = dict(data)

        async def step() -> None:
            if self._progress is waiting:
                self._progress = None
            await write(waiting)

        self.add(step)
        self._progress = waiting

    async def _run(self) -> None:
        while self._steps:
            step = self._steps.popleft()
            try:
                await step()
            except Exception:
                log.exception("job %s: writing an event failed", self._job_id)

    async def drain(self) -> None:
        """Wait until everything added so far is written."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        """Drop what is not written yet."""
        self._steps.clear()
        if self._task is not None:
            self._task.cancel()


class _Requeued(Exception):
    """The job went back to the service's queue (or is no longer this replica's)."""


@dataclass
class _Nodes:
    """How far a job's graph has run (from ComfyUI's ``executing`` and ``execution_cached``
    events): the node counts its ``node`` and ``progress`` events carry."""

    workflow: dict[str, Any]
    done: set[str] = field(default_factory=set)
    current: str | None = None

    def cached(self, nodes: list[str]) -> None:
        self.done.update(nodes)

    def executing(self, node: str | None) -> None:
        if self.current is not None:
            self.done.add(self.current)
        self.current = node

    def fields(self) -> dict[str, Any]:
        total = len(self.workflow)
        node = self.workflow.get(self.current or "")
        return {
            "nodes_done": min(len(self.done), total),
            "nodes_total": total,
            "class_type": node.get("class_type") if isinstance(node, dict) else None,
        }


class Dispatcher:
    """Feeds queued jobs to the ComfyUI servers and records what happens to them."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        hub: EventHub,
        files: Files,
        metrics: Metrics,
        *,
        client: AsyncComfyClient | None = None,
        webhooks: WebhookWorker | None = None,
        blobs: BlobStore | None = None,
    ) -> None:
        self.settings = settings
        self.webhooks = webhooks
        #: Where asset inputs are read and finished jobs' outputs recorded as assets.
        self.blobs = blobs
        #: Per-prompt ``extra_data`` (credentials of partner nodes): held in memory only,
        #: sent with the job's prompt, never written to the store.
        self._extra: dict[str, dict[str, Any]] = {}
        self.store = store
        self.hub = hub
        self.files = files
        self.metrics = metrics
        self._given = client
        self.clients: dict[str, AsyncComfyClient] = {}
        self.up: dict[str, bool] = {}
        self._active: dict[str, _Active] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        #: Asks the other replicas to cancel a job this one does not run (the bridge).
        self.remote_cancel: Callable[[str], None] | None = None
        #: This replica's name on the leases of the jobs it runs.
        self.replica_id = f"{socket.gethostname()[:20]}-{uuid.uuid4().hex[:12]}"

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Open the clients, re-attach to dispatched jobs, start one feeder per server."""
        urls = list(self.settings.comfyui_urls)
        if self._given is not None:
            self.clients[self._given.base_url] = self._given
            urls = [self._given.base_url] + [u for u in urls if u != self._given.base_url]
        for url in urls:
            if url not in self.clients:
                self.clients[url] = AsyncComfyClient(
                    url, timeout=self.settings.comfyui_timeout_seconds
                )
            self.up[url] = False
            self._wakes[url] = asyncio.Event()
        if not self.settings.dispatch:
            return  # an API-only replica: `comfykit worker` processes run the jobs
        # One process owning a SQLite store re-attaches to everything at once; replicas
        # sharing PostgreSQL take over only the jobs whose leases lapsed.
        single = not self.store.url.startswith("postgresql")
        lease = self.settings.lease_seconds
        for row in await self.store.take_over(self.replica_id, lease, everything=single):
            self._spawn(self._run(row, reattach=True))
        for url in self.clients:
            self._spawn(self._feed(url))
        self._spawn(self._leases())

    async def stop(self) -> None:
        """Stop feeding and following (jobs stay dispatched in the store; the next start
        re-attaches to them), then close the clients this dispatcher opened."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self.clients.values():
            if client is not self._given:
                with contextlib.suppress(Exception):
                    await client.close()
        self.clients.clear()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def claim_new(self, row: JobRow) -> bool:
        """Claim a job that is about to be written, when a server has a free slot and no older
        job waits in the service's queue: its row then goes into the store already handed to
        that server (``server_url``, ``dispatched_at``, ``attempts``) and :meth:`run_claimed` runs
        it, with no claim of its own. False leaves the row to the feeders (and to
        :meth:`wake`); after True the caller calls :meth:`run_claimed`, or :meth:`release` when
        the row was not written."""
        if self._stopping or not self.settings.dispatch:
            return False
        limit = self.settings.dispatch_concurrency
        if not any(self.up.get(u) and self._in_flight(u) < limit for u in self.clients):
            return False
        if await self.store.has_unclaimed():  # older jobs go first
            return False
        url = next((u for u in self.clients if self.up.get(u) and self._in_flight(u) < limit), None)
        if url is None or self._stopping:
            return False
        leased_at = time.monotonic()
        self._active[row.id] = _Active(row.id, url, leased_at=leased_at)  # the slot, at once
        now = utcnow()
        row.server_url = url
        row.dispatched_at = now
        row.attempts = (row.attempts or 0) + 1
        row.lease_owner = self.replica_id
        row.lease_expires_at = now + dt.timedelta(seconds=self.settings.lease_seconds)
        return True

    def run_claimed(self, row: JobRow) -> None:
        """Run a job :meth:`claim_new` claimed, now that its row is written."""
        self._spawn(self._run(row, reattach=False))

    def release(self, row: JobRow) -> None:
        """Give back the slot :meth:`claim_new` took for a row that was not written."""
        self._active.pop(row.id, None)
        self.wake()

    def wake(self) -> None:
        """Tell the feeders there may be work (a new job, a free slot)."""
        for event in self._wakes.values():
            event.set()

    def hold_extra_data(self, job_id: str, extra_data: dict[str, Any]) -> None:
        """Send ``extra_data`` with the job's prompt when this process submits it (kept in
        memory only: a job submitted after a restart, or by another replica, goes without)."""
        while len(self._extra) >= _MAX_EXTRA:
            self._extra.pop(next(iter(self._extra)))
        self._extra[job_id] = dict(extra_data)

    def drop_extra_data(self, job_id: str) -> None:
        """Forget a job's ``extra_data``."""
        self._extra.pop(job_id, None)

    # -- what the services ask of ComfyUI -------------------------------------------------
    @property
    def primary(self) -> AsyncComfyClient:
        """The client of the first server (used for catalogs and model lists)."""
        for url, client in self.clients.items():
            if self.up.get(url):
                return client
        return next(iter(self.clients.values()))

    async def catalog(self) -> NodeCatalog:
        """The node catalog of the servers (the first reachable one)."""
        return await self._ask(lambda c: c.catalog())

    async def checkpoints(self) -> list[str]:
        """The checkpoints the servers have."""
        return await self._ask(lambda c: c.models("checkpoints"))

    async def resolve_request(self, request: GenerationRequest) -> GenerationRequest:
        """The SDK's resolution of model, sampler alias, scheduler and seed."""
        return await self._ask(lambda c: c.resolve_request(request))

    async def _ask(self, call: Callable[[AsyncComfyClient], Awaitable[_T]]) -> _T:
        last: ComfyConnectionError | None = None
        for url in sorted(self.clients, key=lambda u: not self.up.get(u)):
            try:
                result = await call(self.clients[url])
            except ComfyConnectionError as exc:
                self._set_up(url, False)
                last = exc
                continue
            self._set_up(url, True)
            return result
        assert last is not None
        raise last

    def _set_up(self, url: str, value: bool) -> None:
        self.up[url] = value
        self.metrics.comfyui_up.labels(url).set(1 if value else 0)

    async def probe(self) -> dict[str, dict[str, Any]]:
        """Ask every server for its stats; per server ``status`` and details."""

        async def one(url: str, client: AsyncComfyClient) -> dict[str, Any]:
            started = time.perf_counter()
            try:
                stats = await client.with_options(timeout=3.0, max_retries=0).system_stats()
            except ComfyError as exc:
                self._set_up(url, False)
                return {
                    "url": redact(url),
                    "status": "disconnected",
                    "error": redact(scrub_paths(str(exc)))[:300],
                }
            self._set_up(url, True)
            return {
                "url": redact(url),
                "status": "connected",
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                "version": stats.system.comfyui_version,
                "jobs_in_flight": sum(1 for a in self._active.values() if a.server_url == url),
            }

        results = await asyncio.gather(*(one(u, c) for u, c in self.clients.items()))
        return {r["url"]: r for r in results}

    async def _leases(self) -> None:
        """Renew the leases of the jobs this replica runs (noticing cancels asked through
        another replica), and take over the jobs of replicas that died."""
        lease = self.settings.lease_seconds
        while not self._stopping:
            await asyncio.sleep(lease / 3)
            try:
                mine = list(self._active)
                asked = time.monotonic()
                renewed = dict(await self.store.renew_leases(self.replica_id, mine, lease))
                for job_id in mine:
                    active = self._active.get(job_id)
                    if active is None:
                        continue
                    if job_id not in renewed:
                        # another replica has it now (this one stalled past its lease): stop
                        # following it here; ComfyUI's run of it is the other's to watch
                        log.warning("job %s: its lease passed to another replica", job_id)
                        if active.task is not None and not active.task.done():
                            active.task.cancel()
                        continue
                    active.leased_at = asked
                    if renewed[job_id] and not active.cancel:
                        self.cancel_soon(job_id)
                for row in await self.store.take_over(self.replica_id, lease):
                    if row.id not in self._active:
                        log.info("job %s: taken over from replica %s", row.id, row.lease_owner)
                        self._spawn(self._run(row, reattach=True))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("renewing or taking over leases failed")

    def cancel_soon(self, job_id: str) -> None:
        """Cancel a job this replica runs (asked through another replica); nothing when it
        runs elsewhere."""
        if job_id in self._active and not self._stopping:
            self._spawn(self.cancel(job_id))

    async def cancel(self, job_id: str, timeout: float = 10.0) -> None:
        """Cancel a dispatched job on its ComfyUI and wait (bounded) until it is recorded.

        ComfyUI (0.3.75) has no cancel-by-id route: the prompt is removed from its queue by id,
        and ``/interrupt`` is sent with the prompt id, which ComfyUI honours only while that
        prompt is the running one (a global flag it resets when the next prompt starts). A job
        this process does not follow (another replica's) is stopped the same way on its
        server; its follower records it as cancelled (``cancel_requested`` is in the store)."""
        active = self._active.get(job_id)
        if active is None:
            if self.remote_cancel is not None:  # and the follower hears of it at once
                self.remote_cancel(job_id)
            row = await self.store.get_job(job_id)
            client = self.clients.get(row.server_url or "") if row is not None else None
            if row is not None and client is not None and row.status not in FINISHED:
                with contextlib.suppress(ComfyError):
                    await client.delete_from_queue([row.prompt_id])
                    await client.interrupt(row.prompt_id)
            return
        active.cancel = True
        if active.handle is not None:
            client = self.clients.get(active.server_url)
            with contextlib.suppress(ComfyError):
                if client is not None:
                    await client.delete_from_queue([active.handle.prompt_id])
                await active.handle.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(active.done.wait(), timeout)

    # -- feeding --------------------------------------------------------------------------
    def _in_flight(self, url: str) -> int:
        return sum(1 for a in self._active.values() if a.server_url == url)

    async def _feed(self, url: str) -> None:
        wake = self._wakes[url]
        failures = 0
        while not self._stopping:
            wake.clear()
            if self._in_flight(url) < self.settings.dispatch_concurrency:
                try:
                    leased_at = time.monotonic()
                    row = await self.store.claim_next(
                        url, self.replica_id, self.settings.lease_seconds
                    )
                    failures = 0
                except Exception:
                    failures += 1
                    log.exception("claiming a job failed")
                    await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                    continue
                if row is not None:
                    self._active[row.id] = _Active(row.id, url, leased_at=leased_at)
                    self._spawn(self._run(row, reattach=False))
                    # let the job start (up to its submission) before the next claim
                    await asyncio.sleep(0)
                    continue
            with contextlib.suppress(asyncio.TimeoutError):
                await within(wake.wait(), 1.0)

    async def _run(self, row: JobRow, *, reattach: bool) -> None:
        url = row.server_url or ""
        active = self._active.setdefault(row.id, _Active(row.id, url))
        active.task = asyncio.current_task()
        try:
            await self._drive(row, active, reattach)
        except asyncio.CancelledError:
            raise
        except _Requeued:
            pass
        except Exception:
            log.exception("job %s: unexpected error", row.id)
            await self._fail(
                row, "INTERNAL_ERROR",
                "the service failed to run the job; its id identifies the error in the log",
            )  # fmt: skip
        finally:
            self._active.pop(row.id, None)
            self.drop_extra_data(row.id)
            active.done.set()
            self.wake()

    async def _drive(self, row: JobRow, active: _Active, reattach: bool) -> None:
        client = self.clients.get(row.server_url or "")
        if client is None:
            await self._lost(row, "its ComfyUI server is no longer configured")
            return
        deadline = time.monotonic() + self.settings.reattach_timeout_seconds
        for attempt in range(1000):
            try:
                handle = await self._attach_or_submit(client, row, reattach)
                self._set_up(row.server_url or "", True)
                active.handle = handle
                current = await self.store.get_job(row.id)
                if active.cancel or (current is not None and current.cancel_requested):
                    await handle.cancel()
                await self._follow(row, handle, active)
                return
            except JobTimeoutError:
                raise
            except (ComfyConnectionError, ServerError) as exc:
                # unreachable, or answering 5xx after the SDK's own retries: the same wait
                # (re-attaching first: a submission may have landed)
                self._set_up(row.server_url or "", False)
                if time.monotonic() >= deadline or self._stopping:
                    await self._fail(
                        row,
                        "COMFYUI_UNAVAILABLE",
                        f"ComfyUI stayed unavailable: {redact(scrub_paths(str(exc)))}",
                    )
                    return
                log.info("job %s: ComfyUI unreachable (%s); retrying", row.id, exc)
                await asyncio.sleep(min(0.25 * 2**attempt, 5.0))
                reattach = True
        await self._fail(row, "COMFYUI_UNAVAILABLE", "gave up re-attaching to ComfyUI")

    async def _attach_or_submit(
        self, client: AsyncComfyClient, row: JobRow, reattach: bool
    ) -> AsyncJob:
        # A fresh claim submits: a job is requeued only once its ComfyUI was seen not to know
        # it, and a restart re-attaches (``reattach``) instead of claiming.
        if reattach:
            known = await self._known(client, row)
            unconfirmed = self._active[row.id].unconfirmed if row.id in self._active else False
            if not known and (self._shared or unconfirmed):
                # the replica that had the job submits only while it holds the lease, and a
                # submission lands within its timeout: one on its way shows by then
                await asyncio.sleep(self.settings.comfyui_timeout_seconds + 1)
                known = await self._known(client, row)
            if known:
                return client.job(row.prompt_id)
            await self._lost(row, "ComfyUI no longer knows the job (was it restarted?)")
            raise _Requeued
        try:
            prompt = await self._prepare(client, row)
        except UnsafePathError as exc:
            await self._fail(row, "UNSAFE_PATH", f"the job was not sent to ComfyUI: {exc}")
            raise _Requeued from exc
        except StorageError as exc:
            log.error("job %s: %s", row.id, exc)
            await self._fail(row, "STORAGE_ERROR", "an upload of the job cannot be read")
            raise _Requeued from exc
        active = self._active.get(row.id)
        if self._shared and not await self._hold_lease(row.id, active):
            log.warning("job %s: its lease passed to another replica before it was sent", row.id)
            raise _Requeued
        try:
            if active is not None:
                active.unconfirmed = True
            # bounded, so that a replica taking the job over knows how long to wait for it
            handle = await asyncio.wait_for(
                client.submit(prompt, prompt_id=row.prompt_id, extra_data=self._extra.get(row.id)),
                self.settings.comfyui_timeout_seconds,
            )
            if active is not None:
                active.unconfirmed = False
            return handle
        except asyncio.TimeoutError:
            raise ComfyTimeoutError("submitting the job to ComfyUI timed out") from None
        except (WorkflowError, PromptValidationError) as exc:
            await self._fail(row, "VALIDATION_ERROR", str(exc))
            raise _Requeued from exc

    async def _hold_lease(self, job_id: str, active: _Active | None) -> bool:
        """Whether this replica holds the job's lease, with at least half of it left (a lease
        taken or renewed that recently is not renewed again; else it is renewed now)."""
        lease = self.settings.lease_seconds
        if active is not None and active.leased_at is not None:
            if time.monotonic() - active.leased_at < lease / 2:
                return True
        renewed_at = time.monotonic()
        if not await self.store.renew_leases(self.replica_id, [job_id], lease):
            return False
        if active is not None:
            active.leased_at = renewed_at
        return True

    @property
    def _shared(self) -> bool:
        """Whether other replicas share the store (PostgreSQL)."""
        return self.store.url.startswith("postgresql")

    @staticmethod
    async def _known(client: AsyncComfyClient, row: JobRow) -> bool:
        """Whether ComfyUI has the job's prompt (queued, running or in its history)."""
        queue = await client.queue()
        return row.prompt_id in queue or bool(await client.history(row.prompt_id))

    async def _prepare(self, client: AsyncComfyClient, row: JobRow) -> dict[str, Any]:
        """The job's graph with its uploads sent to this ComfyUI and referenced, and its save
        nodes' file names set by the service (:func:`output_prefix`). Every name sent to
        ComfyUI, and every reference it answers, is checked (``UnsafePathError``)."""
        prompt = copy.deepcopy(row.workflow)
        for node_id, node in prompt.items():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            if isinstance(inputs, dict) and isinstance(inputs.get("filename_prefix"), str):
                inputs["filename_prefix"] = output_prefix(row.id, str(node_id))
        for node_id, inputs in (row.uploads or {}).items():
            for input_name, upload_id in inputs.items():
                asset_id = ref_asset_id(upload_id)
                if asset_id is not None and self.blobs is not None:
                    # a Comfy API v2 asset: its blob, under its hash
                    path, name = await self.blobs.input_file(asset_id)
                else:
                    upload = await self.store.get_upload(upload_id)
                    if upload is None:
                        raise WorkflowError(f"upload {upload_id} no longer exists")
                    path = self.files.upload_path(upload)
                    name = path.name
                safe_relative_path(name, OUTPUT_FOLDER)
                uploaded = await client.upload_image(
                    path, filename=name, subfolder=OUTPUT_FOLDER, overwrite=True
                )
                safe_relative_path(uploaded.name, uploaded.subfolder or "")
                prompt[node_id]["inputs"][input_name] = uploaded.ref
        return prompt

    async def _ran_before(self, row: JobRow) -> str | None:
        """Evidence that ComfyUI already ran the job although it no longer knows it (it was
        restarted after running it while nobody watched): the first file one of its save
        nodes writes. ``None`` when no such file exists (or none can be predicted)."""
        client = self.clients.get(row.server_url or "")
        if client is None:
            return None
        for node_id, node in (row.workflow or {}).items():
            if not isinstance(node, dict) or node.get("class_type") not in _PNG_SAVERS:
                continue
            try:
                prefix = output_prefix(row.id, str(node_id))
            except UnsafePathError:
                continue
            folder, _, name = prefix.rpartition("/")
            ref = {"filename": f"{name}_00001_.png", "subfolder": folder, "type": "output"}
            try:
                await client.download(ref)
            except NotFoundError:
                continue
            except APIStatusError as exc:
                # cannot tell: treat as evidence, so the job is never run twice (a connection
                # error propagates instead: the caller retries while ComfyUI is away)
                return f"{folder}/{ref['filename']} (ComfyUI answered {exc.status_code})"
            return f"{folder}/{ref['filename']}"
        return None

    async def _lost(self, row: JobRow, reason: str) -> None:
        """ComfyUI does not know a dispatched job: requeue it if it never ran (no file of
        it exists on that ComfyUI), fail it with the reason otherwise."""
        current = await self.store.get_job(row.id)
        if current is None or current.status in FINISHED:
            return
        if current.cancel_requested:
            await self._finish(row, "cancelled", None, event_data={"reason": reason})
            return
        evidence = await self._ran_before(row)
        if evidence is not None:
            await self._fail(
                row,
                "JOB_LOST",
                f"{reason}; it had already run there (its output {evidence} exists), so it "
                "is not run again",
                {"evidence": evidence},
            )
            return
        if current.status == "queued":
            # Requeued under a fresh prompt id: ComfyUI was just seen not to know the old one,
            # and the SDK client keeps the old id's finished tracker (it would answer for it).
            meta = dict(current.meta or {})
            meta["previous_prompt_ids"] = [*meta.get("previous_prompt_ids", []), row.prompt_id]
            updated, event_id = await self.store.update_job(
                row.id,
                {
                    "server_url": None,
                    "dispatched_at": None,
                    "prompt_id": str(uuid.uuid4()),
                    "meta": meta,
                },
                only_if_status=["queued"],
                event=("queued", {"job_id": row.id, "status": "queued", "requeued": reason}),
            )
            if updated is not None:
                self.hub.publish(JobEvent(row.id, "queued", {"job_id": row.id}, event_id))
            return
        await self._fail(row, "JOB_LOST", f"the job was running when it was lost: {reason}")

    async def _follow(self, row: JobRow, handle: AsyncJob, active: _Active) -> None:
        # the output files ComfyUI reports are downloaded as soon as the prompt has succeeded,
        # alongside the SDK's read of the job's history; copy_outputs takes them
        prefetch = self.files.prefetch(row.id, self.clients[row.server_url or ""])
        writes = _Writes(row.id)
        try:
            await self._follow_events(row, handle, active, prefetch, writes)
        finally:
            writes.cancel()
            await prefetch.close()

    async def _follow_events(
        self,
        row: JobRow,
        handle: AsyncJob,
        active: _Active,
        prefetch: OutputPrefetch,
        writes: _Writes,
    ) -> None:
        started = row.started_at is not None
        nodes = _Nodes(row.workflow or {})
        # the row as this follower's last write left it (``_finish`` then needs no read)
        current: JobRow | None = None
        async for event in handle.events():
            if not started and isinstance(event, _STARTED):
                started = True
                updated, event_id = await self.store.update_job(
                    row.id,
                    {"status": "processing", "started_at": utcnow()},
                    only_if_status=["queued"],
                    event=("started", {"job_id": row.id, "status": "processing"}),
                )
                if updated is not None:
                    current = updated
                    self.hub.publish(
                        JobEvent(
                            row.id, "started", {"job_id": row.id, "status": "processing"}, event_id
                        )
                    )
            if isinstance(event, ExecutionCached):
                nodes.cached(event.nodes)
            elif isinstance(event, Executing):
                nodes.executing(event.node)
                if event.node is not None:
                    node = {"job_id": row.id, "node": event.node, **nodes.fields()}
                    writes.add(functools.partial(self._node_event, row.id, node, utcnow()))
            if isinstance(event, Progress):
                data = {
                    "job_id": row.id,
                    "node": event.node,
                    "value": event.value,
                    "max": event.max,
                    **nodes.fields(),
                }
                writes.progress(data, functools.partial(self._progress_event, row.id))
            elif isinstance(event, Executed):
                prefetch.add(event.output)
            elif isinstance(event, ExecutionSuccess):
                # the prompt is done: its files download alongside the SDK's history read
                prefetch.start()
            elif isinstance(event, PreviewImage):
                data = {
                    "job_id": row.id,
                    "node": event.node_id or nodes.current,
                    "mime_type": event.mime_type,
                    "image": base64.b64encode(event.image).decode(),
                }
                preview = JobEvent(row.id, "preview", data, None)
                writes.add(functools.partial(self._publish, preview))
        await writes.drain()  # the job's events are in the store before its end
        try:
            result = await handle.result()
        except JobInterrupted as exc:
            current = None if active.cancel else await self.store.get_job(row.id)
            if active.cancel or (current is not None and current.cancel_requested):
                await self._finish(row, "cancelled", None)
            else:
                await self._fail(row, "INTERRUPTED", scrub_paths(str(exc)))
            return
        except ExecutionError as exc:
            details = {
                "node_id": exc.node_id,
                "node_type": exc.node_type,
                "exception_type": exc.exception_type,
                "exception_message": scrub_paths(exc.exception_message),
            }
            # ComfyUI's message, without its traceback and with its file paths cut short
            await self._fail(row, "EXECUTION_ERROR", scrub_paths(str(exc)), details)
            return
        except JobLost as exc:
            await self._lost(row, scrub_paths(str(exc)))
            return
        files = [f for f in result.files if f.type == "output"] or list(result.files)
        try:
            outputs = await self.files.copy_outputs(row.id, files, prefetch)
        except UnsafePathError as exc:
            await prefetch.close()  # nothing of the job is left before it ends
            log.warning("job %s: refused an output of ComfyUI: %s", row.id, exc)
            await self._fail(
                row, "UNSAFE_PATH",
                f"ComfyUI reported an output that cannot be stored: {exc}; nothing was stored",
                {"reason": exc.reason},
            )  # fmt: skip
            return
        except (OSError, StorageError) as exc:
            await prefetch.close()
            # the details (file system paths) go to the log only
            log.error("job %s: storing the outputs failed: %r", row.id, exc)
            code: str | None = None
            if isinstance(exc, StorageError):
                reason = "a path in the storage dir leads out of it (a symlink?)"
            else:
                # the OS's words without the path: "No space left on device (ENOSPC)"
                cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
                code = errno.errorcode.get(cause.errno or 0)
                words = cause.strerror or type(cause).__name__
                reason = f"{words} ({code})" if code else words
            await self._fail(
                row, "STORAGE_ERROR",
                f"could not store the outputs: {reason}; the job id identifies the error in "
                "the service's log",
                {"errno": code},
            )  # fmt: skip
            return
        meta = dict(row.meta or {})
        if result.text:
            meta["text"] = result.text
        timings = dict(meta.get("timings") or {})
        if handle.execution_ms is not None:
            timings["execution_ms"] = round(handle.execution_ms, 1)
        meta["timings"] = timings
        if meta.get("api") == "v2":  # its outputs (files and texts) are assets when it ends
            await self._commit_assets(row, outputs, text_outputs(meta))
        await self._finish(row, "completed", None, outputs=outputs, meta=meta, current=current)

    async def _node_event(self, job_id: str, data: dict[str, Any], when: dt.datetime) -> None:
        event_id = await self.store.add_event_while_active(job_id, "node", data, when)
        if event_id is not None:
            self.hub.publish(JobEvent(job_id, "node", data, event_id))

    async def _progress_event(self, job_id: str, data: dict[str, Any]) -> None:
        value, most = data["value"], data["max"]
        fraction = value / most if most else None
        updated, event_id = await self.store.update_job(
            job_id,
            {"progress": fraction},
            only_if_status=["queued", "processing"],
            event=("progress", data),
        )
        if updated is not None:
            self.hub.publish(JobEvent(job_id, "progress", data, event_id))

    async def _publish(self, event: JobEvent) -> None:
        self.hub.publish(event)

    async def _commit_assets(
        self, row: JobRow, outputs: list[dict[str, Any]], texts: dict[str, list[str]]
    ) -> None:
        """Record a v2 job's stored outputs as its assets before it ends (a v1 job's are
        recorded when it is first read through ``/api/v2``). A failure is logged, not the
        job's: they are recorded again when the job is read."""
        if self.blobs is None:
            return
        try:
            await self.blobs.commit_outputs(row, outputs, texts)
        except Exception:
            log.exception("job %s: recording its outputs as assets failed", row.id)

    async def _fail(self, row: JobRow, code: str, message: str, details: Any = None) -> None:
        error = {"code": code, "message": message, "details": details}
        await self._finish(row, "failed", error)

    async def _finish(
        self,
        row: JobRow,
        status: str,
        error: dict[str, Any] | None,
        *,
        outputs: list[dict[str, Any]] | None = None,
        meta: dict[str, Any] | None = None,
        event_data: dict[str, Any] | None = None,
        current: JobRow | None = None,
    ) -> None:
        """Record the job's end (only while it has not ended) and publish it. ``current``: the
        row as the caller's own last write left it (its creation and start times), else it is
        read."""
        now = utcnow()
        values: dict[str, Any] = {"status": status, "completed_at": now, "error": error}
        if current is None:
            current = await self.store.get_job(row.id)
        base_meta = dict(
            meta if meta is not None else (current.meta if current else row.meta) or {}
        )
        timings = dict(base_meta.get("timings") or {})
        created = current.created_at if current else row.created_at
        timings["total_ms"] = round((now - created).total_seconds() * 1000, 1)
        if current is not None and current.started_at is not None:
            timings["queued_ms"] = round((current.started_at - created).total_seconds() * 1000, 1)
        base_meta["timings"] = timings
        values["meta"] = base_meta
        if outputs is not None:
            values["outputs"] = outputs
            # the quota counts what the job really made from now on
            values["images"] = sum(
                1 for o in outputs if str(o.get("content_type", "")).startswith("image/")
            )
        data: dict[str, Any] = {"job_id": row.id, "status": status, **(event_data or {})}
        if error is not None:
            data["error"] = error
        if outputs is not None:
            data["outputs"] = len(outputs)
        # the job's webhook message is written with its end, in one transaction
        updated, event_id = await self.store.update_job(
            row.id, values, only_if_status=["queued", "processing"], event=(status, data),
            deliveries=deliveries_for,
        )  # fmt: skip
        if updated is None:
            return
        if updated.webhook_url and self.webhooks is not None:
            self.webhooks.wake()
        self.metrics.job_duration.labels(status).observe((now - created).total_seconds())
        # the ended row goes with the event: a waiter answers with it (a job that has ended
        # changes no more)
        self.hub.publish(JobEvent(row.id, status, data, event_id, row=updated))
