"""Request and response models of the REST API (the OpenAPI document is built from them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from comfykit.generation import GenerationRequest

if TYPE_CHECKING:
    from comfykit.server.store import DeliveryRow, JobRow

__all__ = [
    "BatchBody",
    "BatchResponse",
    "ExecuteBody",
    "GenerateBody",
    "HealthResponse",
    "JobErrorModel",
    "JobList",
    "JobOutput",
    "JobResponse",
    "JobStatusName",
    "KeyCreateBody",
    "KeyCreated",
    "KeyList",
    "KeyResponse",
    "MeResponse",
    "TemplateBody",
    "TemplateList",
    "TemplateParameter",
    "TemplateResponse",
    "UploadResponse",
    "UsageModel",
    "WebhookAttempt",
    "WebhookDelivery",
    "WorkflowJobBody",
]

JobStatusName = Literal["queued", "processing", "completed", "failed", "cancelled"]

_JOB_WEBHOOK = (
    "http(s) URL the job's end (`job.completed`, `job.failed`, `job.cancelled`) is POSTed to, "
    "signed per Standard Webhooks"
)


def _webhook_url(description: str) -> Any:
    """The ``webhook_url`` field of a body (checked when a job is submitted, and again
    before each delivery)."""
    return Field(default=None, max_length=2048, description=description)


class GenerateBody(GenerationRequest):
    """A generation request: the SDK's :class:`~comfykit.GenerationRequest`, its fields, bounds
    and validation (the service adds only its prompt length cap, ``max_prompt_length``)."""

    model_config = ConfigDict(
        defer_build=False,  # FastAPI builds its body adapter from the model at once
        json_schema_extra={
            "examples": [{"prompt": "a lighthouse at dusk", "width": 512, "height": 512}]
        },
    )

    webhook_url: str | None = _webhook_url(_JOB_WEBHOOK)


class BatchBody(BaseModel):
    """Several generation requests: a list, or one request with a list of seeds or prompts."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"requests": [{"prompt": "a red fox"}, {"prompt": "a blue whale"}]},
                {"request": {"prompt": "a lighthouse at dusk"}, "seeds": [1, 2, 3]},
            ]
        },
    )

    requests: list[GenerateBody] | None = Field(default=None, min_length=1, max_length=100)
    request: GenerateBody | None = None
    seeds: list[int] | None = Field(default=None, min_length=1, max_length=100)
    prompts: list[str] | None = Field(default=None, min_length=1, max_length=100)
    webhook_url: str | None = _webhook_url(
        "the webhook of every job of the batch (a request's own wins)"
    )


class WorkflowJobBody(BaseModel):
    """An ad-hoc workflow: ``workflow`` in API or UI format, or a PNG holding one (``png``,
    base64) or an upload id of such a PNG (``upload_id``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "workflow": {
                        "1": {
                            "class_type": "EmptyImage",
                            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
                        },
                        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
                    }
                }
            ]
        },
    )

    workflow: dict[str, Any] | None = None
    png: str | None = None
    upload_id: str | None = None
    webhook_url: str | None = _webhook_url(_JOB_WEBHOOK)


class JobOutput(BaseModel):
    """One stored output file of a job."""

    index: int
    url: str
    filename: str
    content_type: str
    size: int
    node_id: str | None = None
    kind: str | None = None


class JobErrorModel(BaseModel):
    """Why a job failed."""

    code: str
    message: str
    details: Any = None


class WebhookAttempt(BaseModel):
    """One attempt to deliver a webhook message: when, the HTTP status answered (2xx is a
    success) or the error met, and how long it took."""

    at: dt.datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: float


class WebhookDelivery(BaseModel):
    """A webhook message of a job and its delivery. ``id`` is the ``webhook-id`` header,
    the same on every attempt and redelivery (receivers deduplicate by it)."""

    id: str
    type: Literal["job.completed", "job.failed", "job.cancelled"]
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    attempts_log: list[WebhookAttempt]
    next_attempt_at: dt.datetime | None = Field(
        default=None, description="when the next attempt is due (pending deliveries)"
    )
    delivered_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: DeliveryRow) -> WebhookDelivery:
        """A stored delivery as the API shows it."""
        return cls(
            id=row.id,
            type=row.event,  # type: ignore[arg-type]
            url=row.url,
            status=row.status,  # type: ignore[arg-type]
            attempts=row.attempts,
            attempts_log=[WebhookAttempt.model_validate(a) for a in row.attempts_log or []],
            next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
            delivered_at=row.delivered_at,
        )


class JobResponse(BaseModel):
    """A job, the same everywhere it is returned."""

    job_id: str
    status: JobStatusName
    kind: str
    prompt_id: str = Field(description="the client prompt id ComfyUI knows the job by")
    image_url: str | None
    images: list[JobOutput]
    error: JobErrorModel | None
    metadata: dict[str, Any]
    progress: float | None = None
    queue_position: int | None
    batch_id: str | None = None
    template_id: str | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None
    webhook_url: str | None = None
    webhooks: list[WebhookDelivery] = Field(
        default_factory=list, description="the job's webhook messages and their deliveries"
    )

    @classmethod
    def from_row(
        cls,
        row: JobRow,
        base: str,
        *,
        queue_position: int | None = None,
        webhooks: Sequence[DeliveryRow] = (),
    ) -> JobResponse:
        """A job row as the API returns it, its URLs under the mount prefix ``base``."""
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
        return cls(
            job_id=row.id,
            status=row.status,  # type: ignore[arg-type]
            kind=row.kind,
            prompt_id=row.prompt_id,
            image_url=f"{base}/api/v1/generate/{row.id}/image" if first_image else None,
            images=images,
            error=JobErrorModel(**row.error) if row.error else None,
            metadata=dict(row.meta or {}),
            progress=row.progress,
            queue_position=queue_position,
            batch_id=row.batch_id,
            template_id=row.template_id,
            created_at=row.created_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
            webhook_url=row.webhook_url,
            webhooks=[WebhookDelivery.from_row(d) for d in webhooks],
        )


class JobList(BaseModel):
    """A page of jobs, newest first; ``next_cursor`` fetches the next page."""

    jobs: list[JobResponse]
    next_cursor: str | None


class BatchResponse(BaseModel):
    """A batch and its jobs; ``status`` is ``completed`` once every job has ended."""

    batch_id: str
    status: Literal["queued", "processing", "completed"]
    counts: dict[str, int]
    jobs: list[JobResponse]
    created_at: dt.datetime


class TemplateParameter(BaseModel):
    """A template parameter: the node input it sets, and its type, default, bounds and
    choices (filled in from the node catalog when not given)."""

    model_config = ConfigDict(extra="forbid")

    node: str = Field(description="node id in the workflow")
    input: str = Field(description="input name on that node")
    type: Literal["integer", "number", "string", "boolean", "image"] | None = None
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: list[Any] | None = None
    required: bool = False
    description: str = ""


class TemplateBody(BaseModel):
    """A workflow template to store."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "invert",
                    "workflow": {
                        "1": {
                            "class_type": "EmptyImage",
                            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
                        },
                        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
                    },
                    "parameters": {"color": {"node": "1", "input": "color"}},
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    workflow: dict[str, Any]
    parameters: dict[str, TemplateParameter] = Field(default_factory=dict)
    webhook_url: str | None = _webhook_url(
        "the webhook of the template's runs (an execute body's own wins)"
    )


class TemplateResponse(BaseModel):
    """A template with its parameters resolved and their JSON Schema."""

    id: str
    name: str
    description: str
    builtin: bool
    workflow: dict[str, Any]
    parameters: dict[str, TemplateParameter]
    parameters_schema: dict[str, Any] = Field(alias="schema")
    webhook_url: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class TemplateList(BaseModel):
    """Every template, built-ins first."""

    workflows: list[TemplateResponse]


class ExecuteBody(BaseModel):
    """Values for a template's parameters."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"parameters": {"prompt": "a lighthouse at dusk", "seed": 42}}]
        },
    )

    parameters: dict[str, Any] = Field(default_factory=dict)
    webhook_url: str | None = _webhook_url("the job's webhook (default: the template's)")


class UploadResponse(BaseModel):
    """A stored upload; pass ``upload_id`` as an image parameter."""

    upload_id: str
    filename: str
    content_type: str
    size: int
    width: int
    height: int
    created_at: dt.datetime


class HealthResponse(BaseModel):
    """Whether the service and its ComfyUI servers are up."""

    status: Literal["healthy", "degraded"]
    comfyui: Literal["connected", "disconnected"]
    servers: dict[str, dict[str, Any]]
    database: Literal["ok", "unavailable"]
    queue: dict[str, int]


RoleName = Literal["free", "pro", "admin"]


class KeyCreateBody(BaseModel):
    """A new API key: its name, role and owner (the user its jobs belong to)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "ci", "role": "pro", "owner": "alice"}]},
    )

    name: str = Field(min_length=1, max_length=200)
    role: RoleName = "free"
    owner: str | None = Field(
        default=None, min_length=1, max_length=200, description="default: the key's name"
    )


class KeyResponse(BaseModel):
    """An API key as listed (never the key itself: only its first characters)."""

    key_id: str
    name: str
    role: RoleName
    owner: str
    prefix: str = Field(description="the key's first characters, to recognise it")
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class KeyCreated(KeyResponse):
    """A new key: ``key`` is shown this once and cannot be read again."""

    key: str


class KeyList(BaseModel):
    """Every API key, oldest first."""

    keys: list[KeyResponse]


class UsageModel(BaseModel):
    """Today's use against the caller's limits (``None``: unlimited)."""

    images_today: int
    daily_image_quota: int | None
    remaining_images: int | None
    resets_at: dt.datetime
    active_jobs: int
    max_active_jobs: int | None
    rate_limit: str | None


class MeResponse(BaseModel):
    """Who the caller is, and its usage and limits."""

    user: str | None
    role: RoleName
    authenticated_by: Literal["none", "api_key", "jwt"]
    key_id: str | None
    usage: UsageModel
