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
import mimetypes
import shutil
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from comfykit.server.errors import ServiceError
from comfykit.server.store import JobRow, Store, UploadRow, utcnow

if TYPE_CHECKING:
    from comfykit import AsyncComfyClient, AsyncOutputFile

__all__ = ["CleanupReport", "Files", "OutputPrefetch"]

#: Image formats accepted as uploads (Pillow format name → extension, content type).
_FORMATS = {
    "PNG": (".png", "image/png"),
    "JPEG": (".jpg", "image/jpeg"),
    "WEBP": (".webp", "image/webp"),
    "GIF": (".gif", "image/gif"),
    "BMP": (".bmp", "image/bmp"),
    "TIFF": (".tiff", "image/tiff"),
}
_MAX_PIXELS = 64 * 1024 * 1024


class _HashingSink:
    """A binary file that also hashes (SHA-256) and counts what is written to it; what comes
    before the file is attached waits in memory."""

    def __init__(self) -> None:
        self._fh: IO[bytes] | None = None
        self._early: list[bytes] = []
        self.digest = hashlib.sha256()
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

    def __init__(self, folder: Path, client: AsyncComfyClient) -> None:
        self._folder = folder
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
        for key, ref in self._refs.items():
            name = f".prefetch-{len(self._tasks)}.part"
            self._tasks[key] = asyncio.get_running_loop().create_task(self._fetch(ref, name))
        self._refs.clear()

    async def _fetch(self, ref: dict[str, Any], name: str) -> _Fetched:
        async def save(dest: IO[bytes]) -> None:
            await self._client.download(ref, dest)

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
        if tasks:
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
    """The storage dir of one service instance."""

    def __init__(self, root: Path, store: Store) -> None:
        self.root = root
        self.store = store
        self.outputs = root / "outputs"
        self.uploads = root / "uploads"

    def prepare(self) -> None:
        """Create the storage folders."""
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)

    # -- outputs --------------------------------------------------------------------------
    def prefetch(self, job_id: str, client: AsyncComfyClient) -> OutputPrefetch:
        """Downloads of a running job's output files, started as soon as its prompt ends."""
        return OutputPrefetch(self.outputs / job_id, client)

    async def copy_outputs(
        self,
        job_id: str,
        files: Sequence[AsyncOutputFile],
        prefetched: OutputPrefetch | None = None,
    ) -> list[dict[str, Any]]:
        """Download a finished job's files into the storage dir; their records. Each file is
        streamed once into a temporary file, hashed on the way (its ETag), and moved into
        place under its index (replacing what a previous run of the job left); a file
        ``prefetched`` already holds is not downloaded again."""
        folder = self.outputs / job_id
        records = []
        for index, file in enumerate(files):
            suffix = Path(file.filename).suffix.lower()[:10] or ".bin"
            target = folder / f"{index}{suffix}"
            fetched = await prefetched.take(file) if prefetched is not None else None
            if fetched is None:
                fetched = await _download(file.save, folder / f".{target.name}.part")
            fetched.path.replace(target)
            digest = fetched.sink.digest
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
                    "etag": digest.hexdigest()[:32],
                }
            )
        return records

    def output_path(self, job: JobRow, index: int) -> tuple[Path, dict[str, Any]]:
        """The stored file of a job's output ``index`` (404 when there is none)."""
        outputs = job.outputs or []
        if not 0 <= index < len(outputs):
            raise ServiceError(404, f"job {job.id} has no output {index} (it has {len(outputs)})")
        record = outputs[index]
        path = self.outputs / job.id / str(record["stored_name"])
        if not path.is_file():
            raise ServiceError(404, f"output {index} of job {job.id} was deleted (retention)")
        return path, record

    # -- uploads --------------------------------------------------------------------------
    def check_image(self, data: bytes) -> tuple[str, int, int]:
        """Decode ``data`` with Pillow: its format, width and height (415 when not an image)."""
        from PIL import Image, UnidentifiedImageError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as img:
                    fmt = str(img.format)
                    width, height = img.size
                    if width * height > _MAX_PIXELS:
                        raise ServiceError(400, f"image too large: {width}x{height} pixels")
                    img.load()
        except ServiceError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ServiceError(400, f"image too large to decode safely: {exc}") from None
        except UnidentifiedImageError:
            raise ServiceError(
                415, "the file is not an image (accepted: PNG, JPEG, WebP, GIF, BMP, TIFF)"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ServiceError(400, f"the image is damaged: {exc}") from None
        if fmt not in _FORMATS:
            raise ServiceError(415, f"image format {fmt} is not accepted")
        return fmt, width, height

    async def save_upload(self, data: bytes, original_name: str) -> UploadRow:
        """Check and store an upload under a generated name; its record."""
        fmt, width, height = self.check_image(data)
        suffix, content_type = _FORMATS[fmt]
        upload_id = str(uuid.uuid4())
        stored = f"{upload_id}{suffix}"
        path = self.uploads / stored
        tmp = path.with_name(stored + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        safe_name = "".join(
            c for c in Path(original_name.replace("\\", "/")).name if c.isprintable()
        )
        row = UploadRow(
            id=upload_id,
            stored_name=stored,
            original_name=safe_name[:255],
            content_type=content_type,
            size=len(data),
            width=width,
            height=height,
            created_at=utcnow(),
        )
        await self.store.add_upload(row)
        return row

    def upload_path(self, upload: UploadRow) -> Path:
        """Where an upload is kept."""
        return self.uploads / upload.stored_name

    # -- retention ------------------------------------------------------------------------
    async def cleanup_old_files(self, retention_days: float) -> CleanupReport:
        """Delete outputs of jobs finished, and uploads made, more than ``retention_days``
        ago; report what was deleted."""
        cutoff = utcnow() - dt.timedelta(days=retention_days)
        report = CleanupReport(cutoff=cutoff)
        for job in await self.store.finished_before(cutoff):
            folder = self.outputs / job.id
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    report.deleted_files.append(str(path.relative_to(self.root)))
                    report.freed_bytes += path.stat().st_size
                shutil.rmtree(folder, ignore_errors=True)
                report.jobs.append(job.id)
        for upload in await self.store.uploads_before(cutoff):
            path = self.upload_path(upload)
            if path.is_file():
                report.deleted_files.append(str(path.relative_to(self.root)))
                report.freed_bytes += path.stat().st_size
                path.unlink()
            await self.store.delete_upload(upload.id)
            report.uploads.append(upload.id)
        return report
