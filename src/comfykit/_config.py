"""Client options shared by the async and sync clients: timeouts, retries, auth, headers."""

from __future__ import annotations

import base64
import email.utils
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import httpx

from comfykit._exceptions import InputError

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "NOT_GIVEN",
    "Auth",
    "ClientOptions",
    "NotGiven",
    "auth_headers",
    "normalize_base_url",
    "retry_after_seconds",
]

DEFAULT_URL: Final = "http://127.0.0.1:8188"
#: 30 s per request, 5 s to connect. Jobs have their own ``timeout`` on ``result()``.
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)


class NotGiven:
    """Sentinel for "argument not given" where ``None`` is a meaningful value."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()

#: ``("user", "password")`` for Basic auth, ``"token"`` for a Bearer token, or a header mapping.
Auth = tuple[str, str] | str | Mapping[str, str]


def auth_headers(auth: Auth | None) -> dict[str, str]:
    """Headers for ``auth``: applied to every HTTP request and to the WebSocket handshake."""
    if auth is None:
        return {}
    if isinstance(auth, str):
        if not auth:
            raise InputError("auth: an empty bearer token")
        return {"Authorization": f"Bearer {auth}"}
    if isinstance(auth, tuple):
        if len(auth) != 2 or not all(isinstance(p, str) for p in auth):
            raise InputError("auth: Basic credentials must be a (username, password) tuple")
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    if isinstance(auth, Mapping):
        return {str(k): str(v) for k, v in auth.items()}
    raise InputError(f"auth: expected (user, password), a token or a header mapping, got {auth!r}")


def normalize_base_url(url: str | None) -> str:
    """``http(s)://host:port[/prefix]`` without a trailing slash; ``$COMFYUI_URL`` when None."""
    url = url or os.environ.get("COMFYUI_URL") or DEFAULT_URL
    url = url.strip()
    if "://" not in url:
        url = f"http://{url}"
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(f"base_url must be an http(s) URL with a host, got {url!r}")
    return url.rstrip("/")


def to_timeout(value: float | httpx.Timeout | None) -> httpx.Timeout:
    """Normalise a timeout argument."""
    if isinstance(value, httpx.Timeout):
        return value
    if value is None:
        return httpx.Timeout(None)
    if value <= 0:
        raise InputError(f"timeout must be positive, got {value!r}")
    return httpx.Timeout(value, connect=min(value, 5.0))


@dataclass(frozen=True)
class ClientOptions:
    """Per-client settings; ``with_options()`` copies them."""

    base_url: str
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    max_retries: int = 2
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise InputError(f"max_retries must be >= 0, got {self.max_retries}")

    def copy_with(self, **changes: Any) -> ClientOptions:
        """A copy with ``changes`` applied (``NOT_GIVEN`` values ignored)."""
        real = {k: v for k, v in changes.items() if not isinstance(v, NotGiven)}
        if "timeout" in real:
            real["timeout"] = to_timeout(real["timeout"])
        if "headers" in real:
            real["headers"] = {**self.headers, **dict(real["headers"] or {})}
        return replace(self, **real)

    @property
    def ws_url(self) -> str:
        """The WebSocket URL of the server (``/ws``)."""
        if self.base_url.startswith("https://"):
            return "wss://" + self.base_url[len("https://") :] + "/ws"
        return "ws://" + self.base_url[len("http://") :] + "/ws"


def retry_after_seconds(response: httpx.Response | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta or HTTP date), capped at 60."""
    if response is None:
        return None
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    return max(0.0, min(seconds, 60.0))


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter: ~0.25 s, 0.5 s, 1 s, ... capped at 8 s."""
    base: float = min(8.0, 0.25 * (2 ** max(attempt - 1, 0)))
    return base * (0.75 + random.random() / 2)
