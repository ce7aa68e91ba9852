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
import contextlib
import copy
import logging
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
    WorkflowError,
)
from comfykit.generation import GenerationRequest
from comfykit.graph import NodeCatalog
from comfykit.server.events import EventHub, JobEvent, within
from comfykit.server.store import FINISHED, JobRow, Store, utcnow

if TYPE_CHECKING:
    from comfykit import AsyncJob
    from comfykit.server.metrics import Metrics
    from comfykit.server.services.files import Files, OutputPrefetch
    from comfykit.server.settings import Settings

__all__ = ["Dispatcher"]

log = logging.getLogger("comfykit.server.dispatcher")

_T = TypeVar("_T")
_STARTED = (ExecutionStart, Executing, Progress, ExecutionCached)
#: Where ComfyUI saves a job's files: ``comfykit-server/<job id>/<node id>_00001_.png`` ...
OUTPUT_FOLDER = "comfykit-server"
#: Save nodes whose first file name is known in advance (``<prefix>_00001_.png``).
_PNG_SAVERS = frozenset({"SaveImage"})


def output_prefix(job_id: str, node_id: str) -> str:
    """The ``filename_prefix`` the service gives a job's save node: unique per job and node,
    so the files of one run can be told from any other's."""
    return f"{OUTPUT_FOLDER}/{job_id}/{node_id}"


@dataclass
class _Active:
    job_id: str
    server_url: str
    handle: AsyncJob | None = None
    cancel: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _Requeued(Exception):
    """The job went back to the service's queue."""


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
    ) -> None:
        self.settings = settings
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
        for row in await self.store.dispatched_jobs():
            self._spawn(self._run(row, reattach=True))
        for url in self.clients:
            self._spawn(self._feed(url))

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
        if self._stopping:
            return False
        limit = self.settings.dispatch_concurrency
        if not any(self.up.get(u) and self._in_flight(u) < limit for u in self.clients):
            return False
        if await self.store.has_unclaimed():  # older jobs go first
            return False
        url = next((u for u in self.clients if self.up.get(u) and self._in_flight(u) < limit), None)
        if url is None or self._stopping:
            return False
        self._active[row.id] = _Active(row.id, url)  # the slot, taken before any wait
        row.server_url = url
        row.dispatched_at = utcnow()
        row.attempts = (row.attempts or 0) + 1
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
                return {"url": url, "status": "disconnected", "error": str(exc)[:300]}
            self._set_up(url, True)
            return {
                "url": url,
                "status": "connected",
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                "version": stats.system.comfyui_version,
                "jobs_in_flight": sum(1 for a in self._active.values() if a.server_url == url),
            }

        results = await asyncio.gather(*(one(u, c) for u, c in self.clients.items()))
        return {r["url"]: r for r in results}

    async def cancel(self, job_id: str, timeout: float = 10.0) -> None:
        """Cancel a dispatched job on its ComfyUI and wait (bounded) until it is recorded."""
        active = self._active.get(job_id)
        if active is None:
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
                    row = await self.store.claim_next(url)
                    failures = 0
                except Exception:
                    failures += 1
                    log.exception("claiming a job failed")
                    await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                    continue
                if row is not None:
                    self._active[row.id] = _Active(row.id, url)
                    self._spawn(self._run(row, reattach=False))
                    # let the job start (up to its submission) before the next claim
                    await asyncio.sleep(0)
                    continue
            with contextlib.suppress(asyncio.TimeoutError):
                await within(wake.wait(), 1.0)

    async def _run(self, row: JobRow, *, reattach: bool) -> None:
        url = row.server_url or ""
        active = self._active.setdefault(row.id, _Active(row.id, url))
        try:
            await self._drive(row, active, reattach)
        except asyncio.CancelledError:
            raise
        except _Requeued:
            pass
        except Exception as exc:
            log.exception("job %s: unexpected error", row.id)
            await self._fail(row, "INTERNAL_ERROR", f"the service failed to run the job: {exc}")
        finally:
            self._active.pop(row.id, None)
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
            except ComfyConnectionError as exc:
                self._set_up(row.server_url or "", False)
                if time.monotonic() >= deadline or self._stopping:
                    await self._fail(
                        row, "COMFYUI_UNAVAILABLE", f"ComfyUI stayed unreachable: {exc}"
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
            queue = await client.queue()
            known = row.prompt_id in queue or bool(await client.history(row.prompt_id))
            if known:
                return client.job(row.prompt_id)
            await self._lost(row, "ComfyUI no longer knows the job (was it restarted?)")
            raise _Requeued
        prompt = await self._prepare(client, row)
        try:
            return await client.submit(prompt, prompt_id=row.prompt_id)
        except (WorkflowError, PromptValidationError) as exc:
            await self._fail(row, "VALIDATION_ERROR", str(exc))
            raise _Requeued from exc

    async def _prepare(self, client: AsyncComfyClient, row: JobRow) -> dict[str, Any]:
        """The job's graph with its uploads sent to this ComfyUI and referenced, and its save
        nodes' file names set by the service (:func:`output_prefix`)."""
        prompt = copy.deepcopy(row.workflow)
        for node_id, node in prompt.items():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            if isinstance(inputs, dict) and isinstance(inputs.get("filename_prefix"), str):
                inputs["filename_prefix"] = output_prefix(row.id, str(node_id))
        for node_id, inputs in (row.uploads or {}).items():
            for input_name, upload_id in inputs.items():
                upload = await self.store.get_upload(upload_id)
                if upload is None:
                    raise WorkflowError(f"upload {upload_id} no longer exists")
                uploaded = await client.upload_image(
                    self.files.upload_path(upload), subfolder="comfykit-server", overwrite=True
                )
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
            prefix = output_prefix(row.id, str(node_id))
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
        try:
            await self._follow_events(row, handle, active, prefetch)
        finally:
            await prefetch.close()

    async def _follow_events(
        self, row: JobRow, handle: AsyncJob, active: _Active, prefetch: OutputPrefetch
    ) -> None:
        started = row.started_at is not None
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
            if isinstance(event, Progress):
                data = {
                    "job_id": row.id,
                    "node": event.node,
                    "value": event.value,
                    "max": event.max,
                }
                fraction = event.value / event.max if event.max else None
                updated, event_id = await self.store.update_job(
                    row.id,
                    {"progress": fraction},
                    only_if_status=["queued", "processing"],
                    event=("progress", data),
                )
                if updated is not None:
                    current = updated
                    self.hub.publish(JobEvent(row.id, "progress", data, event_id))
            elif isinstance(event, Executed):
                prefetch.add(event.output)
            elif isinstance(event, ExecutionSuccess):
                # the prompt is done: its files download alongside the SDK's history read
                prefetch.start()
            elif isinstance(event, PreviewImage):
                data = {
                    "job_id": row.id,
                    "mime_type": event.mime_type,
                    "image": base64.b64encode(event.image).decode(),
                }
                self.hub.publish(JobEvent(row.id, "preview", data, None))
        try:
            result = await handle.result()
        except JobInterrupted as exc:
            if active.cancel:
                await self._finish(row, "cancelled", None)
            else:
                await self._fail(row, "INTERRUPTED", str(exc))
            return
        except ExecutionError as exc:
            details = {
                "node_id": exc.node_id,
                "node_type": exc.node_type,
                "exception_type": exc.exception_type,
                "exception_message": exc.exception_message,
            }
            await self._fail(row, "EXECUTION_ERROR", str(exc), details)
            return
        except JobLost as exc:
            await self._lost(row, str(exc))
            return
        files = [f for f in result.files if f.type == "output"] or list(result.files)
        try:
            outputs = await self.files.copy_outputs(row.id, files, prefetch)
        except OSError as exc:
            await self._fail(row, "STORAGE_ERROR", f"could not store the outputs: {exc}")
            return
        meta = dict(row.meta or {})
        if result.text:
            meta["text"] = result.text
        timings = dict(meta.get("timings") or {})
        if handle.execution_ms is not None:
            timings["execution_ms"] = round(handle.execution_ms, 1)
        meta["timings"] = timings
        await self._finish(row, "completed", None, outputs=outputs, meta=meta, current=current)

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
        data: dict[str, Any] = {"job_id": row.id, "status": status, **(event_data or {})}
        if error is not None:
            data["error"] = error
        if outputs is not None:
            data["outputs"] = len(outputs)
        updated, event_id = await self.store.update_job(
            row.id, values, only_if_status=["queued", "processing"], event=(status, data)
        )
        if updated is None:
            return
        self.metrics.job_duration.labels(status).observe((now - created).total_seconds())
        # the ended row goes with the event: a waiter answers with it (a job that has ended
        # changes no more)
        self.hub.publish(JobEvent(row.id, status, data, event_id, row=updated))
