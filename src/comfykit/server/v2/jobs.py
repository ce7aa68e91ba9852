"""Comfy API v2 jobs over the service's own: submission (``core/ASSET`` inputs, the
``Idempotency-Key``), the job object, its workflow, cancel, and the live event stream.

The service's states map onto the contract's: ``queued`` → ``queued``, ``processing`` →
``running`` (``canceling`` once a cancel was asked), ``completed`` → ``succeeded``, ``failed``
→ ``failed``, ``cancelled`` → ``canceled``. ``expired`` is what retention removed: a succeeded
job whose outputs passed their deadline. A job lost in a restart is never ``expired``: the
dispatcher requeues it or fails it with its reason (``job_lost``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from comfykit import WorkflowError
from comfykit.graph.ui_format import is_api_prompt, is_ui_workflow, ui_to_api
from comfykit.server.errors import ServiceError
from comfykit.server.events import TERMINAL_EVENTS, JobEvent, follow
from comfykit.server.paths import scrub_paths
from comfykit.server.services.blobs import HASH_PREFIX, text_outputs
from comfykit.server.store import FINISHED, IdempotencyKeyReused, JobEventRow, JobRow, utcnow
from comfykit.server.v2.assets import AssetService, idempotency_claim
from comfykit.server.v2.errors import v2_error
from comfykit.server.v2.models import (
    NEVER,
    Job,
    JobBody,
    JobError,
    JobStatus,
    JobUrls,
    JobWorkflowResponse,
    Output,
    OutputType,
    PreviewEvent,
    Progress,
    StatusEvent,
)

if TYPE_CHECKING:
    from comfykit.server.auth import Principal
    from comfykit.server.events import EventHub
    from comfykit.server.services.blobs import BlobStore
    from comfykit.server.services.jobs import JobService
    from comfykit.server.settings import Settings
    from comfykit.server.store import AssetRow, BlobRow, Store

__all__ = ["V2Jobs", "status_of"]

#: Fields of a ``POST /api/v2/jobs`` body the contract reserves and refuses today.
RESERVED = ("webhook_url", "inputs")
#: The events a progress snapshot is made from.
_PROGRESS_EVENTS = ("node", "progress")
#: Seconds between two ``progress`` events of a stream (the contract: about 2 per second).
PROGRESS_EVERY = 0.5
#: Seconds between two reads of the job while a stream follows it (queue position, canceling).
POLL_EVERY = 2.0
#: Seconds of silence after which a stream sends a comment (the client's idle timeout is 45).
KEEPALIVE_EVERY = 15.0
#: The service's error codes of failed jobs, as the contract's ``job.error.code``.
_ERROR_CODES = {
    "EXECUTION_ERROR": "node_execution_error",
    "VALIDATION_ERROR": "invalid_workflow",
    "COMFYUI_UNAVAILABLE": "upstream_error",
}


def status_of(row: JobRow, retention_days: float | None, now: dt.datetime) -> JobStatus:
    """The contract's status of a job row."""
    if row.status in ("queued", "processing"):
        if row.cancel_requested:
            return "canceling"
        return "queued" if row.status == "queued" else "running"
    if row.status == "completed":
        return "expired" if _expired(row, retention_days, now) else "succeeded"
    return "failed" if row.status == "failed" else "canceled"


def _expired(row: JobRow, retention_days: float | None, now: dt.datetime) -> bool:
    """Retention has removed (or is due to remove) the job's outputs."""
    if retention_days is None or not row.outputs or row.completed_at is None:
        return False
    return row.completed_at + dt.timedelta(days=retention_days) <= now


def output_type(content_type: str, name: str) -> OutputType:
    """The contract's kind of an output."""
    major = content_type.split("/", 1)[0]
    if name.endswith(".latent"):
        return "latent"
    if major in ("image", "video", "audio", "text"):
        return major  # type: ignore[return-value]
    return "file"


def _ms(start: dt.datetime | None, end: dt.datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


def progress_from(event: str, data: Mapping[str, Any], nodes_total: int) -> Progress:
    """A complete snapshot from the newest ``node`` or ``progress`` event of a job: the share
    of its nodes done, the running node's sampler steps counted in."""
    total = int(data.get("nodes_total") or nodes_total or 0)
    done = min(int(data.get("nodes_done") or 0), total)
    node = data.get("node")
    node_class = data.get("class_type")
    step = steps = None
    if event == "progress" and data.get("max"):
        steps = int(data["max"])
        step = min(int(data.get("value") or 0), steps)
    share = (done + (step / steps if step is not None and steps else 0.0)) / total if total else 0
    label = node_class or (f"node {node}" if node is not None else None)
    message = f"{label} {step}/{steps}" if label and steps else label
    return Progress(
        value=min(1.0, max(0.0, share)), nodes_done=done, nodes_total=total,
        current_node=str(node) if node is not None else None,
        current_node_class=str(node_class) if node_class is not None else None,
        step=step, steps=steps, message=message,
    )  # fmt: skip


def _frame(event: str, payload: BaseModel) -> bytes:
    data = payload.model_dump(mode="json", exclude_none=event == "status")
    if event == "status":
        data.setdefault("queue_position", None)
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class V2Jobs:
    """The Comfy API v2 face of the service's jobs."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        hub: EventHub,
        jobs: JobService,
        assets: AssetService,
        blobs: BlobStore,
    ) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.jobs = jobs
        self.assets = assets
        self.blobs = blobs

    # -- submission -----------------------------------------------------------------------
    async def submit(
        self, body: JobBody, who: Principal, *, idempotency_key: str | None, base: str
    ) -> JobRow:
        """Check a submitted workflow and queue it as a job of ``who``.

        Checked first, in order: the reserved fields, the workflow's format (UI-format: 422
        ``workflow_format_ui`` unless ``x-comfykit-convert-ui``), its ``core/ASSET`` inputs
        (422 ``missing_asset``), the graph against the node catalog (422 ``invalid_workflow``
        with per-node details). Then the job, the claim of its ``Idempotency-Key`` (422
        ``idempotency_key_reuse``: never run twice) and the asset inputs' locks are written in
        one transaction with the quota checks: a key is claimed exactly when its job exists.
        ``extra_data`` is kept in memory and sent with the prompt, never stored.
        """
        extra = body.model_extra or {}
        for name in RESERVED:
            if name in extra:
                raise v2_error(
                    422, "invalid_request", f"{name} is reserved by the contract and not accepted",
                    {"field": name, "rule": "reserved"},
                )  # fmt: skip
        early = idempotency_claim(who, "jobs", idempotency_key, "")
        graph: Any = body.workflow
        if is_ui_workflow(graph):
            if not body.convert_ui:
                raise v2_error(
                    422, "workflow_format_ui",
                    "the workflow is in the editor's UI format; submit the API format (Save "
                    "(API Format) in ComfyUI), or send x-comfykit-convert-ui: true to have it "
                    "converted",
                )  # fmt: skip
            try:
                graph = ui_to_api(graph, await self.jobs.dispatcher.catalog())
            except WorkflowError as exc:
                raise _invalid(exc) from None
        if not is_api_prompt(graph):
            raise v2_error(
                422, "invalid_workflow",
                "workflow must be an API-format graph: an object of node id -> "
                "{class_type, inputs}",
            )  # fmt: skip
        refs = await self.assets.resolve(graph, who)
        try:
            api = await self.jobs.api_workflow_from(refs.graph, skip=refs.inputs)
        except WorkflowError as exc:
            raise _invalid(exc) from None
        row = self.jobs.new_row(
            kind="workflow", workflow=api, uploads=refs.uploads, owner=who, base=base,
            meta={"graph": graph, "timings": {}, "api": "v2"},
        )  # fmt: skip
        claim = dataclasses.replace(early, resource_id=row.id, now=utcnow()) if early else None

        async def guard(session: Any) -> None:
            if claim is not None:
                await self.store.claim_key(session, claim)
            locked = await self.store.lock_assets(session, refs.asset_ids)
            gone = sorted(set(refs.asset_ids) - set(locked))
            if gone:
                raise v2_error(
                    422, "missing_asset", f"asset {gone[0]} was deleted meanwhile",
                    {"missing": [{"asset_id": a, "reason": "not_found"} for a in gone]},
                )  # fmt: skip

        api_key = body.extra_data.api_key_comfy_org if body.extra_data is not None else None
        if api_key:
            self.jobs.dispatcher.hold_extra_data(row.id, {"api_key_comfy_org": api_key})
        try:
            await self.jobs.enqueue([row], who, guard=guard)
        except IdempotencyKeyReused:
            self.jobs.dispatcher.drop_extra_data(row.id)
            raise v2_error(
                422,
                "idempotency_key_reuse",
                "this Idempotency-Key was already used (keys are single-use for 24 hours); "
                "poll or list your jobs for the one it created",
            ) from None
        except BaseException:
            self.jobs.dispatcher.drop_extra_data(row.id)
            raise
        return row

    # -- the job object -------------------------------------------------------------------
    async def outputs(self, row: JobRow, origin: str) -> list[Output]:
        """A succeeded job's outputs as assets (recorded now if the dispatcher could not)."""
        found = await self.store.assets_of_job(row.id)
        texts = text_outputs(row.meta)
        if len(found) < len(row.outputs or []) + sum(len(t) for t in texts.values()):
            try:
                await self.blobs.commit_outputs(row, row.outputs or [], texts)
            except Exception:
                # files retention removed, or a storage fault: what is recorded is the answer
                pass
            found = await self.store.assets_of_job(row.id)
        return [self._output(a, b, origin) for a, b in found]

    def _output(self, asset: AssetRow, blob: BlobRow, origin: str) -> Output:
        name = asset.file_path or asset.id
        return Output(
            node_id=asset.node_id or "", name=name,
            type=output_type(asset.content_type, name), content_type=asset.content_type,
            size_bytes=blob.size, id=asset.id, hash=HASH_PREFIX + blob.hash,
            url=self.assets.content_url(origin, asset.id),
            url_expires_at=asset.expires_at or NEVER, job_id=asset.job_id,
        )  # fmt: skip

    async def progress(self, row: JobRow, status: JobStatus) -> Progress | None:
        """The latest progress snapshot (``None`` while queued)."""
        total = len(row.workflow or {})
        if status in ("succeeded", "expired"):
            return Progress(value=1.0, nodes_done=total, nodes_total=total)
        if status == "queued":
            return None
        last = await self.store.last_event(row.id, _PROGRESS_EVENTS)
        if last is not None:
            return progress_from(last.event, last.data, total)
        if status in ("running", "canceling") and row.started_at is not None:
            return Progress(value=0.0, nodes_done=0, nodes_total=total)
        return None

    @staticmethod
    def error(row: JobRow) -> JobError | None:
        """Why a job failed, as the contract has it (no traceback: it holds server paths)."""
        if row.status != "failed" or not row.error:
            return None
        code = str(row.error.get("code") or "failed")
        details = row.error.get("details")
        details = details if isinstance(details, dict) else {}
        node_id = details.get("node_id")
        node_type = details.get("node_type")
        return JobError(
            code=_ERROR_CODES.get(code, code.lower()),
            message=scrub_paths(str(row.error.get("message") or code)),
            node_id=str(node_id) if node_id is not None else None,
            class_type=str(node_type) if node_type is not None else None,
        )  # fmt: skip

    def expires_at(self, row: JobRow) -> dt.datetime:
        """The job's retention deadline (from its end; from its creation until then)."""
        days = self.settings.retention_days
        if days is None:
            return NEVER
        return (row.completed_at or row.created_at) + dt.timedelta(days=days)

    async def view(self, row: JobRow, origin: str, base: str) -> Job:
        """A job row as the contract's job object (``origin``: scheme, host and mount prefix
        of absolute URLs; ``base``: the mount prefix of host-relative ones)."""
        now = utcnow()
        status = status_of(row, self.settings.retention_days, now)
        queued = status == "queued"
        timings = (row.meta or {}).get("timings") or {}
        execution = timings.get("execution_ms")
        return Job(
            id=row.id, status=status, created_at=row.created_at, started_at=row.started_at,
            completed_at=row.completed_at, expires_at=self.expires_at(row),
            queue_position=await self.store.queue_position(row) if queued else None,
            progress=await self.progress(row, status),
            outputs=await self.outputs(row, origin) if status == "succeeded" else [],
            error=self.error(row),
            metrics={
                "queue_ms": _ms(row.created_at, row.started_at),
                "execution_ms": round(execution) if isinstance(execution, (int, float))
                else _ms(row.started_at, row.completed_at),
            },
            urls=JobUrls(
                self=f"{base}/api/v2/jobs/{row.id}", events=f"{base}/api/v2/jobs/{row.id}/events",
                cancel=f"{base}/api/v2/jobs/{row.id}/cancel",
            ),
        )  # fmt: skip

    async def workflow(self, row: JobRow) -> JobWorkflowResponse:
        """The API-format graph a job was submitted as (``core/ASSET`` references kept; never
        its ``extra_data``); 404 once retention removed the job's outputs."""
        if status_of(row, self.settings.retention_days, utcnow()) == "expired":
            raise v2_error(404, "not_found", f"job {row.id} is past its retention deadline")
        graph = (row.meta or {}).get("graph")
        return JobWorkflowResponse(
            workflow=graph if isinstance(graph, dict) else dict(row.workflow or {}), format="api"
        )

    # -- cancel ---------------------------------------------------------------------------
    async def cancel(self, job_id: str, who: Principal) -> JobRow:
        """Ask for a job's cancellation (idempotent: an ended job is returned as it is). A
        queued job is dequeued; a running one is interrupted on its ComfyUI (by prompt id)."""
        row = await self.jobs.get(job_id, who)
        if row.status in FINISHED:
            return row
        try:
            return await self.jobs.cancel(job_id, who)
        except ServiceError as exc:
            if exc.status_code != 409:
                raise
            return await self.jobs.get(job_id, who)

    # -- the event stream -----------------------------------------------------------------
    async def events(self, job_id: str, origin: str) -> AsyncIterator[bytes]:
        """The job's live stream: on connect its ``status``, latest ``progress`` and latest
        ``preview``; then ``status`` on every change (queue position included), ``progress``
        at most every :data:`PROGRESS_EVERY` seconds, ``preview``, and at the end an
        ``output`` per output and the terminal ``status`` (with ``outputs`` and ``error``).
        No event ids: the stream is not a log."""
        after = await self.store.last_event_id(job_id)
        row = await self.store.get_job(job_id)
        if row is None:
            return
        stream = _Stream(self, row, origin)
        loop = asyncio.get_running_loop()
        for frame in await stream.opening(loop.time()):
            yield frame
        if stream.over():
            return

        async def stored(since: int) -> list[JobEvent]:
            return [_event(job_id, ev) for ev in await self.store.events_after(job_id, since)]

        async for item in follow(self.hub, job_id, stored, after=after, tick=PROGRESS_EVERY):
            for frame in await stream.step(item, loop.time()):
                yield frame
            if stream.over():
                return
        # the store had the job's end (follow stops there): the stream ends with it
        for _ in range(50):
            for frame in await stream.final():
                yield frame
            if stream.over():
                return
            await asyncio.sleep(0.1)


def _event(job_id: str, row: JobEventRow) -> JobEvent:
    return JobEvent(job_id, row.event, row.data, row.id)


def _invalid(exc: WorkflowError) -> ServiceError:
    """422 ``invalid_workflow`` with the problems per node."""
    nodes: dict[str, list[dict[str, Any]]] = {}
    for problem in exc.problems:
        key = str(getattr(problem, "node_id", None) or "workflow")
        nodes.setdefault(key, []).append(
            {
                "field": getattr(problem, "input_name", None),
                "reason": str(getattr(problem, "code", None) or "invalid"),
                "class_type": getattr(problem, "class_type", None),
                "message": scrub_paths(str(problem)),
            }
        )
    return v2_error(422, "invalid_workflow", scrub_paths(str(exc)), {"node_errors": nodes})


class _Stream:
    """What one v2 event stream has sent, and what it sends next."""

    def __init__(self, owner: V2Jobs, row: JobRow, origin: str) -> None:
        self.v2 = owner
        self.row = row
        self.origin = origin
        self.ended = False
        self.status: tuple[JobStatus, int | None] | None = None
        self.pending: Progress | None = None
        self.progress_at = -PROGRESS_EVERY
        self.polled_at = 0.0
        self.sent_at = 0.0

    def over(self) -> bool:
        """Whether the terminal ``status`` has been sent."""
        return self.ended

    async def _status(self) -> list[bytes]:
        """A ``status`` event when the job's status or queue position changed (the terminal
        one after an ``output`` event per output)."""
        row = self.row
        settings = self.v2.settings
        status = status_of(row, settings.retention_days, utcnow())
        position = await self.v2.store.queue_position(row) if status == "queued" else None
        if (status, position) == self.status:
            return []
        self.status = (status, position)
        if row.status not in FINISHED:
            return [_frame("status", StatusEvent(status=status, queue_position=position))]
        self.ended = True
        outputs = await self.v2.outputs(row, self.origin) if status == "succeeded" else []
        frames = [_frame("output", o) for o in outputs]
        if self.pending is not None and status == "succeeded":
            self.pending = None
        frames.append(
            _frame(
                "status",
                StatusEvent(status=status, outputs=outputs, error=self.v2.error(row)),
            )
        )
        return frames

    async def opening(self, now: float) -> list[bytes]:
        """The snapshot sent on connect (at ``now``)."""
        frames = await self._status()
        if self.ended:
            return frames
        status: JobStatus = self.status[0] if self.status else "queued"
        snapshot = await self.v2.progress(self.row, status)
        if snapshot is not None:
            frames.append(_frame("progress", snapshot))
            self.progress_at = now
        self.polled_at = self.sent_at = now
        preview = self.v2.hub.last_preview(self.row.id)
        if preview is not None:
            frames.append(_preview(preview))
        return frames

    async def final(self) -> list[bytes]:
        """The terminal frames once the store has the job's end (nothing before)."""
        await self._reload()
        return await self._status() if self.row.status in FINISHED else []

    async def _reload(self) -> None:
        fresh = await self.v2.store.get_job(self.row.id)
        if fresh is not None:
            self.row = fresh

    async def step(self, item: JobEvent | None, now: float) -> list[bytes]:
        """The frames one item of :func:`follow` (``None``: a tick) makes due at ``now``."""
        frames: list[bytes] = []
        if item is not None:
            if item.event in _PROGRESS_EVENTS:
                self.pending = progress_from(item.event, item.data, len(self.row.workflow or {}))
            elif item.event == "preview":
                frames.append(_preview(item))
            else:
                await self._reload()
                self.polled_at = now
                if item.event in TERMINAL_EVENTS:
                    return await self._status()
                frames.extend(await self._status())
        if now - self.polled_at >= POLL_EVERY:
            self.polled_at = now
            await self._reload()
            frames.extend(await self._status())
            if self.ended:
                return frames
        if self.pending is not None and now - self.progress_at >= PROGRESS_EVERY:
            frames.append(_frame("progress", self.pending))
            self.pending = None
            self.progress_at = now
        if frames:
            self.sent_at = now
        elif now - self.sent_at >= KEEPALIVE_EVERY:
            self.sent_at = now
            frames.append(b": keepalive\n\n")
        return frames


def _preview(event: JobEvent) -> bytes:
    data = event.data
    return _frame(
        "preview",
        PreviewEvent(
            node_id=str(data.get("node") or ""),
            content_type=str(data.get("mime_type") or "image/jpeg"),
            data_base64=str(data.get("image") or ""),
        ),
    )
