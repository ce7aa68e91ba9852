"""High-level generation: the request model and the typed option sets of the high-level calls.

``generate()``, ``img2img()``, ``inpaint()``, ``upscale()`` and ``generate_batch()`` on both
clients take their options as keywords typed by the ``TypedDict``\\ s here (PEP 692), so each
option is declared once: its type in the option set, its default and bounds in
:class:`GenerationRequest`. What they return (:class:`GenerationResult`, :class:`BatchResult`)
lives in ``comfykit._images``, name matching in ``comfykit._names`` and progress bars in
``comfykit._progress``; the names are re-exported here.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable, Mapping
from typing import Any, TypedDict, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from comfykit._exceptions import InputError
from comfykit._images import BatchItem, BatchResult, GenerationResult, file_ref_of
from comfykit._names import SAMPLER_ALIASES, resolve_choice, resolve_model
from comfykit._progress import ProgressReporter
from comfykit._protocol.events import PreviewImage, Progress

__all__ = [
    "MAX_SEED",
    "SAMPLER_ALIASES",
    "BatchItem",
    "BatchOptions",
    "BatchResult",
    "GenerateOptions",
    "GenerationRequest",
    "GenerationResult",
    "Img2ImgOptions",
    "ImageSizeOptions",
    "InpaintOptions",
    "JobOptions",
    "ProgressReporter",
    "SamplingOptions",
    "file_ref_of",
    "resolve_choice",
    "resolve_model",
    "split_options",
]

MAX_SEED = 2**64 - 1
#: Longest value shown in an error message; longer ones are cut with their length noted.
_SHOWN = 80


class SamplingOptions(TypedDict, total=False):
    """The sampling options every generating call takes; defaults and bounds are
    :class:`GenerationRequest`'s."""

    negative_prompt: str
    steps: int
    cfg_scale: float
    sampler: str
    scheduler: str
    seed: int | None
    batch_size: int
    denoise: float


class ImageSizeOptions(SamplingOptions, total=False):
    """Sampling options plus the size of a new image (txt2img)."""

    width: int
    height: int


class JobOptions(TypedDict, total=False):
    """How a high-level call waits for its job and reports progress.

    ``timeout``: seconds to wait for the job (``None``: no limit); ``cancel_on_timeout``: cancel
    the job on the server when that runs out (otherwise it keeps running and the
    :class:`~comfykit.ComfyTimeoutError` carries it); ``progress``: show a progress bar;
    ``on_progress`` / ``on_preview``: callbacks for sampler steps and preview images.
    """

    timeout: float | None
    cancel_on_timeout: bool
    progress: bool
    on_progress: Callable[[Progress], None] | None
    on_preview: Callable[[PreviewImage], None] | None


class GenerateOptions(ImageSizeOptions, JobOptions, total=False):
    """Keywords of ``generate()``."""

    model: str | None


class Img2ImgOptions(SamplingOptions, JobOptions, total=False):
    """Keywords of ``img2img()`` (``denoise`` defaults to 0.75 there)."""

    model: str | None


class InpaintOptions(Img2ImgOptions, total=False):
    """Keywords of ``inpaint()``: ``mask_channel`` is the mask image's channel that marks what
    to repaint (``alpha``, ``red``, ``green`` or ``blue``; default ``red``)."""

    mask_channel: str


class BatchOptions(ImageSizeOptions, total=False):
    """Options ``generate_batch()`` applies to every item (an item's own fields win)."""

    model: str | None
    timeout: float | None
    cancel_on_timeout: bool
    progress: bool


_JOB_KEYS = frozenset(JobOptions.__optional_keys__)


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], JobOptions]:
    """Split a high-level call's keywords into request fields and :class:`JobOptions`."""
    fields = {k: v for k, v in options.items() if k not in _JOB_KEYS}
    job = {k: v for k, v in options.items() if k in _JOB_KEYS}
    return fields, cast(JobOptions, job)


def shown(value: Any) -> str:
    """``repr(value)`` cut to a readable length for an error message."""
    text = repr(value)
    if len(text) <= _SHOWN:
        return text
    return f"{text[: _SHOWN - 20]}... ({len(text)} characters)"


class GenerationRequest(BaseModel):
    """What ``generate()`` takes, validated before anything is sent.

    Types are strict: ``seed=True`` or ``width="64"`` is refused, not converted. The prompt has no
    length limit here (ComfyUI sets none); the REST service sets its own.
    """

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    prompt: str = Field(min_length=1)
    negative_prompt: str = ""
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
            raise InputError(
                "invalid generation request: " + "; ".join(describe_errors(exc, cls))
            ) from None

    def with_seed(self) -> GenerationRequest:
        """This request with a concrete seed (a random one when it had none)."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": random.randrange(2**32)})


def describe_errors(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per problem of a pydantic error: field, rule, the value cut short, and for an
    unknown field the closest known ones."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "request"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            names = list(model.model_fields)
            close = [n for n in names if n.startswith(where) or where.startswith(n)]
            close += difflib.get_close_matches(where, names, n=2, cutoff=0.6)
            close = list(dict.fromkeys(close))[:2]
            msg = "unknown option" + (f" (did you mean {' or '.join(close)}?)" if close else "")
        problems.append(f"{where}: {msg} (got {shown(err.get('input'))})")
    return problems
