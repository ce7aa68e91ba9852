"""High-level calls on top of ``submit()``: generate, img2img, inpaint, upscale, batches.

Written once for every host that can submit: a client (``AsyncComfyClient``) and a pool of
servers (``AsyncComfyPool``) each provide the few calls :class:`AsyncGenerateMixin` declares.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfykit._backends import asyncio as backend
from comfykit._exceptions import ComfyError, InputError, UnsupportedOperationError
from comfykit._images import BatchItem, BatchResult, GenerationResult, file_ref_of
from comfykit._names import SAMPLER_ALIASES, resolve_choice, resolve_model
from comfykit._progress import ProgressReporter
from comfykit._types import FileRef
from comfykit._uploads import FileInput
from comfykit.generation import GenerationRequest, split_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from comfykit._async.jobs import AsyncJobHandle
    from comfykit._protocol.prompt import PromptInput
    from comfykit.generation import (
        BatchOptions,
        GenerateOptions,
        Img2ImgOptions,
        InpaintOptions,
        JobOptions,
    )
    from comfykit.graph import NodeCatalog, Workflow

__all__ = ["AsyncGenerateMixin"]

ImageInput = FileInput | FileRef


class AsyncGenerateMixin(abc.ABC):
    """The high-level calls: ``generate``, ``img2img``, ``inpaint``, ``upscale``,
    ``generate_batch``. Each builds a :mod:`comfykit.recipes` graph and submits it.

    Their keywords are typed by the option sets of :mod:`comfykit.generation`; every option is
    validated (:class:`~comfykit.GenerationRequest`) before anything is sent.

    The host (a client, or a pool) provides the abstract calls below: the node catalog, the
    model lists, a file reference for an image (uploading it where needed), ``submit()``, and
    ``_use_ws`` (live progress from the WebSocket, else polling).
    """

    _use_ws: bool

    @abc.abstractmethod
    async def catalog(self, *, refresh: bool = False) -> NodeCatalog:
        """The node catalog names are resolved against."""

    @abc.abstractmethod
    async def models(self, folder: str | None = None) -> list[str]:
        """Model folder names, or the files of one folder."""

    @abc.abstractmethod
    async def submit(self, prompt: PromptInput, *, validate: bool | None = None) -> AsyncJobHandle:
        """Queue a graph; return its job."""

    @abc.abstractmethod
    async def _image_ref(self, image: ImageInput, argument: str) -> str:
        """How a graph names ``image`` (a file on the server, or one uploaded first)."""

    async def _speaks_v2(self) -> bool:
        """True on the Comfy API v2 backend: no catalog to resolve names against, and the
        server checks every graph itself."""
        return False

    async def resolve_request(self, request: GenerationRequest) -> GenerationRequest:
        """Fill in the seed and map model, sampler and scheduler onto what the server has.

        On the Comfy API v2 backend nothing can be listed: ``model`` must be given (else
        :class:`~comfykit.UnsupportedOperationError`), sampler aliases are mapped and the
        names are sent as they are, for the server to check."""
        client = self
        if await client._speaks_v2():
            if request.model is None:
                raise UnsupportedOperationError(
                    "model=None (picking the server's checkpoint)", "v2",
                    "the v2 API cannot list models; pass model='name.safetensors'",
                )  # fmt: skip
            sampler = SAMPLER_ALIASES.get(request.sampler.lower(), request.sampler)
            return request.with_seed().model_copy(update={"sampler": sampler})
        catalog = await client.catalog()
        checkpoints = await client.models("checkpoints")
        model = resolve_model(request.model, checkpoints)
        spec = catalog.get("CheckpointLoaderSimple")
        known = spec.input("ckpt_name") if spec is not None else None
        if known is not None and known.choices is not None and model not in known.choices:
            catalog = await client.catalog(refresh=True)  # a model added since it was read
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

    async def _run_recipe(
        self,
        workflow: Workflow,
        *,
        request: GenerationRequest | None,
        kind: str,
        job_options: JobOptions,
    ) -> GenerationResult:
        reporter = ProgressReporter(
            bar=job_options.get("progress", False),
            on_progress=job_options.get("on_progress"),
            on_preview=job_options.get("on_preview"),
            description=kind,
            live=self._use_ws,
        )
        started = time.time()
        job = await self.submit(workflow, validate=not await self._speaks_v2())
        return await _collect(
            job, request=request, kind=kind, started=started, reporter=reporter,
            timeout=job_options.get("timeout"),
            cancel_on_timeout=job_options.get("cancel_on_timeout", False),
        )  # fmt: skip

    async def _generate(
        self,
        kind: str,
        prompt: Any,
        options: Mapping[str, Any],
        *,
        image: ImageInput | None = None,
        mask: ImageInput | None = None,
    ) -> GenerationResult:
        from comfykit import recipes

        fields, job_options = split_options(options)
        mask_channel = fields.pop("mask_channel", "red")
        if kind != "txt2img":
            _check_order(kind, prompt, image)
            fields.setdefault("denoise", 0.75 if kind == "img2img" else 1.0)
        if kind == "inpaint":
            recipes.check_mask_channel(mask_channel)
        request = GenerationRequest.build(prompt=prompt, **fields)
        resolved = await self.resolve_request(request)
        image_ref = await self._image_ref(image, "image") if image is not None else None
        mask_ref = await self._image_ref(mask, "mask") if mask is not None else None
        workflow = recipes.from_request(
            resolved, image=image_ref, mask=mask_ref, mask_channel=mask_channel
        )
        return await self._run_recipe(
            workflow, request=resolved, kind=kind, job_options=job_options
        )

    async def generate(self, prompt: str, **options: Unpack[GenerateOptions]) -> GenerationResult:
        """Text to image.

        ``options`` (:class:`~comfykit.generation.GenerateOptions`): ``negative_prompt``,
        ``model``, ``width``, ``height``, ``steps``, ``cfg_scale``, ``sampler``, ``scheduler``,
        ``seed``, ``batch_size``, ``denoise``, with the defaults and bounds of
        :class:`~comfykit.GenerationRequest`; and ``timeout``, ``cancel_on_timeout``,
        ``progress``, ``on_progress``, ``on_preview`` (:class:`~comfykit.generation.JobOptions`).
        Every option is validated before anything is sent; an unknown one is an
        :class:`~comfykit.InputError` naming it.
        """
        return await self._generate("txt2img", prompt, options)

    async def generate_request(
        self, request: GenerationRequest, **job_options: Unpack[JobOptions]
    ) -> GenerationResult:
        """Run one validated :class:`GenerationRequest` (txt2img)."""
        from comfykit import recipes

        resolved = await self.resolve_request(request)
        return await self._run_recipe(
            recipes.from_request(resolved), request=resolved, kind="txt2img",
            job_options=job_options,
        )  # fmt: skip

    async def img2img(
        self, prompt: str, image: ImageInput, **options: Unpack[Img2ImgOptions]
    ) -> GenerationResult:
        """Image to image: ``image`` (bytes, a local path, a PIL image, or a file already on the
        server) is re-sampled with ``denoise`` (default 0.75; 0 keeps it, 1 replaces it); the
        output keeps its size. The prompt comes first, as in :meth:`generate`; the other
        options are those of :meth:`generate` without ``width`` and ``height``."""
        return await self._generate("img2img", prompt, options, image=image)

    async def inpaint(
        self, prompt: str, image: ImageInput, mask: ImageInput, **options: Unpack[InpaintOptions]
    ) -> GenerationResult:
        """Repaint where ``mask`` is white (its ``mask_channel``, default ``red``); the rest of
        ``image`` stays. ``denoise`` defaults to 1; the other options are :meth:`img2img`'s."""
        return await self._generate("inpaint", prompt, options, image=image, mask=mask)

    async def upscale(
        self,
        image: ImageInput,
        *,
        scale_by: float | None = None,
        width: int | None = None,
        height: int | None = None,
        method: str = "lanczos",
        upscale_model: str | None = None,
        **job_options: Unpack[JobOptions],
    ) -> GenerationResult:
        """Upscale an image (no model needed; or a named model from ``models/upscale_models``).

        Without a model the image is scaled by ``scale_by`` (2 when neither it nor
        ``width``/``height`` is given) or to ``width``×``height``; with ``upscale_model`` the
        model's own factor applies, then ``scale_by`` or the size when given. ``job_options``
        are :class:`~comfykit.generation.JobOptions` (timeout, progress, callbacks).
        """
        from comfykit import recipes

        recipes.upscale_size(scale_by, width, height, upscale_model)  # fail before any I/O
        if upscale_model is not None:
            available = await self.models("upscale_models")
            if upscale_model not in available:
                raise InputError(
                    f"unknown upscale model {upscale_model!r}; available: "
                    + (", ".join(available) or "none")
                )
        method = resolve_choice(
            method,
            await self.catalog(),
            what="upscale method",
            class_type="ImageScaleBy",
            input_name="upscale_method",
        )
        ref = await self._image_ref(image, "image")
        workflow = recipes.upscale(
            image=ref,
            scale_by=scale_by,
            width=width,
            height=height,
            method=method,
            upscale_model=upscale_model,
        )
        return await self._run_recipe(
            workflow, request=None, kind="upscale", job_options=job_options
        )

    async def generate_batch(
        self,
        prompts: str | Sequence[str | GenerationRequest | Mapping[str, Any]],
        *,
        seeds: Sequence[int] | None = None,
        **common: Unpack[BatchOptions],
    ) -> BatchResult:
        """Many generations at once: all are queued, then collected in input order.

        ``prompts`` is a list of prompts (strings, dicts of :class:`GenerationRequest` fields, or
        requests), or one prompt with ``seeds=[...]``. ``common``
        (:class:`~comfykit.generation.BatchOptions`) applies to every item and is validated
        first: a bad shared option raises :class:`~comfykit.InputError` before anything is
        sent. An item that fails (bad fields, validation, execution) keeps its error in the
        :class:`BatchResult`; the others still run. ``progress=True`` shows a bar of finished
        items.
        """
        from comfykit import recipes

        fields, job_options = split_options(common)
        GenerationRequest.build(prompt="-", **fields)  # the shared options, checked once
        batch = BatchResult(_batch_items(prompts, seeds, fields))
        bar = ProgressReporter.counter(
            len(batch), "batch", enabled=job_options.get("progress", False)
        )
        submitted: list[tuple[BatchItem, float, AsyncJobHandle]] = []
        try:
            for item in batch:
                if item.request is None:
                    bar.advance()
                    continue
                try:
                    item.request = await self.resolve_request(item.request)
                    started = time.time()
                    local = not await self._speaks_v2()
                    job = await self.submit(recipes.from_request(item.request), validate=local)
                    submitted.append((item, started, job))
                except ComfyError as exc:
                    item.error = exc
                    bar.advance()
            for item, started, job in submitted:
                try:
                    item.result = await _collect(
                        job, request=item.request, kind="txt2img", started=started,
                        timeout=job_options.get("timeout"),
                        cancel_on_timeout=job_options.get("cancel_on_timeout", False),
                    )  # fmt: skip
                except ComfyError as exc:
                    item.error = exc
                bar.advance()
        finally:
            bar.close()
        return batch


def _check_order(kind: str, prompt: Any, image: Any) -> None:
    """Catch ``img2img(image, prompt)``: the prompt comes first."""
    hint = f"the prompt comes first: comfy.{kind}('a red car', image, ...)"
    if not isinstance(prompt, str):
        raise InputError(
            f"{kind}(prompt, image, ...): prompt must be text, got {type(prompt).__name__}; " + hint
        )
    if isinstance(image, str) and not Path(image).is_file() and Path(prompt).is_file():
        raise InputError(
            f"{kind}(prompt, image, ...): prompt {prompt!r} is a local file and image "
            f"{image!r} is not; {hint}"
        )


async def _collect(
    job: AsyncJobHandle,
    *,
    request: GenerationRequest | None,
    kind: str,
    started: float,
    timeout: float | None,
    cancel_on_timeout: bool = False,
    reporter: ProgressReporter | None = None,
) -> GenerationResult:
    """Wait for ``job`` (feeding ``reporter``) and wrap its outputs as a GenerationResult."""
    try:
        if reporter is not None and reporter.active:
            events = job.events(
                timeout=timeout, cancel_on_timeout=cancel_on_timeout, on_queued=reporter.on_queued
            )
            async for event in events:
                reporter(event)
        result = await job.result(timeout=timeout, cancel_on_timeout=cancel_on_timeout)
    finally:
        if reporter is not None:
            reporter.close()
    finished = time.time()
    execution_ms = job.execution_ms
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
        image_bytes=await backend.prefetch(result.images),
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
