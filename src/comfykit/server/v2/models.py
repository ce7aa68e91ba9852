"""The Comfy API v2 schemas the service answers with and accepts (``components/schemas`` of the
contract, ``comfy-sdk`` 0.5.0's ``spec/openapi.yaml``).

Time stamps are timezone-aware UTC; every field the contract requires is always present, the
nullable ones as ``null``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "NEVER",
    "Asset",
    "ErrorBody",
    "ErrorEnvelope",
    "ExtraData",
    "FromHashBody",
    "Job",
    "JobBody",
    "JobError",
    "JobStatus",
    "JobUrls",
    "JobWorkflowResponse",
    "Output",
    "OutputType",
    "PreviewEvent",
    "Progress",
    "StatusEvent",
]

JobStatus = Literal["queued", "running", "succeeded", "canceling", "canceled", "failed", "expired"]
OutputType = Literal["image", "video", "audio", "text", "file", "latent"]

#: The deadline of what never expires, where the contract wants a date-time (``expires_at`` of
#: a job without retention, ``url_expires_at`` of a proxy-served URL that does not expire).
NEVER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)


class Asset(BaseModel):
    """A user's record over content-addressed bytes (``hash``: ``blake3:<hex>``)."""

    id: str
    hash: str | None
    size_bytes: int
    content_type: str
    file_path: str | None = None
    created_new: bool | None = Field(
        default=None, description="on create responses: the bytes were new to the service"
    )
    created_at: dt.datetime
    url: str = Field(description="the content URL (proxy-served: send the same credentials)")
    url_expires_at: dt.datetime
    expires_at: dt.datetime | None = None
    job_id: str | None = None


class Output(BaseModel):
    """A committed job output: an asset."""

    node_id: str
    name: str
    type: OutputType
    content_type: str
    size_bytes: int
    id: str
    hash: str | None
    url: str
    url_expires_at: dt.datetime
    job_id: str | None = None


class Progress(BaseModel):
    """A complete progress snapshot (node counts and sampler steps)."""

    value: float = Field(ge=0, le=1)
    nodes_done: int
    nodes_total: int
    current_node: str | None = None
    current_node_class: str | None = None
    step: int | None = None
    steps: int | None = None
    message: str | None = None


class JobError(BaseModel):
    """Why a job failed (``job.error``)."""

    code: str
    message: str
    node_id: str | None = None
    class_type: str | None = None
    traceback: str | None = None


class JobUrls(BaseModel):
    """Follow-up links, host-relative, with the mount prefix."""

    self: str
    events: str
    cancel: str


class Job(BaseModel):
    """One execution of a workflow."""

    id: str
    status: JobStatus
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    expires_at: dt.datetime
    queue_position: int | None
    progress: Progress | None
    outputs: list[Output]
    error: JobError | None
    metrics: dict[str, int | None]
    urls: JobUrls


class JobWorkflowResponse(BaseModel):
    """The workflow behind a job (``format: api``: the API-format graph it was submitted as)."""

    workflow: dict[str, Any]
    format: Literal["save", "api"]


class StatusEvent(BaseModel):
    """The ``status`` event of the stream (the terminal one also carries ``outputs`` and
    ``error``: the contract's event schemas are open)."""

    status: JobStatus
    queue_position: int | None = None
    outputs: list[Output] | None = None
    error: JobError | None = None


class PreviewEvent(BaseModel):
    """The ``preview`` event of the stream (an in-progress image, base64)."""

    node_id: str
    content_type: str
    data_base64: str


class ErrorBody(BaseModel):
    """What went wrong: a lower-case ``code``, a message, ``details`` (an object or null), and
    the request id (also in ``X-Request-ID``)."""

    code: str
    message: str
    details: dict[str, Any] | None = None
    request_id: str | None = None


class ErrorEnvelope(BaseModel):
    """Every Comfy API v2 error answer's body."""

    error: ErrorBody


class ExtraData(BaseModel):
    """Per-prompt ComfyUI ``extra_data`` (a closed object)."""

    model_config = ConfigDict(extra="forbid")

    api_key_comfy_org: str | None = Field(
        default=None, max_length=4096, description="API key for partner (API) nodes"
    )


class JobBody(BaseModel):
    """``POST /api/v2/jobs``: an API-format workflow. Other top-level fields are ignored, but
    the reserved ``webhook_url`` and ``inputs`` are refused; ``x-comfykit-convert-ui: true``
    (an extension) has a UI-format workflow converted instead of refused."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    workflow: dict[str, Any]
    extra_data: ExtraData | None = None
    convert_ui: bool = Field(default=False, alias="x-comfykit-convert-ui")


class FromHashBody(BaseModel):
    """``POST /api/v2/assets/from-hash``: mint an asset over bytes the caller may use."""

    hash: str = Field(max_length=200)
    file_path: str | None = Field(default=None, max_length=1024)
    tags: list[str] = Field(default_factory=list, max_length=32)
    expires_in: int | None = Field(default=None, ge=60, le=604800)
