"""ComfyUI's native assets API: the requests' arguments checked and shaped (pure, shared by
both clients).

The routes (``/api/assets*``, ``/api/tags``) are served by releases after 0.3.75 when the
``assets`` flag of ``/features`` is on; :mod:`comfykit._async.native` sends them. Everything
here raises :class:`~comfykit.InputError` naming the argument, before anything is sent.
"""

from __future__ import annotations

import json
import mimetypes
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import unquote

from comfykit._exceptions import InputError

__all__ = [
    "ASSET_SORTS",
    "AssetOrder",
    "AssetSort",
    "TagOrder",
    "asset_id",
    "assets_params",
    "attachment_name",
    "blake3_hash",
    "from_hash_body",
    "service_disabled",
    "tag_list",
    "tags_params",
    "update_body",
    "upload_form",
]

AssetSort = Literal["name", "created_at", "updated_at", "size", "last_access_time"]
AssetOrder = Literal["asc", "desc"]
TagOrder = Literal["count_desc", "name_asc"]
ASSET_SORTS = ("name", "created_at", "updated_at", "size", "last_access_time")

_HASH = re.compile(r"blake3:[0-9a-f]+")
_FILENAME_STAR = re.compile(r"filename\*\s*=\s*([^;]+)", re.IGNORECASE)
_FILENAME = re.compile(r'filename\s*=\s*"?([^";]+)"?', re.IGNORECASE)


def asset_id(value: Any, argument: str = "asset_id") -> str:
    """An asset (reference) id checked: the routes take a hyphenated UUID only."""
    if isinstance(value, str) and len(value) == 36:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise InputError(f"{argument} must be an asset id (a hyphenated UUID), got {value!r}")


def blake3_hash(value: Any, argument: str = "hash") -> str:
    """A content hash checked and normalised: ``blake3:<hex>``, as the server writes them."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text is None or not _HASH.fullmatch(text):
        raise InputError(f"{argument} must be like 'blake3:<hex>', got {value!r}")
    return text


def tag_list(tags: Any, argument: str = "tags", *, required: bool = True) -> list[str]:
    """Tags checked: non-empty strings (a single string is one tag); at least one when
    ``required``."""
    items = [tags] if isinstance(tags, str) else tags
    if not isinstance(items, Iterable) or isinstance(items, (bytes, Mapping)):
        raise InputError(f"{argument} must be a list of tags, got {tags!r}")
    out = list(items)
    for tag in out:
        if not isinstance(tag, str) or not tag.strip():
            raise InputError(f"{argument}: each tag must be a non-empty string, got {tag!r}")
    if required and not out:
        raise InputError(f"{argument}: give at least one tag")
    return [tag.strip() for tag in out]


def _metadata(value: Any, argument: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{argument} must be a dict, got {type(value).__name__}")
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{argument} must be JSON-serialisable: {exc}") from None
    return dict(value)


def _count(value: Any, argument: str, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{argument} must be an int >= {low}, got {value!r}")
    if high is not None and value > high:
        raise InputError(f"{argument} must be <= {high}, got {value!r}")
    return value


def assets_params(
    *,
    include_tags: Any,
    exclude_tags: Any,
    name_contains: str | None,
    metadata_filter: Mapping[str, Any] | None,
    limit: int | None,
    offset: int,
    sort: str,
    order: str,
) -> dict[str, str]:
    """The query of ``GET /api/assets`` (tags comma-separated, ``metadata_filter`` as JSON;
    what is not given is left to the server's defaults)."""
    if sort not in ASSET_SORTS:
        raise InputError(f"sort must be one of {', '.join(ASSET_SORTS)}, got {sort!r}")
    if order not in ("asc", "desc"):
        raise InputError(f"order must be 'asc' or 'desc', got {order!r}")
    params = {"sort": sort, "order": order}
    for argument, tags in (("include_tags", include_tags), ("exclude_tags", exclude_tags)):
        if tags is not None:
            checked = tag_list(tags, argument, required=False)
            if any("," in tag for tag in checked):
                raise InputError(f"{argument}: tags are sent comma-separated, got {checked!r}")
            if checked:
                params[argument] = ",".join(checked)
    if name_contains is not None:
        if not isinstance(name_contains, str):
            raise InputError(f"name_contains must be a string, got {name_contains!r}")
        if name_contains:
            params["name_contains"] = name_contains
    if metadata_filter is not None:
        params["metadata_filter"] = json.dumps(_metadata(metadata_filter, "metadata_filter"))
    if limit is not None:
        params["limit"] = str(_count(limit, "limit", low=1, high=500))
    if _count(offset, "offset", low=0):
        params["offset"] = str(offset)
    return params


def tags_params(
    *, prefix: str | None, limit: int | None, offset: int, order: str, include_zero: bool
) -> dict[str, str]:
    """The query of ``GET /api/tags``."""
    if order not in ("count_desc", "name_asc"):
        raise InputError(f"order must be 'count_desc' or 'name_asc', got {order!r}")
    params = {"order": order, "include_zero": "true" if include_zero else "false"}
    if prefix is not None:
        if not isinstance(prefix, str) or not prefix.strip():
            raise InputError(f"prefix must be a non-empty string, got {prefix!r}")
        params["prefix"] = prefix
    if limit is not None:
        params["limit"] = str(_count(limit, "limit", low=1, high=1000))
    if _count(offset, "offset", low=0):
        params["offset"] = str(offset)
    return params


def upload_form(
    content: bytes,
    filename: str,
    *,
    tags: Any,
    name: str | None,
    user_metadata: Mapping[str, Any] | None,
) -> tuple[dict[str, tuple[str, bytes, str]], dict[str, str | list[str]]]:
    """The multipart ``files`` and ``data`` of ``POST /api/assets``: the ``file`` part, one
    ``tags`` field per tag (in order: the first is the root, ``models``, ``input`` or
    ``output``), and ``name`` and ``user_metadata`` (JSON) when given."""
    checked = tag_list(tags)
    mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    data: dict[str, str | list[str]] = {"tags": checked}
    if name is not None:
        data["name"] = _name(name)
    if user_metadata is not None:
        data["user_metadata"] = json.dumps(_metadata(user_metadata, "user_metadata"))
    return {"file": (filename, content, mime)}, data


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"name must be a non-empty string, got {name!r}")
    if len(name) > 512:
        raise InputError(f"name must be at most 512 characters, got {len(name)}")
    return name


def from_hash_body(
    hash: Any, *, name: str | None, tags: Any, user_metadata: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The JSON body of ``POST /api/assets/from-hash``."""
    body: dict[str, Any] = {"hash": blake3_hash(hash)}
    if name is not None:
        body["name"] = _name(name)
    if tags is not None:
        body["tags"] = tag_list(tags, required=False)
    if user_metadata is not None:
        body["user_metadata"] = _metadata(user_metadata, "user_metadata")
    return body


def update_body(*, name: str | None, user_metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON body of ``PUT /api/assets/{id}``: at least one of the two."""
    if name is None and user_metadata is None:
        raise InputError("update_asset: give name, user_metadata or both")
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = _name(name)
    if user_metadata is not None:
        body["user_metadata"] = _metadata(user_metadata, "user_metadata")
    return body


def service_disabled(body: Any) -> bool:
    """True when an error body is the assets routes' own "disabled" answer (503)."""
    error = body.get("error") if isinstance(body, Mapping) else None
    return isinstance(error, Mapping) and error.get("code") == "SERVICE_DISABLED"


def attachment_name(disposition: str | None) -> str | None:
    """The file name of a ``Content-Disposition`` header (``filename*=UTF-8''...`` first), as
    a plain name; ``None`` when there is none."""
    if not disposition:
        return None
    name: str | None = None
    star = _FILENAME_STAR.search(disposition)
    if star:
        value = star.group(1).strip().strip('"')
        _, _, encoded = value.rpartition("'")
        name = unquote(encoded)
    else:
        plain = _FILENAME.search(disposition)
        name = plain.group(1).strip() if plain else None
    if name:
        name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return name if name and name not in (".", "..") else None
