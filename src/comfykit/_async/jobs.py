"""``AsyncJob``: the handle ``submit()`` returns (events, result, cancel)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol

from comfykit._async.results import AsyncResult
from comfykit._backends import asyncio as backend
from comfykit._config import backoff
from comfykit._exceptions import (
    ComfyConnectionError,
    ComfyError,
    ComfyTimeoutError,
    JobTimeoutError,
    NodeProblem,
)
from comfykit._protocol.events import Event
from comfykit._protocol.tracker import JobStatus, JobTracker

if TYPE_CHECKING:
    from comfykit._async._core import AsyncClientCore
    from comfykit._async._stream import AsyncEventStream
    from comfykit._types import HistoryEntry

__all__ = ["AsyncJob", "AsyncJobContext", "AsyncJobHandle", "timeout_error"]


class AsyncJobContext(Protocol):
    """What a job needs of its client: the socket, history, catch-up and cancel."""

    @property
    def client(self) -> AsyncClientCore:
        """The client results download through."""

    @property
    def stream(self) -> AsyncEventStream:
        """The client's WebSocket."""

    @property
    def use_ws(self) -> bool:
        """False when the client polls instead of reading the WebSocket."""

    async def history_entry(self, prompt_id: str) -> HistoryEntry | None:
        """The prompt's history entry, if the server has one."""

    async def reconcile(self, trackers: list[JobTracker]) -> None:
        """Catch the trackers up from ``/queue`` and ``/history``."""

    async def cancel(self, prompt_id: str) -> None:
        """Dequeue the prompt, or interrupt it if it is running."""


class AsyncJobHandle(Protocol):
    """What code that waits for a job uses of it: :class:`AsyncJob`, and a pool's
    ``AsyncPoolJob``, which follows its job from server to server."""

    prompt: dict[str, Any]

    @property
    def prompt_id(self) -> str:
        """The prompt's id."""

    @property
    def execution_ms(self) -> float | None:
        """How long the server executed the prompt, once it has finished."""

    async def result(
        self, timeout: float | None = None, *, cancel_on_timeout: bool = False
    ) -> AsyncResult:
        """Wait for the job and return its outputs."""

    def events(
        self,
        timeout: float | None = None,
        *,
        cancel_on_timeout: bool = False,
        on_queued: Callable[[int | None], None] | None = None,
    ) -> AsyncIterator[Event]:
        """The job's events as they arrive."""


_HISTORY_RETRIES = 20
_POLL_MAX = 1.0
_QUEUE_TICK = 1.0


class _Stoppable(Protocol):
    @property
    def prompt_id(self) -> str: ...
    @property
    def status(self) -> JobStatus: ...
    async def cancel(self) -> None: ...


async def timeout_error(
    job: _Stoppable, timeout: float | None, cancel: bool, where: str
) -> JobTimeoutError:
    """The error of a job that did not finish within ``timeout`` (on ``where``): cancelled
    first when ``cancel``; it carries the job either way (a client's and a pool's jobs)."""
    head = f"prompt {job.prompt_id} did not finish within {timeout} s"
    if cancel:
        try:
            await job.cancel()
        except ComfyError as exc:
            message = f"{head}, and cancelling it failed ({exc}); it may still be running"
            return JobTimeoutError(message, prompt_id=job.prompt_id, job=job, cancelled=False)
        message = f"{head}; it was cancelled on {where}"
        return JobTimeoutError(message, prompt_id=job.prompt_id, job=job, cancelled=True)
    message = (
        f"{head} (status: {job.status.value}); it is still {job.status.value} on {where}: "
        "cancel it with err.job.cancel(), or wait again with err.job.result()"
    )
    return JobTimeoutError(message, prompt_id=job.prompt_id, job=job, cancelled=False)


class AsyncJob:
    """One submitted prompt.

    Attributes:
        prompt_id: the prompt's id.
        prompt: the API-format graph that was submitted.
        node_errors: problems the server reported while still accepting the prompt (output
            nodes it dropped because they failed validation); empty when all validated.
        number: the queue number the server assigned.
    """

    def __init__(
        self,
        context: AsyncJobContext,
        tracker: JobTracker,
        prompt: dict[str, Any],
        node_errors: list[NodeProblem],
        *,
        number: float | None = None,
        poll_only: bool = False,
    ) -> None:
        self._context = context
        self._poll_only = poll_only
        self._tracker = tracker
        self.prompt = prompt
        self.node_errors = node_errors
        self.number = number
        self._polls = 0

    @property
    def prompt_id(self) -> str:
        """The prompt's id."""
        return self._tracker.prompt_id

    @property
    def status(self) -> JobStatus:
        """Where the job is: queued, running, succeeded, failed, interrupted or lost."""
        return self._tracker.status

    @property
    def done(self) -> bool:
        """True once the job is finished and reconciled."""
        return self._tracker.done

    @property
    def execution_ms(self) -> float | None:
        """How long the server executed the prompt, once it has finished (from its events)."""
        return self._tracker.execution_ms

    @property
    def current_node(self) -> str | None:
        """The node executing now (from the WebSocket)."""
        return self._tracker.current_node

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.prompt_id} {self.status.value}>"

    async def _step(self, until_new_event: int | None, deadline: float | None) -> None:
        """Advance the job by one step: read the socket, fetch history, or poll.

        Once the job's end has been seen, a server that went away no longer matters: the job
        finishes from its events (its files download again once the server is back).
        """
        try:
            await self._advance(until_new_event, deadline)
        except ComfyTimeoutError:
            raise
        except ComfyConnectionError:
            if self._tracker.terminal is None:
                raise
            self._tracker.finish_from_events()

    async def _advance(self, until_new_event: int | None, deadline: float | None) -> None:
        tracker = self._tracker
        context = self._context
        stream = context.stream
        if tracker.needs_history:
            entry = await context.history_entry(self.prompt_id)
            if entry is not None:
                tracker.apply_history(entry)
                return
            self._polls += 1
            if self._polls >= _HISTORY_RETRIES:
                tracker.finish_from_events()
                return
            await backend.sleep(min(0.05 * self._polls, 0.5))
            return
        use_ws = context.use_ws and not self._poll_only
        if use_ws and stream.active:

            def ready() -> bool:
                if tracker.done or tracker.needs_history:
                    return True
                return until_new_event is not None and len(tracker.events) > until_new_event

            try:
                await stream.pump(ready, deadline, self.prompt_id)
            except ComfyConnectionError:
                if tracker.done:
                    return
                raise
            return
        if use_ws and not stream.active and not tracker.done:
            try:
                if not await stream.ensure_connected():
                    # A first socket, or one open already, has not caught this job up.
                    await context.reconcile([tracker])
                return
            except ComfyTimeoutError:
                raise
            except ComfyConnectionError:
                pass
        await context.reconcile([tracker])
        if tracker.done or tracker.needs_history:
            return
        self._polls += 1
        delay = min(backoff(self._polls), _POLL_MAX)
        if deadline is not None:
            delay = min(delay, max(deadline - backend.monotonic(), 0))
        await backend.sleep(delay)

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else backend.monotonic() + timeout

    async def wait(
        self, timeout: float | None = None, *, cancel_on_timeout: bool = False
    ) -> JobStatus:
        """Wait until the job is finished; return its status (never raises the job's error).

        Raises:
            JobTimeoutError: not finished within ``timeout`` seconds. The job goes on running
                unless ``cancel_on_timeout``; the error carries it (``err.job``).
        """
        deadline = self._deadline(timeout)
        try:
            while not self._tracker.done:
                if deadline is not None and backend.monotonic() >= deadline:
                    raise ComfyTimeoutError("timed out")
                await self._step(None, deadline)
        except ComfyTimeoutError as exc:
            raise await self._timed_out(timeout, cancel_on_timeout) from exc
        return self._tracker.status

    async def _timed_out(self, timeout: float | None, cancel: bool) -> JobTimeoutError:
        return await timeout_error(self, timeout, cancel, "the server")

    async def result(
        self, timeout: float | None = None, *, cancel_on_timeout: bool = False
    ) -> AsyncResult:
        """Wait for the job and return its outputs.

        Raises:
            ExecutionError: a node failed.
            JobInterrupted: the job was interrupted or cancelled.
            JobLost: the job vanished from the server.
            JobTimeoutError: not finished within ``timeout`` seconds (a
                :class:`~comfykit.ComfyTimeoutError` carrying the job; cancelled first when
                ``cancel_on_timeout``).
            ComfyConnectionError: the server became unreachable.
        """
        await self.wait(timeout, cancel_on_timeout=cancel_on_timeout)
        tracker = self._tracker
        tracker.raise_for_status()
        return AsyncResult(
            self._context.client,
            prompt_id=self.prompt_id,
            outputs=tracker.outputs,
            history=tracker.history,
            cached_nodes=tracker.cached_nodes,
        )

    async def events(
        self,
        timeout: float | None = None,
        *,
        cancel_on_timeout: bool = False,
        on_queued: Callable[[int | None], None] | None = None,
    ) -> AsyncIterator[Event]:
        """This job's events as they arrive, from the first one; ends when the job is done.

        Args:
            timeout: seconds to wait for the job to finish.
            cancel_on_timeout: cancel the job on the server when ``timeout`` runs out.
            on_queued: called about once a second while the job waits in the server's queue,
                with the number of prompts ahead of it (:meth:`queue_position`), and once
                with ``None`` when it leaves the queue.

        Raises:
            JobTimeoutError: the job did not finish within ``timeout`` seconds (as
                :meth:`result`).
        """
        deadline = self._deadline(timeout)
        seen = 0
        tracker = self._tracker
        watching = on_queued is not None
        while True:
            while seen < len(tracker.events):
                event = tracker.events[seen]
                seen += 1
                yield event
            if tracker.done:
                return
            try:
                if deadline is not None and backend.monotonic() >= deadline:
                    raise ComfyTimeoutError("timed out")
                if watching and on_queued is not None:
                    if tracker.status is JobStatus.QUEUED:
                        on_queued(await self.queue_position())
                        await self._tick(seen, deadline, _QUEUE_TICK)
                        continue
                    on_queued(None)
                    watching = False
                await self._step(seen, deadline)
            except ComfyTimeoutError as exc:
                raise await self._timed_out(timeout, cancel_on_timeout) from exc

    async def queue_position(self) -> int | None:
        """How many prompts the server runs before this one (``0``: it is next), from
        ``/queue``; ``None`` once it runs or has finished."""
        queue = await self._context.client.queue()
        if not any(item.prompt_id == self.prompt_id for item in queue.pending):
            return None
        return queue.prompt_ids.index(self.prompt_id)

    async def _tick(self, seen: int, deadline: float | None, seconds: float) -> None:
        """One :meth:`_step`, given up after ``seconds`` (the job's own deadline still holds)."""
        tick = backend.monotonic() + seconds
        try:
            await self._step(seen, tick if deadline is None else min(tick, deadline))
        except ComfyTimeoutError:
            if deadline is not None and backend.monotonic() >= deadline:
                raise

    async def cancel(self) -> None:
        """Remove the job from the queue if pending, or interrupt it (only it) if running."""
        tracker = self._tracker
        if tracker.done:
            return
        tracker.request_cancel()
        await self._context.cancel(self.prompt_id)
        await self._context.reconcile([tracker])
