"""``comfykit._compat``: the private names of httpx and websockets it relies on, and its fallbacks.

The first tests fail loudly when an upgrade removes a private name: comfykit would still work
through the fallback, but slower or without the sync pool's guard, and nobody would notice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import httpcore
import httpx
import pytest
from websockets.uri import parse_uri

from comfykit import AsyncComfyClient, ComfyClient, _compat
from comfykit._backends import guarded_pool
from comfykit._backends.guarded_pool import GuardedTransport

URL = "http://127.0.0.1:8188"


def removed(dist: str, name: str, fallback: str) -> str:
    return (
        f"{dist} {version(dist)} no longer has {name}: comfykit._compat now falls back to "
        f"{fallback}. Find its new place in {dist} (or accept the fallback) and update "
        "src/comfykit/_compat.py and this test."
    )


@pytest.mark.parametrize("cls", [httpx.Client, httpx.AsyncClient])
def test_httpx_still_picks_a_transport_per_url(cls: type[httpx.Client | httpx.AsyncClient]) -> None:
    assert callable(getattr(cls, "_transport_for_url", None)), removed(
        "httpx", f"{cls.__name__}._transport_for_url", "client.send() for every request"
    )


def test_httpx_client_still_keeps_its_transport_in_an_attribute() -> None:
    with httpx.Client() as client:
        assert isinstance(getattr(client, "_transport", None), httpx.HTTPTransport), removed(
            "httpx", "Client._transport", "httpx's pool without the thread guard"
        )


def test_httpx_transport_still_keeps_an_httpcore_pool() -> None:
    with httpx.HTTPTransport() as transport:
        assert isinstance(getattr(transport, "_pool", None), httpcore.ConnectionPool), removed(
            "httpx", "HTTPTransport._pool", "httpx's pool without the thread guard"
        )


def test_websockets_still_tells_the_proxy_of_a_uri() -> None:
    try:
        from websockets.proxy import get_proxy
    except ImportError:
        pytest.fail(removed("websockets", "websockets.proxy.get_proxy", "any proxy in the env"))
    assert callable(get_proxy)


def test_the_transport_for_a_url_is_the_client_s_own_without_proxies() -> None:
    with httpx.Client(trust_env=False) as client:
        assert _compat.transport_for_url(client, httpx.URL(URL)) is client._transport


def test_without_transport_for_url_requests_go_through_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(httpx.AsyncClient, "_transport_for_url")
    monkeypatch.delattr(httpx.Client, "_transport_for_url")
    with httpx.Client() as client:
        assert _compat.transport_for_url(client, httpx.URL(URL)) is None
    with ComfyClient(URL) as comfy:
        assert comfy._shared.transport is None


async def test_without_transport_for_url_the_async_client_sends_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(httpx.AsyncClient, "_transport_for_url")
    async with AsyncComfyClient(URL) as comfy:
        assert comfy._shared.transport is None


@pytest.mark.parametrize(
    ("make", "name", "swap", "new"),
    [
        (httpx.Client, "_transport", _compat.replace_transport, httpx.HTTPTransport),
        (httpx.HTTPTransport, "_pool", _compat.replace_pool, httpcore.ConnectionPool),
    ],
)
def test_without_the_private_attribute_nothing_is_replaced(
    make: Callable[[], Any], name: str, swap: Callable[[Any, Any], bool], new: Callable[[], Any]
) -> None:
    owner, replacement = make(), new()
    own = getattr(owner, name)
    delattr(owner, name)
    try:
        assert not swap(owner, replacement)
        assert not hasattr(owner, name)
    finally:
        setattr(owner, name, own)
        owner.close()
        replacement.close()


def test_without_the_pool_swap_the_sync_client_uses_httpx_s_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guarded_pool, "replace_pool", lambda *_: False)
    with ComfyClient(URL) as comfy:
        transport = comfy._shared.transport
        assert isinstance(transport, httpx.HTTPTransport)
        assert not isinstance(transport, GuardedTransport)


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_a_proxy_is_found_for_a_websocket_from_the_environment(
    no_proxies: pytest.MonkeyPatch,
) -> None:
    uri = parse_uri("ws://127.0.0.1:8188/ws")
    assert not _compat.ws_proxy_configured(uri)
    no_proxies.setenv("ws_proxy", "http://127.0.0.1:3128")
    assert _compat.ws_proxy_configured(uri)
    no_proxies.setenv("no_proxy", "127.0.0.1")
    assert not _compat.ws_proxy_configured(uri)


def test_without_get_proxy_any_proxy_in_the_environment_counts(
    no_proxies: pytest.MonkeyPatch,
) -> None:
    no_proxies.setitem(sys.modules, "websockets.proxy", None)  # import fails
    uri = parse_uri("ws://127.0.0.1:8188/ws")
    assert not _compat.ws_proxy_configured(uri)
    no_proxies.setenv("https_proxy", "http://127.0.0.1:3128")
    assert _compat.ws_proxy_configured(uri)
