"""API keys: create (the key shown once), list, revoke. Used by the admin routes and by the
``comfykit keys`` commands."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from comfykit.server.auth import ROLES, hash_key, new_api_key
from comfykit.server.errors import ServiceError
from comfykit.server.schemas import KeyCreated, KeyResponse
from comfykit.server.store import ApiKeyRow, utcnow

if TYPE_CHECKING:
    from comfykit.server.auth import Authenticator
    from comfykit.server.store import Store

__all__ = ["KeyService", "key_view"]

#: How many of a key's characters are kept to recognise it (``ck_`` and 5 random ones).
PREFIX_LENGTH = 8


def key_view(row: ApiKeyRow) -> KeyResponse:
    """A key as listed."""
    return KeyResponse(
        key_id=row.id, name=row.name, role=row.role,  # type: ignore[arg-type]
        owner=row.owner, prefix=row.prefix, created_at=row.created_at,
        last_used_at=row.last_used_at, revoked_at=row.revoked_at,
    )  # fmt: skip


class KeyService:
    """Everything done with API keys."""

    def __init__(self, store: Store, auth: Authenticator | None = None) -> None:
        self.store = store
        self.auth = auth

    async def create(self, name: str, role: str, owner: str | None = None) -> KeyCreated:
        """A new key for ``owner`` (default: ``name``); the key itself is in the answer only."""
        name = name.strip()
        if not name:
            raise ServiceError(400, "name must not be empty", details=[{"field": "name"}])
        if role not in ROLES:
            raise ServiceError(
                400, f"role must be one of {', '.join(ROLES)}", details=[{"field": "role"}]
            )
        key = new_api_key()
        row = ApiKeyRow(
            id=str(uuid.uuid4()), name=name, role=role, owner=(owner or name).strip(),
            key_hash=hash_key(key), prefix=key[:PREFIX_LENGTH], created_at=utcnow(),
            last_used_at=None, revoked_at=None,
        )  # fmt: skip
        await self.store.add_api_key(row)
        return KeyCreated(**key_view(row).model_dump(), key=key)

    async def list(self) -> list[KeyResponse]:
        """Every key, oldest first."""
        return [key_view(r) for r in await self.store.list_api_keys()]

    async def revoke(self, key_id: str) -> KeyResponse:
        """Revoke a key at once (404 when unknown; revoking twice is harmless)."""
        row = await self.store.revoke_api_key(key_id, utcnow())
        if row is None:
            raise ServiceError(404, f"no API key {key_id}")
        if self.auth is not None:
            self.auth.forget(key_id)
        return key_view(row)
