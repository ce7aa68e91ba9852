"""The one retry policy of both clients: which failures are retried, and after how long.

Pure decisions, no I/O: the clients drive them with tenacity for every request, ``POST /prompt``
included. A request that may have reached the server (the connection broke after it was
written) is resent only when it is idempotent, or when the caller can first ask the server
whether it arrived (``POST /prompt`` checks ``/queue`` and ``/history`` for its prompt id).
"""

from __future__ import annotations

import enum
from typing import Final

import httpx

from comfykit._config import backoff

__all__ = ["RETRY_STATUSES", "Retry", "decide", "delay", "never_sent"]

#: Statuses worth sending again: timeouts, rate limits, a gateway or server briefly away.
RETRY_STATUSES: Final = frozenset({408, 429, 502, 503, 504})
#: Statuses that say the request was not processed, so even a non-idempotent one may be resent.
_NOT_PROCESSED: Final = frozenset({429, 503})
#: Failures that happen before a byte of the request is written.
_NEVER_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Retry(enum.Enum):
    """What to do after a failed attempt."""

    NO = "no"
    YES = "yes"
    #: The request may have arrived: resend only once the server says it did not.
    IF_ABSENT = "if_absent"


def decide(error: BaseException | None, status: int | None, *, idempotent: bool) -> Retry:
    """Whether to retry after ``error`` (a transport failure) or an answer with ``status``."""
    if status is not None:
        if status in RETRY_STATUSES and (idempotent or status in _NOT_PROCESSED):
            return Retry.YES
        return Retry.NO
    if isinstance(error, _NEVER_SENT):
        return Retry.YES
    if isinstance(error, httpx.TransportError):
        return Retry.YES if idempotent else Retry.IF_ABSENT
    return Retry.NO


def never_sent(error: BaseException) -> bool:
    """True for a transport failure that happened before a byte of the request was written."""
    return isinstance(error, _NEVER_SENT)


def delay(attempt: int, retry_after: float | None) -> float:
    """Seconds before retry number ``attempt``: the server's ``Retry-After`` when it sent one,
    else exponential backoff with jitter."""
    return backoff(attempt) if retry_after is None else retry_after
