"""Typed models of what the ComfyUI server returns over HTTP.

Every model keeps fields it does not know (``extra="allow"``): newer servers and custom nodes add
fields, and dropping them would lose data.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ComfyModel",
    "DeviceInfo",
    "Features",
    "FileRef",
    "HistoryEntry",
    "HistoryStatus",
    "MediaKind",
    "PromptResponse",
    "QueueItem",
    "QueueState",
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
