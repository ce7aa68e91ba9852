# Generated from comfykit/_async by scripts/unasync.py. Do not edit: edit _async instead.
"""High-level calls on top of ``submit()``: generate, img2img, inpaint, upscale, batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfykit._backends import sync as backend
from comfykit._exceptions import ComfyError, InputError, NotFoundError
from comfykit._protocol.events import PreviewImage, Progress
from comfykit._sync.jobs import Job
from comfykit._types import FileRef
from comfykit._uploads import FileInput, file_ref
from comfykit.generation import (
    SAMPLER_ALIASES,
    BatchItem,
    BatchResult,
    GenerationRequest,
    GenerationResult,
    ProgressReporter,
    file_ref_of,
    resolve_choice,
    resolve_model,
)

if TYPE_CHECKING:
    import httpx

    from comfykit._prompt import PromptInput
    from comfykit._types import UploadedFile
    from comfykit.graph import NodeCatalog, Workflow

__all__ = ["GenerateMixin"]

ProgressCallback = Callable[[Progress], None]
PreviewCallback = Callable[[PreviewImage], None]
ImageInput = FileInput | FileRef


class GenerateMixin:
    """The high-level calls of the client: ``generate``, ``img2img``, ``inpaint``, ``upscale``,
    ``generate_batch``. Each builds a :mod:`comfykit.recipes` graph and submits it."""

    if TYPE_CHECKING:  # provided by the client class

        def catalog(self, *, refresh: bool = False) -> NodeCatalog: ...

        def models(self, folder: str | None = None) -> list[str]: ...

        def upload_image(
            self,
            data_or_path: FileInput,
            *,
            filename: str | None = None,
            subfolder: str | None = None,
            overwrite: bool = False,
            type: str = "input",
        ) -> UploadedFile: ...

        def _request(
            self,
            method: str,
            path: str,
            *,
            params: Mapping[str, Any] | None = None,
            stream: bool = False,
        ) -> httpx.Response: ...

        def submit(
            self,
            prompt: PromptInput,
            *,
            params: Mapping[str, Any] | None = None,
            validate: bool | None = None,
            extra_data: Mapping[str, Any] | None = None,
            front: bool = False,
            number: float | None = None,
            output_nodes: Sequence[str] | None = None,
            prompt_id: str | None = None,
        ) -> Job: ...

    def resolve_request(self, request: GenerationRequest) -> GenerationRequest:
        """Fill in the seed and map model, sampler and scheduler onto what the server has."""
        client = self
        catalog = client.catalog()
        checkpoints = client.models("checkpoints")
        model = resolve_model(request.model, checkpoints)
        spec = catalog.get("CheckpointLoaderSimple")
        known = spec.input("ckpt_name") if spec is not None else None
        if known is not None and known.choices is not None and model not in known.choices:
            catalog = client.catalog(refresh=True)  # a model added since it was read
        sampler = resolve_choice(
            request.sampler,
            catalog,
            what="sampler",
            input_name="sampler_name",
            aliases=SAMPLER_ALIASES,
        )
        scheduler = resolve_choice(
            request.scheduler, catalog, what="scheduler", input_name="scheduler"
        )
        return request.with_seed().model_copy(
            update={"model": model, "sampler": sampler, "scheduler": scheduler}
        )

    def _image_ref(self, image: ImageInput) -> str:
        """A file already on the server (a ``FileRef``, or a ``"sub/name.png"`` string that is not
        a local file) is used as it is; anything else is uploaded first."""
        if isinstance(image, FileRef):
            return image.ref
        if isinstance(image, str) and not Path(image).is_file():
            ref = file_ref(image, default_type="input")
            try:
                response = self._request(
                    "GET", "/view", params=ref.view_params(), stream=True
                )
            except NotFoundError:
                raise InputError(
                    f"image {image!r} is neither a local file nor a file on the server"
                ) from None
            response.close()
            return ref.ref
        uploaded = self.upload_image(image, subfolder="comfykit")
        return uploaded.ref

    def _run_recipe(
        self,
        workflow: Workflow,
        *,
        request: GenerationRequest | None,
        timeout: float | None,
        kind: str,
        reporter: ProgressReporter | None = None,
    ) -> GenerationResult:
        started = time.time()
        job = self.submit(workflow, validate=True)
        return _collect(
            job, request=request, kind=kind, started=started, timeout=timeout, reporter=reporter
        )

    def _generate(
        self,
        request: GenerationRequest,
        *,
        kind: str,
        timeout: float | None,
        progress: bool,
        on_progress: ProgressCallback | None,
        on_preview: PreviewCallback | None,
        image: ImageInput | None = None,
        mask: ImageInput | None = None,
        mask_channel: str = "red",
    ) -> GenerationResult:
        from comfykit import recipes

        resolved = self.resolve_request(request)
        image_ref = self._image_ref(image) if image is not None else None
        mask_ref = self._image_ref(mask) if mask is not None else None
        workflow = recipes.from_request(
            resolved, image=image_ref, mask=mask_ref, mask_channel=mask_channel
        )
        reporter = ProgressReporter(
            bar=progress, on_progress=on_progress, on_preview=on_preview, description=kind
        )
        return self._run_recipe(
            workflow, request=resolved, timeout=timeout, kind=kind, reporter=reporter
        )

    def generate(
        self,
        prompt: str,
        *,
        negative_prompt: str = "",
        model: str | None = None,
        width: int = 512,
        height: int = 512,
        steps: int = 20,
        cfg_scale: float = 7.0,
        sampler: str = "euler",
        scheduler: str = "normal",
        seed: int | None = None,
        batch_size: int = 1,
        timeout: float | None = None,
        progress: bool = False,
        on_progress: ProgressCallback | None = None,
        on_preview: PreviewCallback | None = None,
    ) -> GenerationResult:
        """Text to image. Every argument is validated before anything is sent."""
        request = GenerationRequest.build(
            prompt=prompt, negative_prompt=negative_prompt, model=model, width=width,
            height=height, steps=steps, cfg_scale=cfg_scale, sampler=sampler,
            scheduler=scheduler, seed=seed, batch_size=batch_size,
        )  # fmt: skip
        return self.generate_request(
            request, timeout=timeout, progress=progress, on_progress=on_progress,
            on_preview=on_preview,
        )  # fmt: skip

    def generate_request(
        self,
        request: GenerationRequest,
        *,
        timeout: float | None = None,
        progress: bool = False,
        on_progress: ProgressCallback | None = None,
        on_preview: PreviewCallback | None = None,
    ) -> GenerationResult:
        """Run one validated :class:`GenerationRequest` (txt2img)."""
        return self._generate(
            request, kind="txt2img", timeout=timeout, progress=progress,
            on_progress=on_progress, on_preview=on_preview,
        )  # fmt: skip

    def img2img(
        self,
        image: ImageInput,
        prompt: str,
        *,
        denoise: float = 0.75,
        negative_prompt: str = "",
        model: str | None = None,
        steps: int = 20,
        cfg_scale: float = 7.0,
        sampler: str = "euler",
        scheduler: str = "normal",
        seed: int | None = None,
        batch_size: int = 1,
        timeout: float | None = None,
        progress: bool = False,
        on_progress: ProgressCallback | None = None,
        on_preview: PreviewCallback | None = None,
    ) -> GenerationResult:
        """Image to image: ``image`` (bytes, a local path, a PIL image, or a file already on the
        server) is re-sampled with ``denoise`` (0 keeps it, 1 replaces it); the output keeps its
        size."""
        request = GenerationRequest.build(
            prompt=prompt, negative_prompt=negative_prompt, model=model, steps=steps,
            cfg_scale=cfg_scale, sampler=sampler, scheduler=scheduler, seed=seed,
            batch_size=batch_size, denoise=denoise,
        )  # fmt: skip
        return self._generate(
            request, kind="img2img", image=image, timeout=timeout, progress=progress,
            on_progress=on_progress, on_preview=on_preview,
        )  # fmt: skip

    def inpaint(
        self,
        image: ImageInput,
        mask: ImageInput,
        prompt: str,
        *,
        denoise: float = 1.0,
        mask_channel: str = "red",
        negative_prompt: str = "",
        model: str | None = None,
        steps: int = 20,
        cfg_scale: float = 7.0,
        sampler: str = "euler",
        scheduler: str = "normal",
        seed: int | None = None,
        batch_size: int = 1,
        timeout: float | None = None,
        progress: bool = False,
        on_progress: ProgressCallback | None = None,
        on_preview: PreviewCallback | None = None,
    ) -> GenerationResult:
        """Repaint where ``mask`` is white (its ``mask_channel``); the rest of ``image`` stays."""
        if mask_channel not in ("alpha", "red", "green", "blue"):
            raise InputError(
                f"mask_channel must be alpha, red, green or blue, not {mask_channel!r}"
            )
        request = GenerationRequest.build(
            prompt=prompt, negative_prompt=negative_prompt, model=model, steps=steps,
            cfg_scale=cfg_scale, sampler=sampler, scheduler=scheduler, seed=seed,
            batch_size=batch_size, denoise=denoise,
        )  # fmt: skip
        return self._generate(
            request, kind="inpaint", image=image, mask=mask, mask_channel=mask_channel,
            timeout=timeout, progress=progress, on_progress=on_progress, on_preview=on_preview,
        )  # fmt: skip

    def upscale(
        self,
        image: ImageInput,
        *,
        scale_by: float | None = None,
        width: int | None = None,
        height: int | None = None,
        method: str = "lanczos",
        upscale_model: str | None = None,
        timeout: float | None = None,
    ) -> GenerationResult:
        """Upscale an image (no model needed; or a named model from ``models/upscale_models``)."""
        from comfykit import recipes

        recipes.upscale_size(scale_by, width, height, upscale_model)  # fail before any I/O
        if upscale_model is not None:
            available = self.models("upscale_models")
            if upscale_model not in available:
                raise InputError(
                    f"unknown upscale model {upscale_model!r}; available: "
                    + (", ".join(available) or "none")
                )
        method = resolve_choice(
            method,
            self.catalog(),
            what="upscale method",
            class_type="ImageScaleBy",
            input_name="upscale_method",
        )
        ref = self._image_ref(image)
        workflow = recipes.upscale(
            image=ref,
            scale_by=scale_by,
            width=width,
            height=height,
            method=method,
            upscale_model=upscale_model,
        )
        return self._run_recipe(workflow, request=None, timeout=timeout, kind="upscale")

    def generate_batch(
        self,
        prompts: str | Sequence[str | GenerationRequest | Mapping[str, Any]],
        *,
        seeds: Sequence[int] | None = None,
        timeout: float | None = None,
        **common: Any,
    ) -> BatchResult:
        """Many generations at once: all are queued, then collected in input order.

        ``prompts`` is a list of prompts (strings, dicts of :class:`GenerationRequest` fields, or
        requests), or one prompt with ``seeds=[...]``. ``common`` fields apply to every item. An
        item that fails (bad input, validation, execution) keeps its error in the
        :class:`BatchResult`; the others still run.
        """
        from comfykit import recipes

        batch = BatchResult(_batch_items(prompts, seeds, common))
        submitted: list[tuple[BatchItem, float, Job]] = []
        for item in batch:
            if item.request is None:
                continue
            try:
                item.request = self.resolve_request(item.request)
                started = time.time()
                job = self.submit(recipes.from_request(item.request), validate=True)
                submitted.append((item, started, job))
            except ComfyError as exc:
                item.error = exc
        for item, started, job in submitted:
            try:
                item.result = _collect(
                    job, request=item.request, kind="txt2img", started=started, timeout=timeout
                )
            except ComfyError as exc:
                item.error = exc
        return batch


def _collect(
    job: Job,
    *,
    request: GenerationRequest | None,
    kind: str,
    started: float,
    timeout: float | None,
    reporter: ProgressReporter | None = None,
) -> GenerationResult:
    """Wait for ``job`` (feeding ``reporter``) and wrap its outputs as a GenerationResult."""
    try:
        if reporter is not None and reporter.active:
            for event in job.events(timeout=timeout):
                reporter(event)
        result = job.result(timeout=timeout)
    finally:
        if reporter is not None:
            reporter.close()
    finished = time.time()
    tracker = job._tracker
    execution_ms = (
        tracker.ended_at - tracker.started_at
        if tracker.ended_at is not None and tracker.started_at is not None
        else None
    )
    metadata: dict[str, Any] = {
        "kind": kind,
        "workflow": job.prompt,
        "request": request.model_dump() if request is not None else None,
        "files": [file_ref_of(f).model_dump() for f in result.files],
        "timings": {
            "submitted_at": started,
            "finished_at": finished,
            "seconds": finished - started,
            "execution_ms": execution_ms,
            "cached_nodes": list(result.cached_nodes),
        },
    }
    return GenerationResult(
        prompt_id=job.prompt_id,
        seed=request.seed if request is not None else None,
        files=[f for f in result.files if f.type == "output"] or result.files,
        metadata=metadata,
        fetch=backend.blocking_fetch,
        image_bytes=backend.prefetch(result.images),
    )


def _batch_items(
    prompts: str | Sequence[str | GenerationRequest | Mapping[str, Any]],
    seeds: Sequence[int] | None,
    common: Mapping[str, Any],
) -> list[BatchItem]:
    """One item per prompt; an item whose fields are invalid carries its InputError."""
    if isinstance(prompts, str):
        if seeds is None:
            raise InputError("generate_batch: give a list of prompts, or one prompt and seeds=")
        items: list[Any] = [prompts] * len(seeds)
    else:
        items = list(prompts)
        if seeds is not None and len(seeds) != len(items):
            raise InputError(
                f"generate_batch: {len(items)} prompts but {len(seeds)} seeds; give one per prompt"
            )
    if not items:
        raise InputError("generate_batch: no prompts")
    out = []
    for n, item in enumerate(items):
        fields: dict[str, Any]
        if isinstance(item, GenerationRequest):
            fields = {**common, **item.model_dump(exclude_unset=True)}
        elif isinstance(item, Mapping):
            fields = {**common, **dict(item)}
        elif isinstance(item, str):
            fields = {**common, "prompt": item}
        else:
            fields = {}
        if seeds is not None:
            fields["seed"] = seeds[n]
        try:
            if not fields:
                raise InputError(
                    f"expected a prompt, a dict or a request, got {type(item).__name__}"
                )
            out.append(BatchItem(n, GenerationRequest.build(**fields)))
        except InputError as exc:
            out.append(BatchItem(n, None, error=InputError(f"generate_batch item {n}: {exc}")))
    return out
