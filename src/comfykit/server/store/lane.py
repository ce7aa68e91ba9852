"""The store's fast lane: the statements the service runs for every job (its insert, claim,
state changes, events and the job read), run without the ORM's session machinery.

Each statement is a SQLAlchemy Core statement built once with bind parameters
(:class:`Prepared`), compiled once per store, and run on the driver's own connections:

* **SQLite** (a file): two ``sqlite3`` connections used on the event loop's thread, one that
  writes (``BEGIN IMMEDIATE`` ... ``COMMIT``) and one that reads (each read is its own
  statement, so it sees the last commit; WAL mode lets it read while the writer writes).
  ``sqlite3`` keeps each statement prepared. The WAL's checkpoints (which copy it into the
  database and wait for the disk) run in a thread of their own, not in a commit on the loop.
* **PostgreSQL** (``postgresql+asyncpg``): an asyncpg pool opened with the engine's own
  connection arguments and JSON codecs; asyncpg prepares each statement once per connection.
* Any other URL: the same compiled statements through the engine's connections.

Values go in and out through SQLAlchemy's own type processing for the store's dialect (the
UTC timestamps, JSON, booleans), so the fast lane writes and reads exactly what the ORM does,
and the other methods of the store (the ORM) read what it wrote.

A :class:`Transaction` is one transaction on one connection: the hot methods of the store run
their statements on it, and callers that need more statements in the same transaction run
them there too (:meth:`Transaction.execute` takes any Core statement; :meth:`Transaction.insert`
inserts ORM instances).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Float, Integer, Numeric, Table, bindparam, insert
from sqlalchemy.orm import class_mapper
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.compiler import SQLCompiler

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Dialect
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.sql.base import Executable

__all__ = ["Lane", "Prepared", "Transaction", "open_lane"]

log = logging.getLogger("comfykit.server.store")

_Row = Sequence[Any]
_Processor = Callable[[Any], Any]


class Prepared:
    """A Core statement built once, with :func:`~sqlalchemy.bindparam` for what varies; each
    store compiles it once for its dialect. (``IN`` lists need values at compile time: write
    them as ``a == x OR a == y`` here, or run the statement unprepared.)"""

    __slots__ = ("statement",)

    def __init__(self, statement: Executable) -> None:
        self.statement = statement


class Compiled:
    """A statement compiled for one dialect: its SQL, how to make its positional arguments
    from named parameters, and how to read its rows."""

    __slots__ = ("_binds", "_defaults", "_processors", "keys", "sql")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        if "POSTCOMPILE" in compiled.string:
            compiled = statement.compile(  # type: ignore[attr-defined]
                dialect=dialect, compile_kwargs={"render_postcompile": True}
            )
        if "POSTCOMPILE" in compiled.string:  # pragma: no cover - a programming error
            raise ValueError("an IN list with a bind parameter cannot be compiled once")
        assert isinstance(compiled, SQLCompiler)
        self.sql: str = compiled.string
        binds: list[tuple[str, bool, Any, _Processor | None]] = []
        expanded = getattr(compiled, "_post_compile_expanded_state", None)
        if expanded is not None:
            # IN lists rendered with their values: every parameter is known (and fixed)
            for name in expanded.positiontup or ():
                value = expanded.parameters[name]
                binds.append((name, False, value, expanded.processors.get(name)))
        for name in compiled.positiontup or () if expanded is None else ():
            param = compiled.binds[name]
            processor = param.type.dialect_impl(dialect).bind_processor(dialect)
            value = None if param.required else param.effective_value
            binds.append((name, param.required, value, processor))
        self._binds = tuple(binds)
        # Python-side column defaults SQLAlchemy would compute (an INSERT without the column)
        defaults: dict[str, Callable[[], Any]] = {}
        for column in [*compiled.insert_prefetch, *compiled.update_prefetch]:
            default = column.default if column in compiled.insert_prefetch else column.onupdate
            defaults[column.key] = _default_maker(default)
        self._defaults = defaults
        # ``_result_columns`` is how SQLAlchemy itself maps a cursor's columns to keys and types
        result_columns = compiled._result_columns
        self.keys: tuple[str, ...] = tuple(entry[0] for entry in result_columns)
        self._processors: tuple[_Processor | None, ...] = tuple(
            _result_processor(entry[3], dialect) for entry in result_columns
        )

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments of the statement for ``params``."""
        if self._defaults:
            params = {**{k: make() for k, make in self._defaults.items()}, **params}
        out = []
        for name, required, value, processor in self._binds:
            if required or name in params:
                try:
                    value = params[name]
                except KeyError:
                    raise KeyError(f"a value is required for bind parameter {name!r}") from None
            out.append(processor(value) if processor is not None else value)
        return out

    def rows(self, raw: Iterable[_Row]) -> list[dict[str, Any]]:
        """The rows as mappings of the statement's column keys to Python values."""
        keys = self.keys
        processors = self._processors
        return [
            {
                key: (processor(value) if processor is not None else value)
                for key, processor, value in zip(keys, processors, row, strict=False)
            }
            for row in raw
        ]


#: PostgreSQL's type oids of numbers (float8, numeric, int8), for dialects whose result
#: processing of a number depends on the type the database sent.
_PG_NUMBER_OIDS = ((Float, 701), (Numeric, 1700), (Integer, 20))


def _result_processor(type_: Any, dialect: Dialect) -> _Processor | None:
    impl = type_.dialect_impl(dialect)
    try:
        processor: _Processor | None = impl.result_processor(dialect, None)
    except Exception:
        # asyncpg's numbers need the column's database type: the one this schema creates
        oid = next((o for kind, o in _PG_NUMBER_OIDS if isinstance(type_, kind)), None)
        if oid is None:
            raise
        processor = impl.result_processor(dialect, oid)
    return processor


def _default_maker(default: Any) -> Callable[[], Any]:
    if default is None:
        return lambda: None
    if getattr(default, "is_scalar", False):
        value = default.arg
        return lambda: value
    if getattr(default, "is_callable", False):
        fn = default.arg
        return lambda: fn(None)
    raise NotImplementedError(f"the fast lane cannot compute the default {default!r}")


class _Connection(Protocol):
    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[_Row]: ...


class _InsertPlan:
    """How to insert instances of one mapped class: every column given, the generated ones
    returned (the autoincrement key)."""

    __slots__ = ("columns", "generated", "statement")

    def __init__(self, cls: type[Any], given_key: bool) -> None:
        mapper = class_mapper(cls)
        table = mapper.local_table
        assert isinstance(table, Table)
        generated = table.autoincrement_column if not given_key else None
        self.columns: list[tuple[str, str, Callable[[], Any]]] = []
        values = {}
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if column is generated:
                continue
            if column.server_default is not None:  # pragma: no cover - none in this schema
                raise NotImplementedError(f"{column} has a server default")
            self.columns.append((prop.key, f"p_{column.key}", _default_maker(column.default)))
            values[column] = bindparam(f"p_{column.key}", type_=column.type)
        self.generated: list[str] = []
        statement = insert(table).values(values)
        if generated is not None:
            self.generated = [mapper.get_property_by_column(generated).key]
            statement = statement.returning(generated)
        self.statement = Prepared(statement)


class Transaction:
    """One open transaction of the store, on one connection: run more statements in it with
    :meth:`execute` (any Core statement; a :class:`Prepared` one is compiled once) and
    :meth:`insert` (ORM instances). It commits when the block that opened it ends, and rolls
    back when that block raises. On SQLite it runs on the event loop's thread: do not wait on
    anything else (network, other tasks) inside it."""

    __slots__ = ("_conn", "_lane")

    def __init__(self, lane: Lane, conn: _Connection) -> None:
        self._lane = lane
        self._conn = conn

    async def execute(
        self, statement: Prepared | Executable, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run a statement; its rows (none for a statement that returns none)."""
        compiled = self._lane.compiled(statement)
        raw = await self._conn.fetch(compiled.sql, compiled.args(params or {}))
        return compiled.rows(raw) if compiled.keys else []

    async def first(
        self, statement: Prepared | Executable, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The statement's first row, or ``None``."""
        rows = await self.execute(statement, params)
        return rows[0] if rows else None

    async def scalar(
        self, statement: Prepared | Executable, params: Mapping[str, Any] | None = None
    ) -> Any:
        """The first column of the first row, or ``None``."""
        row = await self.first(statement, params)
        return next(iter(row.values())) if row else None

    async def insert(self, instances: Iterable[Any]) -> None:
        """Insert ORM instances (in order), as a session's flush would: unset columns get
        their defaults, and the instances get those and their generated keys."""
        for instance in instances:
            state = instance.__dict__
            cls = type(instance)
            plan = self._lane.insert_plan(cls, state)
            params: dict[str, Any] = {}
            for key, name, default in plan.columns:
                if key in state:
                    params[name] = state[key]
                else:
                    params[name] = value = default()
                    set_committed_value(instance, key, value)
            row = await self.first(plan.statement, params)
            if row is not None:
                for key, value in zip(plan.generated, row.values(), strict=True):
                    set_committed_value(instance, key, value)


class Lane:
    """The fast lane of one open store (see the module's docstring)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[Prepared, Compiled] = {}
        self._plans: dict[tuple[type[Any], bool], _InsertPlan] = {}

    def compiled(self, statement: Prepared | Executable) -> Compiled:
        """The statement compiled for this store (a prepared one once)."""
        if isinstance(statement, Prepared):
            found = self._compiled.get(statement)
            if found is None:
                found = self._compiled[statement] = Compiled(statement.statement, self.dialect)
            return found
        return Compiled(statement, self.dialect)

    def insert_plan(self, cls: type[Any], state: Mapping[str, Any]) -> _InsertPlan:
        """How to insert an instance of ``cls`` whose attributes are ``state``."""
        plan = self._plans.get((cls, False))
        if plan is None:
            plan = self._plans[(cls, False)] = _InsertPlan(cls, False)
        if plan.generated and state.get(plan.generated[0]) is not None:
            given = self._plans.get((cls, True))
            if given is None:
                given = self._plans[(cls, True)] = _InsertPlan(cls, True)
            return given
        return plan

    async def fetch(
        self, statement: Prepared | Executable, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run one statement outside any transaction (a read: it sees the last commit)."""
        compiled = self.compiled(statement)
        raw = await self._read(compiled.sql, compiled.args(params or {}))
        return compiled.rows(raw)

    async def first(
        self, statement: Prepared | Executable, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The first row of one read, or ``None``."""
        rows = await self.fetch(statement, params)
        return rows[0] if rows else None

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with lane.transaction() as tx:`` one transaction (:class:`Transaction`)."""
        raise NotImplementedError

    async def _read(self, sql: str, args: Sequence[Any]) -> Sequence[_Row]:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the lane's connections."""


# -- SQLite ---------------------------------------------------------------------------------
class _SQLiteConnection:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[_Row]:
        return self._conn.execute(sql, args).fetchall()


class _SQLiteTransaction(AbstractAsyncContextManager[Transaction]):
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on the writer (ROLLBACK when the block raises)."""

    __slots__ = ("_lane",)

    def __init__(self, lane: _SQLiteLane) -> None:
        self._lane = lane

    async def __aenter__(self) -> Transaction:
        lane = self._lane
        await lane.lock.acquire()
        try:
            lane.writer.execute("BEGIN IMMEDIATE")
        except BaseException:
            lane.lock.release()
            raise
        return Transaction(lane, _SQLiteConnection(lane.writer))

    async def __aexit__(self, exc_type: object, *_exc: object) -> None:
        lane = self._lane
        writer = lane.writer
        try:
            if exc_type is None:
                writer.execute("COMMIT")
                lane.checkpointer.committed()
        finally:
            try:
                if writer.in_transaction:
                    writer.execute("ROLLBACK")
            finally:
                lane.lock.release()


class _Checkpointer:
    """Runs the WAL's checkpoints of a SQLite file in a thread of its own: after every
    ``every`` commits, and every ``interval`` seconds while there were commits. A checkpoint
    copies the WAL into the database and syncs both to disk (milliseconds, seconds when the
    disk is busy); done by the writer's commit, that wait would stop the event loop. The
    WAL stays the durable log: commits are as durable as before."""

    def __init__(
        self, path: str, setup: Callable[[Any, Any], None], every: int, interval: float
    ) -> None:
        self._path = path
        self._setup = setup
        self._every = every
        self._interval = interval
        self._commits = 0
        self._pending = False
        self._wake = threading.Event()
        self._stop = False
        self.runs = 0
        self._thread = threading.Thread(
            target=self._run, name="comfykit-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        """Count a commit (on the loop's thread; wakes the thread every ``every``)."""
        self._pending = True
        self._commits += 1
        if self._commits >= self._every:
            self._commits = 0
            self._wake.set()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            self._setup(conn, None)
            while True:
                self._wake.wait(self._interval)
                self._wake.clear()
                if self._stop:
                    return
                if not self._pending:
                    continue
                self._pending = False
                try:
                    # PASSIVE: copies what no reader still needs, never waits for anyone
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error:  # pragma: no cover - tried again on the next round
                    log.warning("a SQLite checkpoint failed", exc_info=True)
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (a checkpoint under way finishes first)."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=30)


class _SQLiteLane(Lane):
    """A SQLite file: a writer and a reader connection, used on the event loop's thread (a
    statement takes microseconds, less than handing it to a thread and back), and a thread
    that checkpoints the WAL (:class:`_Checkpointer`)."""

    #: Pages the WAL may grow to before the writer checkpoints it itself (SQLite's own
    #: automatic checkpoint; the default is 1000): only when the checkpoint thread falls far
    #: behind.
    WRITER_AUTOCHECKPOINT = 20000

    def __init__(self, dialect: Dialect, path: str, setup: Callable[[Any, Any], None]) -> None:
        super().__init__(dialect)
        self.writer = self._connect(path, setup)
        self.writer.execute(f"PRAGMA wal_autocheckpoint={self.WRITER_AUTOCHECKPOINT}")
        self.reader = self._connect(path, setup)
        self.lock = asyncio.Lock()
        self.checkpointer = _Checkpointer(path, setup, every=100, interval=0.5)

    @staticmethod
    def _connect(path: str, setup: Callable[[Any, Any], None]) -> sqlite3.Connection:
        # autocommit at the driver (isolation_level=None): the lane says BEGIN and COMMIT
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        setup(conn, None)
        return conn

    def transaction(self) -> _SQLiteTransaction:
        """``async with lane.transaction() as tx:`` one write transaction."""
        return _SQLiteTransaction(self)

    async def _read(self, sql: str, args: Sequence[Any]) -> Sequence[_Row]:
        return self.reader.execute(sql, args).fetchall()

    async def close(self) -> None:
        """Stop the checkpoints and close both connections."""
        self.checkpointer.close()
        self.writer.close()
        self.reader.close()


# -- PostgreSQL (asyncpg) -------------------------------------------------------------------
class _AsyncpgConnection:
    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[_Row]:
        rows: Sequence[_Row] = await self._conn.fetch(sql, *args)
        return rows


async def _no_reset(_conn: Any) -> None:
    """The lane leaves no session state behind (asyncpg still rolls back an open
    transaction); the default reset would cost a round trip per release."""


class _PostgresLane(Lane):
    """An asyncpg pool with the engine's connection arguments and JSON codecs."""

    def __init__(self, dialect: Dialect, pool: Any) -> None:
        super().__init__(dialect)
        self.pool = pool

    @classmethod
    async def create(cls, engine: AsyncEngine, *, max_size: int) -> _PostgresLane:
        import asyncpg  # type: ignore[import-untyped]

        dialect = engine.dialect
        args, kwargs = dialect.create_connect_args(engine.url)
        kwargs = dict(kwargs)
        kwargs["statement_cache_size"] = int(kwargs.pop("prepared_statement_cache_size", 100))
        for name in ("prepared_statement_name_func", "async_creator_fn"):
            kwargs.pop(name, None)
        loads = getattr(dialect, "_json_deserializer", None) or json.loads

        async def init(conn: Any) -> None:
            # the codecs SQLAlchemy's asyncpg dialect sets on its own connections
            await conn.set_type_codec(
                "json", encoder=str.encode, decoder=lambda b: loads(b.decode()),
                schema="pg_catalog", format="binary",
            )  # fmt: skip
            await conn.set_type_codec(
                "jsonb", encoder=lambda s: b"\x01" + s.encode(),
                decoder=lambda b: loads(b[1:].decode()), schema="pg_catalog", format="binary",
            )  # fmt: skip

        pool = await asyncpg.create_pool(
            *args, min_size=1, max_size=max_size, init=init, reset=_no_reset, **kwargs
        )
        return cls(dialect, pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``async with lane.transaction() as tx:`` one transaction on one pooled connection."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield Transaction(self, _AsyncpgConnection(conn))

    async def _read(self, sql: str, args: Sequence[Any]) -> Sequence[_Row]:
        try:
            rows: Sequence[_Row] = await self.pool.fetch(sql, *args)
        except Exception:
            # A connection the server dropped fails its statement (as one of several errors)
            # and leaves the pool. A read is safe to make once more, on another connection; an
            # error of the statement itself comes back the second time.
            rows = await self.pool.fetch(sql, *args)
        return rows

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.close()


# -- any other driver: the engine's own connections ------------------------------------------
class _EngineConnection:
    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[_Row]:
        result = await self._conn.exec_driver_sql(sql, tuple(args))
        return result.fetchall() if result.returns_rows else []


class _EngineLane(Lane):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine.dialect)
        self.engine = engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``async with lane.transaction() as tx:`` one transaction on the engine."""
        async with self.engine.begin() as conn:
            yield Transaction(self, _EngineConnection(conn))

    async def _read(self, sql: str, args: Sequence[Any]) -> Sequence[_Row]:
        async with self.engine.connect() as conn:
            return await _EngineConnection(conn).fetch(sql, args)


async def open_lane(
    engine: AsyncEngine, url: URL, sqlite_setup: Callable[[Any, Any], None], *, pool_size: int
) -> Lane:
    """The fast lane for the engine's database (see the module's docstring)."""
    backend = url.get_backend_name()
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        assert url.database is not None
        if not url.database.startswith("file:"):
            return _SQLiteLane(engine.dialect, str(Path(url.database)), sqlite_setup)
    if backend == "postgresql" and url.get_driver_name() == "asyncpg":
        return await _PostgresLane.create(engine, max_size=pool_size)
    return _EngineLane(engine)
