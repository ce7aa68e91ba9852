"""What replicas tell each other through PostgreSQL ``LISTEN``/``NOTIFY``: "job J has new events
in the store" (a subscriber on another replica reads them from there) and "cancel job J" (the
replica running it interrupts it).

The store stays the truth: a notification only says where to look, so one that is lost (a
replica restarting, a dropped connection) costs latency, never data — streams also re-read the
store on their heartbeat, and leases and the dispatcher's polling cover the rest.

With SQLite (one process) there is nothing to bridge: :class:`LocalBridge` does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["CHANNEL", "Bridge", "LocalBridge", "PostgresBridge", "make_bridge"]

log = logging.getLogger("comfykit.server.bridge")

CHANNEL = "comfykit_jobs"
#: Notifications are gathered this long and sent together (many events of one job: one).
_FLUSH_SECONDS = 0.02
#: A payload holds at most this many job ids (PostgreSQL's limit is 8000 bytes).
_IDS_PER_MESSAGE = 150
_RECONNECT_SECONDS = 1.0
_CHECK_SECONDS = 5.0

#: ``on_events(job_id)`` and ``on_cancel(job_id)``.
Handler = Callable[[str], None]


class Bridge:
    """The interface: :meth:`events` and :meth:`cancel` tell the other replicas; the handlers
    given to :meth:`start` hear what they say."""

    def events(self, job_id: str) -> None:
        """Job ``job_id`` has new events in the store."""

    def cancel(self, job_id: str) -> None:
        """Whoever runs job ``job_id`` should cancel it."""

    async def start(self, on_events: Handler, on_cancel: Handler) -> None:
        """Begin listening."""

    async def stop(self) -> None:
        """Stop listening and sending."""


class LocalBridge(Bridge):
    """One process: nobody else to tell."""


def _dsn(database_url: str) -> str:
    """A SQLAlchemy URL (``postgresql+asyncpg://...``) as asyncpg's DSN."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresBridge(Bridge):
    """``LISTEN``/``NOTIFY`` on one dedicated connection per replica (reopened when lost)."""

    def __init__(self, database_url: str) -> None:
        self.dsn = _dsn(database_url)
        self.origin = uuid.uuid4().hex[:12]
        self._conn: Any = None
        self._events: set[str] = set()
        self._cancels: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_events: Handler = lambda _job: None
        self._on_cancel: Handler = lambda _job: None
        self._stopping = False

    def events(self, job_id: str) -> None:
        self._events.add(job_id)
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        self._cancels.add(job_id)
        self._wake.set()

    async def start(self, on_events: Handler, on_cancel: Handler) -> None:
        self._on_events, self._on_cancel = on_events, on_cancel
        self._stopping = False
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._close()

    # -- the connection -------------------------------------------------------------------
    async def _connect(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(self.dsn)
        await conn.add_listener(CHANNEL, self._heard)
        self._conn = conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if message.get("from") == self.origin:
            return
        for job_id in message.get("events", ()):
            self._on_events(str(job_id))
        for job_id in message.get("cancel", ()):
            self._on_cancel(str(job_id))

    # -- sending --------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            # woken to send, or every few seconds to see that the listening connection lives
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _CHECK_SECONDS)
            await asyncio.sleep(_FLUSH_SECONDS)  # gather what comes in the meantime
            self._wake.clear()
            events, self._events = sorted(self._events), set()
            cancels, self._cancels = sorted(self._cancels), set()
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._close()
                    await self._connect()
                for start in range(0, max(len(events), len(cancels)), _IDS_PER_MESSAGE):
                    payload = {
                        "from": self.origin,
                        "events": events[start : start + _IDS_PER_MESSAGE],
                        "cancel": cancels[start : start + _IDS_PER_MESSAGE],
                    }
                    await self._conn.execute(
                        "SELECT pg_notify($1, $2)", CHANNEL, json.dumps(payload)
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # the store has it all: a lost notification costs latency only
                log.warning("notifying the other replicas failed (%s); reconnecting", exc)
                self._cancels.update(cancels)  # a cancel is worth a second try
                await self._close()
                await asyncio.sleep(_RECONNECT_SECONDS)
                self._wake.set()


def make_bridge(database_url: str) -> Bridge:
    """The bridge a store URL calls for."""
    if database_url.startswith("postgresql"):
        return PostgresBridge(database_url)
    return LocalBridge()
