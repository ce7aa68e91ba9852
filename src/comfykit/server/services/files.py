"""Storage: job outputs copied from ComfyUI, uploads checked by content, and retention.

Everything lives under the storage dir, under names the service generates
(``outputs/<job id>/<n>.<ext>``, ``uploads/<upload id>.<ext>``): no client-chosen path ever
reaches the file system.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import logging
import mimetypes
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, cast

from blake3 import blake3

from comfykit.server.errors import ServiceError
from comfykit.server.paths import (
    UnsafePathError,
    check_segment,
    display_name,
    resolve_inside,
    safe_relative_path,
    scrub_paths,
)
from comfykit.server.store import JobRow, Store, UploadRow, utcnow

if TYPE_CHECKING:
    from comfykit import AsyncComfyClient, AsyncOutputFile

__all__ = ["CleanupReport", "Files", "OutputPrefetch", "StorageError", "inspect_image"]

log = logging.getLogger("comfykit.server")

#: Image formats accepted as uploads (Pillow format name → extension, content type). Only
#: these decoders are ever tried on an upload.
_FORMATS = {
    "PNG": (".png", "image/png"),
    "JPEG": (".jpg", "image/jpeg"),
    "WEBP": (".webp", "image/webp"),
    "GIF": (".gif", "image/gif"),
    "BMP": (".bmp", "image/bmp"),
    "TIFF": (".tiff", "image/tiff"),
}
#: The ``type`` of a ComfyUI file reference (its folder on that server).
_FILE_TYPES = frozenset({"output", "temp", "input"})
_SUFFIX = re.compile(r"\.[a-z0-9]{1,9}")
_PIXELS = re.compile(r"\((\d+) pixels\)")
_LIMIT = re.compile(r"limit of (\d+) pixels")


class StorageError(Exception):
    """The storage dir is not as the service left it (a path of its own resolves outside it,
    e.g. through a symlink): a server fault, answered as a 500 and logged."""


def _too_many_pixels(
    pixels: int | None, limit: int, *, size: str = "", setting: str = "max_image_pixels"
) -> ServiceError:
    count = f"{size}{pixels} pixels" if pixels is not None else "more pixels than allowed"
    return ServiceError(
        400,
        f"the image is too large to decode safely: {count}; the limit is {limit} pixels "
        f"({setting})",
        details=[{"field": "file", "rule": "max_image_pixels", "pixels": pixels,
                  "limit": limit}],
    )  # fmt: skip


def inspect_image(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Decode ``data`` with Pillow (only the accepted formats' decoders): its format, width
    and height. The size in the header is checked against ``max_pixels`` before any pixel is
    decoded; Pillow's own decompression-bomb refusal is the same 400, as are truncated or
    corrupt data and PNG text chunks over Pillow's limits (``PngImagePlugin.MAX_TEXT_CHUNK``,
    ``MAX_TEXT_MEMORY``). 415 when it is not an accepted image. Changes no Pillow setting."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=list(_FORMATS)) as img:
            fmt = str(img.format)
            width, height = img.size
            pixels = max(1, width) * max(1, height)
            if pixels > max_pixels:
                raise _too_many_pixels(pixels, max_pixels, size=f"{width}x{height} = ")
            img.load()
    except ServiceError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own limit (its process-wide MAX_IMAGE_PIXELS) refused it first
        found = _PIXELS.search(str(exc))
        pixels = int(found.group(1)) if found else None
        theirs = _LIMIT.search(str(exc))
        if theirs is not None and int(theirs.group(1)) < max_pixels:
            raise _too_many_pixels(
                pixels, int(theirs.group(1)), setting="Pillow's MAX_IMAGE_PIXELS"
            ) from None
        raise _too_many_pixels(pixels, max_pixels) from None
    except UnidentifiedImageError:
        raise ServiceError(
            415, "the file is not an image (accepted: PNG, JPEG, WebP, GIF, BMP, TIFF)"
        ) from None
    except ValueError as exc:
        if "MAX_TEXT" in str(exc):
            raise ServiceError(
                400, "the image's text metadata is too large (a PNG text chunk inflates past "
                "Pillow's limit)",
            ) from None  # fmt: skip
        raise ServiceError(400, f"the image is damaged: {scrub_paths(str(exc))[:200]}") from None
    except Exception as exc:
        # whatever the decoder raises on hostile data (OSError, SyntaxError, EOFError,
        # struct.error, ...) is about the data
        raise ServiceError(400, f"the image is damaged: {scrub_paths(str(exc))[:200]}") from None
    if fmt not in _FORMATS:
        raise ServiceError(415, f"image format {fmt} is not accepted")
    return fmt, width, height


class _HashingSink:
    """A binary file that also hashes (SHA-256) and counts what is written to it; what comes
    before the file is attached waits in memory."""

    def __init__(self) -> None:
        self._fh: IO[bytes] | None = None
        self._early: list[bytes] = []
        self.digest = hashlib.sha256()
        #: The content hash of Comfy API v2 assets, made on the way too (no second read).
        self.blake3 = blake3()
        self.size = 0

    def attach(self, fh: IO[bytes]) -> None:
        self._fh = fh
        for chunk in self._early:
            fh.write(chunk)
        self._early.clear()

    def write(self, chunk: bytes) -> int:
        if self._fh is None:
            self._early.append(bytes(chunk))
        else:
            self._fh.write(chunk)
        self.digest.update(chunk)
        self.blake3.update(chunk)
        self.size += len(chunk)
        return len(chunk)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


@dataclass
class _Fetched:
    """A file downloaded into a temporary file, with its hash and size."""

    path: Path
    sink: _HashingSink


async def _download(save: Callable[[IO[bytes]], Awaitable[Any]], tmp: Path) -> _Fetched:
    """Stream a file (``save`` writes it to a binary file) into ``tmp``, hashing it. The
    request goes out first: making the folder and the file (slow on some file systems) is
    done while ComfyUI answers."""
    sink = _HashingSink()
    transfer = asyncio.ensure_future(save(cast("IO[bytes]", sink)))
    try:
        await asyncio.sleep(0)  # the transfer runs up to its first wait (its request sent)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        sink.attach(open(tmp, "wb"))  # closed below, on every path
        await transfer
        sink.close()
    except BaseException:
        transfer.cancel()
        with contextlib.suppress(BaseException):  # (its error, if any, is the one raised)
            await transfer
        sink.close()
        tmp.unlink(missing_ok=True)
        raise
    return _Fetched(tmp, sink)


def _key(filename: str, subfolder: str | None, kind: str | None) -> tuple[str, str, str]:
    return filename, subfolder or "", kind or "output"


class OutputPrefetch:
    """Downloads of one running job's output files (``type`` "output"): :meth:`add` notes
    the files a node reports (its ``executed`` event), :meth:`start` downloads them (when the
    prompt has succeeded), alongside the SDK's read of the job's history.
    :meth:`Files.copy_outputs` takes the ones the result lists (a failed download is made
    again there); :meth:`close` drops the rest and their files."""

    def __init__(self, folder: Path | None, client: AsyncComfyClient) -> None:
        self._folder = folder  # None: nothing is prefetched (copy_outputs says why)
        self._client = client
        self._tasks: dict[tuple[str, str, str], asyncio.Task[_Fetched]] = {}
        self._refs: dict[tuple[str, str, str], dict[str, Any]] = {}

    def add(self, output: dict[str, Any]) -> None:
        """Note the output files of one node's UI output (:meth:`start` downloads them)."""
        for value in output.values():
            if not isinstance(value, list):
                continue
            for ref in value:
                if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
                    continue
                if ref.get("type") != "output":
                    continue
                key = _key(ref["filename"], ref.get("subfolder"), "output")
                if key not in self._tasks:
                    self._refs.setdefault(key, dict(ref))

    def start(self) -> None:
        """Start downloading the files noted so far."""
        if self._folder is None:
            self._refs.clear()
            return
        for key, ref in self._refs.items():
            name = f".prefetch-{len(self._tasks)}.part"
            self._tasks[key] = asyncio.get_running_loop().create_task(self._fetch(ref, name))
        self._refs.clear()

    async def _fetch(self, ref: dict[str, Any], name: str) -> _Fetched:
        async def save(dest: IO[bytes]) -> None:
            await self._client.download(ref, dest)

        assert self._folder is not None
        return await _download(save, self._folder / name)

    async def take(self, file: AsyncOutputFile) -> _Fetched | None:
        """The downloaded file, or ``None`` (not prefetched, or its download failed)."""
        task = self._tasks.pop(_key(file.filename, file.subfolder, file.type), None)
        if task is None:
            return None
        try:
            return await task
        except Exception:
            return None

    async def close(self) -> None:
        """Cancel what was not taken and delete its files."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, _Fetched):  # (a cancelled download removed its own file)
                result.path.unlink(missing_ok=True)
        if tasks and self._folder is not None:
            with contextlib.suppress(OSError):
                self._folder.rmdir()  # only when empty: a job whose files were never taken


@dataclass
class CleanupReport:
    """What a retention cleanup deleted."""

    cutoff: dt.datetime
    deleted_files: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    jobs: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able data."""
        return {
            "cutoff": self.cutoff.isoformat(),
            "deleted_files": self.deleted_files,
            "freed_bytes": self.freed_bytes,
            "jobs": self.jobs,
            "uploads": self.uploads,
        }


class Files:
    """The storage dir of one service instance. Every path in it is made by :meth:`stored`
    (checked segments, resolved inside the dir)."""

    def __init__(self, root: Path, store: Store, *, max_image_pixels: int = 40_000_000) -> None:
        self.root = root
        self.store = store
        self.max_image_pixels = max_image_pixels
        self._root_resolved: Path | None = None
        self.outputs = root / "outputs"
        self.uploads = root / "uploads"

    def prepare(self) -> None:
        """Create the storage folders."""
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)

    def _resolved_root(self) -> Path:
        # the storage dir itself is the configuration's: resolved once (what is inside it is
        # resolved on every call)
        if self._root_resolved is None:
            self._root_resolved = self.root.resolve()
        return self._root_resolved

    def stored(self, *parts: str) -> Path:
        """The path of ``parts`` (names the service made) in the storage dir, resolved;
        :class:`StorageError` when a part is unsafe or the path resolves outside the dir."""
        try:
            relative = PurePosixPath(*(check_segment(p, what="stored name") for p in parts))
            return resolve_inside(self.root, relative, resolved_root=self._resolved_root())
        except UnsafePathError as exc:
            raise StorageError(f"refusing a storage path: {exc}") from exc

    # -- outputs --------------------------------------------------------------------------
    def prefetch(self, job_id: str, client: AsyncComfyClient) -> OutputPrefetch:
        """Downloads of a running job's output files, started as soon as its prompt ends
        (into temporary files under generated names; :meth:`copy_outputs` checks every name
        before it takes one)."""
        try:
            folder: Path | None = self.stored("outputs", job_id)
        except StorageError:
            folder = None  # copy_outputs fails the job with the reason
        return OutputPrefetch(folder, client)

    async def copy_outputs(
        self,
        job_id: str,
        files: Sequence[AsyncOutputFile],
        prefetched: OutputPrefetch | None = None,
    ) -> list[dict[str, Any]]:
        """Download a finished job's files into the storage dir; their records.

        Every file's name, subfolder and type (ComfyUI's answer) is checked before anything
        is stored: :class:`~comfykit.server.paths.UnsafePathError` and nothing kept when one
        is unsafe. Each file is streamed once into a temporary file, hashed on the way (its
        ETag), and moved into place under a generated name (``<index><ext>``, replacing what
        a previous run of the job left); a file ``prefetched`` already holds is not
        downloaded again.
        """
        for file in files:
            safe_relative_path(file.filename, file.subfolder)
            if file.type not in _FILE_TYPES:
                raise UnsafePathError(file.type, "is not a ComfyUI folder type", what="type")
        records = []
        for index, file in enumerate(files):
            suffix = Path(file.filename).suffix.lower()
            if not _SUFFIX.fullmatch(suffix):
                suffix = ".bin"
            target = self.stored("outputs", job_id, f"{index}{suffix}")
            fetched = await prefetched.take(file) if prefetched is not None else None
            if fetched is None:
                tmp = self.stored("outputs", job_id, f".{target.name}.part")
                fetched = await _download(file.save, tmp)
            fetched.path.replace(target)
            content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            records.append(
                {
                    "index": index,
                    "stored_name": target.name,
                    "filename": file.filename,
                    "subfolder": file.subfolder,
                    "node_id": file.node_id,
                    "kind": file.kind,
                    "content_type": content_type,
                    "size": fetched.sink.size,
                    "etag": fetched.sink.digest.hexdigest()[:32],
                    "blake3": fetched.sink.blake3.hexdigest(),
                }
            )
        return records

    def output_path(self, job: JobRow, index: int) -> tuple[Path, dict[str, Any]]:
        """The stored file of a job's output ``index`` (404 when there is none, or when its
        path no longer resolves inside the storage dir)."""
        outputs = job.outputs or []
        if not 0 <= index < len(outputs):
            raise ServiceError(404, f"job {job.id} has no output {index} (it has {len(outputs)})")
        record = outputs[index]
        try:
            path = self.stored("outputs", job.id, str(record["stored_name"]))
        except StorageError:
            log.error("job %s: output %s resolves outside the storage dir", job.id, index)
            raise ServiceError(404, f"output {index} of job {job.id} is not available") from None
        if not path.is_file():
            raise ServiceError(404, f"output {index} of job {job.id} was deleted (retention)")
        return path, record

    # -- uploads --------------------------------------------------------------------------
    async def save_upload(
        self, data: bytes, original_name: str, owner: str | None = None
    ) -> UploadRow:
        """Check an upload (:func:`inspect_image`, in a worker thread) and store it (``owner``'s)
        under a generated name; its record. The client's name is kept only as a display name."""
        fmt, width, height = await asyncio.to_thread(inspect_image, data, self.max_image_pixels)
        suffix, content_type = _FORMATS[fmt]
        upload_id = str(uuid.uuid4())
        stored = f"{upload_id}{suffix}"
        path = self.stored("uploads", stored)
        tmp = self.stored("uploads", stored + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        row = UploadRow(
            id=upload_id,
            stored_name=stored,
            original_name=display_name(original_name, default=f"upload{suffix}"),
            content_type=content_type,
            size=len(data),
            width=width,
            height=height,
            created_at=utcnow(),
            owner=owner,
        )
        await self.store.add_upload(row)
        return row

    def upload_path(self, upload: UploadRow) -> Path:
        """Where an upload is kept (:class:`StorageError` when it resolves outside)."""
        return self.stored("uploads", upload.stored_name)

    # -- retention ------------------------------------------------------------------------
    async def cleanup_old_files(self, retention_days: float) -> CleanupReport:
        """Delete outputs of jobs finished, and uploads made, more than ``retention_days``
        ago; report what was deleted."""
        cutoff = utcnow() - dt.timedelta(days=retention_days)
        report = CleanupReport(cutoff=cutoff)
        for job in await self.store.finished_before(cutoff):
            try:
                folder = self.stored("outputs", job.id)
            except StorageError:
                log.error("retention: the outputs of job %s resolve outside; skipped", job.id)
                continue
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    report.deleted_files.append(str(path.relative_to(self.root.resolve())))
                    report.freed_bytes += path.stat().st_size
                shutil.rmtree(folder, ignore_errors=True)
                report.jobs.append(job.id)
        for upload in await self.store.uploads_before(cutoff):
            try:
                path = self.upload_path(upload)
            except StorageError:
                log.error("retention: upload %s resolves outside; skipped", upload.id)
                continue
            if path.is_file():
                report.deleted_files.append(str(path.relative_to(self.root.resolve())))
                report.freed_bytes += path.stat().st_size
                path.unlink()
            await self.store.delete_upload(upload.id)
            report.uploads.append(upload.id)
        return report
