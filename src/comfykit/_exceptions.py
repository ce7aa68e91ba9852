"""The comfykit error tree.

Every error raised through the public API is a :class:`ComfyError`. Transport errors from httpx or
websockets never escape raw: they are wrapped (``raise ... from err``) so callers can catch one
family of exceptions and still reach the cause through ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

__all__ = [
    "APIStatusError",
    "AssetsUnavailableError",
    "ComfyConnectionError",
    "ComfyError",
    "ComfyTimeoutError",
    "EventLoopError",
    "ExecutionError",
    "FileSaveError",
    "InputError",
    "JobError",
    "JobInterrupted",
    "JobLost",
    "JobTimeoutError",
    "NoServerAvailable",
    "NodeProblem",
    "NodeValidationError",
    "NotFoundError",
    "PromptValidationError",
    "ServerError",
    "UnsupportedOperationError",
    "WorkflowError",
    "WorkflowProblem",
]


class ComfyError(Exception):
    """Base class of every error comfykit raises."""


class ComfyConnectionError(ComfyError):
    """The server could not be reached, or the connection broke mid-request."""

    #: Set on the error of a ``POST /prompt`` none of whose attempts reached the server (each
    #: failed before a byte was written): the prompt is certainly not there. A pool sends such
    #: a job to another server at once.
    _not_sent: bool = False


class ComfyTimeoutError(ComfyConnectionError):
    """A request or a job did not finish within its timeout."""


class JobTimeoutError(ComfyTimeoutError):
    """A job did not finish within the time its caller waited.

    The job itself goes on unless it was cancelled: ``job`` is its handle (``await
    err.job.cancel()``, or ``err.job.result()`` to wait again).

    Attributes:
        prompt_id: the job's prompt id.
        job: the job handle (``AsyncJob`` or ``Job``).
        cancelled: True when the job was cancelled on the server because of the timeout.
    """

    def __init__(self, message: str, *, prompt_id: str, job: Any, cancelled: bool) -> None:
        super().__init__(message)
        self.prompt_id = prompt_id
        self.job = job
        self.cancelled = cancelled


class NoServerAvailable(ComfyError):
    """A pool has no server that can take a job: every server is down, or none of the healthy
    ones has the node classes and model files the graph uses.

    Attributes:
        reasons: per server URL, why it cannot take the job (``"down since ...: <error>"``,
            ``"node class 'X'"``, ``"model 'y.safetensors' (node 4 ...)"``).
    """

    def __init__(self, message: str, reasons: Mapping[str, Sequence[str]]) -> None:
        self.message = message
        self.reasons = {url: list(why) for url, why in reasons.items()}
        lines = "".join(
            f"\n  - {url}: {'; '.join(why) or 'no reason given'}"
            for url, why in self.reasons.items()
        )
        super().__init__(message + lines)

    def __reduce__(self) -> tuple[type[NoServerAvailable], tuple[str, dict[str, list[str]]]]:
        return (type(self), (self.message, self.reasons))


class EventLoopError(ComfyError, RuntimeError):
    """An ``AsyncComfyClient`` was used on another event loop than the one it first ran on.

    Its WebSocket and connection pool belong to that loop; ``asyncio.run()`` makes a new loop
    each time. Make one client per loop (``async with AsyncComfyClient(...)`` inside the
    coroutine you run), or use the blocking ``ComfyClient``.
    """


class FileSaveError(ComfyError, OSError):
    """A file could not be written where the caller asked (no permission, no space, a file where
    a folder should be, ...). The underlying ``OSError`` is the ``__cause__``.

    Attributes:
        path: the destination as the caller gave it.
    """

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class APIStatusError(ComfyError):
    """The server answered with an HTTP status comfykit did not expect.

    Attributes:
        status_code: the HTTP status.
        body: the decoded JSON body when there is one, else the text.
        response: the ``httpx.Response`` (``None`` when built without one).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: object = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.response = response

    @property
    def request(self) -> httpx.Request | None:
        """The request that got this answer, when known."""
        return self.response.request if self.response is not None else None


class NotFoundError(APIStatusError):
    """HTTP 404: the route, file or item does not exist."""


class ServerError(APIStatusError):
    """HTTP 5xx: the server failed (ComfyUI also answers 500 to malformed bodies)."""


class UnsupportedOperationError(ComfyError):
    """The server's API cannot do what was asked; nothing was sent for it.

    A client on the Comfy API v2 backend (``api="v2"``) has no node catalog, queue listing,
    history, ``interrupt()`` of whatever runs, ``free()`` or model listing: those are ComfyUI
    routes the v2 contract does not have.

    Attributes:
        operation: what was asked (``"queue()"``, ``"validate=True"``, ...).
        backend: the API the client speaks (``"v2"``).
    """

    def __init__(self, operation: str, backend: str, hint: str = "") -> None:
        self.operation = operation
        self.backend = backend
        self.hint = hint
        name = {"v2": "Comfy API v2", "comfyui": "ComfyUI"}.get(backend, backend)
        message = f"{operation} is not available on the {name} backend (api={backend!r})"
        super().__init__(f"{message}: {hint}" if hint else message)

    def __reduce__(self) -> tuple[type[UnsupportedOperationError], tuple[str, str, str]]:
        return (type(self), (self.operation, self.backend, self.hint))


class InputError(ComfyError, ValueError):
    """An argument given to a comfykit call is invalid; nothing was sent."""


class AssetsUnavailableError(ComfyError):
    """The server does not serve ``/api/assets``: a release before the assets API, or one
    started without it (``--enable-assets`` where it is opt-in, ``--disable-assets`` where it
    is on by default).

    Attributes:
        comfyui_version: the server's version, when ``/system_stats`` gave one.
    """

    def __init__(self, message: str, *, comfyui_version: str | None = None) -> None:
        super().__init__(message)
        self.comfyui_version = comfyui_version


@dataclass(frozen=True)
class NodeProblem:
    """One problem the server found with one input of one node (an entry of ``node_errors``).

    A record, not an exception: :class:`PromptValidationError` carries a list of them, and a job
    the server accepted in part lists its dropped outputs' problems in ``job.node_errors``.
    """

    node_id: str
    class_type: str
    type: str
    message: str
    details: str = ""
    input_name: str | None = None
    received_value: Any = None
    extra_info: Mapping[str, Any] = field(default_factory=dict)
    title: str | None = None

    def __str__(self) -> str:
        where = f"node {self.node_id} ({self.class_type})"
        if self.title and self.title != self.class_type:
            where = f"node {self.node_id} ({self.class_type} {self.title!r})"
        if self.input_name:
            where += f" input {self.input_name!r}"
        text = self.message
        if text and text[0].isupper() and not text[:2].isupper():
            text = text[0].lower() + text[1:]
        if self.details and self.details != self.input_name and self.details not in text:
            text = f"{text}: {self.details}"
        return f"{where}: {text}"


#: The former name of :class:`NodeProblem`, kept for code written against it.
NodeValidationError = NodeProblem


class PromptValidationError(APIStatusError):
    """``POST /prompt`` answered 400: the server rejected the graph.

    Attributes:
        error_type: the top-level ``error.type`` (``prompt_outputs_failed_validation``,
            ``invalid_prompt``, ``prompt_no_outputs``, ...).
        error_message: the top-level ``error.message``.
        errors: every per-node, per-input problem, flattened.
        node_errors: the raw ``node_errors`` mapping as the server sent it.
    """

    def __init__(
        self,
        *,
        error_type: str,
        error_message: str,
        details: str = "",
        errors: Sequence[NodeProblem] = (),
        node_errors: Mapping[str, Any] | None = None,
        status_code: int = 400,
        body: object = None,
        response: httpx.Response | None = None,
    ) -> None:
        self.error_type = error_type
        self.error_message = error_message
        self.details = details
        self.errors = list(errors)
        self.node_errors = dict(node_errors or {})
        super().__init__(self._render(), status_code=status_code, body=body, response=response)

    def _render(self) -> str:
        head = self.error_message or self.error_type
        if self.details and not self.errors:
            head = f"{head}: {self.details}"
        if not self.errors:
            return head
        lines = "\n".join(f"  - {e}" for e in self.errors)
        return f"{head}\n{lines}"


@dataclass(frozen=True)
class WorkflowProblem:
    """One defect found in a workflow before it was sent."""

    node_id: str | None
    class_type: str | None
    reason: str
    input_name: str | None = None
    title: str | None = None
    code: str = "invalid"

    def __str__(self) -> str:
        if self.node_id is None:
            where = "workflow"
        else:
            where = f"node {self.node_id}"
            if self.class_type:
                label = self.class_type
                if self.title and self.title != self.class_type:
                    label += f" {self.title!r}"
                where += f" ({label})"
        if self.input_name:
            where += f" input {self.input_name!r}"
        return f"{where}: {self.reason}"


class WorkflowError(ComfyError, ValueError):
    """A graph is malformed or does not match the server's node catalog.

    ``problems`` lists every defect found, not just the first.
    """

    def __init__(self, problems: Sequence[WorkflowProblem] | str) -> None:
        if isinstance(problems, str):
            problems = [WorkflowProblem(None, None, problems)]
        self.problems = list(problems)
        if len(self.problems) == 1:
            msg = str(self.problems[0])
        else:
            body = "\n".join(f"  - {p}" for p in self.problems)
            msg = f"{len(self.problems)} problems in workflow:\n{body}"
        super().__init__(msg)


class JobError(ComfyError):
    """A job ended without success."""

    def __init__(self, message: str, *, prompt_id: str) -> None:
        super().__init__(message)
        self.prompt_id = prompt_id


class ExecutionError(JobError):
    """A node raised while the server executed the prompt (``execution_error``).

    Attributes:
        node_id, node_type: the node that raised.
        exception_type, exception_message: what it raised.
        traceback: the server-side traceback as one string.
        traceback_lines: the same, as the list of lines the server sent.
        executed: the nodes that had run before it.
    """

    def __init__(
        self,
        *,
        prompt_id: str,
        node_id: str | None,
        node_type: str | None,
        exception_type: str,
        exception_message: str,
        traceback: Sequence[str] = (),
        executed: Sequence[str] = (),
    ) -> None:
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.traceback_lines = list(traceback)
        self.traceback = "".join(self.traceback_lines)
        self.executed = list(executed)
        where = f"node {node_id} ({node_type})" if node_id else "the prompt"
        super().__init__(
            f"{where} failed with {exception_type}: {exception_message.strip()}",
            prompt_id=prompt_id,
        )


class JobInterrupted(JobError):
    """The job was interrupted or cancelled before it finished."""

    def __init__(
        self,
        message: str,
        *,
        prompt_id: str,
        node_id: str | None = None,
        node_type: str | None = None,
    ) -> None:
        super().__init__(message, prompt_id=prompt_id)
        self.node_id = node_id
        self.node_type = node_type


class JobLost(JobError):
    """The job vanished from both the queue and the history (for example a server restart)."""
