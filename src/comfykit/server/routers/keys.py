"""``/api/v1/keys`` (admin: API keys) and ``/api/v1/me`` (the caller, its usage and limits)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Response
from fastapi.routing import APIRoute

from comfykit.server.auth import Policy, Principal
from comfykit.server.limits import day_start, next_reset, quota_for
from comfykit.server.routers._common import errors
from comfykit.server.schemas import (
    KeyCreateBody,
    KeyCreated,
    KeyList,
    KeyResponse,
    MeResponse,
    UsageModel,
)
from comfykit.server.store import utcnow

if TYPE_CHECKING:
    from comfykit.server.state import ServiceState

__all__ = ["build"]


def build(state: ServiceState, route_class: type[APIRoute]) -> APIRouter:
    """The key and caller routes of one service."""
    router = APIRouter(tags=["users"], route_class=route_class)
    keys = state.keys
    admin = [Depends(state.auth.dependency(Policy.ADMIN))]
    user = Depends(state.auth.dependency(Policy.USER))

    @router.get("/api/v1/keys", response_model=KeyList, responses=errors(), dependencies=admin,
                summary="List API keys (admin)")  # fmt: skip
    async def list_keys() -> KeyList:
        """Every key with its role, owner and times; never the keys themselves."""
        return KeyList(keys=await keys.list())

    @router.post("/api/v1/keys", status_code=201, response_model=KeyCreated, responses=errors(),
                 dependencies=admin, summary="Create an API key (admin)")  # fmt: skip
    async def create_key(body: KeyCreateBody, response: Response) -> KeyCreated:
        """A new key: ``key`` is in this answer only (the service keeps its hash)."""
        created = await keys.create(body.name, body.role, body.owner)
        response.headers["Cache-Control"] = "no-store"
        return created

    @router.delete("/api/v1/keys/{key_id}", response_model=KeyResponse, responses=errors(),
                   dependencies=admin, summary="Revoke an API key (admin)")  # fmt: skip
    async def revoke_key(key_id: str) -> KeyResponse:
        """Revoke a key at once (on other replicas within a few seconds)."""
        return await keys.revoke(key_id)

    @router.get("/api/v1/me", response_model=MeResponse, responses=errors(),
                summary="The caller: role, usage and limits")  # fmt: skip
    async def me(who: Principal = user) -> MeResponse:
        """Who the credentials say you are, today's images against your quota, your active
        jobs against the cap, and the rate limit."""
        s = state.settings
        now = utcnow()
        quota = quota_for(s, who)
        used = await state.store.usage(who.user, day_start(now)) if who.user else None
        images = used.images if used else 0
        return MeResponse(
            user=who.user, role=who.role, authenticated_by=who.via, key_id=who.key_id,
            usage=UsageModel(
                images_today=images, daily_image_quota=quota,
                remaining_images=None if quota is None else max(0, quota - images),
                resets_at=next_reset(now), active_jobs=used.active if used else 0,
                max_active_jobs=None if who.is_admin else s.user_max_queued,
                rate_limit=s.rate_limit,
            ),
        )  # fmt: skip

    return router
