"""Request bodies as the service accepts them: counted against a size limit while they are
received (413), JSON parsed strictly (400: invalid UTF-8, nesting deeper than
``max_json_depth``, NaN/Infinity, numbers too large, NUL characters and lone surrogates in
strings), and the media type of JSON routes checked (415).

:class:`ServiceRequest` is the request every route of the service sees (``app.py`` makes it in
the route class, so the limits hold when the router is mounted in a host app too); FastAPI's
body parsing calls its :meth:`~ServiceRequest.json`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.types import Message, Receive, Scope

from comfykit.server.errors import BodyError, field_path

__all__ = [
    "UPLOAD_OVERHEAD",
    "ServiceRequest",
    "check_json_value",
    "is_json_media_type",
    "parse_json",
    "service_request",
]

#: What a multipart upload may add to ``max_upload_bytes`` (boundaries, part headers).
UPLOAD_OVERHEAD = 64 * 1024

#: A JSON string (escapes included) or one bracket: what the depth scan looks at.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_DIGITS = re.compile(r"[0-9]+")


def _bad(message: str, rule: str, field: str = "body", **extra: Any) -> BodyError:
    return BodyError(400, message, details=[{"field": field, "rule": rule, **extra}])


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` is JSON (``application/json`` or ``application/*+json``)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _check_depth(text: str, limit: int) -> None:
    if text.count("[") + text.count("{") <= limit:
        return  # (brackets in strings included: the nesting cannot be deeper)
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > limit:
                raise _bad(
                    f"the body is nested deeper than {limit} levels (max_json_depth)",
                    "max_json_depth", max_depth=limit, position=match.start(),
                )  # fmt: skip
        elif token == "]" or token == "}":
            depth -= 1


class _NotJson(ValueError):
    """A literal Python's json module takes but JSON does not (NaN, Infinity)."""


def _constant(name: str) -> Any:
    raise _NotJson(f"the body holds {name}, which is not JSON (numbers must be finite)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"the number {text[:40]} is too large (numbers must be finite)")
    return value


def parse_json(raw: bytes, max_depth: int) -> Any:
    """A JSON body parsed strictly. :class:`BodyError` (400) for invalid UTF-8, nesting deeper
    than ``max_depth`` (checked on the text first: no parser recursion), NaN or Infinity,
    numbers too large, and strings holding NUL or lone surrogates (see
    :func:`check_json_value`); :class:`json.JSONDecodeError` for a syntax error."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(
            f"the body is not valid UTF-8 (byte {exc.start})", "utf8", position=exc.start
        ) from None
    _check_depth(text, max_depth)
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_finite)
    except json.JSONDecodeError:
        raise
    except _NotJson as exc:
        raise _bad(str(exc), "finite_number") from None
    except ValueError:
        # int() refuses integers of more than sys.get_int_max_str_digits() digits
        raise _bad("a number in the body is too large", "number_too_large") from None
    except RecursionError:
        raise _bad(
            f"the body is nested deeper than {max_depth} levels (max_json_depth)",
            "max_json_depth", max_depth=max_depth,
        ) from None  # fmt: skip
    if "\\u" in text:
        # a NUL or a lone surrogate can only come from an escape (a raw control character is
        # a syntax error); the nesting and the numbers were checked above
        check_json_value(value, max_depth=max_depth)
    return value


def _check_text(text: str, where: Sequence[Any]) -> None:
    if "\x00" in text:
        field = field_path(where)
        raise _bad(f"{field} holds a NUL character, which is not accepted", "nul_character", field)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            field = field_path(where)
            code = f"\\u{ord(text[exc.start]):04x}"
            raise _bad(
                f"{field} holds a lone surrogate ({code}), which is not valid Unicode",
                "lone_surrogate", field,
            ) from None  # fmt: skip


def check_json_value(value: Any, *, max_depth: int, where: Sequence[Any] = ()) -> None:
    """Check parsed JSON without recursion: nested at most ``max_depth`` levels, numbers
    finite, no string or key holding NUL (a PostgreSQL text cannot) or a lone surrogate
    (not encodable); :class:`BodyError` (400) naming the field otherwise."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, tuple(where), 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, float):
            if not math.isfinite(item):
                field = field_path(path)
                raise _bad(f"{field} must be a finite number", "finite_number", field)
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                raise _bad(
                    f"{field_path(path)} is nested deeper than {max_depth} levels "
                    "(max_json_depth)",
                    "max_json_depth", field_path(path), max_depth=max_depth,
                )  # fmt: skip
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str):
                        _check_text(key, (*path, key))
                    stack.append((child, (*path, key), depth + 1))
            else:
                stack.extend((child, (*path, i), depth + 1) for i, child in enumerate(item))


class ServiceRequest(Request):
    """A request whose body is counted while it is received (cut with 413 at ``max_body``)
    and whose JSON is parsed by :func:`parse_json`."""

    def __init__(
        self, scope: Scope, receive: Receive, *, max_body: int, setting: str, max_depth: int
    ) -> None:
        self._upstream = receive
        self.max_body = max_body
        self.setting = setting
        self.max_depth = max_depth
        self._received = 0
        super().__init__(scope, self._counted)

    def too_large(self) -> BodyError:
        """The 413 of this request."""
        return BodyError(
            413,
            f"the request body is larger than {self.max_body} bytes ({self.setting})",
            details={"limit": self.max_body, "setting": self.setting},
        )

    async def _counted(self) -> Message:
        message = await self._upstream()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self.max_body:
                raise self.too_large()
        return message

    async def json(self) -> Any:
        """The body parsed strictly (once)."""
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body(), self.max_depth)
        return self._json


def service_request(
    request: Request, *, max_body: int, setting: str, max_depth: int, json_body: bool
) -> ServiceRequest:
    """The route's request as a :class:`ServiceRequest`. Before anything is read: 413 when
    ``Content-Length`` is over ``max_body``, 400 when it is not a number, and on a JSON route
    (``json_body``) 415 when a body comes with another media type (or none)."""
    service = ServiceRequest(
        request.scope, request.receive, max_body=max_body, setting=setting, max_depth=max_depth
    )
    length = request.headers.get("content-length")
    size = None
    if length is not None:
        digits = length.strip()
        if not _DIGITS.fullmatch(digits):
            raise _bad("the Content-Length header is not a number", "content_length", "header")
        size = int(digits) if len(digits) <= 18 else max_body + 1
        if size > max_body:
            raise service.too_large()
    if json_body:
        has_body = bool(size) or "transfer-encoding" in request.headers
        ctype = request.headers.get("content-type")
        if has_body and not is_json_media_type(ctype):
            raise BodyError(
                415,
                f"send the body as application/json (not {ctype[:100]!r})"
                if ctype
                else "send the body as application/json (the Content-Type header is missing)",
            )
    return service
