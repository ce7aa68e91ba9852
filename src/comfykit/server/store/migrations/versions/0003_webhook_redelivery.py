"""Webhook redelivery: the attempts a delivery had made when it was last redelivered.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``webhook_deliveries.attempt_base`` (0 for the deliveries that exist)."""
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("attempt_base", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    """Remove what :func:`upgrade` added."""
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("attempt_base")
