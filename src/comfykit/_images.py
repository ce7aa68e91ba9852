"""What the high-level calls return: images (PIL, on first use), files, batches, display."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfykit._exceptions import ComfyConnectionError, ComfyError, InputError
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

    def save(self, directory: str | Path, *, prefix: str | None = None) -> list[Path]:
        """Write the images into ``directory`` (created) under names that never overwrite."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for ref, data in zip(self.image_files, self.image_bytes(), strict=True):
            stem = Path(ref.filename).stem if prefix is None else prefix
            suffix = Path(ref.filename).suffix or ".png"
            path = _unique(target, stem, suffix)
            path.write_bytes(data)
            written.append(path)
        return written

    def grid(self, columns: int | None = None) -> Image:
        """All images side by side (rows of ``columns``), for a quick look at a batch."""
        from PIL import Image as PILImage

        images = self.images
        if not images:
            raise InputError("the result has no images")
        cols = columns or min(len(images), 4)
        rows = (len(images) + cols - 1) // cols
        w = max(i.width for i in images)
        h = max(i.height for i in images)
        sheet = PILImage.new("RGB", (cols * w, rows * h), "white")
        for n, img in enumerate(images):
            sheet.paste(img.convert("RGB"), ((n % cols) * w, (n // cols) * h))
        return sheet

    def _repr_png_(self) -> bytes | None:
        if not self.image_files:
            return None
        buf = io.BytesIO()
        (self.images[0] if len(self.images) == 1 else self.grid()).save(buf, format="PNG")
        return buf.getvalue()

    def _repr_html_(self) -> str:
        png = self._repr_png_()
        head = f"<p>prompt {self.prompt_id} · seed {self.seed} · {len(self.files)} file(s)</p>"
        if png is None:
            return head
        data = base64.b64encode(png).decode("ascii")
        return f'{head}<img src="data:image/png;base64,{data}" style="max-width:100%"/>'

    def __repr__(self) -> str:
        return (
            f"<GenerationResult {self.prompt_id} seed={self.seed} images={len(self.image_files)}>"
        )


def _unique(directory: Path, stem: str, suffix: str) -> Path:
    path = directory / f"{stem}{suffix}"
    n = 1
    while path.exists():
        path = directory / f"{stem}-{n}{suffix}"
        n += 1
    return path


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


def file_ref_of(value: Any) -> FileRef:
    """Coerce an output file to a plain :class:`FileRef` (for metadata)."""
    return FileRef(filename=value.filename, subfolder=value.subfolder, type=value.type)
