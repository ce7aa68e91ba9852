"""Jobs: create (generation, batch, ad-hoc workflow, template run), read, list, cancel.

A job row (with the prompt id ComfyUI will know it by) is written before anything is sent to
ComfyUI; the dispatcher picks it up from the store.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from comfykit import WorkflowError, recipes
from comfykit.graph.png_metadata import read_png_workflows
from comfykit.graph.ui_format import is_api_prompt, is_ui_workflow, ui_to_api
from comfykit.server.errors import ServiceError
from comfykit.server.events import EventHub, JobEvent
from comfykit.server.schemas import (
    BatchBody,
    BatchResponse,
    GenerateBody,
    JobErrorModel,
    JobList,
    JobOutput,
    JobResponse,
    WorkflowJobBody,
)
from comfykit.server.store import FINISHED, BatchRow, JobEventRow, JobRow, Store, utcnow

if TYPE_CHECKING:
    from comfykit.generation import GenerationRequest
    from comfykit.server.services.dispatcher import Dispatcher
    from comfykit.server.services.files import Files
    from comfykit.server.settings import Settings

__all__ = ["JobService", "decode_cursor", "encode_cursor"]


def encode_cursor(seq: int) -> str:
    """The opaque pagination cursor for "jobs older than ``seq``"."""
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The ``seq`` of a cursor (400 when it is not one of ours)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith("seq:"):
            return int(text[4:])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ServiceError(400, "cursor is not a cursor this service returned")


class JobService:
    """Everything the routers do with jobs."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        hub: EventHub,
        dispatcher: Dispatcher,
        files: Files,
    ) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.dispatcher = dispatcher
        self.files = files

    # -- views ----------------------------------------------------------------------------
    async def view(self, row: JobRow, base: str) -> JobResponse:
        """A job row as the API returns it (URLs under ``base``)."""
        images = [
            JobOutput(
                index=int(o["index"]),
                url=f"{base}/api/v1/jobs/{row.id}/outputs/{o['index']}",
                filename=str(o.get("filename", "")),
                content_type=str(o.get("content_type", "application/octet-stream")),
                size=int(o.get("size", 0)),
                node_id=o.get("node_id"),
                kind=o.get("kind"),
            )
            for o in row.outputs or []
        ]
        first_image = next((i for i in images if i.content_type.startswith("image/")), None)
        position = await self.store.queue_position(row) if row.status == "queued" else None
        return JobResponse(
            job_id=row.id,
            status=row.status,  # type: ignore[arg-type]
            kind=row.kind,
            prompt_id=row.prompt_id,
            image_url=f"{base}/api/v1/generate/{row.id}/image" if first_image else None,
            images=images,
            error=JobErrorModel(**row.error) if row.error else None,
            metadata=dict(row.meta or {}),
            progress=row.progress,
            queue_position=position,
            batch_id=row.batch_id,
            template_id=row.template_id,
            created_at=row.created_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
        )

    async def get(self, job_id: str) -> JobRow:
        """A job row (404 when unknown)."""
        row = await self.store.get_job(job_id)
        if row is None:
            raise ServiceError(404, f"no job {job_id}")
        return row

    # -- creation -------------------------------------------------------------------------
    def new_row(
        self,
        *,
        kind: str,
        workflow: dict[str, Any],
        meta: dict[str, Any],
        uploads: dict[str, Any] | None = None,
        batch_id: str | None = None,
        template_id: str | None = None,
        job_id: str | None = None,
    ) -> JobRow:
        """A new queued job row (not yet written)."""
        return JobRow(
            id=job_id or str(uuid.uuid4()),
            prompt_id=str(uuid.uuid4()),
            kind=kind,
            status="queued",
            workflow=workflow,
            uploads=uploads or {},
            meta=meta,
            error=None,
            outputs=[],
            batch_id=batch_id,
            template_id=template_id,
            server_url=None,
            attempts=0,
            cancel_requested=False,
            created_at=utcnow(),
        )

    async def enqueue(self, rows: Sequence[JobRow]) -> None:
        """Write jobs (and their ``queued`` events) and wake the dispatcher. A single job that
        a server can take at once is written already handed to it (one transaction fewer
        before ComfyUI hears of it)."""
        events = [
            JobEventRow(
                job_id=r.id, event="queued", data={"job_id": r.id, "status": "queued"},
                created_at=r.created_at,
            )
            for r in rows
        ]  # fmt: skip
        claimed = len(rows) == 1 and await self.dispatcher.claim_new(rows[0])
        try:
            await self.store.add_jobs(rows, events)
        except BaseException:
            if claimed:
                self.dispatcher.release(rows[0])
            raise
        for r, ev in zip(rows, events, strict=True):
            self.hub.publish(JobEvent(r.id, "queued", dict(ev.data), ev.id))
        if claimed:
            self.dispatcher.run_claimed(rows[0])
        else:
            self.dispatcher.wake()

    def _check_prompt(self, prompt: str, where: str = "prompt") -> None:
        limit = self.settings.max_prompt_length
        if len(prompt) > limit:
            raise ServiceError(
                400,
                f"{where} must be at most {limit} characters long (got {len(prompt)})",
                details=[{"field": where, "rule": "string_too_long", "max_length": limit}],
            )

    async def _generation_row(
        self, body: GenerationRequest, *, batch_id: str | None = None
    ) -> JobRow:
        self._check_prompt(body.prompt)
        request = body
        if request.model is None and self.settings.default_model:
            request = request.model_copy(update={"model": self.settings.default_model})
        resolved = await self.dispatcher.resolve_request(request)
        job_id = str(uuid.uuid4())
        workflow = recipes.from_request(
            resolved, filename_prefix=f"comfykit-server/{job_id}"
        ).to_api()
        catalog = await self.dispatcher.catalog()
        problems = catalog.problems(workflow)
        if problems:
            raise WorkflowError(problems)
        meta = {
            "seed": resolved.seed,
            "model": resolved.model,
            "request": resolved.model_dump(),
            "graph": workflow,
            "timings": {},
        }
        return self.new_row(
            kind="generate", workflow=workflow, meta=meta, batch_id=batch_id, job_id=job_id
        )

    async def create_generation(self, body: GenerateBody) -> JobRow:
        """One txt2img job from a generation request."""
        row = await self._generation_row(body)
        await self.enqueue([row])
        return row

    async def create_batch(self, body: BatchBody) -> tuple[BatchRow, list[JobRow]]:
        """One job per request of a batch, under one batch id."""
        requests: list[GenerationRequest]
        if body.requests is not None:
            if body.request is not None or body.seeds or body.prompts:
                raise ServiceError(400, "give requests, or request with seeds or prompts")
            requests = list(body.requests)
        elif body.request is not None:
            base = body.request
            if body.seeds and body.prompts:
                raise ServiceError(400, "give seeds or prompts, not both")
            if body.seeds:
                requests = [base.model_copy(update={"seed": s}) for s in body.seeds]
                for s in body.seeds:
                    if not 0 <= s <= 2**64 - 1:
                        raise ServiceError(400, f"seeds: {s} is not between 0 and 2**64-1")
            elif body.prompts:
                requests = []
                for i, p in enumerate(body.prompts):
                    if not p.strip():
                        raise ServiceError(400, f"prompts[{i}] must not be empty")
                    requests.append(base.model_copy(update={"prompt": p}))
            else:
                requests = [base]
        else:
            raise ServiceError(400, "requests is required (or request with seeds or prompts)")
        batch = BatchRow(id=str(uuid.uuid4()), created_at=utcnow())
        rows = [await self._generation_row(r, batch_id=batch.id) for r in requests]
        await self.store.add_batch(batch)
        await self.enqueue(rows)
        return batch, rows

    async def batch_view(self, batch_id: str, base: str) -> BatchResponse:
        """A batch with its jobs and their counts by state."""
        batch = await self.store.get_batch(batch_id)
        if batch is None:
            raise ServiceError(404, f"no batch {batch_id}")
        rows = await self.store.list_jobs(batch_id=batch_id, limit=1000)
        rows.sort(key=lambda r: r.seq)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        if all(r.status in FINISHED for r in rows):
            status = "completed"
        elif any(r.status != "queued" for r in rows):
            status = "processing"
        else:
            status = "queued"
        return BatchResponse(
            batch_id=batch.id,
            status=status,  # type: ignore[arg-type]
            counts=counts,
            jobs=[await self.view(r, base) for r in rows],
            created_at=batch.created_at,
        )

    async def api_workflow(self, body: WorkflowJobBody) -> dict[str, Any]:
        """The API-format graph of an ad-hoc workflow (API, UI or PNG), checked against the
        node catalog (400 naming node and input)."""
        given = [x for x in (body.workflow, body.png, body.upload_id) if x is not None]
        if len(given) != 1:
            raise ServiceError(400, "give exactly one of workflow, png or upload_id")
        data: Any = body.workflow
        if body.png is not None or body.upload_id is not None:
            if body.png is not None:
                try:
                    raw = base64.b64decode(body.png, validate=True)
                except (binascii.Error, ValueError):
                    raise ServiceError(400, "png must be base64") from None
            else:
                upload = await self.store.get_upload(str(body.upload_id))
                if upload is None:
                    raise ServiceError(400, f"upload_id: no upload {body.upload_id}")
                raw = self.files.upload_path(upload).read_bytes()
            found = read_png_workflows(raw)
            data = found.prompt if found.prompt is not None else found.workflow
        return await self.api_workflow_from(data)

    async def api_workflow_from(self, data: Any) -> dict[str, Any]:
        """An API-format or UI-format workflow as a checked API-format graph."""
        catalog = await self.dispatcher.catalog()
        if is_api_prompt(data):
            api = {str(k): v for k, v in dict(data).items()}
        elif is_ui_workflow(data):
            api = ui_to_api(data, catalog)
        else:
            raise ServiceError(
                400, "workflow is neither an API-format prompt nor an editor (UI) workflow"
            )
        problems = catalog.problems(api)
        if problems:
            raise WorkflowError(problems)
        return api

    async def create_workflow_job(self, body: WorkflowJobBody) -> JobRow:
        """A job running an ad-hoc workflow."""
        api = await self.api_workflow(body)
        row = self.new_row(kind="workflow", workflow=api, meta={"graph": api, "timings": {}})
        await self.enqueue([row])
        return row

    # -- listing --------------------------------------------------------------------------
    async def list(
        self,
        *,
        status: str | None,
        created_after: dt.datetime | None,
        created_before: dt.datetime | None,
        cursor: str | None,
        limit: int,
        base: str,
    ) -> JobList:
        """A page of jobs, newest first."""
        before = decode_cursor(cursor) if cursor else None
        rows = await self.store.list_jobs(
            status=status,
            created_after=created_after,
            created_before=created_before,
            before_seq=before,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return JobList(
            jobs=[await self.view(r, base) for r in rows],
            next_cursor=encode_cursor(rows[-1].seq) if more and rows else None,
        )

    # -- waiting and cancelling -----------------------------------------------------------
    async def wait(self, job_id: str, seconds: float) -> JobRow:
        """Wait up to ``seconds`` for the job to end; its row then."""
        queue = self.hub.subscribe(job_id)
        try:
            row = await self.get(job_id)
            if row.status not in FINISHED and seconds > 0:
                _ended, event = await self.hub.next_terminal(queue, seconds)
                # a job's end comes with its row as the ending transaction wrote it (an ended
                # job changes no more); else the store says where it is
                ended = event.row if event is not None else None
                if isinstance(ended, JobRow) and ended.status in FINISHED:
                    return ended
                row = await self.get(job_id)
            return row
        finally:
            self.hub.unsubscribe(job_id, queue)

    async def cancel(self, job_id: str) -> JobRow:
        """Cancel a job: dequeued when still in the service's queue, cancelled on ComfyUI
        when dispatched; 409 when it has already ended."""
        row = await self.get(job_id)
        if row.status in FINISHED:
            raise ServiceError(
                409, f"job {job_id} has already ended ({row.status})",
                details={"status": row.status},
            )  # fmt: skip
        if row.server_url is None:
            data = {"job_id": job_id, "status": "cancelled"}
            updated, event_id = await self.store.update_job(
                job_id,
                {"status": "cancelled", "completed_at": utcnow(), "cancel_requested": True},
                only_if_status=["queued"],
                undispatched=True,
                event=("cancelled", data),
            )
            if updated is not None:
                self.hub.publish(JobEvent(job_id, "cancelled", data, event_id))
                return updated
        await self.store.update_job(
            job_id, {"cancel_requested": True}, only_if_status=["queued", "processing"]
        )
        await self.dispatcher.cancel(job_id)
        row = await self.get(job_id)
        if row.status not in FINISHED:
            row = await self.wait(job_id, 10.0)
        return row
