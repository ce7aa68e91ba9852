"""Secrets never reach the log: a logging filter that redacts API keys (``ck_...``), bearer
tokens and JWTs, webhook secrets (``whsec_...``) and URL passwords from every message, its
arguments, and the exception text it carries.

The service installs it on its own loggers (``comfykit.server`` and below); ``comfykit serve``
also puts it on every handler of its log config. Pure standard library.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["SERVICE_LOGGERS", "RedactingFilter", "install_redaction", "redact"]

#: The loggers of the service (others under ``comfykit.server.`` are found at install time).
SERVICE_LOGGERS = ("comfykit.server", "comfykit.server.access", "comfykit.server.dispatcher")

_HIDDEN = "[REDACTED]"
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # a JWT: three base64url parts, the header starting with '{"' (eyJ)
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), _HIDDEN),
    # whatever follows "Bearer " (an opaque token, or a JWT already hidden above)
    (re.compile(r"(?i)\b(bearer)(\s+)(?!\[REDACTED\])[^\s,;\"']+"), r"\1\2" + _HIDDEN),
    # the service's API keys
    (re.compile(r"(?<![A-Za-z0-9_-])ck_[A-Za-z0-9_-]{8,}"), "ck_" + _HIDDEN),
    # Standard Webhooks secrets
    (re.compile(r"(?<![A-Za-z0-9_-])whsec_[A-Za-z0-9+/=_-]+"), "whsec_" + _HIDDEN),
    # user:password@ in URLs (database and ComfyUI URLs)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@"), r"\1" + _HIDDEN + "@"),
)


#: What every rule's match holds: a text without any of these is left as it is (one scan).
_TRIGGER = re.compile(r"eyJ|ck_|whsec_|://|(?i:bearer)")
#: Set on a record once redacted (a logger's filter and then its handlers' see one record).
_DONE = "_comfykit_redacted"


def redact(text: str) -> str:
    """``text`` with every key, token and secret it holds replaced by ``[REDACTED]``."""
    if _TRIGGER.search(text) is None:
        return text
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record so that no secret is left in its message, arguments, exception text
    or stack text; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _DONE, False):
            return True
        try:
            message = record.getMessage()
        except Exception:
            record.msg = redact(str(record.msg))
            if isinstance(record.args, tuple):
                record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        else:
            clean = redact(message)
            if clean != message:
                record.msg = clean
                record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        setattr(record, _DONE, True)
        return True


_FILTER = RedactingFilter()


def install_redaction(names: Iterable[str] = ()) -> None:
    """Put the filter (once) on the service's loggers, every existing logger under
    ``comfykit.server.``, and the loggers ``names``."""
    found = {n for n in logging.root.manager.loggerDict if n.startswith("comfykit.server.")}
    for name in sorted({*SERVICE_LOGGERS, *found, *names}):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(_FILTER)
