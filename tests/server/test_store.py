"""The store's fast lane (store/lane.py) against the ORM, on SQLite and PostgreSQL: what it
writes the ORM reads back unchanged, what it reads is what the ORM reads (time zones, JSON),
its transactions are one transaction, and a PostgreSQL read survives a dropped connection."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text, update

from comfykit.server.store import JobEventRow, JobRow, Store, UploadRow, utcnow
from comfykit.testing import PostgresServer

COLUMNS = [attr.key for attr in JobRow.__mapper__.column_attrs]
PARIS = dt.timezone(dt.timedelta(hours=2))


@pytest.fixture
async def store(tmp_path: Path, store_url: str) -> AsyncIterator[Store]:
    """An open store on each backend (SQLite: a file of this test's own)."""
    url = store_url or f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _job(**values: Any) -> JobRow:
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "prompt_id": str(uuid.uuid4()),
        "kind": "workflow",
        "status": "queued",
        "workflow": {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "color": 3}}},
        "created_at": utcnow(),
    }
    fields.update(values)
    return JobRow(**fields)


def _values(row: JobRow) -> dict[str, Any]:
    return {key: getattr(row, key) for key in COLUMNS}


async def _orm_job(store: Store, job_id: str) -> JobRow:
    """The job as the ORM reads it (a session, the mapped class)."""
    (row,) = await store.jobs_by_ids([job_id])
    return row


def _same(fast: JobRow, orm: JobRow) -> None:
    for key in COLUMNS:
        a, b = getattr(fast, key), getattr(orm, key)
        assert a == b, (key, a, b)
        assert type(a) is type(b), (key, type(a), type(b))
        if isinstance(a, dt.datetime):
            assert a.tzinfo == b.tzinfo == dt.timezone.utc, key


async def test_the_fast_read_is_the_orm_read(store: Store) -> None:
    created = dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=PARIS)
    row = _job(
        workflow={"3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "x": 1.5}}},
        uploads={"4": {"image": "u-1"}},
        meta={"graph": {"a": [1, 2, {"b": None}]}, "text": "é ✓ 🎨", "timings": {}},
        error={"code": "X", "message": "m", "details": [1, "two", None]},
        outputs=[{"index": 0, "filename": "a.png", "size": 12}],
        template_id="t1",
        server_url="http://127.0.0.1:1",
        attempts=2,
        cancel_requested=True,
        progress=0.25,
        created_at=created,
        started_at=dt.datetime(2026, 3, 1, 10, 31, tzinfo=dt.timezone.utc),
        owner="alice",
        images=3,
        webhook_url="https://example.invalid/hook",
    )
    await store.add_jobs([row], [])
    fast = await store.get_job(row.id)
    assert fast is not None
    _same(fast, await _orm_job(store, row.id))
    assert fast.created_at == created and fast.created_at.utcoffset() == dt.timedelta(0)
    assert fast.meta["text"] == "é ✓ 🎨" and fast.error is not None
    assert fast.dispatched_at is None and fast.completed_at is None
    assert await store.get_job(str(uuid.uuid4())) is None


async def test_inserted_rows_get_their_keys_and_defaults(store: Store) -> None:
    rows = [_job(), _job()]
    events = [
        JobEventRow(job_id=r.id, event="queued", data={"job_id": r.id}, created_at=utcnow())
        for r in rows
    ]
    await store.add_jobs(rows, events)
    # as a session's flush leaves them: generated keys and every default set on the instances
    assert rows[0].seq is not None and rows[1].seq == rows[0].seq + 1
    assert events[0].id is not None and events[1].id == events[0].id + 1
    for r in rows:
        assert (r.uploads, r.meta, r.outputs, r.error) == ({}, {}, [], None)
        assert (r.attempts, r.images, r.cancel_requested, r.owner) == (0, 1, False, None)
        stored = await _orm_job(store, r.id)
        assert _values(stored) == _values(r)
    listed = await store.events_after(rows[1].id, 0)
    assert [(e.id, e.event, e.data) for e in listed] == [
        (events[1].id, "queued", {"job_id": rows[1].id})
    ]


async def test_updates_claims_and_events(store: Store) -> None:
    first, second = _job(), _job()
    await store.add_jobs([first, second], [])
    claimed = await store.claim_next("http://a")
    assert claimed is not None and claimed.id == first.id
    assert claimed.server_url == "http://a" and claimed.attempts == 1
    assert claimed.dispatched_at is not None and claimed.dispatched_at.tzinfo == dt.timezone.utc
    _same(claimed, await _orm_job(store, first.id))
    assert await store.queue_position(second) == 2  # the claimed job is still queued
    # only while still queued and undispatched: the claimed job is not cancelled here
    nothing = await store.update_job(
        first.id, {"status": "cancelled"}, only_if_status=["queued"], undispatched=True
    )
    assert nothing == (None, None)
    started, event_id = await store.update_job(
        first.id,
        {"status": "processing", "started_at": utcnow(), "meta": {"k": [1]}},
        only_if_status=["queued"],
        event=("started", {"job_id": first.id, "status": "processing"}),
    )
    assert started is not None and started.status == "processing" and event_id is not None
    assert started.meta == {"k": [1]}
    _same(started, await _orm_job(store, first.id))
    # a SQL expression as a value
    bumped, _ = await store.update_job(first.id, {"attempts": JobRow.attempts + 10})
    assert bumped is not None and bumped.attempts == 11
    assert await store.update_job(str(uuid.uuid4()), {"progress": 1.0}) == (None, None)
    assert await store.update_job(first.id, {"progress": 1.0}, only_if_status=[]) == (None, None)
    with pytest.raises(ValueError, match="no attribute"):
        await store.update_job(first.id, {"not_a_column": 1})
    second_claim = await store.claim_next("http://b")
    assert second_claim is not None and second_claim.id == second.id
    assert await store.claim_next("http://b") is None
    ids = [e.id for e in await store.events_after(first.id, 0)]
    assert ids == [event_id]
    assert await store.add_event(first.id, "note", {"x": 1}) > event_id


async def test_a_transaction_is_one_transaction(store: Store) -> None:
    kept = _job()
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.insert([_job(id="dropped-job")])
            assert await tx.scalar(select(func.count()).select_from(JobRow)) == 1
            raise RuntimeError("rolled back")
    async with store.transaction() as tx:
        await tx.insert([kept])
        # any Core statement runs in it, IN lists included
        ids = await tx.execute(select(JobRow.id).where(JobRow.status.in_(["queued", "x"])))
        assert ids == [{"id": kept.id}]
        await tx.execute(update(JobRow).where(JobRow.id == kept.id).values(template_id="t"))
        await tx.execute(
            insert(UploadRow).values(
                id="u1", stored_name="u1.png", content_type="image/png", size=1, width=1,
                height=1, created_at=utcnow(),
            )
        )  # fmt: skip
    assert await store.get_job("dropped-job") is None
    row = await store.get_job(kept.id)
    assert row is not None and row.template_id == "t"
    upload = await store.get_upload("u1")
    assert upload is not None and upload.original_name == ""  # its default


async def test_concurrent_transactions_do_not_mix(store: Store) -> None:
    rows = [_job() for _ in range(20)]
    await store.add_jobs(rows, [])

    async def bump(row: JobRow) -> None:
        for _ in range(5):
            await store.update_job(row.id, {"attempts": JobRow.attempts + 1})

    await asyncio.gather(*(bump(r) for r in rows))
    assert {r.attempts for r in await store.jobs_by_ids([r.id for r in rows])} == {5}


@pytest.fixture
async def pg_store(postgres: PostgresServer) -> AsyncIterator[Store]:
    """An open store on a fresh database of the session's PostgreSQL cluster."""
    store = Store(postgres.create_database(f"dropped_{os.getpid()}_{uuid.uuid4().hex[:8]}"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_a_postgres_read_survives_a_dropped_connection(pg_store: Store) -> None:
    store = pg_store
    row = _job()
    await store.add_jobs([row], [])
    assert await store.get_job(row.id) is not None
    # the server drops every other session (the fast lane's pooled connections among them)
    async with store.engine.connect() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    again = await store.get_job(row.id)
    assert again is not None and again.id == row.id


async def test_sqlite_checkpoints_run_off_the_event_loop(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
    await store.open()
    try:
        lane: Any = store._lane
        # the writer (on the loop's thread) leaves the WAL's checkpoints to the thread
        (limit,) = lane.writer.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert limit > 1000
        row = _job()
        await store.add_jobs([row], [])
        for i in range(150):
            await store.update_job(row.id, {"progress": i / 150})
        deadline = asyncio.get_running_loop().time() + 10
        while lane.checkpointer.runs == 0:
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint ran"
            await asyncio.sleep(0.05)
        # everything committed is in the database file once the WAL is checkpointed
        (busy, frames, copied) = lane.reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and copied == frames
        found = await store.get_job(row.id)
        assert found is not None and found.progress == 149 / 150
        thread = lane.checkpointer._thread
    finally:
        await store.close()
    assert not thread.is_alive()
