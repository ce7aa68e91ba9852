"""Jobs: create (generation, batch, ad-hoc workflow, template run), read, list, cancel.

A job row (with the prompt id ComfyUI will know it by) is written before anything is sent to
ComfyUI; the dispatcher picks it up from the store.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from comfykit import WorkflowError, recipes
from comfykit.graph.png_metadata import read_png_workflows
from comfykit.graph.ui_format import is_api_prompt, is_ui_workflow, ui_to_api
from comfykit.server.auth import Principal
from comfykit.server.bodies import check_json_value
from comfykit.server.errors import ServiceError
from comfykit.server.events import EventHub, JobEvent
from comfykit.server.limits import day_start, next_reset, quota_for
from comfykit.server.paths import check_segment
from comfykit.server.schemas import (
    BatchBody,
    BatchResponse,
    GenerateBody,
    JobList,
    JobResponse,
    WebhookDelivery,
    WorkflowJobBody,
)
from comfykit.server.store import (
    FINISHED,
    BatchRow,
    DeliveryRow,
    JobEventRow,
    JobRow,
    Store,
    utcnow,
)
from comfykit.server.webhooks import BASE_META_KEY, deliveries_for, submitted_webhook_url

if TYPE_CHECKING:
    from comfykit.generation import GenerationRequest
    from comfykit.server.services.dispatcher import Dispatcher
    from comfykit.server.services.files import Files
    from comfykit.server.settings import Settings
    from comfykit.server.webhooks import WebhookWorker

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
        *,
        webhooks: WebhookWorker | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.dispatcher = dispatcher
        self.files = files
        self.webhooks = webhooks

    # -- views ----------------------------------------------------------------------------
    async def view(self, row: JobRow, base: str) -> JobResponse:
        """A job row as the API returns it (URLs under ``base``). Its webhook deliveries are
        read only for a job with a ``webhook_url``."""
        return (await self.views([row], base))[0]

    async def views(self, rows: Sequence[JobRow], base: str) -> list[JobResponse]:
        """Several job rows as the API returns them (their deliveries read at once)."""
        hooked = [r.id for r in rows if r.webhook_url]
        deliveries: dict[str, list[DeliveryRow]] = {}
        for d in await self.store.deliveries_of(hooked) if hooked else []:
            deliveries.setdefault(d.job_id, []).append(d)
        return [
            JobResponse.from_row(
                row,
                base,
                queue_position=(
                    await self.store.queue_position(row) if row.status == "queued" else None
                ),
                webhooks=deliveries.get(row.id, ()),
            )
            for row in rows
        ]

    async def get(self, job_id: str, who: Principal | None = None) -> JobRow:
        """A job row (404 when unknown, and when it is another user's: ``who`` may not
        learn that it exists)."""
        row = await self.store.get_job(job_id)
        if row is None or (who is not None and not who.may_see(row.owner)):
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
        owner: Principal | None = None,
        images: int = 1,
        webhook_url: str | None = None,
        base: str = "",
    ) -> JobRow:
        """A new queued job row (not yet written) of ``owner``, counting ``images`` against
        its quota until it ends (then its real image count). With a (checked)
        ``webhook_url``, the mount prefix ``base`` is kept in its metadata: its webhook's URLs
        are relative to it."""
        if webhook_url:
            meta = {**meta, BASE_META_KEY: base}
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
            owner=owner.user if owner is not None else None,
            images=images,
            webhook_url=webhook_url,
        )

    async def enqueue(
        self,
        rows: Sequence[JobRow],
        who: Principal | None = None,
        *,
        guard: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        """Write jobs (and their ``queued`` events) and wake the dispatcher; within ``who``'s
        daily image quota and queue cap (429 ``QUOTA_EXCEEDED`` / ``TOO_MANY_JOBS``), checked
        in the transaction that writes them. ``guard(session)`` runs first in that transaction
        too (the Comfy API v2 routes claim an idempotency key and lock asset inputs there);
        it raises to write nothing. A single job that a server can take at once is written
        already handed to it (one transaction fewer before ComfyUI hears of it)."""
        events = [
            JobEventRow(
                job_id=r.id, event="queued", data={"job_id": r.id, "status": "queued"},
                created_at=r.created_at,
            )
            for r in rows
        ]  # fmt: skip
        limits = self._limits_guard(who, rows) if who is not None else None
        checks = [g for g in (guard, limits) if g is not None]

        async def all_checks(session: Any) -> None:
            for check in checks:
                await check(session)

        claimed = len(rows) == 1 and await self.dispatcher.claim_new(rows[0])
        try:
            await self.store.add_jobs(rows, events, guard=all_checks if checks else None)
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

    def _limits_guard(
        self, who: Principal, rows: Sequence[JobRow]
    ) -> Callable[[Any], Awaitable[None]] | None:
        user = who.user
        if who.is_admin or user is None:
            return None
        quota = quota_for(self.settings, who)
        cap = self.settings.user_max_queued
        wanted = sum(r.images for r in rows)

        async def guard(session: Any) -> None:
            await self.store.lock_user(session, user)
            now = utcnow()
            used = await self.store.usage_in(session, user, day_start(now))
            if quota is not None and used.images + wanted > quota:
                reset = next_reset(now)
                reset_text = reset.isoformat().replace("+00:00", "Z")
                wait = max(1, int((reset - now).total_seconds()) + 1)
                raise ServiceError(
                    429,
                    f"daily image quota of the {who.role} role exhausted: {used.images} of "
                    f"{quota} used today, {wanted} more asked; it resets at {reset_text}",
                    code="QUOTA_EXCEEDED",
                    details={"quota": quota, "used": used.images, "requested": wanted,
                             "resets_at": reset_text},
                    headers={"Retry-After": str(wait)},
                )  # fmt: skip
            if used.active + len(rows) > cap:
                raise ServiceError(
                    429,
                    f"you have {used.active} jobs queued or running and may have at most "
                    f"{cap}; wait for some to end (or cancel them)",
                    code="TOO_MANY_JOBS",
                    details={"active": used.active, "max_active": cap, "requested": len(rows)},
                    headers={"Retry-After": "5"},
                )  # fmt: skip

        return guard

    def _check_prompt(self, prompt: str, where: str = "prompt") -> None:
        limit = self.settings.max_prompt_length
        if len(prompt) > limit:
            raise ServiceError(
                400,
                f"{where} must be at most {limit} characters long (got {len(prompt)})",
                details=[{"field": where, "rule": "string_too_long", "max_length": limit}],
            )
        check_json_value(prompt, max_depth=1, where=(where,))

    async def webhook_url(self, url: str | None) -> str | None:
        """A submitted ``webhook_url``, checked (the SSRF rule; a secret must be set)."""
        return await submitted_webhook_url(url, self.settings)

    async def _generation_row(
        self,
        body: GenerationRequest,
        who: Principal | None,
        *,
        batch_id: str | None = None,
        webhook_url: str | None = None,
        base: str = "",
    ) -> JobRow:
        self._check_prompt(body.prompt)
        self._check_prompt(body.negative_prompt, "negative_prompt")
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
            "request": resolved.model_dump(exclude={"webhook_url"}),
            "graph": workflow,
            "timings": {},
        }
        return self.new_row(
            kind="generate", workflow=workflow, meta=meta, batch_id=batch_id, job_id=job_id,
            owner=who, images=resolved.batch_size, webhook_url=webhook_url, base=base,
        )  # fmt: skip

    async def create_generation(
        self, body: GenerateBody, who: Principal | None = None, *, base: str = ""
    ) -> JobRow:
        """One txt2img job from a generation request (``base``: the mount prefix)."""
        url = await self.webhook_url(body.webhook_url)
        row = await self._generation_row(body, who, webhook_url=url, base=base)
        await self.enqueue([row], who)
        return row

    async def create_batch(
        self, body: BatchBody, who: Principal | None = None, *, base: str = ""
    ) -> tuple[BatchRow, list[JobRow]]:
        """One job per request of a batch, under one batch id; the batch's ``webhook_url``
        is every job's (a request's own wins)."""
        requests: list[GenerateBody]
        if body.requests is not None:
            if body.request is not None or body.seeds or body.prompts:
                raise ServiceError(400, "give requests, or request with seeds or prompts")
            requests = list(body.requests)
        elif body.request is not None:
            one = body.request
            if body.seeds and body.prompts:
                raise ServiceError(400, "give seeds or prompts, not both")
            if body.seeds:
                requests = [one.model_copy(update={"seed": s}) for s in body.seeds]
                for s in body.seeds:
                    if not 0 <= s <= 2**64 - 1:
                        raise ServiceError(400, f"seeds: {s} is not between 0 and 2**64-1")
            elif body.prompts:
                requests = []
                for i, p in enumerate(body.prompts):
                    if not p.strip():
                        raise ServiceError(400, f"prompts[{i}] must not be empty")
                    requests.append(one.model_copy(update={"prompt": p}))
            else:
                requests = [one]
        else:
            raise ServiceError(400, "requests is required (or request with seeds or prompts)")
        urls: dict[str | None, str | None] = {}
        for r in requests:
            given = r.webhook_url or body.webhook_url
            if given not in urls:
                urls[given] = await self.webhook_url(given)
        batch = BatchRow(id=str(uuid.uuid4()), created_at=utcnow())
        rows = [
            await self._generation_row(
                r,
                who,
                batch_id=batch.id,
                webhook_url=urls[r.webhook_url or body.webhook_url],
                base=base,
            )  # fmt: skip
            for r in requests
        ]
        await self.store.add_batch(batch)
        await self.enqueue(rows, who)
        return batch, rows

    async def batch_view(
        self, batch_id: str, base: str, who: Principal | None = None
    ) -> BatchResponse:
        """A batch with its jobs and their counts by state (404 when none of its jobs is
        ``who``'s)."""
        batch = await self.store.get_batch(batch_id)
        if batch is None:
            raise ServiceError(404, f"no batch {batch_id}")
        rows = await self.store.list_jobs(batch_id=batch_id, limit=1000)
        if who is not None:
            rows = [r for r in rows if who.may_see(r.owner)]
            if not rows:
                raise ServiceError(404, f"no batch {batch_id}")
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
            jobs=await self.views(rows, base),
            created_at=batch.created_at,
        )

    async def api_workflow(
        self, body: WorkflowJobBody, who: Principal | None = None
    ) -> dict[str, Any]:
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
                where = "png"
            else:
                upload = await self.store.get_upload(str(body.upload_id))
                if upload is None or (who is not None and not who.may_see(upload.owner)):
                    raise ServiceError(400, f"upload_id: no upload {body.upload_id}")
                path = self.files.upload_path(upload)
                if not path.is_file():
                    raise ServiceError(400, f"upload_id: upload {upload.id} was deleted")
                raw = path.read_bytes()
                where = "upload_id"
            # the embedded JSON is held to the limits of a JSON body
            limits = self.settings
            found = read_png_workflows(raw, max_text_bytes=limits.max_body_bytes)
            data = found.prompt if found.prompt is not None else found.workflow
            check_json_value(data, max_depth=limits.max_json_depth, where=(where,))
        return await self.api_workflow_from(data)

    async def api_workflow_from(
        self, data: Any, *, skip: Collection[tuple[str, str]] = ()
    ) -> dict[str, Any]:
        """An API-format or UI-format workflow as a checked API-format graph; the inputs in
        ``skip`` (node id, input name) are filled in at dispatch and not checked."""
        catalog = await self.dispatcher.catalog()
        if is_api_prompt(data):
            api = {str(k): v for k, v in dict(data).items()}
        elif is_ui_workflow(data):
            api = ui_to_api(data, catalog)
        else:
            raise ServiceError(
                400, "workflow is neither an API-format prompt nor an editor (UI) workflow"
            )
        for node_id, node in api.items():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            if isinstance(inputs, dict) and "filename_prefix" in inputs:
                # the service names the files of save nodes after their node id
                check_segment(node_id, what="node id")
        problems = [p for p in catalog.problems(api) if (p.node_id, p.input_name) not in skip]
        if problems:
            raise WorkflowError(problems)
        return api

    async def create_workflow_job(
        self, body: WorkflowJobBody, who: Principal | None = None, *, base: str = ""
    ) -> JobRow:
        """A job running an ad-hoc workflow (``base``: the mount prefix)."""
        url = await self.webhook_url(body.webhook_url)
        api = await self.api_workflow(body, who)
        row = self.new_row(
            kind="workflow", workflow=api, meta={"graph": api, "timings": {}}, owner=who,
            webhook_url=url, base=base,
        )  # fmt: skip
        await self.enqueue([row], who)
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
        who: Principal | None = None,
    ) -> JobList:
        """A page of jobs, newest first (``who``'s own unless an admin)."""
        before = decode_cursor(cursor) if cursor else None
        rows = await self.store.list_jobs(
            status=status,
            created_after=created_after,
            created_before=created_before,
            before_seq=before,
            limit=limit + 1,
            owner=who.owner_filter if who is not None else None,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return JobList(
            jobs=await self.views(rows, base),
            next_cursor=encode_cursor(rows[-1].seq) if more and rows else None,
        )

    # -- waiting and cancelling -----------------------------------------------------------
    async def wait(self, job_id: str, seconds: float) -> JobRow:
        """Wait up to ``seconds`` for the job to end; its row then."""
        queue = self.hub.subscribe(job_id)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            row = await self.get(job_id)
            # a wake-up may also be "read the store" (another replica wrote an event)
            while row.status not in FINISHED and (left := deadline - loop.time()) > 0:
                _ended, event = await self.hub.next_terminal(queue, left)
                # a job's end comes with its row as the ending transaction wrote it (an ended
                # job changes no more); else the store says where it is
                ended = event.row if event is not None else None
                if isinstance(ended, JobRow) and ended.status in FINISHED:
                    return ended
                row = await self.get(job_id)
            return row
        finally:
            self.hub.unsubscribe(job_id, queue)

    async def cancel(self, job_id: str, who: Principal | None = None) -> JobRow:
        """Cancel a job: dequeued when still in the service's queue, cancelled on ComfyUI
        when dispatched; 409 when it has already ended."""
        row = await self.get(job_id, who)
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
                deliveries=deliveries_for,
            )
            if updated is not None:
                self.hub.publish(JobEvent(job_id, "cancelled", data, event_id))
                if updated.webhook_url and self.webhooks is not None:
                    self.webhooks.wake()
                return updated
        await self.store.update_job(
            job_id, {"cancel_requested": True}, only_if_status=["queued", "processing"]
        )
        await self.dispatcher.cancel(job_id)
        row = await self.get(job_id)
        if row.status not in FINISHED:
            row = await self.wait(job_id, 10.0)
        return row

    # -- webhooks -------------------------------------------------------------------------
    async def redeliver(self, job_id: str, delivery_id: str) -> WebhookDelivery:
        """Send a delivered or failed webhook message again: pending, due now, the same id,
        its attempts counted on and the attempt limit counted afresh from there (404 for an
        unknown job or delivery, 409 while it is pending)."""
        await self.get(job_id)
        row, exists = await self.store.redeliver(job_id, delivery_id, utcnow())
        if row is None:
            if not exists:
                raise ServiceError(404, f"job {job_id} has no webhook delivery {delivery_id}")
            raise ServiceError(
                409, f"webhook delivery {delivery_id} is pending: it is being delivered",
                details={"status": "pending"},
            )  # fmt: skip
        if self.webhooks is not None:
            self.webhooks.wake()
        return WebhookDelivery.from_row(row)
