"""The durable job store: SQLAlchemy 2 (async) on SQLite (WAL) or PostgreSQL, migrated with
Alembic at start-up. The store is the truth: every state change is written here first."""

from comfykit.server.store.models import (
    ApiKeyRow,
    BatchRow,
    DeliveryRow,
    JobEventRow,
    JobRow,
    TemplateRow,
    UploadRow,
    utcnow,
)
from comfykit.server.store.repository import FINISHED, Store, Transaction, migrate

__all__ = [
    "FINISHED",
    "ApiKeyRow",
    "BatchRow",
    "DeliveryRow",
    "JobEventRow",
    "JobRow",
    "Store",
    "TemplateRow",
    "Transaction",
    "UploadRow",
    "migrate",
    "utcnow",
]
