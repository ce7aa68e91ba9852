"""The store's queries about leases: which replica runs a dispatched job, renewed while that
replica lives, taken over by another once it lapses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select, update

from comfykit.server.store.models import JobRow, utcnow

__all__ = ["LeaseQueries"]

_ACTIVE = ("queued", "processing")


class LeaseQueries:
    """Mixed into :class:`~comfykit.server.store.Store`."""

    url: str

    def _session(self) -> Any:
        raise NotImplementedError

    async def renew_leases(
        self, owner: str, job_ids: Sequence[str], seconds: float
    ) -> list[tuple[str, bool]]:
        """Extend ``owner``'s leases on ``job_ids`` (those still active and still its own);
        ``(job id, cancel requested)`` of each renewed one. A job missing from the answer is
        no longer this replica's to run (another took it over, or it ended)."""
        if not job_ids:
            return []
        query = (
            update(JobRow)
            .where(
                JobRow.id.in_(list(job_ids)),
                JobRow.lease_owner == owner,
                JobRow.status.in_(_ACTIVE),
            )
            .values(lease_expires_at=utcnow() + dt.timedelta(seconds=seconds))
            .returning(JobRow.id, JobRow.cancel_requested)
            .execution_options(synchronize_session=False)
        )
        async with self._session() as s, s.begin():
            return [(str(i), bool(c)) for i, c in (await s.execute(query)).all()]

    async def take_over(
        self, owner: str, seconds: float, *, everything: bool = False, limit: int = 100
    ) -> list[JobRow]:
        """Dispatched, unfinished jobs whose lease lapsed (their replica died), now leased to
        ``owner`` for ``seconds``: each is re-attached by its prompt id (never resubmitted
        blindly). ``everything``: whatever their leases say (one process owning the store,
        starting up). On PostgreSQL the rows are locked with ``SKIP LOCKED``, so two replicas
        never take the same job."""
        now = utcnow()
        expired = or_(
            JobRow.lease_expires_at < now,
            # never leased (dispatched before leases existed): once a lease's time has passed
            and_(
                JobRow.lease_expires_at.is_(None),
                or_(
                    JobRow.dispatched_at.is_(None),
                    JobRow.dispatched_at < now - dt.timedelta(seconds=seconds),
                ),
            ),
        )
        if everything:
            expired = or_(expired, JobRow.lease_expires_at.is_not(None))
        lapsed = (
            select(JobRow.id)
            .where(JobRow.status.in_(_ACTIVE), JobRow.server_url.is_not(None), expired)
            .order_by(JobRow.seq)
            .limit(limit)
        )
        if self.url.startswith("postgresql"):
            lapsed = lapsed.with_for_update(skip_locked=True)
        query = (
            update(JobRow)
            .where(JobRow.id.in_(lapsed.scalar_subquery()), expired)
            .values(lease_owner=owner, lease_expires_at=now + dt.timedelta(seconds=seconds))
            .returning(JobRow)
            .execution_options(synchronize_session=False)
        )
        async with self._session() as s, s.begin():
            rows = list((await s.execute(query)).scalars())
        rows.sort(key=lambda r: r.seq)
        return rows
