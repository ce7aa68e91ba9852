"""The job store's tables (SQLAlchemy 2 declarative models; the same schema on SQLite and
PostgreSQL, created by the Alembic migrations next to this module)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ApiKeyRow",
    "AssetRow",
    "Base",
    "BatchRow",
    "BlobRow",
    "DeliveryRow",
    "IdempotencyKeyRow",
    "JobEventRow",
    "JobRow",
    "TemplateRow",
    "UploadRow",
    "utcnow",
]


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, _dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: dt.datetime | None, _dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""


class BatchRow(Base):
    """A batch of generation jobs submitted together."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobRow(Base):
    """One job: what to run, where it is, what it produced.

    ``seq`` orders jobs (the service's queue and the newest-first listing); ``prompt_id`` is the
    client prompt id ComfyUI knows the job by, chosen before anything is sent. ``server_url`` is
    set when the dispatcher hands the job to a ComfyUI and cleared when it is requeued.
    """

    __tablename__ = "jobs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    prompt_id: Mapped[str] = mapped_column(String(36), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    workflow: Mapped[dict[str, Any]] = mapped_column(JSON)
    uploads: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    batch_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("batches.id"), nullable=True, index=True
    )
    template_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    server_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Who submitted it (an API key's owner or a token's subject; ``None`` without auth).
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: Images the job counts against its owner's daily quota (its outputs once completed).
    images: Mapped[int] = mapped_column(Integer, default=1)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The replica running the dispatched job, and until when (it renews the lease while it
    #: lives; once it lapses another replica takes the job over).
    lease_owner: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_jobs_status_seq", "status", "seq"),
        Index("ix_jobs_owner_created", "owner", "created_at"),
    )


class JobEventRow(Base):
    """One event of a job, as sent on its event stream (the id is the SSE event id)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    event: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TemplateRow(Base):
    """A workflow template: an API-format workflow and its declared parameters."""

    __tablename__ = "templates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    workflow: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UploadRow(Base):
    """An uploaded image or mask, stored under a generated name in the storage dir."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    stored_name: Mapped[str] = mapped_column(String(100))
    original_name: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)


class ApiKeyRow(Base):
    """An API key: only its SHA-256 hash is kept (keys are 256 random bits, so a plain hash
    cannot be reversed by search), with who owns it, its role and when it was used."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The key's first characters, shown in listings so a key can be recognised.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DeliveryRow(Base):
    """One webhook message for a job (its id is the ``webhook-id``) and its delivery state:
    ``pending`` (due at ``next_attempt_at``), ``delivered`` or ``failed`` (attempts spent).
    ``attempts_log`` keeps every attempt (time, HTTP status or error, duration). A redelivery
    sets ``attempt_base`` to the attempts made so far: the attempt limit counts from there.
    While a sender holds a pending delivery, ``next_attempt_at`` is its lease's end."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempts_log: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempt_base: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_deliveries_status_due", "status", "next_attempt_at"),)


class BlobRow(Base):
    """Bytes the service holds once, whatever the number of assets over them: named by their
    BLAKE3 hash (hex), kept in the storage dir at ``stored_name``."""

    __tablename__ = "blobs"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(100))
    stored_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AssetRow(Base):
    """A user's record over a blob (Comfy API v2 assets): an upload, or an output of the job
    ``job_id`` (its ``output_index``). Deleting one never deletes bytes another still uses."""

    __tablename__ = "assets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    blob_hash: Mapped[str] = mapped_column(String(64), ForeignKey("blobs.hash"), index=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    file_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    content_type: Mapped[str] = mapped_column(String(100))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    node_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    output_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: When retention removes it (``None``: never).
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)

    __table_args__ = (Index("ix_assets_owner_blob", "owner", "blob_hash"),)


class IdempotencyKeyRow(Base):
    """A claimed ``Idempotency-Key`` of one caller for one operation (``scope``): written in the
    transaction that creates what the request made (``resource_id``), so a key is claimed
    exactly when that exists; reusable once ``expires_at`` has passed."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(36))
    claimed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
