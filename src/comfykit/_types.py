"""Typed models of what the ComfyUI server returns over HTTP.

Every model keeps fields it does not know (``extra="allow"``): newer servers and custom nodes add
fields, and dropping them would lose data.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Asset",
    "AssetCreated",
    "AssetList",
    "AssetTag",
    "AssetTagList",
    "AssetTagsAdded",
    "AssetTagsRemoved",
    "ComfyModel",
    "DeviceInfo",
    "Features",
    "FileRef",
    "HistoryEntry",
    "HistoryStatus",
    "JOB_STATES",
    "JobInfo",
    "JobList",
    "JobPagination",
    "JobState",
    "JobWorkflow",
    "MediaKind",
    "PromptResponse",
    "QueueItem",
    "QueueState",
    "ServerCapabilities",
    "SystemInfo",
    "SystemStats",
    "UploadedFile",
]

MediaKind = Literal["image", "video", "audio", "text", "latent", "3d", "other"]

_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".svg", ".avif"}
_VIDEO_EXT = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}
_AUDIO_EXT = {".flac", ".mp3", ".wav", ".ogg", ".opus", ".m4a", ".aac"}
_3D_EXT = {".glb", ".gltf", ".obj", ".fbx", ".stl", ".ply"}


class ComfyModel(BaseModel):
    """Base of every server payload model: unknown fields are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


class SystemInfo(ComfyModel):
    """``system`` part of ``/system_stats``."""

    os: str | None = None
    ram_total: int | None = None
    ram_free: int | None = None
    comfyui_version: str | None = None
    python_version: str | None = None
    pytorch_version: str | None = None
    embedded_python: bool | None = None
    argv: list[str] = Field(default_factory=list)


class DeviceInfo(ComfyModel):
    """One torch device listed by ``/system_stats``."""

    name: str
    type: str
    index: int | None = None
    vram_total: int | None = None
    vram_free: int | None = None
    torch_vram_total: int | None = None
    torch_vram_free: int | None = None


class SystemStats(ComfyModel):
    """``GET /system_stats``."""

    system: SystemInfo
    devices: list[DeviceInfo] = Field(default_factory=list)


class Features(ComfyModel):
    """``GET /features``: server capability flags."""

    supports_preview_metadata: bool = False
    max_upload_size: int | None = None


class QueueItem(ComfyModel):
    """One queue entry: ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``."""

    number: float
    prompt_id: str
    prompt: dict[str, Any] = Field(default_factory=dict)
    extra_data: dict[str, Any] = Field(default_factory=dict)
    outputs_to_execute: list[str] = Field(default_factory=list)

    @classmethod
    def from_wire(cls, item: list[Any]) -> QueueItem:
        """Build from the positional list the server sends."""
        fields = ["number", "prompt_id", "prompt", "extra_data", "outputs_to_execute"]
        data: dict[str, Any] = dict(zip(fields, item, strict=False))
        if len(item) > len(fields):
            data["extra"] = item[len(fields) :]
        return cls.model_validate(data)


class QueueState(ComfyModel):
    """``GET /queue``: the running item and the pending ones **in execution order**."""

    running: list[QueueItem] = Field(default_factory=list)
    pending: list[QueueItem] = Field(default_factory=list)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> QueueState:
        """Build from ``{"queue_running": [...], "queue_pending": [...]}`` (pending sorted)."""
        running = [QueueItem.from_wire(i) for i in data.get("queue_running", [])]
        pending = [QueueItem.from_wire(i) for i in data.get("queue_pending", [])]
        pending.sort(key=lambda q: (q.number, q.prompt_id))
        return cls(running=running, pending=pending)

    def __contains__(self, prompt_id: object) -> bool:
        return any(q.prompt_id == prompt_id for q in (*self.running, *self.pending))

    @property
    def prompt_ids(self) -> list[str]:
        """Running then pending ids, in execution order."""
        return [q.prompt_id for q in (*self.running, *self.pending)]


class HistoryStatus(ComfyModel):
    """``status`` of a history entry."""

    status_str: str
    completed: bool
    messages: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)


class HistoryEntry(ComfyModel):
    """One finished prompt in ``/history``."""

    prompt: list[Any] = Field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    status: HistoryStatus | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def prompt_id(self) -> str | None:
        """The prompt id recorded in the entry."""
        return str(self.prompt[1]) if len(self.prompt) > 1 else None

    @property
    def api_prompt(self) -> dict[str, Any]:
        """The API-format graph that ran."""
        return self.prompt[2] if len(self.prompt) > 2 and isinstance(self.prompt[2], dict) else {}


class PromptResponse(ComfyModel):
    """``POST /prompt`` answer (200)."""

    prompt_id: str
    number: float | None = None
    node_errors: dict[str, Any] = Field(default_factory=dict)


class FileRef(ComfyModel):
    """A file the server holds: what ``/view`` needs to fetch it."""

    filename: str
    subfolder: str = ""
    type: str = "output"

    @field_validator("subfolder", mode="before")
    @classmethod
    def _none_subfolder(cls, v: Any) -> Any:
        return "" if v is None else v

    @property
    def kind(self) -> MediaKind:
        """The media kind guessed from the file extension."""
        name = self.filename.lower()
        ext = name[name.rfind(".") :] if "." in name else ""
        if ext in _IMAGE_EXT:
            return "image"
        if ext in _VIDEO_EXT:
            return "video"
        if ext in _AUDIO_EXT:
            return "audio"
        if ext == ".latent":
            return "latent"
        if ext in _3D_EXT:
            return "3d"
        if ext in {".txt", ".json"}:
            return "text"
        return "other"

    @property
    def ref(self) -> str:
        """How a node input names this file: ``"sub/name"`` in the input folder, else
        ``"name [output]"`` / ``"name [temp]"`` (what ``LoadImage``'s ``image`` takes)."""
        base = f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename
        return base if self.type == "input" else f"{base} [{self.type}]"

    def view_params(self) -> dict[str, str]:
        """Query parameters for ``GET /view``."""
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}


class UploadedFile(FileRef):
    """``POST /upload/image`` answer."""

    filename: str = Field(alias="name")
    type: str = "input"

    @property
    def name(self) -> str:
        """The stored file name (the server may rename to avoid clashes)."""
        return self.filename


# -- ComfyUI's native jobs API (``/api/jobs``) -------------------------------------------------

#: The states ``/api/jobs`` reports (``cancelled`` only on releases that have the cancel routes;
#: older ones report an interrupted job as ``failed``).
JobState = Literal["pending", "in_progress", "completed", "failed", "cancelled"]

#: Every :data:`JobState`, in the order ComfyUI lists them.
JOB_STATES: tuple[JobState, ...] = ("pending", "in_progress", "completed", "failed", "cancelled")


class JobWorkflow(ComfyModel):
    """What a job ran: the API-format graph and the ``extra_data`` it was queued with."""

    prompt: dict[str, Any] = Field(default_factory=dict)
    extra_data: dict[str, Any] = Field(default_factory=dict)


class JobInfo(ComfyModel):
    """One job as ``GET /api/jobs`` lists it and ``GET /api/jobs/{id}`` details it.

    On a server without those routes the client builds the same model from ``/queue`` and
    ``/history``. ``outputs``, ``execution_status`` and ``workflow`` are filled by the detail
    (:meth:`~comfykit.AsyncComfyClient.get_job`), not by the listing; a queued job has no
    outputs.

    Attributes:
        id: the prompt id.
        status: one of :data:`JobState` (kept as a string: a newer server may add states).
        priority: the queue number (lower runs first).
        create_time: when it was queued, in ms since the epoch (servers before the jobs API
            do not record it).
        execution_start_time: when it started executing, in ms since the epoch.
        execution_end_time: when it finished, in ms since the epoch.
        execution_error: the ``execution_error`` message of a failed job.
        outputs_count: how many output items it produced.
        preview_output: one output item to preview, with ``nodeId`` and ``mediaType`` added.
        workflow_id: the id of the UI workflow it came from (``extra_pnginfo``), if any.
    """

    id: str
    status: str
    priority: float | None = None
    create_time: int | None = None
    execution_start_time: int | None = None
    execution_end_time: int | None = None
    execution_error: dict[str, Any] | None = None
    outputs_count: int = 0
    previewable_outputs_count: int | None = None
    preview_output: dict[str, Any] | None = None
    workflow_id: str | None = None
    outputs: dict[str, dict[str, Any]] | None = None
    execution_status: HistoryStatus | None = None
    workflow: JobWorkflow | None = None

    @field_validator("execution_status", mode="before")
    @classmethod
    def _empty_status(cls, v: Any) -> Any:
        return None if v == {} else v

    @property
    def prompt_id(self) -> str:
        """The prompt id (the job's ``id``)."""
        return self.id

    @property
    def finished(self) -> bool:
        """True once the job has ended (completed, failed or cancelled)."""
        return self.status in ("completed", "failed", "cancelled")

    @property
    def execution_ms(self) -> int | None:
        """How long it executed, from its start and end times."""
        start, end = self.execution_start_time, self.execution_end_time
        return end - start if start is not None and end is not None else None


class JobPagination(ComfyModel):
    """The ``pagination`` part of ``GET /api/jobs``."""

    offset: int = 0
    limit: int | None = None
    total: int = 0
    has_more: bool = False


class JobList(ComfyModel):
    """``GET /api/jobs``: one page of jobs and where it sits in the whole list."""

    jobs: list[JobInfo] = Field(default_factory=list)
    pagination: JobPagination = Field(default_factory=JobPagination)

    @property
    def prompt_ids(self) -> list[str]:
        """The ids of this page's jobs, in its order."""
        return [job.id for job in self.jobs]


class ServerCapabilities(ComfyModel):
    """What the client found the server to serve beyond the routes every release has.

    Attributes:
        comfyui_version: ``system.comfyui_version`` of ``/system_stats``.
        jobs_api: ``GET /api/jobs`` and ``GET /api/jobs/{id}`` are used.
        job_cancel_api: ``POST /api/jobs/{id}/cancel`` and ``POST /api/jobs/cancel`` are used.
        assets: the server serves ``/api/assets`` (the ``assets`` flag of ``/features``).
    """

    comfyui_version: str | None = None
    jobs_api: bool = False
    job_cancel_api: bool = False
    assets: bool = False


# -- ComfyUI's native assets API (/api/assets*, /api/tags) ------------------------------------


class Asset(ComfyModel):
    """One asset of ``/api/assets`` (``GET /api/assets/{id}``, an entry of the listing, or
    what an update answers). ``id`` is the asset reference's id, which the other asset
    calls take; ``hash`` is its content's ``blake3:<hex>``.

    Fields the server leaves out (it drops ``None`` values) read as ``None``.
    """

    id: str
    name: str
    hash: str | None = None
    loader_path: str | None = None
    display_name: str | None = None
    size: int | None = None
    mime_type: str | None = None
    tags: list[str] = Field(default_factory=list)
    preview_url: str | None = None
    preview_id: str | None = None
    user_metadata: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    job_id: str | None = None
    prompt_id: str | None = None
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None
    last_access_time: datetime.datetime | None = None


class AssetCreated(Asset):
    """What ``POST /api/assets`` and ``POST /api/assets/from-hash`` answer: the asset, and
    whether its content was new to the server (``False``: stored already, only a new
    reference was made)."""

    created_new: bool = False


class AssetList(ComfyModel):
    """``GET /api/assets``: one page of assets, the number matching, and whether more follow."""

    assets: list[Asset] = Field(default_factory=list)
    total: int = 0
    has_more: bool = False
    next_cursor: str | None = None


class AssetTag(ComfyModel):
    """One tag of ``GET /api/tags`` and how many assets carry it."""

    name: str
    count: int = 0


class AssetTagList(ComfyModel):
    """``GET /api/tags``: one page of tags."""

    tags: list[AssetTag] = Field(default_factory=list)
    total: int = 0
    has_more: bool = False


class AssetTagsAdded(ComfyModel):
    """``POST /api/assets/{id}/tags``: which tags were added, which the asset had already, and
    all its tags now."""

    added: list[str] = Field(default_factory=list)
    already_present: list[str] = Field(default_factory=list)
    total_tags: list[str] = Field(default_factory=list)


class AssetTagsRemoved(ComfyModel):
    """``DELETE /api/assets/{id}/tags``: which tags were removed, which it did not have, and
    all its tags now."""

    removed: list[str] = Field(default_factory=list)
    not_present: list[str] = Field(default_factory=list)
    total_tags: list[str] = Field(default_factory=list)
    protected: list[str] = Field(default_factory=list)
