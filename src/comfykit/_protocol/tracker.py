"""The per-job state machine and the event router: the completion rule, written once, no I/O.

docs/comfyui-api.md §4.7: a job is complete when its terminal event (``execution_success``,
``execution_error`` or ``execution_interrupted``) has arrived *and* ``executing`` with
``node: null`` for its prompt id, which the server sends after the history entry is written. The
outputs gathered from ``executed`` events are then reconciled with ``/history/{id}``. A job whose
events were missed (reconnect, polling without a WebSocket) is completed from history alone.
"""

from __future__ import annotations

import enum
import weakref
from typing import Any

from comfykit._exceptions import (
    ComfyError,
    ExecutionError,
    JobError,
    JobInterrupted,
    JobLost,
)
from comfykit._protocol.events import (
    Event,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionErrorEvent,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FeatureFlags,
    PreviewImage,
    Progress,
    ProgressText,
    Status,
    parse_event,
)
from comfykit._types import HistoryEntry, HistoryStatus

__all__ = ["JobStatus", "JobTracker", "Router", "merge_outputs"]

_TERMINAL = (ExecutionSuccess, ExecutionErrorEvent, ExecutionInterrupted)


class JobStatus(str, enum.Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    LOST = "lost"

    @property
    def finished(self) -> bool:
        """True for the end states."""
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


def merge_outputs(target: dict[str, dict[str, Any]], node: str, output: dict[str, Any]) -> None:
    """Merge one node's UI output into ``target`` as the server does (lists concatenate)."""
    current = target.setdefault(node, {})
    for key, value in output.items():
        if isinstance(value, list) and isinstance(current.get(key), list):
            current[key] = current[key] + value
        else:
            current[key] = value


class JobTracker:
    """Everything known about one prompt, fed with its events and (at the end) its history entry."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.status = JobStatus.QUEUED
        self.events: list[Event] = []
        self.outputs: dict[str, dict[str, Any]] = {}
        self.cached_nodes: list[str] = []
        self.terminal: Event | None = None
        self.finished_executing = False
        self.history: HistoryEntry | None = None
        self.error: ComfyError | None = None
        self.current_node: str | None = None
        self.last_progress: Progress | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.cancel_requested = False
        #: The server has the prompt (its submit returned): a catch-up may look for it.
        self.submitted = False

    # -- feeding -------------------------------------------------------------------------
    def feed(self, event: Event) -> None:
        """Apply one event addressed to this prompt."""
        self.events.append(event)
        if isinstance(event, ExecutionStart):
            self.status = JobStatus.RUNNING if not self.status.finished else self.status
            self.started_at = event.timestamp
        elif isinstance(event, ExecutionCached):
            self.cached_nodes = list(event.nodes)
        elif isinstance(event, Executing):
            if event.node is None:
                self.finished_executing = True
                self.current_node = None
            else:
                self.current_node = event.node
                if self.status is JobStatus.QUEUED:
                    self.status = JobStatus.RUNNING
        elif isinstance(event, Executed):
            merge_outputs(self.outputs, event.node, event.output)
        elif isinstance(event, Progress):
            self.last_progress = event
        elif isinstance(event, _TERMINAL):
            self.terminal = event
            self.ended_at = event.timestamp
            self.status = _status_of(event)

    def apply_history(self, entry: HistoryEntry) -> None:
        """Reconcile with the history entry (authoritative for outputs and the end state)."""
        self.history = entry
        if entry.outputs:
            self.outputs = {k: dict(v) for k, v in entry.outputs.items()}
        status = entry.status
        if status is not None and not self.cached_nodes:
            for name, data in status.messages:
                if name == "execution_cached" and isinstance(data, dict):
                    self.cached_nodes = [str(n) for n in data.get("nodes") or []]
        if self.terminal is None and status is not None:
            # Catching up (reconnect or polling): replay the terminal message as its event.
            for name, data in reversed(status.messages):
                if name in ("execution_success", "execution_error", "execution_interrupted"):
                    event = parse_event({"type": name, "data": data})
                    if isinstance(event, _TERMINAL):
                        self.feed(event)
                    break
            if self.terminal is None:
                success = status.status_str == "success"
                self.status = JobStatus.SUCCEEDED if success else JobStatus.FAILED
        self.finished_executing = True

    def mark_submitted(self) -> None:
        """The server has the prompt (its submit returned): a catch-up may look for it."""
        self.submitted = True

    def request_cancel(self) -> None:
        """A cancel was sent: if the prompt then vanishes unrun, it was cancelled, not lost."""
        self.cancel_requested = True

    def apply_queue(self, *, running: bool) -> None:
        """A catch-up found the prompt in the server's queue (``running``: it is executing)."""
        if running and self.status is JobStatus.QUEUED:
            self.status = JobStatus.RUNNING

    def apply_missing(self) -> None:
        """A catch-up found the prompt neither queued nor in the history (a restarted server
        forgets its history): a job whose end was already seen finishes from its events."""
        if self.terminal is not None:
            self.finish_from_events()
        elif self.cancel_requested:
            self.fail(
                JobInterrupted(
                    f"prompt {self.prompt_id} was cancelled before it ran",
                    prompt_id=self.prompt_id,
                ),
                JobStatus.INTERRUPTED,
            )
        else:
            self.fail(
                JobLost(
                    f"prompt {self.prompt_id} is neither queued nor in the history "
                    "(was the server restarted?)",
                    prompt_id=self.prompt_id,
                )
            )

    def finish_from_events(self) -> None:
        """The server said the history entry is written but does not return it (evicted, or a
        server that never writes one): finish from what the events said."""
        status = "success" if self.status is JobStatus.SUCCEEDED else "error"
        self.apply_history(
            HistoryEntry(
                outputs=self.outputs, status=HistoryStatus(status_str=status, completed=True)
            )
        )

    def fail(self, error: ComfyError, status: JobStatus = JobStatus.LOST) -> None:
        """End the job locally (connection lost, vanished, cancelled while pending).

        A job whose end was already seen (its terminal event) is not failed: its completion and
        outputs are known, so it finishes from its events whatever became of the server.
        """
        if self.status.finished and self.error is None and self.history is not None:
            return
        if self.terminal is not None and self.history is None and self.error is None:
            self.finish_from_events()
            return
        self.error = error
        self.status = status

    # -- questions -----------------------------------------------------------------------
    @property
    def needs_history(self) -> bool:
        """True when the server has written the history entry and it is not applied yet."""
        return self.finished_executing and self.history is None and self.error is None

    @property
    def execution_ms(self) -> float | None:
        """Milliseconds from ``execution_start`` to the terminal event, when both were seen."""
        if self.ended_at is None or self.started_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def done(self) -> bool:
        """True when nothing more will happen to this job."""
        return self.error is not None or self.history is not None

    def raise_for_status(self) -> None:
        """Raise the job's error if it did not succeed."""
        if self.error is not None:
            raise self.error
        event = self.terminal
        if isinstance(event, ExecutionErrorEvent):
            raise ExecutionError(
                prompt_id=self.prompt_id,
                node_id=event.node_id,
                node_type=event.node_type,
                exception_type=event.exception_type or "Exception",
                exception_message=event.exception_message,
                traceback=event.traceback,
                executed=event.executed,
            )
        if isinstance(event, ExecutionInterrupted):
            where = f" at node {event.node_id} ({event.node_type})" if event.node_id else ""
            raise JobInterrupted(
                f"prompt {self.prompt_id} was interrupted{where}",
                prompt_id=self.prompt_id,
                node_id=event.node_id,
                node_type=event.node_type,
            )
        if self.status is JobStatus.FAILED:
            raise JobError(f"prompt {self.prompt_id} failed", prompt_id=self.prompt_id)


def _status_of(event: Event) -> JobStatus:
    if isinstance(event, ExecutionSuccess):
        return JobStatus.SUCCEEDED
    if isinstance(event, ExecutionInterrupted):
        return JobStatus.INTERRUPTED
    return JobStatus.FAILED


class Router:
    """Routes the events of one WebSocket to the trackers of the jobs they belong to.

    Trackers are held weakly: a job's tracker lives as long as somebody holds its job handle, so
    a client that runs jobs for months does not keep every finished job's events.
    """

    def __init__(self) -> None:
        self.trackers: weakref.WeakValueDictionary[str, JobTracker] = weakref.WeakValueDictionary()
        self.sid: str | None = None
        self.server_flags: dict[str, Any] = {}
        self.queue_remaining: int | None = None
        self.running: str | None = None

    def register(self, prompt_id: str) -> JobTracker:
        """Start tracking ``prompt_id`` (before it is submitted, so no event is missed).

        A prompt tracked already keeps its tracker, unless that one is done: a prompt id
        submitted again (a pool's failover resubmits a lost job under its own id) or followed
        again starts afresh, while the old handle keeps what it saw."""
        tracker = self.trackers.get(prompt_id)
        if tracker is None or tracker.done:
            tracker = self.trackers[prompt_id] = JobTracker(prompt_id)
        return tracker

    def unregister(self, prompt_id: str) -> None:
        """Stop tracking ``prompt_id``."""
        self.trackers.pop(prompt_id, None)

    def feed(self, event: Event) -> JobTracker | None:
        """Route one event; return the tracker it was applied to, if any."""
        if isinstance(event, Status):
            self.queue_remaining = event.queue_remaining
            if event.sid:
                self.sid = event.sid
            return None
        if isinstance(event, FeatureFlags):
            self.server_flags = dict(event.flags)
            return None
        prompt_id = event.prompt_id
        if prompt_id is None and isinstance(event, (PreviewImage, ProgressText)):
            # Legacy previews and text frames carry no prompt id: they belong to the running one.
            prompt_id = self.running
            if prompt_id is not None:
                event = event.model_copy(update={"prompt_id": prompt_id})
        if prompt_id is None:
            return None
        if isinstance(event, ExecutionStart):
            self.running = prompt_id
        elif isinstance(event, Executing) and event.node is None and self.running == prompt_id:
            self.running = None
        tracker = self.trackers.get(prompt_id)
        if tracker is not None:
            tracker.feed(event)
        return tracker
