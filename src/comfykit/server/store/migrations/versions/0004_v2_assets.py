"""Comfy API v2: blobs (content-addressed bytes), assets over them, idempotency keys.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from comfykit.server.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the ``blobs``, ``assets`` and ``idempotency_keys`` tables."""
    op.create_table(
        "blobs",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("stored_name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "assets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("blob_hash", sa.String(64), sa.ForeignKey("blobs.hash"), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("file_path", sa.String(1024), nullable=True),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("node_id", sa.String(200), nullable=True),
        sa.Column("output_index", sa.Integer, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_assets_blob_hash", "assets", ["blob_hash"])
    op.create_index("ix_assets_job_id", "assets", ["job_id"])
    op.create_index("ix_assets_expires_at", "assets", ["expires_at"])
    op.create_index("ix_assets_owner_blob", "assets", ["owner", "blob_hash"])
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("resource_id", sa.String(36), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    """Remove what :func:`upgrade` added."""
    op.drop_table("idempotency_keys")
    op.drop_table("assets")
    op.drop_table("blobs")
