# Generated from comfykit/_async by scripts/unasync.py. Do not edit: edit _async instead.
"""``PoolJob``: a pool's job handle, which follows its job from a lost server to another.

It has the interface of :class:`~comfykit.Job`; underneath, each server the job was
submitted to holds an ``Job`` of its own (an attempt). While the attempt's server is up
the pool job waits on it; when the server is lost the job is recovered by the rules of
``docs/pool.md`` (follow it where it is, take its result from there, or resubmit it under the
same prompt id), and every wait ends with a result or a typed error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comfykit._backends import sync as backend
from comfykit._balance import ServerState
from comfykit._exceptions import (
    ComfyConnectionError,
    ComfyError,
    ComfyTimeoutError,
    JobInterrupted,
    JobLost,
    JobTimeoutError,
    NodeProblem,
)
from comfykit._protocol.tracker import JobStatus
from comfykit._sync.jobs import timeout_error

if TYPE_CHECKING:
    from comfykit._protocol.events import Event
    from comfykit._protocol.tracker import JobTracker
    from comfykit._sync.jobs import Job
    from comfykit._sync.pool import ComfyPool, _Member
    from comfykit._sync.results import Result

__all__ = ["PoolJob", "Order"]

#: How often a job waiting on a server looks whether the pool has marked that server down
#: (seconds), and how often a job whose server is lost looks again.
_TICK = 0.5


@dataclass(frozen=True)
class Order:
    """Everything needed to submit a job again: the graph and the ``submit()`` options."""

    api: dict[str, Any]
    prompt_id: str
    validate: bool | None
    extra_data: dict[str, Any] | None
    front: bool
    number: float | None
    output_nodes: list[str] | None
    submitted_at: float  # time.time() of the first submission


class PoolJob:
    """One prompt submitted through a pool: :class:`~comfykit.Job`'s interface, and a
    ``result()`` that survives the loss of the server it ran on.

    Attributes:
        prompt: the API-format graph that was submitted.
        node_errors: problems the server reported while still accepting the prompt.
        number: the queue number the server assigned (of the latest submission).
        servers: every server the job was submitted to, in order (more than one after a
            failover).
    """

    def __init__(self, pool: ComfyPool, order: Order) -> None:
        self._pool = pool
        self._order = order
        self.prompt = order.api
        self.node_errors: list[NodeProblem] = []
        self.number: float | None = None
        self.servers: list[str] = []
        self._member: _Member | None = None
        self._job: Job | None = None  # the attempt on the current server
        self._error: ComfyError | None = None  # how the pool ended the job, if it did
        self._lost_at: float | None = None  # when the current server was lost
        self._cancelled = False
        self._reported: ComfyError | None = None  # the attempt's failure, once reported

    # -- what it is -----------------------------------------------------------------------
    @property
    def prompt_id(self) -> str:
        """The prompt's id (the same on every server it was submitted to)."""
        return self._order.prompt_id

    @property
    def server(self) -> str | None:
        """The server the job is on now."""
        return self._member.url if self._member is not None else None

    @property
    def status(self) -> JobStatus:
        """Where the job is; ``queued`` while it waits to be placed again after a loss."""
        if self._error is not None:
            if isinstance(self._error, JobInterrupted):
                return JobStatus.INTERRUPTED
            return JobStatus.LOST
        job = self._job
        if job is None or job.status is JobStatus.LOST:
            return JobStatus.QUEUED
        return job.status

    @property
    def done(self) -> bool:
        """True once the job is finished (with its result or its error)."""
        if self._error is not None:
            return True
        job = self._job
        return job is not None and job.done and job.status is not JobStatus.LOST

    @property
    def execution_ms(self) -> float | None:
        """How long the server executed the prompt, once it has finished."""
        return self._job.execution_ms if self._job is not None else None

    @property
    def current_node(self) -> str | None:
        """The node executing now."""
        return self._job.current_node if self._job is not None else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.prompt_id} {self.status.value} on {self.server}>"

    # -- placing --------------------------------------------------------------------------
    def _place(self, exclude: tuple[_Member, ...]) -> None:
        """Submit (again) to the best server but those in ``exclude``."""
        member, job = self._pool._dispatch(self._order, exclude)
        self._member, self._job = member, job
        self.servers.append(member.url)
        if job is None:
            self._lost_at = backend.monotonic()  # it may be there: recovered from there
            return
        self._lost_at = None
        self.node_errors = job.node_errors
        self.number = job.number

    def _lost(self) -> bool:
        """True when the job must be recovered: its server is down, or the attempt ended
        without an outcome (the server forgot the job, or could not be reached)."""
        job, member = self._job, self._member
        if job is None or member is None:
            return True
        if job.done:
            return job.status is JobStatus.LOST
        return member.state is ServerState.DOWN

    def _recover(self, deadline: float | None) -> None:
        """One step of recovering a lost job (the rules of ``docs/pool.md``)."""
        pool, member, job = self._pool, self._member, self._job
        assert member is not None
        if self._finished_there():
            return
        cause = job._tracker.error if job is not None else None
        if isinstance(cause, ComfyConnectionError) and self._reported is not cause:
            self._reported = cause  # once: a probe may have seen the server back since
            pool._mark_down(member, cause)  # its socket would not reopen
        if self._lost_at is None:
            self._lost_at = backend.monotonic()
        if pool._closed:
            self._error = ComfyConnectionError("the pool is closed")
            return
        if self._cancelled:
            member.moved.add(self.prompt_id)
            self._error = JobInterrupted(
                f"prompt {self.prompt_id} was cancelled", prompt_id=self.prompt_id
            )
            return
        if member.state is ServerState.UP:
            try:
                if pool._locate(member, self.prompt_id):
                    if job is None or job.done:
                        self._job = pool._follow(member, self._order)
                    self._lost_at = None
                    return
                evidence = pool._ran_before(member, self._order)
            except ComfyConnectionError as exc:
                pool._mark_down(member, exc)
                return
            if evidence is not None:
                self._error = JobLost(
                    f"prompt {self.prompt_id} is no longer known to {member.url} (was it "
                    f"restarted?), but it ran there: its output {evidence} exists, so it is "
                    "not run again",
                    prompt_id=self.prompt_id,
                )
                return
            self._resubmit(())
            return
        waited = backend.monotonic() - self._lost_at
        after = pool.failover_after
        if after is not None and waited >= after:
            if job is not None:
                try:  # whatever its socket still holds (its end, maybe) is read first
                    job.wait(min(_TICK, _remaining(deadline)))
                except ComfyTimeoutError:
                    _remaining(deadline)
                except ComfyError:
                    pass
                if self._finished_there():
                    return
            member.moved.add(self.prompt_id)
            self._resubmit((member,))
            return
        pause = _TICK if after is None else min(_TICK, after - waited)
        backend.sleep(min(pause, _remaining(deadline)))

    def _finished_there(self) -> bool:
        """True when the attempt has finished. A job whose end was seen (its terminal event)
        finishes from its events whatever became of its server: it is never run again."""
        job = self._job
        if job is None:
            return False
        tracker = job._tracker
        if tracker.terminal is not None and not tracker.done:
            tracker.finish_from_events()
        return job.done and job.status is not JobStatus.LOST

    def _resubmit(self, exclude: tuple[_Member, ...]) -> None:
        try:
            self._place(exclude)
        except ComfyError as exc:  # NoServerAvailable, or the graph refused elsewhere
            self._error = exc

    # -- waiting --------------------------------------------------------------------------
    def _step(self, deadline: float | None) -> None:
        """Wait on the current attempt for at most a tick, or make one recovery step."""
        if self._lost():
            self._recover(deadline)
            return
        job, member = self._job, self._member
        assert job is not None and member is not None
        try:
            job.wait(_slice(deadline))
        except JobTimeoutError:
            _remaining(deadline)  # our own deadline, or just the tick
        except ComfyConnectionError as exc:
            self._pool._mark_down(member, exc)  # the server went away under the job

    def wait(self, timeout: float | None = None, *, cancel_on_timeout: bool = False) -> JobStatus:
        """Wait until the job is finished, wherever it runs; return its status.

        Raises:
            JobTimeoutError: not finished within ``timeout`` seconds (the job goes on unless
                ``cancel_on_timeout``; the error carries it).
        """
        deadline = None if timeout is None else backend.monotonic() + timeout
        try:
            while not self.done:
                self._step(deadline)
        except ComfyTimeoutError as exc:
            raise self._timed_out(timeout, cancel_on_timeout) from exc
        return self.status

    def result(self, timeout: float | None = None, *, cancel_on_timeout: bool = False) -> Result:
        """Wait for the job and return its outputs (downloaded from the server that ran it).

        Raises:
            ExecutionError, JobInterrupted: as :meth:`Job.result`.
            JobLost: the server that ran it forgot it, yet its output files exist there (it is
                not run twice).
            NoServerAvailable: it had to move, and no server could take it.
            JobTimeoutError: not finished within ``timeout`` seconds.
        """
        self.wait(timeout, cancel_on_timeout=cancel_on_timeout)
        if self._error is not None:
            raise self._error
        assert self._job is not None
        return self._job.result()

    def events(
        self,
        timeout: float | None = None,
        *,
        cancel_on_timeout: bool = False,
        on_queued: Callable[[int | None], None] | None = None,
    ) -> Iterator[Event]:
        """The job's events as they arrive; after a failover, the events of the new run follow
        (from its own ``execution_start``). Ends when the job is done. Arguments as
        :meth:`Job.events`."""
        deadline = None if timeout is None else backend.monotonic() + timeout
        attempt: JobTracker | None = None  # the run whose events are being sent
        sent = 0  # how many of them were
        reported: list[int | None | str] = ["unset"]

        def queued(position: int | None) -> None:
            if on_queued is not None and not (position is None and reported[0] is None):
                reported[0] = position
                on_queued(position)

        try:
            while True:
                finished = self.done
                if not finished and self._lost():
                    self._recover(deadline)
                    continue
                job = self._job
                if job is not None:
                    if job._tracker is not attempt:
                        attempt, sent = job._tracker, 0
                    skip = sent
                    tick = None if finished else _slice(deadline)
                    try:
                        for event in job.events(tick, on_queued=queued):
                            if skip:
                                skip -= 1
                                continue
                            sent += 1
                            yield event
                    except JobTimeoutError:
                        _remaining(deadline)
                    except ComfyConnectionError as exc:
                        if self._member is not None:
                            self._pool._mark_down(self._member, exc)
                if finished:
                    return
        except ComfyTimeoutError as exc:
            raise self._timed_out(timeout, cancel_on_timeout) from exc

    def queue_position(self) -> int | None:
        """How many prompts its server runs before it (``0``: next); ``None`` once it runs or
        has finished, or while it is being placed again."""
        if self._job is None or self._lost():
            return None
        return self._job.queue_position()

    def cancel(self) -> None:
        """Remove the job from its server's queue, or interrupt it if it runs; a job being
        recovered is not placed again."""
        self._cancelled = True
        job = self._job
        if self.done:
            return
        if job is not None and not self._lost():
            job.cancel()
            return
        if self._member is not None:
            self._member.moved.add(self.prompt_id)
        self._error = JobInterrupted(
            f"prompt {self.prompt_id} was cancelled", prompt_id=self.prompt_id
        )

    def _timed_out(self, timeout: float | None, cancel: bool) -> JobTimeoutError:
        return timeout_error(self, timeout, cancel, f"the server {self.server}")


def _remaining(deadline: float | None) -> float:
    """Seconds left before ``deadline``; ``ComfyTimeoutError`` once it has passed."""
    if deadline is None:
        return float("inf")
    remaining = deadline - backend.monotonic()
    if remaining <= 0:
        raise ComfyTimeoutError("timed out")
    return remaining


def _slice(deadline: float | None) -> float:
    """How long one wait on an attempt may last: a tick, or less before the deadline."""
    return min(_TICK, _remaining(deadline))
