"""The store's queries of the Comfy API v2 routes: blobs, assets, idempotency keys, and the
latest progress of a job.

Blobs are shared by assets, so every change that could leave an asset without its bytes, or
bytes without an asset, takes the blob row's lock first (``FOR UPDATE`` on PostgreSQL; SQLite
has one writer): minting an asset over a blob, and removing a blob no asset uses. The file of a
blob is put in place or removed while that lock is held.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from sqlalchemy import delete, func, or_, select

from comfykit.server.store.models import AssetRow, BlobRow, IdempotencyKeyRow, JobEventRow, JobRow

__all__ = ["V2Queries", "IdempotencyKeyReused", "KeyClaim", "Mint", "asset_ref", "ref_asset_id"]

#: Job states that hold the assets a job uses as inputs.
ACTIVE = ("queued", "processing")
#: How a job's ``uploads`` name an asset (the other values there are upload ids).
_REF_PREFIX = "asset:"


def asset_ref(asset_id: str) -> str:
    """The value a job's ``uploads`` holds for an asset input."""
    return _REF_PREFIX + asset_id


def ref_asset_id(value: object) -> str | None:
    """The asset id of an ``uploads`` value (``None`` for an upload id)."""
    if isinstance(value, str) and value.startswith(_REF_PREFIX):
        return value[len(_REF_PREFIX) :]
    return None


class IdempotencyKeyReused(Exception):
    """The caller already used this ``Idempotency-Key`` for this operation (within 24 h)."""


@dataclasses.dataclass(frozen=True, slots=True)
class KeyClaim:
    """An ``Idempotency-Key`` to claim for ``resource_id`` in a creating transaction."""

    owner: str
    scope: str
    key: str
    resource_id: str
    now: dt.datetime
    ttl: dt.timedelta


@dataclasses.dataclass(slots=True)
class Mint:
    """One asset to record over one blob; ``place(created)`` puts the blob's file in place
    (called with the blob row locked; ``created``: the row is new)."""

    asset: AssetRow
    blob: BlobRow
    place: Callable[[bool], None]


def _uses(uploads: object, asset_id: str) -> bool:
    if not isinstance(uploads, dict):
        return False
    wanted = asset_ref(asset_id)
    return any(
        value == wanted
        for inputs in uploads.values()
        if isinstance(inputs, dict)
        for value in inputs.values()
    )


class V2Queries:
    """Mixed into :class:`~comfykit.server.store.Store`."""

    url: str

    def _session(self) -> Any:
        raise NotImplementedError

    def _read(self) -> Any:
        raise NotImplementedError

    def _insert(self, table: Any) -> Any:
        """An ``INSERT`` of the store's dialect (for ``ON CONFLICT DO NOTHING``)."""
        if self.url.startswith("postgresql"):
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    # -- idempotency keys -----------------------------------------------------------------
    async def claim_key(self, s: Any, claim: KeyClaim) -> None:
        """Claim an ``Idempotency-Key`` in the open transaction ``s``
        (:class:`IdempotencyKeyReused` when the caller holds it already). An expired claim of
        the same key is replaced. Concurrent claims of one key: one wins (the primary key),
        the others wait for it and then see it."""
        same = (
            (IdempotencyKeyRow.owner == claim.owner)
            & (IdempotencyKeyRow.scope == claim.scope)
            & (IdempotencyKeyRow.key == claim.key)
        )
        await s.execute(
            delete(IdempotencyKeyRow).where(same, IdempotencyKeyRow.expires_at <= claim.now)
        )
        insert = (
            self._insert(IdempotencyKeyRow)
            .values(
                owner=claim.owner,
                scope=claim.scope,
                key=claim.key,
                resource_id=claim.resource_id,
                claimed_at=claim.now,
                expires_at=claim.now + claim.ttl,
            )  # fmt: skip
            .on_conflict_do_nothing()
            .returning(IdempotencyKeyRow.key)
        )
        if (await s.execute(insert)).scalar_one_or_none() is None:
            raise IdempotencyKeyReused(claim.key)

    async def sweep_keys(self, now: dt.datetime) -> int:
        """Forget expired idempotency keys; how many."""
        query = delete(IdempotencyKeyRow).where(IdempotencyKeyRow.expires_at <= now)
        async with self._session() as s, s.begin():
            result = await s.execute(query)
            return int(result.rowcount or 0)

    # -- minting --------------------------------------------------------------------------
    async def _lock_blob(self, s: Any, blob: BlobRow) -> bool:
        """Insert the blob's row unless it exists, then lock it; whether it is new."""
        insert = (
            self._insert(BlobRow)
            .values(
                hash=blob.hash,
                size=blob.size,
                content_type=blob.content_type,
                stored_name=blob.stored_name,
                created_at=blob.created_at,
            )  # fmt: skip
            .on_conflict_do_nothing()
            .returning(BlobRow.hash)
        )
        created = (await s.execute(insert)).scalar_one_or_none() is not None
        lock = select(BlobRow.hash).where(BlobRow.hash == blob.hash).with_for_update()
        if (await s.execute(lock)).scalar_one_or_none() is None:
            # removed by a collector between the two statements: ours again
            await s.execute(insert)
            await s.execute(lock)
            created = True
        return created

    async def mint(
        self, items: Sequence[Mint], *, claim: KeyClaim | None = None, keep_existing: bool = False
    ) -> list[tuple[AssetRow, bool]]:
        """Record assets over blobs in one transaction: each blob row inserted unless it
        exists and locked, its file put in place, the asset inserted (``keep_existing``: an
        asset with the same id is kept as it is). ``claim`` is claimed in the same transaction.
        Returns each stored asset and whether its blob is new."""
        out: list[tuple[AssetRow, bool]] = []
        async with self._session() as s, s.begin():
            if claim is not None:
                await self.claim_key(s, claim)
            for item in items:
                created = await self._lock_blob(s, item.blob)
                item.place(created)
                row = item.asset
                if keep_existing:
                    values = {c.key: getattr(row, c.key) for c in AssetRow.__table__.columns}
                    await s.execute(
                        self._insert(AssetRow).values(**values).on_conflict_do_nothing()
                    )
                    stored = (
                        await s.execute(select(AssetRow).where(AssetRow.id == row.id))
                    ).scalar_one()
                    out.append((stored, created))
                else:
                    s.add(row)
                    await s.flush()
                    out.append((row, created))
        return out

    # -- reading --------------------------------------------------------------------------
    async def get_blob(self, blob_hash: str) -> BlobRow | None:
        """A blob by hash (hex)."""
        async with self._read() as s:
            row: BlobRow | None = await s.get(BlobRow, blob_hash)
            return row

    async def get_asset(self, asset_id: str) -> tuple[AssetRow, BlobRow] | None:
        """An asset and its blob (expired or not)."""
        query = (
            select(AssetRow, BlobRow)
            .join(BlobRow, BlobRow.hash == AssetRow.blob_hash)
            .where(AssetRow.id == asset_id)
        )
        async with self._read() as s:
            found = (await s.execute(query)).first()
            return (found[0], found[1]) if found is not None else None

    async def assets_of_job(self, job_id: str) -> list[tuple[AssetRow, BlobRow]]:
        """The output assets of a job, in output order."""
        query = (
            select(AssetRow, BlobRow)
            .join(BlobRow, BlobRow.hash == AssetRow.blob_hash)
            .where(AssetRow.job_id == job_id)
            .order_by(AssetRow.output_index)
        )
        async with self._read() as s:
            return [(a, b) for a, b in (await s.execute(query)).all()]

    async def assets_by_ids(self, ids: Iterable[str]) -> dict[str, tuple[AssetRow, BlobRow]]:
        """Assets and their blobs by id (the ones that exist)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        query = (
            select(AssetRow, BlobRow)
            .join(BlobRow, BlobRow.hash == AssetRow.blob_hash)
            .where(AssetRow.id.in_(wanted))
        )
        async with self._read() as s:
            return {a.id: (a, b) for a, b in (await s.execute(query)).all()}

    async def usable_blob(
        self, blob_hash: str, owner: str | None, now: dt.datetime, *, anyone: bool = False
    ) -> BlobRow | None:
        """The blob, when an unexpired asset over it is ``owner``'s (``anyone``: anybody's):
        the blobs a caller may mint from."""
        query = (
            select(BlobRow)
            .join(AssetRow, AssetRow.blob_hash == BlobRow.hash)
            .where(
                BlobRow.hash == blob_hash,
                or_(AssetRow.expires_at.is_(None), AssetRow.expires_at > now),
            )
            .limit(1)
        )
        if not anyone:
            query = query.where(AssetRow.owner == owner)
        async with self._read() as s:
            row: BlobRow | None = (await s.execute(query)).scalars().first()
            return row

    async def same_upload(
        self, owner: str | None, blob_hash: str, file_path: str | None, now: dt.datetime
    ) -> AssetRow | None:
        """An unexpired upload asset of ``owner`` over the blob with this ``file_path``."""
        query = (
            select(AssetRow)
            .where(
                AssetRow.blob_hash == blob_hash,
                AssetRow.job_id.is_(None),
                AssetRow.owner.is_(None) if owner is None else AssetRow.owner == owner,
                AssetRow.file_path.is_(None)
                if file_path is None
                else AssetRow.file_path == file_path,
                or_(AssetRow.expires_at.is_(None), AssetRow.expires_at > now),
            )
            .order_by(AssetRow.created_at)
            .limit(1)
        )
        async with self._read() as s:
            row: AssetRow | None = (await s.execute(query)).scalars().first()
            return row

    async def lock_assets(self, s: Any, ids: Iterable[str]) -> dict[str, AssetRow]:
        """Assets by id, share-locked in the open transaction ``s`` (a job that uses them is
        being written: no delete may slip in between)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        query = select(AssetRow).where(AssetRow.id.in_(wanted)).with_for_update(read=True)
        return {a.id: a for a in (await s.execute(query)).scalars()}

    # -- removing -------------------------------------------------------------------------
    async def delete_asset(
        self, asset_id: str, *, unless_output: bool = True
    ) -> tuple[Literal["deleted", "missing", "in_use"], str | None]:
        """Delete an asset record (never its blob): ``in_use`` while a queued or running job
        uses it as an input, or while it is a job's output (``unless_output``). Returns what
        happened and the asset's blob hash."""
        lock = select(AssetRow).where(AssetRow.id == asset_id).with_for_update()
        users = select(JobRow.uploads).where(JobRow.status.in_(ACTIVE))
        async with self._session() as s, s.begin():
            row: AssetRow | None = (await s.execute(lock)).scalar_one_or_none()
            if row is None:
                return "missing", None
            if unless_output and row.job_id is not None:
                return "in_use", row.blob_hash
            if any(_uses(uploads, asset_id) for uploads in (await s.execute(users)).scalars()):
                return "in_use", row.blob_hash
            await s.execute(delete(AssetRow).where(AssetRow.id == asset_id))
            return "deleted", row.blob_hash

    async def collect_blob(self, blob_hash: str, unlink: Callable[[BlobRow], None]) -> bool:
        """Remove a blob no asset uses: its row, and its file (``unlink``, with the row
        locked). False when an asset still uses it (or it is gone)."""
        lock = select(BlobRow).where(BlobRow.hash == blob_hash).with_for_update()
        used = select(func.count()).select_from(AssetRow).where(AssetRow.blob_hash == blob_hash)
        async with self._session() as s, s.begin():
            row: BlobRow | None = (await s.execute(lock)).scalar_one_or_none()
            if row is None or (await s.execute(used)).scalar_one():
                return False
            await s.execute(delete(BlobRow).where(BlobRow.hash == blob_hash))
            unlink(row)
            return True

    async def expired_assets(self, now: dt.datetime, limit: int = 500) -> list[AssetRow]:
        """Assets whose ``expires_at`` has passed, oldest first."""
        query = (
            select(AssetRow)
            .where(AssetRow.expires_at.is_not(None), AssetRow.expires_at <= now)
            .order_by(AssetRow.expires_at)
            .limit(limit)
        )
        async with self._read() as s:
            return list((await s.execute(query)).scalars())

    async def orphan_blobs(self, limit: int = 500) -> list[str]:
        """Hashes of blobs no asset uses."""
        query = (
            select(BlobRow.hash)
            .outerjoin(AssetRow, AssetRow.blob_hash == BlobRow.hash)
            .where(AssetRow.id.is_(None))
            .limit(limit)
        )
        async with self._read() as s:
            return [str(h) for h in (await s.execute(query)).scalars()]

    # -- job progress ---------------------------------------------------------------------
    async def last_event(self, job_id: str, names: Sequence[str]) -> JobEventRow | None:
        """A job's newest stored event among ``names``."""
        query = (
            select(JobEventRow)
            .where(JobEventRow.job_id == job_id, JobEventRow.event.in_(list(names)))
            .order_by(JobEventRow.id.desc())
            .limit(1)
        )
        async with self._read() as s:
            row: JobEventRow | None = (await s.execute(query)).scalars().first()
            return row

    async def last_event_id(self, job_id: str) -> int:
        """The id of a job's newest stored event (0 without any)."""
        query = select(func.max(JobEventRow.id)).where(JobEventRow.job_id == job_id)
        async with self._read() as s:
            return int((await s.execute(query)).scalar_one() or 0)
