"""The store's repository: every read and write the service makes, one short transaction each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.instrumentation import manager_of_class

from comfykit.server.store.lane import Lane, Prepared, Transaction, open_lane
from comfykit.server.store.leases import LeaseQueries
from comfykit.server.store.models import (
    BatchRow,
    DeliveryRow,
    JobEventRow,
    JobRow,
    TemplateRow,
    UploadRow,
    utcnow,
)
from comfykit.server.store.users import UserQueries
from comfykit.server.store.v2 import V2Queries

__all__ = ["ACTIVE", "FINISHED", "Store", "Transaction", "migrate"]

#: End states of a job.
FINISHED = frozenset({"completed", "failed", "cancelled"})
#: States of a job that is not finished.
ACTIVE = ("queued", "processing")


def _run_migrations(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the database to the newest schema (Alembic ``upgrade head``)."""
    async with engine.begin() as conn:
        await conn.run_sync(_run_migrations)


# -- the statements of a job's path, built once (the store's fast lane, store/lane.py) --------
_JOBS = cast(Table, JobRow.__table__)
_EVENTS = cast(Table, JobEventRow.__table__)
#: Attribute name -> column of a job (``meta`` is the column ``metadata``).
_JOB_COLUMNS = {attr.key: attr.columns[0] for attr in sa_inspect(JobRow).column_attrs}
#: A whole job row, each column labelled with its attribute's name.
_JOB_ROW = [column.label(key) for key, column in _JOB_COLUMNS.items()]
_JOB_MANAGER = manager_of_class(JobRow)

_JOB_BY_ID = Prepared(select(*_JOB_ROW).where(_JOB_COLUMNS["id"] == bindparam("job_id")))
_QUEUED_BEFORE = Prepared(
    select(func.count())
    .select_from(_JOBS)
    .where(_JOBS.c.status == "queued", _JOBS.c.seq < bindparam("seq"))
)
_UNCLAIMED = (_JOBS.c.status == "queued", _JOBS.c.server_url.is_(None))
_OLDEST = select(_JOBS.c.id).where(*_UNCLAIMED).order_by(_JOBS.c.seq).limit(1)
_OLDEST_UNCLAIMED = Prepared(_OLDEST)
#: One statement: the oldest job of the service's queue is claimed only if it is still queued
#: and unclaimed (another claimer may have taken it: the caller retries).
_CLAIM = Prepared(
    update(_JOBS)
    .where(_JOBS.c.id == _OLDEST.scalar_subquery(), *_UNCLAIMED)
    .values(
        server_url=bindparam("server_url"),
        dispatched_at=bindparam("now", type_=_JOBS.c.dispatched_at.type),
        attempts=_JOBS.c.attempts + 1,
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("lease_until", type_=_JOBS.c.lease_expires_at.type),
    )
    .returning(*_JOB_ROW)
)
_INSERT_EVENT = Prepared(
    insert(_EVENTS)
    .values(
        job_id=bindparam("job_id"),
        event=bindparam("event"),
        data=bindparam("data", type_=_EVENTS.c.data.type),
        created_at=bindparam("created_at", type_=_EVENTS.c.created_at.type),
    )
    .returning(_EVENTS.c.id)
)
#: A job that has not ended (the job's own row, locked on PostgreSQL until the transaction ends).
_ACTIVE_JOB = Prepared(
    select(_JOBS.c.id)
    .where(
        _JOBS.c.id == bindparam("job_id"),
        or_(_JOBS.c.status == "queued", _JOBS.c.status == "processing"),
    )
    .with_for_update()
)
#: ``update_job``'s statements by (changed attributes, ``only_if_status``, ``undispatched``).
_UPDATES: dict[tuple[tuple[str, ...], tuple[str, ...] | None, bool], Prepared] = {}
_MAX_UPDATES = 256
#: Connections of each pool (the engine's and, on PostgreSQL, the fast lane's).
_POOL_SIZE = 10


def _adhoc_update(
    job_id: str, values: dict[str, Any], statuses: tuple[str, ...] | None, undispatched: bool
) -> Any:
    """``update_job``'s statement when a value is a SQL expression (compiled per call)."""
    _check_keys(tuple(values))
    query = (
        update(_JOBS)
        .where(_JOBS.c.id == job_id)
        .values({_JOB_COLUMNS[k]: v for k, v in values.items()})
        .returning(*_JOB_ROW)
    )
    if statuses is not None:
        query = query.where(_JOBS.c.status.in_(statuses))
    if undispatched:
        query = query.where(_JOBS.c.server_url.is_(None))
    return query


def _check_keys(keys: tuple[str, ...]) -> None:
    unknown = [k for k in keys if k not in _JOB_COLUMNS]
    if unknown:
        raise ValueError(f"jobs have no attribute(s) {', '.join(unknown)}")


def _job(values: dict[str, Any]) -> JobRow:
    """A job row from a row's values, as the ORM's loader makes one (no change history)."""
    row: JobRow = _JOB_MANAGER.new_instance()
    row.__dict__.update(values)
    return row


def _update_statement(
    keys: tuple[str, ...], statuses: tuple[str, ...] | None, undispatched: bool
) -> Prepared:
    cached = _UPDATES.get((keys, statuses, undispatched))
    if cached is not None:
        return cached
    _check_keys(keys)
    query = (
        update(_JOBS)
        .where(_JOBS.c.id == bindparam("job_id"))
        .values({_JOB_COLUMNS[k]: bindparam(f"v_{k}", type_=_JOB_COLUMNS[k].type) for k in keys})
        .returning(*_JOB_ROW)
    )
    if statuses is not None:
        # one comparison per state (an IN list would need its values at compile time)
        query = query.where(or_(false(), *(_JOBS.c.status == s for s in statuses)))
    if undispatched:
        query = query.where(_JOBS.c.server_url.is_(None))
    prepared = Prepared(query)
    if len(_UPDATES) < _MAX_UPDATES:
        _UPDATES[(keys, statuses, undispatched)] = prepared
    return prepared


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # another process writing (``comfykit keys``, a migration) holds the lock briefly
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class _Begin:
    """``async with session.begin()`` over a synchronous session's transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._tx: Any = None

    async def __aenter__(self) -> Any:
        self._tx = self._session.begin()
        return self._tx.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        self._tx.__exit__(*exc)


class _LoopThreadSession:
    """The async face of a synchronous SQLite session: the store's statements run on the
    event loop's own thread. One service process is SQLite's one writer; in WAL mode readers
    never wait, and a statement takes tens of microseconds, far less than handing it to a
    driver thread and back (several hand-offs per transaction). Each method's transaction
    runs to its end without yielding to the loop, so coroutines never interleave inside one.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def begin(self) -> _Begin:
        return _Begin(self._session)

    def add(self, instance: Any) -> None:
        self._session.add(instance)

    def add_all(self, instances: Any) -> None:
        self._session.add_all(instances)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.execute(*args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.get(*args, **kwargs)

    async def flush(self) -> None:
        self._session.flush()

    async def merge(self, instance: Any) -> Any:
        return self._session.merge(instance)

    async def delete(self, instance: Any) -> None:
        self._session.delete(instance)

    async def __aenter__(self) -> _LoopThreadSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._session.close()


class Store(UserQueries, LeaseQueries, V2Queries):
    """Access to the job store. ``await open()`` before use, ``await close()`` after."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[Any] | None = None
        self._reads: async_sessionmaker[Any] | None = None
        self._sync_engine: Engine | None = None
        self._reader: AsyncEngine | None = None
        self._sync_sessions: sessionmaker[Session] | None = None
        self._lane_: Lane | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The engine (after :meth:`open`)."""
        if self._engine is None:
            raise RuntimeError("the store is not open")
        return self._engine

    async def open(self) -> None:
        """Create the engine, make the SQLite directory if needed, and migrate."""
        url = make_url(self.url)
        kwargs: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            # No pre-ping (a round trip per checkout): a connection the server dropped fails
            # its statement and is invalidated with the pool.
            kwargs.update(pool_size=_POOL_SIZE, max_overflow=20, pool_recycle=1800)
        engine = create_async_engine(url, **kwargs)
        if url.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        await migrate(engine)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Reads are single statements: in autocommit mode they cost one round trip (no
        # BEGIN, no ROLLBACK when the connection goes back to the pool).
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._sync_engine = create_engine(url.set(drivername="sqlite"))
            event.listen(self._sync_engine, "connect", _sqlite_pragmas)
            self._sync_sessions = sessionmaker(self._sync_engine, expire_on_commit=False)
        else:
            self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._reads = async_sessionmaker(self._reader, expire_on_commit=False)
        self._lane_ = await open_lane(engine, url, _sqlite_pragmas, pool_size=_POOL_SIZE)

    async def close(self) -> None:
        """Close the fast lane and dispose of the engines."""
        if self._lane_ is not None:
            await self._lane_.close()
            self._lane_ = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
            self._sync_engine = None
            self._sync_sessions = None
        self._reads = None
        self._reader = None

    def _session(self) -> Any:
        if self._sync_sessions is not None:
            return _LoopThreadSession(self._sync_sessions())
        if self._sessions is None:
            raise RuntimeError("the store is not open")
        return self._sessions()

    def _read(self) -> Any:
        if self._sync_sessions is not None:
            return _LoopThreadSession(self._sync_sessions())
        if self._reads is None:
            raise RuntimeError("the store is not open")
        return self._reads()

    @property
    def _lane(self) -> Lane:
        if self._lane_ is None:
            raise RuntimeError("the store is not open")
        return self._lane_

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with store.transaction() as tx:`` one transaction of the store's fast lane
        (a :class:`Transaction`: run Core statements and insert rows on it)."""
        return self._lane.transaction()

    async def ping(self) -> bool:
        """True when the database answers."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
            return True
        except Exception:
            return False

    # -- jobs -----------------------------------------------------------------------------
    async def add_jobs(
        self,
        rows: Sequence[JobRow],
        events: Sequence[JobEventRow],
        *,
        guard: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        """Insert jobs and their first events in one transaction (the rows get their ``seq``,
        the events their ``id``, and both their defaults, as a session's flush gives them).
        ``guard(session)`` runs first in the same transaction (a quota check: it raises to
        insert nothing); a guarded insert goes through an ORM session, the others through the
        store's fast lane."""
        if guard is None:
            async with self._lane.transaction() as tx:
                await tx.insert(rows)
                await tx.insert(events)
            return
        async with self._session() as s, s.begin():
            await guard(s)
            s.add_all(rows)
            s.add_all(events)

    async def get_job(self, job_id: str) -> JobRow | None:
        """One job by id."""
        found = await self._lane.first(_JOB_BY_ID, {"job_id": job_id})
        return _job(found) if found is not None else None

    async def jobs_by_ids(self, ids: Sequence[str]) -> list[JobRow]:
        """Several jobs, in ``seq`` order."""
        async with self._read() as s:
            result = await s.execute(select(JobRow).where(JobRow.id.in_(ids)).order_by(JobRow.seq))
            return list(result.scalars())

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        before_seq: int | None = None,
        limit: int = 50,
        batch_id: str | None = None,
        owner: str | None = None,
    ) -> list[JobRow]:
        """Jobs newest first, filtered; ``before_seq`` is the pagination cursor; ``owner``
        limits them to one user's."""
        query = select(JobRow).order_by(JobRow.seq.desc()).limit(limit)
        if owner is not None:
            query = query.where(JobRow.owner == owner)
        if status is not None:
            query = query.where(JobRow.status == status)
        if created_after is not None:
            query = query.where(JobRow.created_at >= created_after)
        if created_before is not None:
            query = query.where(JobRow.created_at < created_before)
        if before_seq is not None:
            query = query.where(JobRow.seq < before_seq)
        if batch_id is not None:
            query = query.where(JobRow.batch_id == batch_id)
        async with self._read() as s:
            return list((await s.execute(query)).scalars())

    async def queue_position(self, row: JobRow) -> int:
        """1-based position of a queued job among the queued ones."""
        found = await self._lane.first(_QUEUED_BEFORE, {"seq": row.seq})
        assert found is not None
        return int(next(iter(found.values()))) + 1

    async def count_by_status(self) -> dict[str, int]:
        """How many jobs are in each state."""
        query = select(JobRow.status, func.count()).group_by(JobRow.status)
        async with self._read() as s:
            return {str(k): int(v) for k, v in (await s.execute(query)).all()}

    async def queued_count(self) -> int:
        """How many jobs are queued (in the service or on ComfyUI)."""
        query = select(func.count()).where(JobRow.status == "queued")
        async with self._read() as s:
            return int((await s.execute(query)).scalar_one())

    async def claim_next(
        self, server_url: str, owner: str | None = None, lease_seconds: float = 0.0
    ) -> JobRow | None:
        """Hand the oldest job still in the service's own queue to ``server_url``, leased to
        ``owner`` (a replica) for ``lease_seconds``, in one statement."""
        for _ in range(5):  # another claimer may take the row first: bounded retries
            now = utcnow()
            params = {
                "server_url": server_url,
                "now": now,
                "owner": owner,
                "lease_until": now + dt.timedelta(seconds=lease_seconds) if owner else None,
            }
            async with self._lane.transaction() as tx:
                found = await tx.first(_CLAIM, params)
                if found is not None:
                    return _job(found)
                if await tx.first(_OLDEST_UNCLAIMED) is None:
                    return None
        return None

    async def has_unclaimed(self) -> bool:
        """True when a queued job waits for the dispatcher (no ComfyUI has it yet)."""
        return await self._lane.first(_OLDEST_UNCLAIMED) is not None

    async def dispatched_jobs(self) -> list[JobRow]:
        """Jobs handed to a ComfyUI and not finished (what a restart must re-attach)."""
        query = (
            select(JobRow)
            .where(JobRow.status.in_(ACTIVE), JobRow.server_url.is_not(None))
            .order_by(JobRow.seq)
        )
        async with self._read() as s:
            return list((await s.execute(query)).scalars())

    async def update_job(
        self,
        job_id: str,
        values: dict[str, Any],
        *,
        only_if_status: Sequence[str] | None = None,
        undispatched: bool = False,
        event: tuple[str, dict[str, Any]] | None = None,
        deliveries: Callable[[JobRow], Sequence[DeliveryRow]] | None = None,
    ) -> tuple[JobRow | None, int | None]:
        """Change a job (only while its status is one of ``only_if_status``, when given) and
        append an event in the same transaction; ``undispatched``: only while no ComfyUI has
        it. ``deliveries`` makes the webhook deliveries of the changed row, inserted in the
        same transaction (a job never ends without its messages, nor the other way round).
        Returns the row as the update left it (``None`` when not changed) and the event id.
        A value may be a SQL expression of the row's columns."""
        statuses = tuple(only_if_status) if only_if_status is not None else None
        params: dict[str, Any] = {"job_id": job_id}
        if any(isinstance(v, ColumnElement) for v in values.values()):
            query: Any = _adhoc_update(job_id, values, statuses, undispatched)
        else:
            query = _update_statement(tuple(values), statuses, undispatched)
            params.update({f"v_{k}": v for k, v in values.items()})
        async with self._lane.transaction() as tx:
            found = await tx.first(query, params)
            if found is None:
                return None, None
            row = _job(found)
            event_id = None
            if event is not None:
                event_id = await self._insert_event(tx, job_id, event[0], event[1])
            if deliveries is not None:
                await tx.insert(deliveries(row))
            return row, event_id

    @staticmethod
    async def _insert_event(tx: Transaction, job_id: str, name: str, data: dict[str, Any]) -> int:
        params = {"job_id": job_id, "event": name, "data": data, "created_at": utcnow()}
        return int(await tx.scalar(_INSERT_EVENT, params))

    async def add_event(self, job_id: str, name: str, data: dict[str, Any]) -> int:
        """Append one event to a job's stream; returns its id."""
        async with self._lane.transaction() as tx:
            return await self._insert_event(tx, job_id, name, data)

    async def add_event_while_active(
        self, job_id: str, name: str, data: dict[str, Any], when: dt.datetime
    ) -> int | None:
        """Append an event to a job's stream unless the job has ended (nothing is written after
        a job's end); its id, or ``None``."""
        async with self._lane.transaction() as tx:
            if await tx.first(_ACTIVE_JOB, {"job_id": job_id}) is None:
                return None
            params = {"job_id": job_id, "event": name, "data": data, "created_at": when}
            return int(await tx.scalar(_INSERT_EVENT, params))

    async def events_after(self, job_id: str, after: int) -> list[JobEventRow]:
        """A job's events with ids above ``after``, oldest first."""
        query = (
            select(JobEventRow)
            .where(JobEventRow.job_id == job_id, JobEventRow.id > after)
            .order_by(JobEventRow.id)
        )
        async with self._read() as s:
            return list((await s.execute(query)).scalars())

    async def finished_before(self, cutoff: dt.datetime) -> list[JobRow]:
        """Finished jobs with outputs that completed before ``cutoff``."""
        query = select(JobRow).where(
            JobRow.status.in_(list(FINISHED)), JobRow.completed_at < cutoff
        )
        async with self._read() as s:
            return [r for r in (await s.execute(query)).scalars() if r.outputs]

    # -- webhook deliveries ---------------------------------------------------------------
    async def deliveries_of(self, job_ids: Sequence[str]) -> list[DeliveryRow]:
        """The webhook deliveries of jobs, oldest first."""
        query = (
            select(DeliveryRow)
            .where(DeliveryRow.job_id.in_(list(job_ids)))
            .order_by(DeliveryRow.created_at, DeliveryRow.id)
        )
        async with self._read() as s:
            return list((await s.execute(query)).scalars())

    async def claim_deliveries(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[DeliveryRow]:
        """Take up to ``limit`` pending deliveries due at ``now``, oldest due first, and lease
        them: their ``next_attempt_at`` becomes ``lease_until`` in the same statement, so no
        other sender (another replica) takes them until the lease ends. On PostgreSQL the rows
        are picked ``FOR UPDATE SKIP LOCKED`` (claimers never wait for each other nor take the
        same row); SQLite has one writer at a time."""
        due = (
            select(DeliveryRow.id)
            .where(DeliveryRow.status == "pending", DeliveryRow.next_attempt_at <= now)
            .order_by(DeliveryRow.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(DeliveryRow)
            .where(
                DeliveryRow.id.in_(due),
                DeliveryRow.status == "pending",
                DeliveryRow.next_attempt_at <= now,
            )
            .values(next_attempt_at=lease_until)
            .returning(DeliveryRow)
            .execution_options(synchronize_session=False)
        )
        async with self._session() as s, s.begin():
            return list((await s.execute(claim)).scalars())

    async def settle_delivery(
        self, delivery_id: str, lease: dt.datetime, values: dict[str, Any]
    ) -> bool:
        """Record an attempt of a leased delivery (``values``), only while the lease is still
        this sender's (pending, ``next_attempt_at == lease``); False when it was not."""
        query = (
            update(DeliveryRow)
            .where(
                DeliveryRow.id == delivery_id,
                DeliveryRow.status == "pending",
                DeliveryRow.next_attempt_at == lease,
            )
            .values(**values)
            .returning(DeliveryRow.id)
            .execution_options(synchronize_session=False)
        )
        async with self._session() as s, s.begin():
            return (await s.execute(query)).scalar_one_or_none() is not None

    async def redeliver(
        self, job_id: str, delivery_id: str, now: dt.datetime
    ) -> tuple[DeliveryRow | None, bool]:
        """Make a delivered or failed delivery of a job pending again, due ``now``, its
        attempt limit counted from the attempts made so far. Returns the row (``None`` when
        not changed) and whether the delivery exists."""
        query = (
            update(DeliveryRow)
            .where(
                DeliveryRow.id == delivery_id,
                DeliveryRow.job_id == job_id,
                DeliveryRow.status != "pending",
            )
            .values(
                status="pending",
                next_attempt_at=now,
                attempt_base=DeliveryRow.attempts,
                delivered_at=None,
            )
            .returning(DeliveryRow)
            .execution_options(synchronize_session=False)
        )
        exists = select(func.count()).where(
            DeliveryRow.id == delivery_id, DeliveryRow.job_id == job_id
        )
        async with self._session() as s, s.begin():
            row: DeliveryRow | None = (await s.execute(query)).scalar_one_or_none()
            if row is not None:
                return row, True
            return None, bool((await s.execute(exists)).scalar_one())

    # -- batches --------------------------------------------------------------------------
    async def add_batch(self, batch: BatchRow) -> None:
        """Insert a batch (before its jobs)."""
        async with self._session() as s, s.begin():
            s.add(batch)

    async def get_batch(self, batch_id: str) -> BatchRow | None:
        """A batch by id."""
        async with self._read() as s:
            row: BatchRow | None = await s.get(BatchRow, batch_id)
            return row

    # -- templates ------------------------------------------------------------------------
    async def list_templates(self) -> list[TemplateRow]:
        """Every stored template, oldest first."""
        async with self._read() as s:
            query = select(TemplateRow).order_by(TemplateRow.created_at)
            return list((await s.execute(query)).scalars())

    async def get_template(self, template_id: str) -> TemplateRow | None:
        """A stored template by id."""
        async with self._read() as s:
            row: TemplateRow | None = await s.get(TemplateRow, template_id)
            return row

    async def put_template(self, row: TemplateRow) -> TemplateRow:
        """Insert or replace a template."""
        async with self._session() as s, s.begin():
            merged: TemplateRow = await s.merge(row)
            return merged

    async def delete_template(self, template_id: str) -> bool:
        """Delete a template; False when there was none."""
        async with self._session() as s, s.begin():
            row = await s.get(TemplateRow, template_id)
            if row is None:
                return False
            await s.delete(row)
            return True

    # -- uploads --------------------------------------------------------------------------
    async def add_upload(self, row: UploadRow) -> None:
        """Record an upload."""
        async with self._session() as s, s.begin():
            s.add(row)

    async def get_upload(self, upload_id: str) -> UploadRow | None:
        """An upload by id."""
        async with self._read() as s:
            row: UploadRow | None = await s.get(UploadRow, upload_id)
            return row

    async def uploads_before(self, cutoff: dt.datetime) -> list[UploadRow]:
        """Uploads older than ``cutoff``."""
        async with self._read() as s:
            query = select(UploadRow).where(UploadRow.created_at < cutoff)
            return list((await s.execute(query)).scalars())

    async def delete_upload(self, upload_id: str) -> None:
        """Forget an upload."""
        async with self._session() as s, s.begin():
            row = await s.get(UploadRow, upload_id)
            if row is not None:
                await s.delete(row)
