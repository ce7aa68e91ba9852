"""Live job events: an in-process fan-out keyed by job id, and the SSE framing.

Events are written to the store first (their row id is the SSE ``id``), then published here;
a subscriber replays what the store holds after its ``Last-Event-ID`` and then follows the live
ones, skipping any it has already sent (:func:`follow`, shared by the v1 and v2 streams).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["TERMINAL_EVENTS", "EventHub", "JobEvent", "follow", "sse_frame", "within"]

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
        #: Told the job id of every stored event published here (the replicas' bridge).
        self.relay: Callable[[str], None] | None = None
        self._previews: dict[str, JobEvent] = {}

    def last_preview(self, job_id: str) -> JobEvent | None:
        """The newest preview published for a running job (previews are not stored)."""
        return self._previews.get(job_id)

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
        """Deliver ``event`` to the job's subscribers (the newest preview of a job is kept
        until it ends; when the event is stored, the other replicas are told the job has
        news)."""
        if event.id is not None and self.relay is not None:
            self.relay(event.job_id)
        if event.event == "preview":
            self._previews[event.job_id] = event
        elif event.event in TERMINAL_EVENTS:
            self._previews.pop(event.job_id, None)
        for queue in list(self._subscribers.get(event.job_id, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._resync(queue)

    def poke(self, job_id: str) -> None:
        """The job has new events in the store (written by another replica): its subscribers
        read them from there."""
        for queue in list(self._subscribers.get(job_id, ())):
            if queue.empty():
                try:
                    queue.put_nowait(None)
                except asyncio.QueueFull:  # pragma: no cover - empty a moment ago
                    self._resync(queue)

    @staticmethod
    def _resync(queue: asyncio.Queue[JobEvent | None]) -> None:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

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


#: What :func:`follow` waits on between items (a tick of silence).
_TICK = object()


async def follow(
    hub: EventHub,
    job_id: str,
    load_after: Callable[[int], Awaitable[Sequence[JobEvent]]],
    *,
    after: int = 0,
    tick: float = 15.0,
    resync: float = 15.0,
) -> AsyncIterator[JobEvent | None]:
    """A job's events in order, each once, ending after a terminal one: those the store holds
    after the id ``after`` (``load_after(id)`` reads them), then the live ones (previews, which
    are not stored, included). Yields ``None`` after every ``tick`` seconds without an event.
    The store is read again when the hub says the subscriber fell behind, and every ``resync``
    seconds (events another process wrote are not published here)."""
    queue = hub.subscribe(job_id)
    sent = after
    try:
        for ev in await load_after(sent):
            yield ev
            sent = ev.id or sent
            if ev.event in TERMINAL_EVENTS:
                return
        loop = asyncio.get_running_loop()
        due = loop.time() + resync
        while True:
            wait = max(0.0, min(tick, due - loop.time()))
            item: object
            try:
                item = await within(queue.get(), wait)
            except asyncio.TimeoutError:
                item = _TICK
            if item is None or loop.time() >= due:
                due = loop.time() + resync
                for ev in await load_after(sent):
                    yield ev
                    sent = ev.id or sent
                    if ev.event in TERMINAL_EVENTS:
                        return
            if not isinstance(item, JobEvent):
                if item is _TICK:
                    yield None
                continue
            if item.id is not None:
                if item.id <= sent:
                    continue
                sent = item.id
            yield item
            if item.event in TERMINAL_EVENTS:
                return
    finally:
        hub.unsubscribe(job_id, queue)
