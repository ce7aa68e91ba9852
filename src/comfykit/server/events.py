"""Live job events: an in-process fan-out keyed by job id, and the SSE framing.

Events are written to the store first (their row id is the SSE ``id``), then published here;
a subscriber replays what the store holds after its ``Last-Event-ID`` and then follows the live
ones, skipping any it has already sent.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["TERMINAL_EVENTS", "EventHub", "JobEvent", "sse_frame", "within"]

_T = TypeVar("_T")

if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[_T], timeout: float) -> _T:
        """``await awaitable`` for at most ``timeout`` seconds (``asyncio.TimeoutError``
        after). Unlike ``asyncio.wait_for`` on Python 3.11, no task is made for it: the waiter
        resumes as soon as what it awaits is done."""
        async with asyncio.timeout(timeout):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def within(awaitable: Awaitable[_T], timeout: float) -> _T:
        """``await awaitable`` for at most ``timeout`` seconds (``asyncio.TimeoutError``)."""
        return await asyncio.wait_for(awaitable, timeout)


#: Events after which a job's stream ends.
TERMINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class JobEvent:
    """One event of one job (``id`` is ``None`` for live-only events such as previews).
    ``row``: the job's row as the transaction that wrote the event left it, when the publisher
    has it (a job's end carries it, so a waiter need not read it again)."""

    job_id: str
    event: str
    data: dict[str, Any]
    id: int | None = None
    row: Any = field(default=None, compare=False, repr=False)


def sse_frame(event: JobEvent) -> bytes:
    """The event as one Server-Sent Events frame."""
    lines = []
    if event.id is not None:
        lines.append(f"id: {event.id}")
    lines.append(f"event: {event.event}")
    lines.append("data: " + json.dumps(event.data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode()


class EventHub:
    """Subscribers per job id; ``publish`` never blocks (a slow subscriber's queue is bounded
    and it is told to resync from the store)."""

    def __init__(self, max_backlog: int = 1000) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[JobEvent | None]]] = {}
        self._max_backlog = max_backlog

    def subscribe(self, job_id: str) -> asyncio.Queue[JobEvent | None]:
        """A queue receiving the job's events from now on (``None``: resync from the store)."""
        queue: asyncio.Queue[JobEvent | None] = asyncio.Queue(self._max_backlog)
        self._subscribers.setdefault(job_id, set()).add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[JobEvent | None]) -> None:
        """Stop delivering to ``queue``."""
        subs = self._subscribers.get(job_id)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                del self._subscribers[job_id]

    def publish(self, event: JobEvent) -> None:
        """Deliver ``event`` to the job's subscribers."""
        for queue in list(self._subscribers.get(event.job_id, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    async def wait_terminal(self, queue: asyncio.Queue[JobEvent | None], timeout: float) -> bool:
        """Wait on a subscription until a terminal event (True) or ``timeout`` (False)."""
        return (await self.next_terminal(queue, timeout))[0]

    async def next_terminal(
        self, queue: asyncio.Queue[JobEvent | None], timeout: float
    ) -> tuple[bool, JobEvent | None]:
        """Wait on a subscription until a terminal event: ``(True, the event)``, or
        ``(True, None)`` when told to resync from the store; ``(False, None)`` after
        ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False, None
            try:
                event = await within(queue.get(), remaining)
            except asyncio.TimeoutError:
                return False, None
            if event is None or event.event in TERMINAL_EVENTS:
                return True, event


async def iterate(
    queue: asyncio.Queue[JobEvent | None], heartbeat: float
) -> AsyncIterator[JobEvent | None]:
    """Items of a subscription; ``None`` also on every ``heartbeat`` seconds of silence."""
    while True:
        try:
            yield await within(queue.get(), heartbeat)
        except asyncio.TimeoutError:
            yield None
