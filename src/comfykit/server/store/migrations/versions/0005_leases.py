"""Leases: which replica runs a dispatched job, and until when (renewed while it lives).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from comfykit.server.store.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``jobs.lease_owner`` and ``jobs.lease_expires_at`` (none for the jobs that exist:
    a dispatched job without a lease is taken over by the first replica that looks)."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(40), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    """Remove what :func:`upgrade` added."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
