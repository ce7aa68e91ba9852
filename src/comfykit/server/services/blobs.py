"""Blobs: bytes kept once in the storage dir, named by their BLAKE3 hash
(``blobs/<2 hex>/<64 hex>``), and the asset records over them (Comfy API v2 assets).

Uploads made through ``/api/v2/assets`` and the outputs of every job are assets: a finished
job's stored outputs (``outputs/<job id>/<n>.<ext>``, which the v1 routes serve) are hard-linked
into the blob store (copied where a link cannot be made), so the same bytes are kept once and
the v1 files and the blobs live and die independently. An asset input of a job is sent to the
ComfyUI that runs it by the dispatcher, like an upload.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blake3 import blake3

from comfykit.server.services.files import StorageError
from comfykit.server.store import AssetRow, BlobRow, KeyClaim, Mint, Store, utcnow

if TYPE_CHECKING:
    from comfykit.server.services.files import Files
    from comfykit.server.settings import Settings
    from comfykit.server.store import JobRow

__all__ = ["BlobStore", "HASH_PREFIX", "blob_hash", "output_asset_id"]

log = logging.getLogger("comfykit.server")

#: How a hash is written in the API: ``blake3:<hex>``.
HASH_PREFIX = "blake3:"
#: The namespace of output asset ids: an output's id is derived from its job id and index, so
#: recording it twice (a retry, a restart) records the same asset.
_OUTPUTS = uuid.UUID("5d7b0c1e-4b8e-4f0e-9c61-2f3a1c0b9d42")
_CHUNK = 1 << 20
#: File name extensions of the content types an asset input is sent to ComfyUI as.
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
}


def blob_hash(data: bytes) -> str:
    """The BLAKE3 hash (hex) of ``data``."""
    return blake3(data, max_threads=blake3.AUTO if len(data) > 1 << 22 else 1).hexdigest()


def _file_hash(path: Path) -> str:
    hasher = blake3()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


#: The content type of a job's text output recorded as an asset.
TEXT_TYPE = "text/plain; charset=utf-8"


def text_outputs(meta: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """A job's text outputs (``metadata.text``: node id -> texts), each a list of strings."""
    found = (meta or {}).get("text")
    if not isinstance(found, dict):
        return {}
    return {str(k): [str(t) for t in v] for k, v in found.items() if isinstance(v, list)}


def output_asset_id(job_id: str, index: int) -> str:
    """The asset id of output ``index`` of a job (the same every time it is recorded)."""
    return str(uuid.uuid5(_OUTPUTS, f"{job_id}/{index}"))


class BlobStore:
    """The blobs of one service instance and the assets over them."""

    def __init__(self, settings: Settings, files: Files, store: Store) -> None:
        self.settings = settings
        self.files = files
        self.store = store

    def prepare(self) -> None:
        """Create the blob folders."""
        self.files.stored("blobs", "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where a blob's bytes are kept (:class:`StorageError` when that leads outside)."""
        return self.files.stored("blobs", digest[:2], digest)

    def retention_deadline(self, now: dt.datetime) -> dt.datetime | None:
        """When an asset made now expires by default (``None`` without retention)."""
        days = self.settings.retention_days
        return None if days is None else now + dt.timedelta(days=days)

    # -- placing files ----------------------------------------------------------------------
    def _stage(self, data: bytes) -> Path:
        tmp = self.files.stored("blobs", "tmp", f"{uuid.uuid4().hex}.part")
        tmp.write_bytes(data)
        return tmp

    def _writer(self, digest: str, data: bytes, staged: Path | None) -> Callable[[bool], None]:
        """Puts ``data`` at the blob's path unless its file is there (from the staged copy when
        there is one)."""

        def place(_created: bool) -> None:
            target = self.path(digest)
            if target.is_file():
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            source = staged if staged is not None and staged.is_file() else self._stage(data)
            os.replace(source, target)

        return place

    def _linker(self, digest: str, source: Path) -> Callable[[bool], None]:
        """Puts ``source`` (a stored output) at the blob's path unless its file is there: a
        hard link, or a copy where a link cannot be made."""

        def place(_created: bool) -> None:
            target = self.path(digest)
            if target.is_file():
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.files.stored("blobs", "tmp", f"{uuid.uuid4().hex}.part")
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)

        return place

    def _unlink(self, blob: BlobRow) -> None:
        try:
            self.path(blob.hash).unlink(missing_ok=True)
        except StorageError:
            log.error("blob %s resolves outside the storage dir; its row was removed", blob.hash)

    # -- assets -------------------------------------------------------------------------------
    async def add(
        self,
        data: bytes,
        *,
        owner: str | None,
        content_type: str,
        file_path: str | None,
        tags: Sequence[str],
        expires_at: dt.datetime | None,
        claim: KeyClaim | None = None,
        digest: str | None = None,
        asset_id: str | None = None,
    ) -> tuple[AssetRow, BlobRow, bool]:
        """Store ``data`` (once: by its hash) and record a new asset over it (``asset_id``, or
        a new one), claiming ``claim`` in the same transaction; the asset, its blob and whether
        the blob is new."""
        if digest is None:
            digest = await asyncio.to_thread(blob_hash, data)
        now = utcnow()
        blob = BlobRow(
            hash=digest, size=len(data), content_type=content_type,
            stored_name=f"blobs/{digest[:2]}/{digest}", created_at=now,
        )  # fmt: skip
        asset = AssetRow(
            id=asset_id or str(uuid.uuid4()), blob_hash=digest, owner=owner, file_path=file_path,
            content_type=content_type, tags=list(tags), job_id=None, node_id=None,
            output_index=None, created_at=now, expires_at=expires_at,
        )  # fmt: skip
        staged = None if self.path(digest).is_file() else await asyncio.to_thread(self._stage, data)
        try:
            place = self._writer(digest, data, staged)
            [(stored, created)] = await self.store.mint([Mint(asset, blob, place)], claim=claim)
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        found = await self.store.get_blob(digest)
        return stored, found or blob, created

    async def mint_over(
        self,
        blob: BlobRow,
        *,
        owner: str | None,
        file_path: str | None,
        tags: Sequence[str],
        expires_at: dt.datetime | None,
    ) -> AssetRow:
        """A new asset over bytes the service already holds."""
        now = utcnow()
        asset = AssetRow(
            id=str(uuid.uuid4()), blob_hash=blob.hash, owner=owner, file_path=file_path,
            content_type=blob.content_type, tags=list(tags), job_id=None, node_id=None,
            output_index=None, created_at=now, expires_at=expires_at,
        )  # fmt: skip

        def present(_created: bool) -> None:
            if not self.path(blob.hash).is_file():
                raise StorageError(f"the bytes of blob {blob.hash} are missing")

        [(stored, _)] = await self.store.mint([Mint(asset, blob, present)])
        return stored

    async def commit_outputs(
        self,
        job: JobRow,
        outputs: Sequence[dict[str, Any]],
        texts: Mapping[str, Sequence[str]] | None = None,
    ) -> list[AssetRow]:
        """Record a finished job's stored outputs as assets of its owner (ids derived from the
        job id and output index, so recording twice changes nothing); they expire with the
        job's retention. ``texts`` (a node's text outputs, by node id) become ``text/plain``
        assets after the files (nothing a job made is dropped)."""
        items = [*await self._file_outputs(job, outputs), *self._text_outputs(job, outputs, texts)]
        if not items:
            return []
        return [a for a, _ in await self.store.mint(items, keep_existing=True)]

    def _text_outputs(
        self,
        job: JobRow,
        outputs: Sequence[dict[str, Any]],
        texts: Mapping[str, Sequence[str]] | None,
    ) -> list[Mint]:
        now = utcnow()
        deadline = self.retention_deadline(now)
        index = len(outputs)
        items = []
        for node, values in (texts or {}).items():
            for position, value in enumerate(values):
                data = str(value).encode("utf-8", "replace")
                digest = blob_hash(data)
                blob = BlobRow(
                    hash=digest, size=len(data), content_type=TEXT_TYPE,
                    stored_name=f"blobs/{digest[:2]}/{digest}", created_at=now,
                )  # fmt: skip
                asset = AssetRow(
                    id=output_asset_id(job.id, index), blob_hash=digest, owner=job.owner,
                    file_path=f"{node}_text_{position}.txt"[:1024], content_type=TEXT_TYPE,
                    tags=["output"], job_id=job.id, node_id=str(node)[:200],
                    output_index=index, created_at=now, expires_at=deadline,
                )  # fmt: skip
                items.append(Mint(asset, blob, self._writer(digest, data, None)))
                index += 1
        return items

    async def _file_outputs(self, job: JobRow, outputs: Sequence[dict[str, Any]]) -> list[Mint]:
        now = utcnow()
        deadline = self.retention_deadline(now)
        items = []
        for record in outputs:
            index = int(record["index"])
            source = self.files.stored("outputs", job.id, str(record["stored_name"]))
            known = record.get("blake3")  # hashed while it was downloaded
            digest = (
                known if isinstance(known, str) else await asyncio.to_thread(_file_hash, source)
            )
            content_type = str(record.get("content_type") or "application/octet-stream")[:100]
            blob = BlobRow(
                hash=digest, size=source.stat().st_size, content_type=content_type,
                stored_name=f"blobs/{digest[:2]}/{digest}", created_at=now,
            )  # fmt: skip
            node = record.get("node_id")
            asset = AssetRow(
                id=output_asset_id(job.id, index), blob_hash=digest, owner=job.owner,
                file_path=str(record.get("filename") or record["stored_name"])[:1024],
                content_type=content_type, tags=["output"], job_id=job.id,
                node_id=str(node)[:200] if node is not None else None, output_index=index,
                created_at=now, expires_at=deadline,
            )  # fmt: skip
            items.append(Mint(asset, blob, self._linker(digest, source)))
        return items

    async def input_file(self, asset_id: str) -> tuple[Path, str]:
        """The file of an asset a job uses as an input, and the name ComfyUI gets it under
        (its hash and extension: the same bytes land on the same file there).
        :class:`StorageError` when its bytes are gone."""
        found = await self.store.get_asset(asset_id)
        if found is None:
            raise StorageError(f"asset {asset_id} no longer exists")
        asset, blob = found
        path = self.path(blob.hash)
        if not path.is_file():
            raise StorageError(f"the bytes of asset {asset_id} are missing")
        return path, blob.hash + _EXTENSIONS.get(asset.content_type, ".bin")

    async def remove(self, asset_id: str, *, unless_output: bool = True) -> str:
        """Delete an asset record (``deleted``, ``missing`` or ``in_use``), then its blob when
        no other asset uses it."""
        status, digest = await self.store.delete_asset(asset_id, unless_output=unless_output)
        if status == "deleted" and digest is not None:
            await self.store.collect_blob(digest, self._unlink)
        return status

    async def cleanup(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """Delete expired assets (but those a queued or running job uses), the blobs no asset
        uses, and expired idempotency keys; what was removed."""
        now = now or utcnow()
        assets = []
        for asset in await self.store.expired_assets(now):
            status, _ = await self.store.delete_asset(asset.id, unless_output=False)
            if status == "deleted":
                assets.append(asset.id)
        blobs = 0
        for digest in await self.store.orphan_blobs():
            blobs += await self.store.collect_blob(digest, self._unlink)
        keys = await self.store.sweep_keys(now)
        return {"assets": assets, "blobs": blobs, "idempotency_keys": keys}
