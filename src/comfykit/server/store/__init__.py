"""The durable job store: SQLAlchemy 2 (async) on SQLite (WAL) or PostgreSQL, migrated with
Alembic at start-up. The store is the truth: every state change is written here first."""

from comfykit.server.store.models import (
    ApiKeyRow,
    AssetRow,
    BatchRow,
    BlobRow,
    DeliveryRow,
    IdempotencyKeyRow,
    JobEventRow,
    JobRow,
    TemplateRow,
    UploadRow,
    utcnow,
)
from comfykit.server.store.repository import FINISHED, Store, Transaction, migrate
from comfykit.server.store.v2 import (
    IdempotencyKeyReused,
    KeyClaim,
    Mint,
    asset_ref,
    ref_asset_id,
)

__all__ = [
    "FINISHED",
    "ApiKeyRow",
    "AssetRow",
    "BatchRow",
    "BlobRow",
    "DeliveryRow",
    "IdempotencyKeyReused",
    "IdempotencyKeyRow",
    "JobEventRow",
    "JobRow",
    "KeyClaim",
    "Mint",
    "Store",
    "TemplateRow",
    "Transaction",
    "UploadRow",
    "asset_ref",
    "migrate",
    "ref_asset_id",
    "utcnow",
]
