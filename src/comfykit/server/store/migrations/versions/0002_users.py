"""Users: API keys, job and upload owners, quota image counts, webhooks and their deliveries.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from comfykit.server.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the owner, image and webhook columns and the key and delivery tables."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(200), nullable=True))
        batch.add_column(sa.Column("images", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("webhook_url", sa.Text, nullable=True))
    op.create_index("ix_jobs_owner_created", "jobs", ["owner", "created_at"])
    with op.batch_alter_table("templates") as batch:
        batch.add_column(sa.Column("webhook_url", sa.Text, nullable=True))
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("owner", sa.String(200), nullable=True))
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("attempts_log", sa.JSON, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_webhook_deliveries_job_id", "webhook_deliveries", ["job_id"])
    op.create_index("ix_deliveries_status_due", "webhook_deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    """Remove what :func:`upgrade` added."""
    op.drop_table("webhook_deliveries")
    op.drop_table("api_keys")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("templates") as batch:
        batch.drop_column("webhook_url")
    op.drop_index("ix_jobs_owner_created", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("webhook_url")
        batch.drop_column("images")
        batch.drop_column("owner")
