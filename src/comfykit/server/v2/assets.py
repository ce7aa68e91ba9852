"""Comfy API v2 assets: uploads and job outputs as user-owned records over the service's blobs
(:class:`~comfykit.server.services.blobs.BlobStore`), and the ``core/ASSET`` references of
submitted workflows.

Another user's asset, an expired one and one that never existed are the same 404; a blob is
mintable by a caller (``from-hash``, ``HEAD by-hash``) only when an unexpired asset over it is
the caller's (any, for an admin), so a miss and "not yours" are indistinguishable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfykit.server.paths import UnsafePathError, safe_relative_path
from comfykit.server.services.blobs import HASH_PREFIX, BlobStore, blob_hash
from comfykit.server.services.files import inspect_image
from comfykit.server.store import AssetRow, BlobRow, KeyClaim, asset_ref, utcnow
from comfykit.server.v2.errors import v2_error
from comfykit.server.v2.models import NEVER, Asset

if TYPE_CHECKING:
    from comfykit.server.auth import Principal
    from comfykit.server.settings import Settings
    from comfykit.server.store import Store

__all__ = ["AssetRefs", "AssetService", "find_asset_refs", "parse_hash"]

_HEX = re.compile(r"[0-9a-f]{64}")
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}"
)
_IMAGE_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
#: The ``__type`` of an asset reference in a workflow.
ASSET_TYPE = "core/ASSET"
#: How long an ``Idempotency-Key`` stays claimed.
KEY_TTL = dt.timedelta(hours=24)
_MAX_TAGS = 32


def parse_hash(value: str) -> str | None:
    """The hex of a ``blake3:<hex>`` hash (``None`` when it is not one)."""
    text = value.strip().lower()
    if not text.startswith(HASH_PREFIX):
        return None
    digest = text[len(HASH_PREFIX) :]
    return digest if _HEX.fullmatch(digest) else None


def idempotency_claim(
    who: Principal, scope: str, key: str | None, resource_id: str
) -> KeyClaim | None:
    """The claim of an ``Idempotency-Key`` header (``None`` without one); 422 for a key the
    contract cannot carry (1-255 printable ASCII characters)."""
    if key is None:
        return None
    if not key or len(key) > 255 or not all(" " <= c <= "~" for c in key):
        raise v2_error(
            422, "invalid_request", "Idempotency-Key must be 1-255 printable ASCII characters",
            {"field": "Idempotency-Key", "rule": "idempotency_key"},
        )  # fmt: skip
    return KeyClaim(
        owner=who.user or "", scope=scope, key=key, resource_id=resource_id, now=utcnow(),
        ttl=KEY_TTL,
    )  # fmt: skip


def check_file_path(value: str | None) -> str | None:
    """A client's placement path (``photo.png``, ``models/x.safetensors``), checked by the
    service's traversal rule (it is kept as a label: no file is ever named after it)."""
    if value is None:
        return None
    folder, _, name = value.rpartition("/")
    try:
        safe_relative_path(name, folder)
    except UnsafePathError as exc:
        raise UnsafePathError(exc.name, exc.reason, what="file_path") from None
    return value


def check_tags(tags: Sequence[str]) -> list[str]:
    """At most 32 tags of at most 100 characters."""
    if len(tags) > _MAX_TAGS:
        raise v2_error(422, "invalid_request", f"at most {_MAX_TAGS} tags", {"field": "tags"})
    for tag in tags:
        if len(tag) > 100:
            raise v2_error(
                422, "invalid_request", "a tag has at most 100 characters", {"field": "tags"}
            )
    return list(tags)


def expiry(
    expires_in: int | None, default: dt.datetime | None, now: dt.datetime
) -> dt.datetime | None:
    """An asset's deadline: ``expires_in`` seconds from now, else the retention default."""
    return now + dt.timedelta(seconds=expires_in) if expires_in is not None else default


@dataclass(frozen=True)
class AssetRef:
    """One ``core/ASSET`` object of a workflow: where it is and what it says."""

    node_id: str
    input: str | None
    value: Any

    @property
    def asset_id(self) -> str | None:
        """The referenced asset id (``info.id``), when the object has one."""
        info = self.value.get("info") if isinstance(self.value, Mapping) else None
        found = info.get("id") if isinstance(info, Mapping) else None
        return found if isinstance(found, str) and 0 < len(found) <= 100 else None


def find_asset_refs(graph: Mapping[str, Any]) -> list[AssetRef]:
    """Every ``core/ASSET`` object of an API-format graph; ``input`` is ``None`` for one that
    is not a node input's value (nested deeper: not usable)."""
    found: list[AssetRef] = []
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for name, value in inputs.items():
            if _is_ref(value):
                found.append(AssetRef(str(node_id), str(name), value))
                continue
            stack = [value]
            while stack:
                item = stack.pop()
                if _is_ref(item):
                    found.append(AssetRef(str(node_id), None, item))
                elif isinstance(item, Mapping):
                    stack.extend(item.values())
                elif isinstance(item, list):
                    stack.extend(item)
    return found


def _is_ref(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("__type") == ASSET_TYPE


@dataclass
class AssetRefs:
    """The resolved asset references of a workflow: what the job's ``uploads`` hold, the graph
    with each reference replaced by a file name, and the inputs filled in at dispatch."""

    graph: dict[str, Any]
    uploads: dict[str, dict[str, str]]
    asset_ids: list[str]

    @property
    def inputs(self) -> set[tuple[str, str]]:
        """(node id, input name) of each asset input."""
        return {(n, i) for n, inputs in self.uploads.items() for i in inputs}


class AssetService:
    """The assets of one service instance."""

    def __init__(self, settings: Settings, store: Store, blobs: BlobStore) -> None:
        self.settings = settings
        self.store = store
        self.blobs = blobs

    # -- views ----------------------------------------------------------------------------
    @staticmethod
    def content_url(origin: str, asset_id: str) -> str:
        """The absolute URL of an asset's bytes (``origin``: scheme, host and mount prefix)."""
        return f"{origin}/api/v2/assets/{asset_id}/content"

    def view(
        self, asset: AssetRow, blob: BlobRow, origin: str, *, created_new: bool | None = None
    ) -> Asset:
        """An asset as the contract has it (a proxy-served URL: valid while the asset is)."""
        return Asset(
            id=asset.id, hash=HASH_PREFIX + blob.hash, size_bytes=blob.size,
            content_type=asset.content_type, file_path=asset.file_path, created_new=created_new,
            created_at=asset.created_at, url=self.content_url(origin, asset.id),
            url_expires_at=asset.expires_at or NEVER, expires_at=asset.expires_at,
            job_id=asset.job_id,
        )  # fmt: skip

    @staticmethod
    def _live(asset: AssetRow, now: dt.datetime) -> bool:
        return asset.expires_at is None or asset.expires_at > now

    async def get(self, asset_id: str, who: Principal) -> tuple[AssetRow, BlobRow]:
        """An asset the caller may see, not expired (404 ``not_found`` otherwise)."""
        found = await self.store.get_asset(asset_id) if len(asset_id) <= 100 else None
        if found is None or not who.may_see(found[0].owner) or not self._live(found[0], utcnow()):
            raise v2_error(404, "not_found", f"no asset {asset_id[:100]}")
        return found

    # -- creating -------------------------------------------------------------------------
    async def upload(
        self,
        data: bytes,
        who: Principal,
        *,
        content_type: str,
        file_path: str,
        expected_hash: str | None,
        tags: Sequence[str],
        expires_in: int | None,
        idempotency_key: str | None,
    ) -> tuple[AssetRow, BlobRow, bool]:
        """Store uploaded bytes (once, by hash) and mint an asset over them: an image is
        decoded first like every upload of the service (under ``max_image_pixels``) and takes
        the content type it really has. 409 ``hash_mismatch`` (nothing minted) when
        ``expected_hash`` is not the hash of the bytes received."""
        content_type = content_type.strip()
        if (
            not _MEDIA_TYPE.fullmatch(content_type.split(";", 1)[0].strip())
            or len(content_type) > 100
        ):
            raise v2_error(
                422, "invalid_request", "content_type must be a media type such as image/png",
                {"field": "content_type", "rule": "media_type"},
            )  # fmt: skip
        file_path = check_file_path(file_path) or ""
        tags = check_tags(tags)
        if content_type.lower().startswith("image/"):
            fmt, _, _ = await asyncio.to_thread(inspect_image, data, self.settings.max_image_pixels)
            content_type = _IMAGE_TYPES[fmt]
        digest = await asyncio.to_thread(blob_hash, data)
        if expected_hash is not None and parse_hash(expected_hash) != digest:
            raise v2_error(
                409, "hash_mismatch",
                "the bytes received do not have the expected_hash; no asset was made",
                {"expected_hash": expected_hash[:200], "hash": HASH_PREFIX + digest},
            )  # fmt: skip
        now = utcnow()
        deadline = expiry(expires_in, self.blobs.retention_deadline(now), now)
        asset_id = str(uuid.uuid4())
        return await self.blobs.add(
            data, owner=who.user, content_type=content_type, file_path=file_path, tags=tags,
            expires_at=deadline, digest=digest, asset_id=asset_id,
            claim=idempotency_claim(who, "assets", idempotency_key, asset_id),
        )  # fmt: skip

    async def usable(self, hash_text: str, who: Principal) -> BlobRow | None:
        """The blob of ``blake3:<hex>`` when the caller may mint from it."""
        digest = parse_hash(hash_text)
        if digest is None:
            return None
        return await self.store.usable_blob(digest, who.user, utcnow(), anyone=who.is_admin)

    async def from_hash(
        self,
        hash_text: str,
        who: Principal,
        *,
        file_path: str | None,
        tags: Sequence[str],
        expires_in: int | None,
    ) -> tuple[AssetRow, BlobRow, bool]:
        """Mint an asset over bytes the caller may use (404 ``blob_not_found`` otherwise); an
        identical upload record of the caller is returned as it is. The flag: minted now."""
        file_path = check_file_path(file_path)
        tags = check_tags(tags)
        blob = await self.usable(hash_text, who)
        if blob is None:
            raise v2_error(404, "blob_not_found", "no blob with this hash that you may mint from")
        now = utcnow()
        same = await self.store.same_upload(who.user, blob.hash, file_path, now)
        if same is not None:
            return same, blob, False
        deadline = expiry(expires_in, self.blobs.retention_deadline(now), now)
        asset = await self.blobs.mint_over(
            blob, owner=who.user, file_path=file_path, tags=tags, expires_at=deadline
        )
        return asset, blob, True

    # -- deleting and reading -------------------------------------------------------------
    async def delete(self, asset_id: str, who: Principal) -> None:
        """Delete an asset record: 409 ``asset_in_use`` while the service depends on it (a
        queued or running job's input, a retained job's output); its blob goes when no asset
        uses it."""
        await self.get(asset_id, who)
        status = await self.blobs.remove(asset_id)
        if status == "in_use":
            raise v2_error(
                409, "asset_in_use", "the asset cannot be deleted while the service depends on it"
            )
        if status == "missing":
            raise v2_error(404, "not_found", f"no asset {asset_id}")

    async def content(self, asset_id: str, who: Principal) -> tuple[Path, AssetRow, BlobRow]:
        """The file of an asset the caller may read (404 when its bytes are gone)."""
        asset, blob = await self.get(asset_id, who)
        path = self.blobs.path(blob.hash)
        if not path.is_file():
            raise v2_error(404, "not_found", f"the bytes of asset {asset_id} are gone")
        return path, asset, blob

    # -- workflow references --------------------------------------------------------------
    async def resolve(self, graph: Mapping[str, Any], who: Principal) -> AssetRefs:
        """The ``core/ASSET`` references of a submitted graph, each to an unexpired image asset
        of the caller (422 ``missing_asset`` naming node and input for every one that is not)."""
        refs = find_asset_refs(graph)
        out = AssetRefs(graph=dict(graph), uploads={}, asset_ids=[])
        if not refs:
            return out
        found = await self.store.assets_by_ids(r.asset_id for r in refs if r.asset_id)
        now = utcnow()
        problems: list[dict[str, Any]] = []
        for ref in refs:
            where = {"node_id": ref.node_id, "input": ref.input, "asset_id": ref.asset_id}
            hit = found.get(ref.asset_id or "")
            if ref.input is None:
                problems.append({**where, "reason": "not_an_input_value"})
            elif ref.asset_id is None:
                problems.append({**where, "reason": "malformed"})
            elif hit is None or not who.may_see(hit[0].owner) or not self._live(hit[0], now):
                problems.append({**where, "reason": "not_found"})
            elif not hit[0].content_type.startswith("image/"):
                problems.append({**where, "reason": "not_an_image"})
            else:
                asset, blob = hit
                node = dict(out.graph[ref.node_id])
                node["inputs"] = {**node["inputs"], ref.input: _placeholder(asset, blob)}
                out.graph[ref.node_id] = node
                out.uploads.setdefault(ref.node_id, {})[ref.input] = asset_ref(asset.id)
                out.asset_ids.append(asset.id)
        if problems:
            first = problems[0]
            reasons = {
                "not_found": "is not an asset of yours (unknown, expired or deleted)",
                "malformed": "is not a core/ASSET object with info.id",
                "not_an_image": "is not an image (only images are placed on ComfyUI)",
                "not_an_input_value": "is not the value of a node input",
            }
            place = f"node {first['node_id']}" + (
                f" input {first['input']!r}" if first["input"] else ""
            )
            raise v2_error(
                422, "missing_asset",
                f"{place}: asset {first['asset_id'] or '?'} {reasons[first['reason']]}",
                {"missing": problems},
            )  # fmt: skip
        return out


def _placeholder(asset: AssetRow, blob: BlobRow) -> str:
    """The file name an asset input has in the stored graph (the dispatcher replaces it with
    the file it uploads)."""
    extension = {v: k for k, v in _IMAGE_TYPES.items()}.get(asset.content_type, "BIN").lower()
    return f"{blob.hash}.{extension}"
