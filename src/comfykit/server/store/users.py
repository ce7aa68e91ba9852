"""The store's queries about users: API keys, and the usage quotas are counted from."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, text, update

from comfykit.server.store.models import ApiKeyRow, JobRow

__all__ = ["UserQueries", "Usage"]

#: Job states whose images count against a quota (failed and cancelled jobs give them back).
COUNTED = ("queued", "processing", "completed")
ACTIVE = ("queued", "processing")


class Usage:
    """What one user has used: images since a time, jobs queued or running."""

    __slots__ = ("active", "images")

    def __init__(self, images: int, active: int) -> None:
        self.images = images
        self.active = active


class UserQueries:
    """Mixed into :class:`~comfykit.server.store.Store`."""

    url: str

    def _session(self) -> Any:
        raise NotImplementedError

    def _read(self) -> Any:
        raise NotImplementedError

    # -- API keys -------------------------------------------------------------------------
    async def add_api_key(self, row: ApiKeyRow) -> None:
        """Record a new key (its hash)."""
        async with self._session() as s, s.begin():
            s.add(row)

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKeyRow | None:
        """The key with this hash."""
        async with self._read() as s:
            query = select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash)
            row: ApiKeyRow | None = (await s.execute(query)).scalar_one_or_none()
            return row

    async def get_api_key(self, key_id: str) -> ApiKeyRow | None:
        """A key by id."""
        async with self._read() as s:
            row: ApiKeyRow | None = await s.get(ApiKeyRow, key_id)
            return row

    async def list_api_keys(self) -> list[ApiKeyRow]:
        """Every key, oldest first."""
        async with self._read() as s:
            query = select(ApiKeyRow).order_by(ApiKeyRow.created_at)
            return list((await s.execute(query)).scalars())

    async def revoke_api_key(self, key_id: str, when: dt.datetime) -> ApiKeyRow | None:
        """Revoke a key (a revoked one keeps its first revocation time)."""
        query = (
            update(ApiKeyRow)
            .where(ApiKeyRow.id == key_id)
            .values(revoked_at=func.coalesce(ApiKeyRow.revoked_at, when))
            .returning(ApiKeyRow)
            .execution_options(synchronize_session=False)
        )
        async with self._session() as s, s.begin():
            row: ApiKeyRow | None = (await s.execute(query)).scalar_one_or_none()
            return row

    async def touch_api_key(self, key_id: str, when: dt.datetime) -> None:
        """Record that a key was used."""
        query = update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=when)
        async with self._session() as s, s.begin():
            await s.execute(query)

    # -- usage ----------------------------------------------------------------------------
    async def lock_user(self, s: Any, owner: str) -> None:
        """Serialise quota checks of one user across replicas (PostgreSQL: a transaction-scoped
        advisory lock; SQLite has a single writer)."""
        if self.url.startswith("postgresql"):
            lock = text("SELECT pg_advisory_xact_lock(hashtext(:owner))")
            await s.execute(lock, {"owner": owner})

    @staticmethod
    async def usage_in(s: Any, owner: str, since: dt.datetime) -> Usage:
        """A user's images since ``since`` and active jobs, read in session ``s``."""
        images = select(func.coalesce(func.sum(JobRow.images), 0)).where(
            JobRow.owner == owner, JobRow.created_at >= since, JobRow.status.in_(COUNTED)
        )
        active = select(func.count()).where(JobRow.owner == owner, JobRow.status.in_(ACTIVE))
        return Usage(
            int((await s.execute(images)).scalar_one()),
            int((await s.execute(active)).scalar_one()),
        )

    async def usage(self, owner: str, since: dt.datetime) -> Usage:
        """A user's images since ``since`` and active jobs."""
        async with self._read() as s:
            return await self.usage_in(s, owner, since)
