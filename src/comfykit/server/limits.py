"""Request rate limits (the `limits` library) and the per-user image quotas and queue caps.

Rate limits: ``rate_limit`` (e.g. ``60/minute``; several joined by ``;``) per API key or token
subject, per client IP where no credential is given, counted with `limits`' moving window (the
exact count of the caller's requests in the last period: a bucket of N tokens, each coming back
one period after it was spent). In memory for one process; ``redis://`` storage so replicas
share one budget. Every limited response carries ``RateLimit-Limit``, ``RateLimit-Remaining``
and ``RateLimit-Reset``; a refused one is 429 ``RATE_LIMITED`` with ``Retry-After``.

Quotas: images per UTC day by role (``quota_free``, ``quota_pro``; admin unlimited), counted
from the job store, so they hold across restarts and replicas.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import TYPE_CHECKING, Any

from comfykit.server.errors import ServiceError

if TYPE_CHECKING:
    from comfykit.server.auth import Principal
    from comfykit.server.settings import Settings

__all__ = ["RateLimiter", "day_start", "next_reset", "quota_for"]


def _storage_uri(uri: str) -> str:
    """``redis://`` and friends as the async storage URIs of `limits`."""
    if uri.startswith("async+"):
        return uri
    return "async+" + uri


class RateLimiter:
    """One service's rate limiter (nothing global: each router has its own)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._items: list[Any] = []
        self._limiter: Any = None
        self._storage: Any = None
        if settings.rate_limit:
            from limits import parse_many

            self._items = list(parse_many(settings.rate_limit))

    @property
    def enabled(self) -> bool:
        """Whether a rate limit is configured."""
        return bool(self._items)

    def _open(self) -> Any:
        if self._limiter is None:
            from limits.aio.strategies import MovingWindowRateLimiter
            from limits.storage import storage_from_string

            uri = _storage_uri(self.settings.rate_limit_storage)
            options: dict[str, Any] = {}
            if "redis" in uri:
                options["implementation"] = "redispy"
            self._storage = storage_from_string(uri, **options)
            self._limiter = MovingWindowRateLimiter(self._storage)
        return self._limiter

    async def hit(self, bucket: str) -> dict[str, str]:
        """Count one request of ``bucket``; the ``RateLimit-*`` headers. 429 ``RATE_LIMITED``
        (with ``Retry-After``) when a limit is spent; 503 when the shared storage is down."""
        limiter = self._open()
        headers: dict[str, str] = {}
        tightest: tuple[int, int, float] | None = None
        try:
            for item in self._items:
                allowed = await limiter.hit(item, "comfykit", bucket)
                stats = await limiter.get_window_stats(item, "comfykit", bucket)
                reset = max(0.0, stats.reset_time - time.time())
                if not allowed:
                    wait = max(1, math.ceil(reset))
                    raise ServiceError(
                        429, f"rate limit of {item} exceeded; retry in {wait} s",
                        code="RATE_LIMITED",
                        details={"limit": str(item), "retry_after": wait},
                        headers={
                            "Retry-After": str(wait),
                            "RateLimit-Limit": str(item.amount),
                            "RateLimit-Remaining": "0",
                            "RateLimit-Reset": str(wait),
                        },
                    )  # fmt: skip
                if tightest is None or stats.remaining < tightest[1]:
                    tightest = (item.amount, stats.remaining, reset)
        except ServiceError:
            raise
        except Exception as exc:
            raise ServiceError(
                503, "the rate-limit storage is unreachable", code="RATE_LIMIT_UNAVAILABLE"
            ) from exc
        if tightest is not None:
            headers["RateLimit-Limit"] = str(tightest[0])
            headers["RateLimit-Remaining"] = str(tightest[1])
            headers["RateLimit-Reset"] = str(math.ceil(tightest[2]))
        return headers

    async def close(self) -> None:
        """Release the storage's connections."""
        storage, self._storage, self._limiter = self._storage, None, None
        # `limits` has no close(): its Redis storage keeps a redis-py client on `bridge`.
        client = getattr(getattr(storage, "bridge", None), "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()
            pool = getattr(client, "connection_pool", None)
            if pool is not None:
                await pool.disconnect()


def day_start(now: dt.datetime | None = None) -> dt.datetime:
    """The last UTC midnight (quotas count from it)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def next_reset(now: dt.datetime | None = None) -> dt.datetime:
    """The next UTC midnight (when quotas start again)."""
    return day_start(now) + dt.timedelta(days=1)


def quota_for(settings: Settings, who: Principal) -> int | None:
    """Images a day ``who`` may make (``None``: unlimited)."""
    if who.is_admin:
        return None
    return settings.quota_pro if who.role == "pro" else settings.quota_free
