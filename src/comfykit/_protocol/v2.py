"""Comfy API v2 on the wire, without I/O: the SSE parser, the job's events as the tracker's
(ComfyUI-shaped) events, outputs as file references, the error envelope as comfykit's errors,
and uploaded files as the ``core/ASSET`` inputs of a workflow.

The clients (``comfykit._async._v2`` and its generated twin) do the requests; everything they
decide is here, once.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from comfykit._exceptions import (
    APIStatusError,
    InputError,
    JobLost,
    NodeProblem,
    PromptValidationError,
    UnsupportedOperationError,
)
from comfykit._protocol.events import (
    Executed,
    Executing,
    ExecutionErrorEvent,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    PreviewImage,
    Progress,
    UnknownEvent,
)
from comfykit._protocol.tracker import JobStatus
from comfykit._types import HistoryEntry, HistoryStatus

if TYPE_CHECKING:
    from comfykit._protocol.tracker import JobTracker

__all__ = [
    "API_CHOICES",
    "ASSET_TYPE",
    "V2Feed",
    "SSEParser",
    "asset_id_of",
    "asset_ref",
    "check_api",
    "is_v2_answer",
    "output_refs",
    "submit_error",
    "unsupported_route",
    "with_assets",
]

#: The values of a client's ``api`` argument.
API_CHOICES: Final = ("comfyui", "v2", "auto")
#: The ``__type`` of an asset reference inside a workflow.
ASSET_TYPE: Final = "core/ASSET"
#: How an uploaded asset is named in a graph until it is submitted: ``asset/<id>/<file name>``
#: (what ``UploadedFile.ref`` gives on the v2 backend; submit turns it into a ``core/ASSET``).
_ASSET_REF = re.compile(r"asset/([A-Za-z0-9][A-Za-z0-9._-]{0,99})/([^/]+)")
#: The result key of each output type (``Result.images`` reads ``images``).
_OUTPUT_KEYS: Final = {
    "image": "images",
    "video": "videos",
    "audio": "audio",
    "latent": "latents",
    "text": "files",
    "file": "files",
}
#: ComfyUI routes the v2 contract has no counterpart of, by path prefix: what they serve.
_ROUTES: Final = (
    ("/object_info", "the node catalog (object_info(), catalog(), validate())"),
    ("/queue", "the queue listing (queue(), clear_queue(), delete_from_queue())"),
    ("/history", "the history (history(), clear_history(), delete_history())"),
    ("/interrupt", "interrupt()"),
    ("/free", "free()"),
    ("/models", "model listing (models())"),
    ("/embeddings", "embeddings()"),
    ("/extensions", "extensions()"),
    ("/system_stats", "system_stats()"),
    ("/features", "features()"),
    ("/upload/mask", "upload_mask()"),
    ("/view", "a file by name (GET /view; v2 files are assets)"),
    ("/prompt", "POST /prompt"),
    ("/api/assets", "ComfyUI's assets API (assets(), get_asset(), upload_asset(), ...)"),
    ("/api/tags", "asset_tags()"),
)


def check_api(api: object) -> str:
    """``api`` when it is one of :data:`API_CHOICES`; an :class:`~comfykit.InputError` (a
    ``ValueError``) naming them otherwise."""
    if not isinstance(api, str) or api not in API_CHOICES:
        allowed = ", ".join(repr(a) for a in API_CHOICES)
        raise InputError(f"api must be one of {allowed}, got {api!r}")
    return api


def unsupported_route(method: str, path: str) -> UnsupportedOperationError:
    """The error of a ComfyUI route asked of a v2 server."""
    for prefix, what in _ROUTES:
        if path == prefix or path.startswith(prefix + "/"):
            return UnsupportedOperationError(what, "v2")
    return UnsupportedOperationError(f"{method} {path}", "v2")


def is_v2_answer(status: int, body: object) -> bool:
    """Whether the answer to ``GET /api/v2/jobs/<unknown id>`` is a v2 server's: the contract's
    error envelope, or a refusal of missing credentials."""
    if status in (401, 403):
        return True
    if not isinstance(body, Mapping):
        return False
    error = body.get("error")
    return isinstance(error, Mapping) and isinstance(error.get("code"), str)


# -- server-sent events ---------------------------------------------------------------------
class SSEParser:
    """An incremental ``text/event-stream`` parser: bytes in, ``(event, data)`` out (``data``
    decoded as JSON when it is JSON). Comments (keepalives) and frames without data are
    dropped; ``id`` and ``retry`` are ignored (the v2 stream has neither)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, Any]]:
        """The frames completed by ``chunk``."""
        self._buffer += chunk
        frames: list[tuple[str, Any]] = []
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                return frames
            line = self._buffer[:cut].rstrip(b"\r").decode("utf-8", "replace")
            self._buffer = self._buffer[cut + 1 :]
            if not line:
                if self._data:
                    text = "\n".join(self._data)
                    try:
                        data: Any = json.loads(text)
                    except ValueError:
                        data = text
                    frames.append((self._event or "message", data))
                self._event, self._data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)


# -- assets in graphs and results ---------------------------------------------------------
def asset_ref(asset_id: str, file_name: str) -> str:
    """How a graph names an uploaded asset before submit: ``asset/<id>/<file name>``."""
    return f"asset/{asset_id}/{file_name.rsplit('/', 1)[-1] or 'file'}"


def asset_id_of(value: object) -> str | None:
    """The asset id of a file reference: an output of a v2 result (its ``asset_id``), an
    uploaded file's ``asset/<id>/<name>`` reference, or ``None``."""
    extra = getattr(value, "model_extra", None)
    if isinstance(extra, Mapping) and isinstance(extra.get("asset_id"), str):
        return str(extra["asset_id"])
    if isinstance(value, Mapping) and isinstance(value.get("asset_id"), str):
        return str(value["asset_id"])
    ref = getattr(value, "ref", value)
    if isinstance(ref, str):
        found = _ASSET_REF.fullmatch(ref.strip())
        if found is not None:
            return found.group(1)
    return None


def with_assets(graph: Mapping[str, Any]) -> dict[str, Any]:
    """``graph`` with every input naming an uploaded asset (``asset/<id>/<name>``) turned into
    the contract's ``{"__type": "core/ASSET", "info": {"id", "file_path"}}``."""
    out: dict[str, Any] = {}
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            out[node_id] = node
            continue
        changed = {}
        for name, value in inputs.items():
            found = _ASSET_REF.fullmatch(value.strip()) if isinstance(value, str) else None
            if found is not None:
                info = {"id": found.group(1), "file_path": found.group(2)}
                changed[name] = {"__type": ASSET_TYPE, "info": info}
        out[node_id] = {**node, "inputs": {**inputs, **changed}} if changed else node
    return out


def output_refs(outputs: object) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """A job's ``outputs`` (assets) as the results' per-node file references: ``filename``
    and ``subfolder`` from the output's name, ``type: "output"``, and the asset's ``asset_id``,
    ``url``, ``content_type``, ``size_bytes`` and ``hash`` kept alongside."""
    refs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for item in outputs if isinstance(outputs, list) else []:
        ref = _output_ref(item)
        if ref is not None:
            node, key, entry = ref
            refs.setdefault(node, {}).setdefault(key, []).append(entry)
    return refs


def _output_ref(item: object) -> tuple[str, str, dict[str, Any]] | None:
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
        return None
    asset_id = str(item["id"])
    subfolder, _, filename = str(item.get("name") or "").rpartition("/")
    entry = {
        "filename": filename or asset_id,
        "subfolder": subfolder,
        "type": "output",
        "asset_id": asset_id,
        "url": item.get("url"),
        "content_type": item.get("content_type"),
        "size_bytes": item.get("size_bytes"),
        "hash": item.get("hash"),
    }
    key = _OUTPUT_KEYS.get(str(item.get("type")), "files")
    return str(item.get("node_id") or ""), key, entry


# -- errors ---------------------------------------------------------------------------------
def _envelope(body: object) -> tuple[str, str, dict[str, Any]]:
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return "", "", {}
    details = error.get("details")
    return (
        str(error.get("code") or ""),
        str(error.get("message") or ""),
        dict(details) if isinstance(details, Mapping) else {},
    )


def _class_of(graph: Mapping[str, Any], node_id: str) -> str:
    node = graph.get(node_id)
    return str(node.get("class_type") or "") if isinstance(node, Mapping) else ""


def submit_error(exc: APIStatusError, graph: Mapping[str, Any]) -> APIStatusError:
    """The error of a refused ``POST /api/v2/jobs``: a 422 about the graph (``invalid_workflow``
    with its per-node problems, ``missing_asset``, ``workflow_format_ui``) is a
    :class:`~comfykit.PromptValidationError`; a reused ``Idempotency-Key`` says what it means;
    anything else is ``exc`` as it is."""
    code, message, details = _envelope(exc.body)
    if exc.status_code != 422 or not code:
        return exc
    if code == "idempotency_key_reuse":
        return APIStatusError(
            "POST /api/v2/jobs: this prompt id was submitted before (the server refuses its "
            "Idempotency-Key again, and does not say which job it made); when a retried submit "
            "ends here, its first attempt queued the job. Submit with a new prompt_id to run "
            "the graph again.",
            status_code=422, body=exc.body, response=exc.response,
        )  # fmt: skip
    problems: list[NodeProblem] = []
    node_errors = details.get("node_errors")
    if isinstance(node_errors, Mapping):
        for node_id, items in node_errors.items():
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, Mapping):
                    continue
                problems.append(
                    NodeProblem(
                        node_id=str(node_id),
                        class_type=str(item.get("class_type") or _class_of(graph, str(node_id))),
                        type=str(item.get("reason") or "invalid"),
                        message=str(item.get("message") or item.get("reason") or code),
                        input_name=str(item["field"]) if item.get("field") else None,
                    )
                )
    missing = details.get("missing")
    for item in missing if isinstance(missing, list) else []:
        if isinstance(item, Mapping):
            node_id = str(item.get("node_id") or "")
            reason = str(item.get("reason") or "not_found")
            problems.append(
                NodeProblem(
                    node_id=node_id, class_type=_class_of(graph, node_id), type=reason,
                    message=f"asset {item.get('asset_id') or '?'} is missing ({reason})",
                    input_name=str(item["input"]) if item.get("input") else None,
                )
            )  # fmt: skip
    return PromptValidationError(
        error_type=code,
        error_message=message or code,
        errors=problems,
        node_errors=node_errors if isinstance(node_errors, Mapping) else None,
        status_code=exc.status_code,
        body=exc.body,
        response=exc.response,
    )


# -- the job's events -----------------------------------------------------------------------
def _now_ms() -> float:
    return time.time() * 1000


class V2Feed:
    """Feeds one :class:`~comfykit._protocol.tracker.JobTracker` from a v2 job: its SSE frames
    (:meth:`event`) or a polled job object (:meth:`job`), as the events a ComfyUI job has
    (``execution_start``, ``executing``, ``progress``, ``executed``, the terminal event), so
    ``job.events()``, ``result()`` and the job's errors work as they do on ComfyUI.

    A ``failed`` job ends with an ``execution_error`` (the v2 ``error.code`` as its exception
    type, with the node when the server names one), ``canceled`` with an
    ``execution_interrupted``, ``expired`` as a lost job.
    """

    def __init__(self, tracker: JobTracker) -> None:
        self.tracker = tracker
        self.queue_position: int | None = None
        self._outputs: set[str] = set()
        self._node_class: str | None = None

    @property
    def prompt_id(self) -> str:
        """The job's id."""
        return self.tracker.prompt_id

    def event(self, name: str, data: Any) -> None:
        """Apply one SSE frame."""
        if self.tracker.done:
            return
        if not isinstance(data, Mapping):
            data = {}
        if name == "status":
            self.status(
                str(data.get("status") or ""), queue_position=data.get("queue_position"),
                outputs=data.get("outputs"), error=data.get("error"),
            )  # fmt: skip
        elif name == "progress":
            self.progress(data)
        elif name == "preview":
            self._preview(data)
        elif name == "output":
            self._executed([data])
        else:
            self.tracker.feed(UnknownEvent(type=name, prompt_id=self.prompt_id, data=dict(data)))

    def job(self, data: Mapping[str, Any]) -> None:
        """Apply a job object (``GET /api/v2/jobs/{id}``, or a submit's or a cancel's answer)."""
        if self.tracker.done:
            return
        status = str(data.get("status") or "")
        progress = data.get("progress")
        if status in ("running", "canceling") and isinstance(progress, Mapping):
            self.progress(progress)
        if status == "running":
            self._executed(data.get("outputs"))
        self.status(
            status, queue_position=data.get("queue_position"), outputs=data.get("outputs"),
            error=data.get("error"),
        )  # fmt: skip

    def status(
        self,
        status: str,
        *,
        queue_position: object = None,
        outputs: object = None,
        error: object = None,
    ) -> None:
        """Apply a status (the terminal ones end the job)."""
        tracker = self.tracker
        if tracker.done:
            return
        if status == "queued":
            self.queue_position = queue_position if isinstance(queue_position, int) else None
            return
        self.queue_position = None
        if status in ("running", "canceling"):
            self._start()
        elif status == "succeeded":
            self._start()
            self._executed(outputs)
            self._end(ExecutionSuccess(prompt_id=self.prompt_id, timestamp=_now_ms()), outputs)
        elif status == "failed":
            info = error if isinstance(error, Mapping) else {}
            node_id = info.get("node_id")
            node_type = info.get("class_type")
            trace = info.get("traceback")
            event = ExecutionErrorEvent(
                prompt_id=self.prompt_id,
                node_id=str(node_id) if node_id is not None else None,
                node_type=str(node_type) if node_type is not None else None,
                exception_type=str(info.get("code") or "failed"),
                exception_message=str(info.get("message") or "the job failed"),
                traceback=[str(trace)] if trace else [],
                timestamp=_now_ms(),
            )
            self._end(event, None)
        elif status == "canceled":
            self._end(
                ExecutionInterrupted(
                    prompt_id=self.prompt_id, node_id=tracker.current_node,
                    node_type=self._node_class, timestamp=_now_ms(),
                ),
                None,
            )  # fmt: skip
        elif status == "expired":
            tracker.fail(
                JobLost(
                    f"job {self.prompt_id} has expired: the server no longer keeps its outputs",
                    prompt_id=self.prompt_id,
                )
            )

    def progress(self, data: Mapping[str, Any]) -> None:
        """Apply a progress snapshot (the node it names runs; its sampler steps, if any)."""
        tracker = self.tracker
        self._start()
        node = data.get("current_node")
        node = str(node) if node is not None else None
        if node is not None and node != tracker.current_node:
            tracker.feed(Executing(prompt_id=self.prompt_id, node=node))
            cls = data.get("current_node_class")
            self._node_class = str(cls) if cls is not None else None
        steps = data.get("steps")
        if isinstance(steps, (int, float)) and steps > 0:
            step = data.get("step")
            value = step if isinstance(step, (int, float)) else 0
            last = tracker.last_progress
            if last is None or (last.node, last.value, last.max) != (node, value, steps):
                tracker.feed(Progress(prompt_id=self.prompt_id, node=node, value=value, max=steps))

    def _preview(self, data: Mapping[str, Any]) -> None:
        try:
            image = base64.b64decode(str(data.get("data_base64") or ""), validate=True)
        except (binascii.Error, ValueError):
            return
        node = data.get("node_id")
        self.tracker.feed(
            PreviewImage(
                prompt_id=self.prompt_id, image=image,
                mime_type=str(data.get("content_type") or "image/jpeg"),
                node_id=str(node) if node else None,
            )
        )  # fmt: skip

    def _start(self) -> None:
        tracker = self.tracker
        if tracker.status is JobStatus.QUEUED and tracker.started_at is None:
            tracker.feed(ExecutionStart(prompt_id=self.prompt_id, timestamp=_now_ms()))

    def _executed(self, outputs: object) -> None:
        """An ``executed`` event per node for the outputs not seen yet."""
        fresh = [
            o
            for o in (outputs if isinstance(outputs, list) else [])
            if isinstance(o, Mapping) and o.get("id") not in self._outputs
        ]
        self._outputs.update(str(o.get("id")) for o in fresh)
        for node, ui in output_refs(fresh).items():
            self.tracker.feed(Executed(prompt_id=self.prompt_id, node=node, output=ui))

    def _end(self, event: Any, outputs: object) -> None:
        tracker = self.tracker
        tracker.feed(event)
        tracker.feed(Executing(prompt_id=self.prompt_id, node=None))
        success = isinstance(event, ExecutionSuccess)
        tracker.apply_history(
            HistoryEntry(
                outputs=output_refs(outputs) if success else {},
                status=HistoryStatus(status_str="success" if success else "error", completed=True),
            )
        )
