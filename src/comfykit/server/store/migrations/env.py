"""Alembic environment of the job store: run on the connection the service passes in
(``config.attributes["connection"]``), so migrations work on any async engine."""

from __future__ import annotations

from alembic import context

from comfykit.server.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the service always passes its connection
    raise RuntimeError("run the store's migrations through comfykit.server.store.migrate()")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
