"""Every use of a dependency's private API, each with a fallback to its public API.

comfykit reaches past httpx's and websockets' public API in three places, all for speed or for
a bug workaround, never for correctness. Each lives here, checks that the private name is still
there and otherwise does what the public API does (the openai SDK's ``_compat.py`` is the
model). ``tests/unit/test_compat.py`` fails, naming the attribute and the installed version,
when an upgrade removes one, so the fallback is never taken silently in CI:

* ``httpx.Client._transport_for_url`` / ``httpx.AsyncClient._transport_for_url``: the transport
  httpx would send a request through, used to skip ``send()``'s per-request overhead (fallback:
  ``send()``).
* ``httpx.Client._transport`` and ``httpx.HTTPTransport._pool``: where the sync client's
  thread-safe pool (:mod:`comfykit._backends.guarded_pool`) is swapped in (fallback: httpx's own
  pool, without the guard).
* ``websockets.proxy.get_proxy``: whether the environment routes a WebSocket through a proxy
  (fallback: any proxy in the environment counts, and ``websockets.sync`` decides).
"""

from __future__ import annotations

import urllib.request
from typing import TYPE_CHECKING, overload

import httpcore
import httpx

if TYPE_CHECKING:
    from websockets.uri import WebSocketURI

__all__ = ["replace_pool", "replace_transport", "transport_for_url", "ws_proxy_configured"]


@overload
def transport_for_url(
    client: httpx.AsyncClient, url: httpx.URL
) -> httpx.AsyncBaseTransport | None: ...
@overload
def transport_for_url(client: httpx.Client, url: httpx.URL) -> httpx.BaseTransport | None: ...
def transport_for_url(
    client: httpx.Client | httpx.AsyncClient, url: httpx.URL
) -> httpx.BaseTransport | httpx.AsyncBaseTransport | None:
    """The transport ``client`` sends requests for ``url`` through (its own, or the mount of a
    proxy from the environment); ``None`` when httpx no longer tells: then send with
    ``client.send()``."""
    pick = getattr(client, "_transport_for_url", None)
    if pick is None:
        return None
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport = pick(url)
    return transport


def replace_transport(client: httpx.Client, transport: httpx.BaseTransport) -> bool:
    """Make ``transport`` the one ``client`` uses for direct connections (its proxy mounts stay),
    closing httpx's own (unused so far). False, with nothing changed, when httpx keeps it
    elsewhere.

    Passing ``transport=`` to ``httpx.Client`` instead would make httpx ignore the proxies of
    the environment, which it mounts next to its own transport.
    """
    return _swap(client, "_transport", httpx.BaseTransport, transport)


def replace_pool(transport: httpx.HTTPTransport, pool: httpcore.ConnectionPool) -> bool:
    """Make ``transport`` send through ``pool`` (httpx's request and error mapping over a pool
    built by the caller), closing the one it built. False, with nothing changed, when httpx no
    longer keeps an httpcore pool in ``_pool``."""
    return _swap(transport, "_pool", httpcore.ConnectionPool, pool)


def _swap(
    owner: object,
    name: str,
    kind: type[httpx.BaseTransport] | type[httpcore.ConnectionPool],
    new: httpx.BaseTransport | httpcore.ConnectionPool,
) -> bool:
    """Close ``owner.<name>`` and put ``new`` in its place, if it is a ``kind``."""
    old = getattr(owner, name, None)
    if not isinstance(old, kind):
        return False
    old.close()
    setattr(owner, name, new)
    return True


def ws_proxy_configured(uri: WebSocketURI) -> bool:
    """Whether websockets would open ``uri`` through a proxy from the environment.

    Without ``websockets.proxy.get_proxy``, any proxy in the environment counts: the caller
    then lets ``websockets.sync`` connect, which applies the proxy (and ``no_proxy``) itself.
    """
    try:
        from websockets.proxy import get_proxy
    except ImportError:
        return bool(urllib.request.getproxies())
    return get_proxy(uri) is not None
