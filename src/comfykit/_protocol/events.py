"""Typed WebSocket events and the sans-I/O parser for text and binary frames.

Every JSON message type of docs/comfyui-api.md §4.4 has a model; binary frames of types 1, 3 and 4
(§4.6) decode to :class:`PreviewImage` and :class:`ProgressText`. Unknown JSON types become
:class:`UnknownEvent` and unknown binary types :class:`UnknownBinary`: never an exception.
"""

from __future__ import annotations

import functools
import json
import struct
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "BinaryEvent",
    "Event",
    "EventBase",
    "Executed",
    "Executing",
    "ExecutionCached",
    "ExecutionErrorEvent",
    "ExecutionInterrupted",
    "ExecutionStart",
    "ExecutionSuccess",
    "FeatureFlags",
    "Logs",
    "NodeProgress",
    "PreviewImage",
    "Progress",
    "ProgressState",
    "ProgressText",
    "Status",
    "UnknownBinary",
    "UnknownEvent",
    "parse_binary",
    "parse_event",
    "parse_text",
]


class EventBase(BaseModel):
    """Base of every event; unknown fields are kept."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    type: str
    prompt_id: str | None = None


class Status(EventBase):
    """Queue size changed (broadcast); the first frame also carries the session id."""

    type: Literal["status"] = "status"
    queue_remaining: int | None = None
    sid: str | None = None


class FeatureFlags(EventBase):
    """The server's answer to the feature-flag handshake."""

    type: Literal["feature_flags"] = "feature_flags"
    flags: dict[str, Any] = Field(default_factory=dict)


class ExecutionStart(EventBase):
    """The prompt started executing."""

    type: Literal["execution_start"] = "execution_start"
    timestamp: int | float | None = None


class ExecutionCached(EventBase):
    """Nodes whose outputs come from the cache in this run."""

    type: Literal["execution_cached"] = "execution_cached"
    nodes: list[str] = Field(default_factory=list)
    timestamp: int | float | None = None


class Executing(EventBase):
    """A node started executing; ``node is None`` means the prompt is finished and in history."""

    type: Literal["executing"] = "executing"
    node: str | None = None
    display_node: str | None = None


class Progress(EventBase):
    """Step progress of one node (sampler steps, ``ProgressBar``)."""

    type: Literal["progress"] = "progress"
    node: str | None = None
    value: float = 0
    max: float = 0


class NodeProgress(BaseModel):
    """One node's entry in a :class:`ProgressState`."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    value: float = 0
    max: float = 0
    state: str = "running"
    node_id: str | None = None
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None


class ProgressState(EventBase):
    """State of every non-pending node of the prompt."""

    type: Literal["progress_state"] = "progress_state"
    nodes: dict[str, NodeProgress] = Field(default_factory=dict)


class Executed(EventBase):
    """A node finished and returned UI output (images, text, ...)."""

    type: Literal["executed"] = "executed"
    node: str
    display_node: str | None = None
    output: dict[str, Any] = Field(default_factory=dict)


class ExecutionSuccess(EventBase):
    """The prompt finished without error (history may not be written yet)."""

    type: Literal["execution_success"] = "execution_success"
    timestamp: int | float | None = None


class ExecutionErrorEvent(EventBase):
    """A node raised during execution."""

    type: Literal["execution_error"] = "execution_error"
    node_id: str | None = None
    node_type: str | None = None
    executed: list[str] = Field(default_factory=list)
    exception_message: str = ""
    exception_type: str = ""
    traceback: list[str] = Field(default_factory=list)
    current_inputs: Any = None
    current_outputs: Any = None
    timestamp: int | float | None = None


class ExecutionInterrupted(EventBase):
    """The prompt was interrupted."""

    type: Literal["execution_interrupted"] = "execution_interrupted"
    node_id: str | None = None
    node_type: str | None = None
    executed: list[str] = Field(default_factory=list)
    timestamp: int | float | None = None


class Logs(EventBase):
    """Server log lines (after subscribing through ``/internal/logs/subscribe``)."""

    type: Literal["logs"] = "logs"
    entries: list[dict[str, Any]] = Field(default_factory=list)
    size: dict[str, Any] | None = None


class UnknownEvent(EventBase):
    """A JSON event type comfykit does not model (custom nodes, newer servers)."""

    data: Any = None


class PreviewImage(EventBase):
    """A preview image (binary frame type 1, or type 4 with metadata)."""

    type: Literal["preview"] = "preview"
    image: bytes
    mime_type: str = "image/jpeg"
    node_id: str | None = None
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None

    def to_pil(self) -> Image:
        """Decode the preview into a PIL image (imports PIL)."""
        import io

        from PIL import Image as PILImage

        img = PILImage.open(io.BytesIO(self.image))
        img.load()
        return img


class ProgressText(EventBase):
    """A text message a node sent while running (binary frame type 3)."""

    type: Literal["progress_text"] = "progress_text"
    node_id: str
    text: str


class UnknownBinary(EventBase):
    """A binary frame of a type comfykit does not model."""

    type: Literal["binary"] = "binary"
    event_type: int
    payload: bytes


BinaryEvent = PreviewImage | ProgressText | UnknownBinary
Event = (
    Status
    | FeatureFlags
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | ProgressState
    | Executed
    | ExecutionSuccess
    | ExecutionErrorEvent
    | ExecutionInterrupted
    | Logs
    | PreviewImage
    | ProgressText
    | UnknownBinary
    | UnknownEvent
)

_MODELS: dict[str, type[EventBase]] = {
    "execution_start": ExecutionStart,
    "execution_cached": ExecutionCached,
    "executing": Executing,
    "progress": Progress,
    "progress_state": ProgressState,
    "executed": Executed,
    "execution_success": ExecutionSuccess,
    "execution_error": ExecutionErrorEvent,
    "execution_interrupted": ExecutionInterrupted,
    "logs": Logs,
}


def parse_event(message: Any) -> Event:
    """Turn one decoded JSON message (``{"type", "data"}``) into a typed event."""
    if not isinstance(message, dict):
        return UnknownEvent(type="invalid", data=message)
    etype = message.get("type")
    data = message.get("data")
    if not isinstance(etype, str):
        return UnknownEvent(type="invalid", data=message)
    try:
        if etype == "status" and isinstance(data, dict):
            status = data.get("status")
            info = status.get("exec_info") if isinstance(status, dict) else None
            remaining = info.get("queue_remaining") if isinstance(info, dict) else None
            return Status(queue_remaining=remaining, sid=data.get("sid"))
        if etype == "feature_flags" and isinstance(data, dict):
            return FeatureFlags(flags=data)
        model = _MODELS.get(etype)
        if model is not None and isinstance(data, dict):
            return model.model_validate(data)  # type: ignore[return-value]
    except ValidationError:
        pass
    return UnknownEvent(type=etype, data=data)


class _QueueInfo(BaseModel):
    queue_remaining: int | None = None


class _QueueStatus(BaseModel):
    exec_info: _QueueInfo | None = None


class _StatusData(BaseModel):
    status: _QueueStatus | None = None
    sid: str | None = None


@functools.cache
def _frame_adapter() -> TypeAdapter[Any]:
    """One validator for every known ``{"type", "data"}`` frame, run on the raw JSON text.

    Parsing and validating in one pass costs about what ``json.loads`` alone does; frames it
    does not accept take the general path of :func:`parse_event`, which decides what they are.
    """
    data_types: dict[str, Any] = {
        "status": _StatusData,
        "feature_flags": dict[str, Any],
        **_MODELS,
    }
    envelopes = tuple(
        create_model(f"_Frame_{name}", type=(_literal(name), ...), data=(data_type, ...))
        for name, data_type in data_types.items()
    )
    frame: Any = Annotated[Union[envelopes], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(frame)


def _literal(name: str) -> Any:
    return Literal[name]


def _from_envelope(envelope: Any) -> Event:
    data = envelope.data
    if envelope.type == "status":
        info = data.status.exec_info if data.status is not None else None
        return Status(queue_remaining=info.queue_remaining if info else None, sid=data.sid)
    if envelope.type == "feature_flags":
        return FeatureFlags(flags=data)
    event: Event = data
    return event


def parse_text(frame: str) -> Event:
    """Parse a text frame; malformed JSON becomes an :class:`UnknownEvent` of type ``invalid``."""
    try:
        return _from_envelope(_frame_adapter().validate_json(frame))
    except (ValidationError, RecursionError):
        pass
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return UnknownEvent(type="invalid", data=frame)
    return parse_event(message)


def parse_binary(frame: bytes) -> BinaryEvent:
    """Parse a binary frame: a big-endian uint32 type, then the payload."""
    if len(frame) < 4:
        return UnknownBinary(event_type=-1, payload=bytes(frame))
    (etype,) = struct.unpack_from(">I", frame, 0)
    body = frame[4:]
    try:
        if etype == 1 and len(body) >= 4:
            (fmt,) = struct.unpack_from(">I", body, 0)
            mime = "image/png" if fmt == 2 else "image/jpeg"
            return PreviewImage(image=bytes(body[4:]), mime_type=mime)
        if etype == 3 and len(body) >= 4:
            (n,) = struct.unpack_from(">I", body, 0)
            node_id = bytes(body[4 : 4 + n]).decode("utf-8")
            text = bytes(body[4 + n :]).decode("utf-8", "replace")
            return ProgressText(node_id=node_id, text=text)
        if etype == 4 and len(body) >= 4:
            (n,) = struct.unpack_from(">I", body, 0)
            meta = json.loads(bytes(body[4 : 4 + n]).decode("utf-8"))
            if isinstance(meta, dict):
                return PreviewImage(
                    image=bytes(body[4 + n :]),
                    mime_type=str(meta.get("image_type") or "image/jpeg"),
                    prompt_id=meta.get("prompt_id"),
                    node_id=meta.get("node_id"),
                    display_node_id=meta.get("display_node_id"),
                    parent_node_id=meta.get("parent_node_id"),
                    real_node_id=meta.get("real_node_id"),
                )
    except (ValueError, ValidationError, UnicodeDecodeError, RecursionError):
        pass
    return UnknownBinary(event_type=etype, payload=bytes(body))
