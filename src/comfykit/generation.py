"""High-level generation: request validation, results and progress (no I/O in this module).

``generate()``, ``img2img()``, ``inpaint()``, ``upscale()`` and ``generate_batch()`` on both
clients are built from these pieces and the graphs in :mod:`comfykit.recipes`.
"""

from __future__ import annotations

import base64
import difflib
import io
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from comfykit._exceptions import ComfyConnectionError, ComfyError, InputError
from comfykit._protocol.events import Event, PreviewImage, Progress
from comfykit._types import FileRef

if TYPE_CHECKING:
    from PIL.Image import Image

    from comfykit.graph import NodeCatalog

__all__ = [
    "SAMPLER_ALIASES",
    "BatchItem",
    "BatchResult",
    "GenerationRequest",
    "GenerationResult",
    "ProgressReporter",
    "resolve_choice",
    "resolve_model",
]

#: Common short names accepted for ComfyUI's sampler names.
SAMPLER_ALIASES: dict[str, str] = {
    "euler_a": "euler_ancestral",
    "euler a": "euler_ancestral",
    "k_euler": "euler",
    "k_euler_a": "euler_ancestral",
    "dpm++_2m": "dpmpp_2m",
    "dpmpp2m": "dpmpp_2m",
    "dpm++_sde": "dpmpp_sde",
    "dpm++_2m_sde": "dpmpp_2m_sde",
}

MAX_SEED = 2**64 - 1


class GenerationRequest(BaseModel):
    """What ``generate()`` takes, validated before anything is sent."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    prompt: str = Field(min_length=1, max_length=5000)
    negative_prompt: str = Field(default="", max_length=5000)
    model: str | None = None
    width: int = Field(default=512, ge=64, le=2048)
    height: int = Field(default=512, ge=64, le=2048)
    steps: int = Field(default=20, ge=1, le=150)
    cfg_scale: float = Field(default=7.0, ge=1.0, le=30.0)
    sampler: str = "euler"
    scheduler: str = "normal"
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    batch_size: int = Field(default=1, ge=1, le=64)
    denoise: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (try {value // 8 * 8})")
        return value

    @classmethod
    def build(cls, **values: Any) -> GenerationRequest:
        """Validate ``values``; raise :class:`~comfykit.InputError` naming every bad field."""
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "request"
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"{where}: {msg} (got {err.get('input')!r})")
            raise InputError("invalid generation request: " + "; ".join(problems)) from None

    def with_seed(self) -> GenerationRequest:
        """This request with a concrete seed (a random one when it had none)."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": random.randrange(2**32)})


def _choices(catalog: NodeCatalog, class_type: str, input_name: str) -> tuple[str, ...]:
    spec = catalog.get(class_type)
    entry = spec.input(input_name) if spec is not None else None
    if entry is None or entry.choices is None:
        return ()
    return tuple(str(c) for c in entry.choices)


def resolve_choice(
    value: str,
    catalog: NodeCatalog,
    *,
    what: str,
    class_type: str = "KSampler",
    input_name: str,
    aliases: Mapping[str, str] | None = None,
) -> str:
    """Map ``value`` (or its alias) onto the server's combo for ``class_type.input_name``."""
    valid = _choices(catalog, class_type, input_name)
    if not valid:
        return value
    if value in valid:
        return value
    mapped = (aliases or {}).get(value.lower(), value.lower())
    if mapped in valid:
        return mapped
    close = difflib.get_close_matches(value, valid, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise InputError(f"unknown {what} {value!r}.{hint} Valid {what}s: {', '.join(valid)}")


def resolve_model(model: str | None, checkpoints: Sequence[str]) -> str:
    """The checkpoint to use: ``model`` if the server has it, else the server's only one."""
    if model is None:
        if len(checkpoints) == 1:
            return checkpoints[0]
        if not checkpoints:
            raise InputError("model=None but the server has no checkpoint in models/checkpoints")
        raise InputError(
            "model=None but the server has several checkpoints; pick one of: "
            + ", ".join(checkpoints)
        )
    if model in checkpoints:
        return model
    close = difflib.get_close_matches(model, checkpoints, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    listing = ", ".join(checkpoints) or "none"
    raise InputError(f"unknown model {model!r}.{hint} Available checkpoints: {listing}")


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


class ProgressReporter:
    """Feeds job events to ``on_progress`` / ``on_preview`` and (optionally) a progress bar.

    The bar uses ``tqdm.auto`` when tqdm is installed (terminal and notebook), else a plain line
    on stderr.
    """

    def __init__(
        self,
        *,
        bar: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        on_preview: Callable[[PreviewImage], None] | None = None,
        description: str = "generating",
    ) -> None:
        self.on_progress = on_progress
        self.on_preview = on_preview
        self._want_bar = bar
        self._bar: Any = None
        self._description = description
        self.steps_seen = 0

    @property
    def active(self) -> bool:
        """True when anything listens (otherwise events need not be read one by one)."""
        return self._want_bar or self.on_progress is not None or self.on_preview is not None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.steps_seen += 1
            if self.on_progress is not None:
                self.on_progress(event)
            if self._want_bar:
                self._update_bar(event)
        elif isinstance(event, PreviewImage) and self.on_preview is not None:
            self.on_preview(event)

    def _update_bar(self, event: Progress) -> None:
        total = int(event.max) if event.max else None
        if self._bar is None or getattr(self._bar, "total", None) != total:
            self.close()
            self._bar = _make_bar(total, self._description)
        self._bar.update(int(event.value) - self._bar.n)  # keeps tqdm's rate right
        self._bar.refresh()

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _LineBar:
    def __init__(self, total: int | None, desc: str) -> None:
        self.total = total
        self.n = 0
        self.desc = desc

    def update(self, n: int) -> None:
        self.n += n

    def refresh(self) -> None:
        sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total or '?'}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def _make_bar(total: int | None, desc: str) -> Any:
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return _LineBar(total, desc)
    return tqdm(total=total, desc=desc, unit="step", leave=False)


def file_ref_of(value: Any) -> FileRef:
    """Coerce an output file to a plain :class:`FileRef` (for metadata)."""
    return FileRef(filename=value.filename, subfolder=value.subfolder, type=value.type)
