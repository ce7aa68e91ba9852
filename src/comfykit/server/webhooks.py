"""Webhooks: a job's end POSTed to its ``webhook_url``, signed per Standard Webhooks.

* :func:`check_webhook_url` is the one SSRF check: an http(s) URL with a host and no user
  info, whose host resolves only to public addresses (unless ``webhook_allow_private``). It runs
  when a job is submitted and again before every attempt (DNS can change), and the attempt
  connects to the very address it checked, so a rebinding DNS answer cannot slip through.
* :func:`deliveries_for` makes the message of a job that has just ended; the store writes it in
  the transaction that ends the job, so an end is never without its message.
* :class:`WebhookWorker` sends due deliveries, leased in the store so that several replicas
  never send the same attempt, retries failures with exponential backoff, records every attempt
  and never raises: a webhook never delays or changes its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import math
import random
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from comfykit import __version__
from comfykit.server.errors import ServiceError
from comfykit.server.schemas import JobResponse
from comfykit.server.store import DeliveryRow, JobRow, utcnow

if TYPE_CHECKING:
    from standardwebhooks import Webhook

    from comfykit.server.metrics import Metrics
    from comfykit.server.settings import Settings
    from comfykit.server.store import Store

__all__ = [
    "BASE_META_KEY",
    "EVENT_TYPES",
    "WebhookTarget",
    "WebhookWorker",
    "check_webhook_url",
    "deliveries_for",
    "submitted_webhook_url",
]

log = logging.getLogger("comfykit.server.webhooks")

#: The message type of each end state of a job.
EVENT_TYPES = {"completed": "job.completed", "failed": "job.failed", "cancelled": "job.cancelled"}
#: The key of a job's metadata holding the mount prefix its URLs are relative to.
BASE_META_KEY = "base_path"

_FIELD = "webhook_url"
_ALLOW_HINT = "set COMFYKIT_WEBHOOK_ALLOW_PRIVATE=true to allow private targets"
#: Longest wait between two attempts.
_MAX_BACKOFF = 3600.0
#: A lease outlives the attempt's timeout by this much (then another sender may retry it).
_LEASE_MARGIN = 5.0
#: Deliveries sent at once by one service.
_CONCURRENCY = 8
#: How often the store is looked at when nothing woke the worker.
_POLL_SECONDS = 1.0
#: In-flight attempts get this long (at most) to finish when the service stops.
_STOP_GRACE = 5.0


def _refused(message: str, rule: str) -> ServiceError:
    text = f"{_FIELD} {message}"
    return ServiceError(400, text, details=[{"field": _FIELD, "rule": rule, "message": text}])


@dataclass(frozen=True)
class WebhookTarget:
    """A checked webhook URL: the addresses its host resolved to (each allowed), and how to
    ask one of them for the URL."""

    url: httpx.URL
    addresses: tuple[str, ...]

    @property
    def host(self) -> str:
        """The host name as sent (IDNA-encoded), for the ``Host`` header and TLS SNI."""
        return self.url.raw_host.decode("ascii")

    @property
    def host_header(self) -> str:
        """The ``Host`` header of the original URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.url.port is None else f"{host}:{self.url.port}"

    def url_for(self, address: str) -> httpx.URL:
        """The URL with ``address`` in place of the host (the connection goes there)."""
        return self.url.copy_with(host=address, fragment=None)


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` is no public address (``None`` when it is one). IPv4 addresses embedded in
    IPv6 ones (mapped, 6to4) are judged as themselves."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return _not_public(embedded)
    for flag, name in (
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_unspecified", "an unspecified"),
        ("is_multicast", "a multicast"),
        ("is_private", "a private"),
        ("is_reserved", "a reserved"),
    ):
        if getattr(ip, flag):
            return name
    if not ip.is_global:
        return "a non-global"
    return None


async def _resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (itself when it is an IP address), in the resolver's order."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _refused(f"host {host} cannot be resolved ({exc})", "unresolvable") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # an IPv6 scope id is not part of it
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise _refused(f"host {host} has no address", "unresolvable")
    return addresses


async def check_webhook_url(url: str, *, allow_private: bool) -> WebhookTarget:
    """Check a webhook URL; the target to connect to. A 400 naming ``webhook_url`` and the
    rule when it is not an http(s) URL with a host and no user info, or when any address its
    host resolves to is private, loopback, link-local, multicast, reserved or unspecified
    (unless ``allow_private``)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise _refused(f"is not a valid URL ({exc})", "url") from None
    if parsed.scheme not in ("http", "https"):
        shown = parsed.scheme or "none"
        raise _refused(f"must be an http or https URL (scheme: {shown})", "scheme")
    if not parsed.raw_host:
        raise _refused("must name a host (http://host/...)", "host")
    if parsed.userinfo:
        raise _refused("must not contain a user name or password", "userinfo")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise _refused(f"has an invalid port {parsed.port}", "port")
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    if not allow_private:
        for address in addresses:
            why = _not_public(ipaddress.ip_address(address))
            if why is not None:
                where = address if address == host else f"{host} resolves to {address}, which"
                raise _refused(
                    f"must point to a public address: {where} is {why} address ({_ALLOW_HINT})",
                    "private_address",
                )
    return WebhookTarget(parsed, tuple(addresses))


async def submitted_webhook_url(url: str | None, settings: Settings) -> str | None:
    """The ``webhook_url`` of a job being submitted, checked (``None`` when not given). A
    400 when no ``webhook_secret`` is configured to sign its messages."""
    if url is None:
        return None
    if settings.webhook_secret is None:
        raise _refused(
            "cannot be used: the service has no webhook secret to sign with "
            "(set COMFYKIT_WEBHOOK_SECRET to a whsec_... Standard Webhooks secret)",
            "no_secret",
        )
    await check_webhook_url(url, allow_private=settings.webhook_allow_private)
    return url


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def deliveries_for(row: JobRow) -> list[DeliveryRow]:
    """The webhook message of a job that has just ended (none without a ``webhook_url``):
    ``{"type": "job.<status>", "timestamp", "data": <the job as the API returns it>}`` (its
    ``webhooks`` left out: they are not known yet), due at once. Its id, ``msg_...``, is the
    ``webhook-id`` of every attempt."""
    event = EVENT_TYPES.get(row.status)
    if not row.webhook_url or event is None:
        return []
    now = utcnow()
    base = str((row.meta or {}).get(BASE_META_KEY, ""))
    data = JobResponse.from_row(row, base).model_dump(mode="json", exclude={"webhooks"})
    payload = {"type": event, "timestamp": _iso(row.completed_at or now), "data": data}
    return [
        DeliveryRow(
            id=f"msg_{uuid.uuid4().hex}",
            job_id=row.id,
            url=row.webhook_url,
            event=event,
            payload=payload,
            status="pending",
            attempts=0,
            attempts_log=[],
            next_attempt_at=now,
            created_at=now,
            delivered_at=None,
            attempt_base=0,
        )
    ]


def _describe(exc: BaseException) -> str:
    """An attempt's error for its log: the exception's kind and text (no URL, no header)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class WebhookWorker:
    """Sends the service's webhook deliveries (a background task of the service state)."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sends: dict[asyncio.Task[None], tuple[str, dt.datetime]] = {}
        self._client: httpx.AsyncClient | None = None
        self._signer: Webhook | None = None
        self._stopping = False
        self._due: float | None = None

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start sending (only when a ``webhook_secret`` is configured: nothing is sent
        unsigned; deliveries wait in the store until the service has one)."""
        secret = self.settings.webhook_secret
        if secret is None:
            return
        from standardwebhooks import Webhook

        self._signer = Webhook(secret.get_secret_value())
        # Redirects are not followed; no proxy from the environment (the connection goes to
        # the address that was checked).
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=self.settings.webhook_timeout_seconds,
            trust_env=False,
            headers={"User-Agent": f"comfykit/{__version__}"},
        )
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop: attempts in flight get a short grace to finish and be recorded; those cut
        short give their lease back (they are due again at the next start)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._sends:
            grace = min(self.settings.webhook_timeout_seconds, _STOP_GRACE)
            await asyncio.wait(list(self._sends), timeout=grace)
        cut = dict(self._sends)
        for task in cut:
            task.cancel()
        for task in cut:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for delivery_id, lease in cut.values():
            with contextlib.suppress(Exception):
                await self.store.settle_delivery(delivery_id, lease, {"next_attempt_at": utcnow()})
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """Tell the worker there may be a delivery due (a job ended, a redelivery)."""
        self._wake.set()

    def backoff(self, attempt: int) -> float:
        """Seconds before the attempt after failed attempt number ``attempt`` (1-based):
        ``webhook_backoff_seconds * 2**(attempt-1)`` plus up to 10 % jitter, at most an hour."""
        base = self.settings.webhook_backoff_seconds * 2.0 ** min(attempt - 1, 60)
        return min(base * (1 + random.uniform(0, 0.1)), _MAX_BACKOFF)

    # -- the loop -------------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            free = _CONCURRENCY - len(self._sends)
            if free > 0:
                if self._due is not None and self._due <= time.monotonic():
                    self._due = None
                now = utcnow()
                lease = now + dt.timedelta(
                    seconds=self.settings.webhook_timeout_seconds + _LEASE_MARGIN
                )
                try:
                    claimed = await self.store.claim_deliveries(
                        now=now, lease_until=lease, limit=free
                    )
                    failures = 0
                except Exception:
                    failures += 1
                    log.exception("claiming webhook deliveries failed")
                    await self._sleep(min(0.2 * 2**failures, 5.0))
                    continue
                self._spawn(claimed, lease)
                if len(claimed) == free:
                    continue  # there may be more due
            delay = _POLL_SECONDS
            if self._due is not None:
                delay = max(0.0, min(delay, self._due - time.monotonic()))
            await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _spawn(self, rows: Iterable[DeliveryRow], lease: dt.datetime) -> None:
        loop = asyncio.get_running_loop()
        for row in rows:
            task = loop.create_task(self._deliver(row, lease))
            self._sends[task] = (row.id, lease)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.pop(task, None)
        self._wake.set()

    async def _deliver(self, row: DeliveryRow, lease: dt.datetime) -> None:
        try:
            entry = await self._attempt(row)
            await self._settle(row, lease, entry)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook %s of job %s: unexpected error", row.id, row.job_id)

    # -- one attempt ----------------------------------------------------------------------
    async def _attempt(self, row: DeliveryRow) -> dict[str, Any]:
        """Send once; the attempt's log entry (``at``, ``status_code`` or ``error``,
        ``duration_ms``)."""
        timeout = self.settings.webhook_timeout_seconds
        entry: dict[str, Any] = {"at": _iso(utcnow())}
        started = time.perf_counter()
        try:
            entry["status_code"] = await asyncio.wait_for(self._send(row), timeout)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            entry["error"] = f"timed out after {timeout:g} s"
        except ServiceError as exc:  # refused by the SSRF check (or unresolvable) this time
            entry["error"] = exc.message
        except httpx.HTTPError as exc:
            entry["error"] = _describe(exc)
        except Exception as exc:  # a failed attempt all the same: recorded, never raised
            log.exception("webhook %s of job %s: unexpected error", row.id, row.job_id)
            entry["error"] = _describe(exc)
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return entry

    async def _send(self, row: DeliveryRow) -> int:
        """POST the message to the checked address(es) of its URL; the HTTP status."""
        assert self._client is not None and self._signer is not None
        target = await check_webhook_url(row.url, allow_private=self.settings.webhook_allow_private)
        body = json.dumps(row.payload, separators=(",", ":"), ensure_ascii=False).encode()
        now = utcnow()
        headers = {
            "Content-Type": "application/json",
            "Host": target.host_header,
            "webhook-id": row.id,
            "webhook-timestamp": str(math.floor(now.timestamp())),
            "webhook-signature": self._signer.sign(row.id, now, body),
        }
        extensions: dict[str, Any] = {}
        if target.url.scheme == "https":
            extensions["sni_hostname"] = target.host
            # a TLS connection verified for one host is never reused for another one that
            # shares its address
            headers["Connection"] = "close"
        last: httpx.ConnectError | None = None
        for address in target.addresses:
            request = self._client.build_request(
                "POST", target.url_for(address), content=body, headers=headers,
                extensions=extensions,
            )  # fmt: skip
            try:
                response = await self._client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last = exc
                continue
            await response.aclose()  # the status is the answer; the body is not read
            return response.status_code
        assert last is not None
        raise last

    async def _settle(self, row: DeliveryRow, lease: dt.datetime, entry: dict[str, Any]) -> None:
        """Record an attempt: delivered (2xx), failed (the attempts are spent) or due again
        after the backoff."""
        attempts = row.attempts + 1
        status = entry.get("status_code")
        values: dict[str, Any] = {
            "attempts": attempts,
            "attempts_log": [*(row.attempts_log or []), entry],
        }
        now = utcnow()
        if isinstance(status, int) and 200 <= status < 300:
            outcome = "delivered"
            values.update(status="delivered", delivered_at=now, next_attempt_at=now)
        elif attempts - row.attempt_base >= self.settings.webhook_max_attempts:
            outcome = "failed"
            values.update(status="failed", next_attempt_at=now)
        else:
            outcome = "retry"
            delay = self.backoff(attempts - row.attempt_base)
            values["next_attempt_at"] = now + dt.timedelta(seconds=delay)
            due = time.monotonic() + delay
            self._due = due if self._due is None else min(self._due, due)
        if not await self.store.settle_delivery(row.id, lease, values):
            log.warning(
                "webhook %s of job %s: the attempt outlived its lease and was not recorded",
                row.id, row.job_id,
            )  # fmt: skip
            return
        self.metrics.webhook_deliveries.labels(outcome).inc()
        log.info(
            "webhook %s of job %s: attempt %d %s (%s)",
            row.id, row.job_id, attempts, outcome, status or entry.get("error"),
        )  # fmt: skip
