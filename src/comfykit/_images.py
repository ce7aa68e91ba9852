"""What the high-level calls return: images (PIL, on first use), files, batches, display."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfykit._exceptions import ComfyConnectionError, ComfyError, InputError
from comfykit._files import check_writable_dir, is_folder, save_bytes
from comfykit._types import FileRef

if TYPE_CHECKING:
    from PIL.Image import Image

    from comfykit.generation import GenerationRequest

__all__ = ["BatchItem", "BatchResult", "GenerationResult", "file_ref_of"]


class GenerationResult:
    """Images (and any other files) a high-level call produced.

    ``images`` are PIL images, downloaded on first use and kept. ``save(dir)`` writes every file
    under a unique name; ``metadata`` holds the graph that ran, the request and timings. In a
    notebook the result displays itself (a grid for batches).
    """

    def __init__(
        self,
        *,
        prompt_id: str,
        seed: int | None,
        files: Sequence[Any],
        metadata: Mapping[str, Any],
        fetch: Callable[[Any], bytes] | None = None,
        image_bytes: Sequence[bytes] | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.seed = seed
        self.files = list(files)
        self.metadata = dict(metadata)
        self._fetch = fetch
        self._bytes: list[bytes] | None = list(image_bytes) if image_bytes is not None else None
        self._images: list[Image] | None = None

    @property
    def image_files(self) -> list[Any]:
        """The files that are images, in output order."""
        return [f for f in self.files if f.kind == "image"]

    def image_bytes(self) -> list[bytes]:
        """The encoded image files (downloaded once)."""
        if self._bytes is None:
            if self._fetch is None:
                raise InputError("this result has no way to download its images")
            try:
                self._bytes = [self._fetch(f) for f in self.image_files]
            except ComfyConnectionError as exc:
                raise ComfyConnectionError(
                    f"cannot download the result's images ({exc}); a blocking client's results "
                    "download on first use, so read result.images before closing the client"
                ) from exc
        return self._bytes

    @property
    def images(self) -> list[Image]:
        """The images as PIL images (PIL is imported here, on first use)."""
        if self._images is None:
            from PIL import Image as PILImage

            decoded: list[Image] = []
            for data in self.image_bytes():
                img = PILImage.open(io.BytesIO(data))
                img.load()
                decoded.append(img)
            self._images = decoded
        return self._images

    def save(
        self, dest: str | Path, *, prefix: str | None = None, overwrite: bool = False
    ) -> list[Path]:
        """Write the images and return their paths.

        ``dest`` is a folder (a trailing separator, an existing folder, or a name without an
        extension; created) or, for a single image, a file path. ``prefix`` replaces the
        server's file names. An existing file is never overwritten unless ``overwrite=True``:
        the next free ``name-1.ext`` is taken (or the existing file, when it holds the same
        bytes). Raises ``FileSaveError`` naming ``dest`` when it cannot be written.
        """
        files = list(self.image_files)
        if len(files) > 1 and not is_folder(dest):
            raise InputError(
                f"dest={os.fspath(dest)!r} is a file name but the result has {len(files)} "
                "images: give a folder (e.g. 'out/')"
            )
        written = []
        for ref, data in zip(files, self.image_bytes(), strict=True):
            suffix = Path(ref.filename).suffix or ".png"
            name = ref.filename if prefix is None else f"{prefix}{suffix}"
            written.append(save_bytes(data, dest, name, overwrite=overwrite))
        return written

    def grid(self, columns: int | None = None) -> Image:
        """All images side by side (rows of ``columns``), for a quick look at a batch."""
        return _grid(self.images, columns)

    def _repr_png_(self) -> bytes | None:
        return _png(self.images) if self.image_files else None

    def _repr_html_(self) -> str:
        head = f"<p>prompt {self.prompt_id} · seed {self.seed} · {len(self.files)} file(s)</p>"
        return _html(head, self._repr_png_())

    def __repr__(self) -> str:
        return (
            f"<GenerationResult {self.prompt_id} seed={self.seed} images={len(self.image_files)}>"
        )


def _grid(images: Sequence[Image], columns: int | None) -> Image:
    from PIL import Image as PILImage

    if not images:
        raise InputError("there are no images to show")
    cols = columns or min(len(images), 4)
    rows = (len(images) + cols - 1) // cols
    w = max(i.width for i in images)
    h = max(i.height for i in images)
    sheet = PILImage.new("RGB", (cols * w, rows * h), "white")
    for n, img in enumerate(images):
        sheet.paste(img.convert("RGB"), ((n % cols) * w, (n // cols) * h))
    return sheet


def _png(images: Sequence[Image]) -> bytes | None:
    """One image as PNG bytes, several as a grid; None when there is nothing to show."""
    if not images:
        return None
    buf = io.BytesIO()
    (images[0] if len(images) == 1 else _grid(images, None)).save(buf, format="PNG")
    return buf.getvalue()


def _html(head: str, png: bytes | None) -> str:
    if png is None:
        return head
    data = base64.b64encode(png).decode("ascii")
    return f'{head}<img src="data:image/png;base64,{data}" style="max-width:100%"/>'


@dataclass
class BatchItem:
    """One entry of a batch: its request and either a result or the error it failed with."""

    index: int
    request: GenerationRequest | None
    result: GenerationResult | None = None
    error: ComfyError | None = None

    @property
    def ok(self) -> bool:
        """True when this item produced a result."""
        return self.result is not None


@dataclass
class BatchResult:
    """Results of ``generate_batch()`` in input order; failed items keep their error."""

    items: list[BatchItem] = field(default_factory=list)

    def __iter__(self) -> Iterator[BatchItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> BatchItem:
        return self.items[index]

    @property
    def results(self) -> list[GenerationResult]:
        """The successful results, in input order."""
        return [i.result for i in self.items if i.result is not None]

    @property
    def errors(self) -> list[BatchItem]:
        """The items that failed."""
        return [i for i in self.items if i.error is not None]

    def raise_for_errors(self) -> None:
        """Raise the first item's error when any item failed."""
        for item in self.items:
            if item.error is not None:
                raise item.error

    def save(
        self, dest: str | Path, *, prefix: str | None = None, overwrite: bool = False
    ) -> list[Path]:
        """Write every successful item's images into the folder ``dest`` (created), in input
        order, under the rule of :meth:`GenerationResult.save`; failed items are skipped."""
        if not is_folder(dest):
            raise InputError(
                f"dest={os.fspath(dest)!r} is a file name: a batch is saved into a folder "
                "(e.g. 'out/')"
            )
        folder = check_writable_dir(dest)
        return [p for r in self.results for p in r.save(folder, prefix=prefix, overwrite=overwrite)]

    def grid(self, columns: int | None = None) -> Image:
        """Every successful item's images side by side, in input order."""
        return _grid([img for r in self.results for img in r.images], columns)

    def _repr_png_(self) -> bytes | None:
        return _png([img for r in self.results for img in r.images])

    def _repr_html_(self) -> str:
        failed = len(self.errors)
        head = f"<p>batch of {len(self.items)} · {len(self.results)} ok · {failed} failed</p>"
        return _html(head, self._repr_png_())

    def __repr__(self) -> str:
        return f"<BatchResult items={len(self.items)} ok={len(self.results)}>"


def file_ref_of(value: Any) -> FileRef:
    """Coerce an output file to a plain :class:`FileRef` (for metadata)."""
    return FileRef(filename=value.filename, subfolder=value.subfolder, type=value.type)
