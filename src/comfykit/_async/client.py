"""``AsyncComfyClient``: the connection and routes of ``AsyncClientCore`` with the high-level
calls of ``AsyncGenerateMixin``.

The blocking ``ComfyClient`` is generated from this file by ``scripts/unasync.py``.
"""

from __future__ import annotations

from comfykit._async._core import AsyncClientCore
from comfykit._async.generate import AsyncGenerateMixin

__all__ = ["AsyncComfyClient"]


class AsyncComfyClient(AsyncClientCore, AsyncGenerateMixin):
    """Async client for one ComfyUI server.

    Args:
        base_url: the server, e.g. ``"http://127.0.0.1:8188"`` (default: ``$COMFYUI_URL`` or that).
        timeout: per-request timeout in seconds or an ``httpx.Timeout``.
        max_retries: retries of idempotent requests and connection failures.
        headers: extra headers for every HTTP request and the WebSocket handshake.
        auth: ``(user, password)`` for Basic auth, a Bearer token string, or a header mapping.
        ws: use the WebSocket for job events (``False``: poll ``/history`` instead).
        validate: check every submitted graph against the server's node catalog first (the
            default on ComfyUI; the v2 API has no catalog, so ``validate=True`` there raises
            :class:`~comfykit.UnsupportedOperationError`: its server checks every graph).
        client_id: the WebSocket client id (a fresh one by default).
        max_connections: size of the HTTP connection pool. ComfyUI runs one prompt at a time, and
            a small pool is much cheaper for many jobs in flight than a large one (httpcore scans
            every pooled connection for each request).
        http_client: an ``httpx.AsyncClient`` to use (not closed by ``close()``); requests still
            go to ``base_url``, whatever the client's own base URL.
        api: the API the server speaks: ``"comfyui"`` (the default: ComfyUI's own routes),
            ``"v2"`` (Comfy API v2, ``/api/v2``: Comfy Cloud, comfykit's service) or ``"auto"``
            (detected once, on first use). On v2, submit, results, events, cancel, uploads and
            downloads work as on ComfyUI; what v2 has no route for raises
            :class:`~comfykit.UnsupportedOperationError`. :attr:`api` says which is in use.

    Use it as ``async with AsyncComfyClient(url) as comfy: ...`` or call :meth:`close`.
    """
