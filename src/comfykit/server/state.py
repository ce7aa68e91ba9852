"""The state of one service instance (one router): settings, store, event hub, metrics,
storage, dispatcher and services. Nothing is global: two routers made with different settings
in one process each have their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from comfykit import AsyncComfyClient
from comfykit.server.auth import Authenticator
from comfykit.server.bridge import make_bridge
from comfykit.server.events import EventHub
from comfykit.server.limits import RateLimiter
from comfykit.server.metrics import Metrics
from comfykit.server.services.blobs import BlobStore
from comfykit.server.services.dispatcher import Dispatcher
from comfykit.server.services.files import Files
from comfykit.server.services.jobs import JobService
from comfykit.server.services.keys import KeyService
from comfykit.server.services.templates import TemplateService
from comfykit.server.settings import Settings
from comfykit.server.store import Store
from comfykit.server.v2.assets import AssetService
from comfykit.server.v2.jobs import V2Jobs
from comfykit.server.webhooks import WebhookWorker

__all__ = ["ServiceState"]

log = logging.getLogger("comfykit.server")
access_log = logging.getLogger("comfykit.server.access")


class ServiceState:
    """Everything one mounted service holds; opened and closed by its lifespan."""

    def __init__(self, settings: Settings, *, client: AsyncComfyClient | None = None) -> None:
        self.settings = settings
        self.token = uuid.uuid4().hex[:8]
        self.store = Store(settings.database_url)
        self.hub = EventHub()
        self.bridge = make_bridge(settings.database_url)
        self.hub.relay = self.bridge.events
        self.metrics = Metrics()
        self.files = Files(
            settings.storage_path, self.store, max_image_pixels=settings.max_image_pixels
        )
        self.webhooks = WebhookWorker(settings, self.store, self.metrics)
        self.blobs = BlobStore(settings, self.files, self.store)
        self.dispatcher = Dispatcher(
            settings, self.store, self.hub, self.files, self.metrics, client=client,
            webhooks=self.webhooks, blobs=self.blobs,
        )  # fmt: skip
        self.dispatcher.remote_cancel = self.bridge.cancel
        self.jobs = JobService(
            settings, self.store, self.hub, self.dispatcher, self.files, webhooks=self.webhooks
        )
        #: Comfy API v2 (``/api/v2``): assets over the blobs, and the v2 face of the jobs.
        self.assets = AssetService(settings, self.store, self.blobs)
        self.v2 = V2Jobs(settings, self.store, self.hub, self.jobs, self.assets, self.blobs)
        self.templates = TemplateService(settings, self.store, self.dispatcher, self.jobs)
        self.limiter = RateLimiter(settings)
        self.auth = Authenticator(settings, self.store, self.limiter)
        self.keys = KeyService(self.store, self.auth)
        self._opened = 0
        self._lock = asyncio.Lock()
        self._cleanup: asyncio.Task[None] | None = None
        self.last_cleanup: dict[str, Any] | None = None

    async def open(self) -> None:
        """Open the store (migrating it), the storage dir, the dispatcher and the webhook
        worker (idempotent: counted, so a router's own lifespan and an explicit one can both
        run)."""
        async with self._lock:
            self._opened += 1
            if self._opened > 1:
                return
            await self.store.open()
            self.files.prepare()
            self.blobs.prepare()
            await self.bridge.start(self.hub.poke, self.dispatcher.cancel_soon)
            await self.dispatcher.start()
            await self.webhooks.start()
            self._cleanup = asyncio.get_running_loop().create_task(self._cleanup_loop())

    async def close(self) -> None:
        """Stop the dispatcher and the webhook worker and close the store (once the last
        opener closes)."""
        async with self._lock:
            self._opened -= 1
            if self._opened > 0:
                return
            if self._cleanup is not None:
                self._cleanup.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._cleanup
                self._cleanup = None
            await self.dispatcher.stop()
            await self.bridge.stop()
            await self.limiter.close()
            await self.webhooks.stop()
            await self.store.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ServiceState]:
        """``open()`` … ``close()`` as an async context manager."""
        await self.open()
        try:
            yield self
        finally:
            await self.close()

    async def run_cleanup(self) -> dict[str, Any]:
        """Apply the retention now (and remove expired assets, the blobs no asset uses and
        expired idempotency keys: ``assets``); what was deleted."""
        days = self.settings.retention_days
        if days is None:
            report: dict[str, Any] = {"deleted_files": [], "freed_bytes": 0, "jobs": [],
                                      "uploads": []}  # fmt: skip
        else:
            report = (await self.files.cleanup_old_files(days)).as_dict()
        report["assets"] = await self.blobs.cleanup()
        self.last_cleanup = report
        if report["deleted_files"]:
            log.info("retention cleanup: %s", json.dumps(report))
        return report

    async def _cleanup_loop(self) -> None:
        while True:
            try:
                await self.run_cleanup()
            except Exception:
                log.exception("retention cleanup failed")
            await asyncio.sleep(self.settings.cleanup_interval_seconds)

    def observe(
        self, method: str, route: str, path: str, status: int, seconds: float, request_id: str
    ) -> None:
        """Record one answered request: metrics and one JSON access-log line."""
        self.metrics.observe_request(route, method, status, seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        access_log.info(
            json.dumps(
                {
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
                separators=(",", ":"),
            )
        )
