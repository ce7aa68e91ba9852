"""Ready-made graphs behind the high-level calls: each returns a :class:`~comfykit.Workflow`.

Nothing here does I/O. ``generate()`` and friends build their graph with these functions, so
what they send can be inspected, modified and submitted by hand::

    wf = recipes.txt2img(prompt="a lighthouse", model="sd15.safetensors", steps=20)
    wf.node("Sampler").inputs["cfg"] = 5.0
    result = comfy.run(wf)

Node titles are stable and can be used with ``wf.node(title)``: ``Checkpoint``, ``Positive``,
``Negative``, ``Latent``, ``Sampler``, ``Decode``, ``Save``; ``Image``, ``Mask``, ``Encode``,
``Noise mask``, ``Batch`` (``RepeatLatentBatch``), ``Upscale model``, ``Model``
(``ImageUpscaleWithModel``) and ``Upscale`` in the image recipes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from comfykit._exceptions import InputError
from comfykit.graph import NodeOutput, Workflow

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from comfykit.generation import GenerationRequest, ImageSizeOptions, SamplingOptions
    from comfykit.graph import NodeCatalog

__all__ = ["from_request", "img2img", "inpaint", "txt2img", "upscale", "upscale_size"]


def _request(prompt: str, model: str, options: Mapping[str, Any]) -> GenerationRequest:
    """The options validated with their defaults (a recipe without a seed uses 0)."""
    from comfykit.generation import GenerationRequest

    request = GenerationRequest.build(prompt=prompt, model=model, **options)
    return request if request.seed is not None else request.model_copy(update={"seed": 0})


def _sampling(
    wf: Workflow,
    request: GenerationRequest,
    *,
    filename_prefix: str,
    pixels: NodeOutput | None = None,
    mask: NodeOutput | None = None,
) -> None:
    """Checkpoint, prompts, latent (empty, or ``pixels`` encoded and masked), sampler, decode,
    save: the part every generating recipe shares."""
    ckpt = wf.add("CheckpointLoaderSimple", ckpt_name=request.model, title="Checkpoint")
    pos = wf.add("CLIPTextEncode", text=request.prompt, clip=ckpt.out(1), title="Positive")
    neg = wf.add("CLIPTextEncode", text=request.negative_prompt, clip=ckpt.out(1), title="Negative")
    if pixels is not None:
        latent = wf.add("VAEEncode", pixels=pixels, vae=ckpt.out(2), title="Encode").out(0)
        if mask is not None:
            latent = wf.add(
                "SetLatentNoiseMask", samples=latent, mask=mask, title="Noise mask"
            ).out(0)
        if request.batch_size > 1:
            latent = wf.add(
                "RepeatLatentBatch", samples=latent, amount=request.batch_size, title="Batch"
            ).out(0)
    else:
        latent = wf.add(
            "EmptyLatentImage", width=request.width, height=request.height,
            batch_size=request.batch_size, title="Latent",
        ).out(0)  # fmt: skip
    sampled = wf.add(
        "KSampler",
        model=ckpt.out(0),
        positive=pos.out(0),
        negative=neg.out(0),
        latent_image=latent,
        seed=request.seed,
        steps=request.steps,
        cfg=request.cfg_scale,
        sampler_name=request.sampler,
        scheduler=request.scheduler,
        denoise=request.denoise,
        title="Sampler",
    )
    decoded = wf.add("VAEDecode", samples=sampled.out(0), vae=ckpt.out(2), title="Decode")
    wf.add("SaveImage", images=decoded.out(0), filename_prefix=filename_prefix, title="Save")


def txt2img(
    *,
    prompt: str,
    model: str,
    filename_prefix: str = "comfykit/txt2img",
    catalog: NodeCatalog | None = None,
    **options: Unpack[ImageSizeOptions],
) -> Workflow:
    """Checkpoint → CLIP text encode (positive, negative) → empty latent → KSampler → VAE decode
    → SaveImage. ``options`` are :class:`~comfykit.generation.ImageSizeOptions`, validated and
    defaulted as :class:`~comfykit.GenerationRequest` does (seed 0 when not given)."""
    request = _request(prompt, model, options)
    return from_request(request, catalog=catalog, filename_prefix=filename_prefix)


def img2img(
    *,
    image: str,
    prompt: str,
    model: str,
    filename_prefix: str = "comfykit/img2img",
    catalog: NodeCatalog | None = None,
    **options: Unpack[SamplingOptions],
) -> Workflow:
    """LoadImage (``image``: an uploaded file's ``ref``) → VAE encode → KSampler with ``denoise``
    (default 0.75) → VAE decode → SaveImage. The output has the input image's size."""
    options.setdefault("denoise", 0.75)
    request = _request(prompt, model, options)
    return from_request(request, image=image, catalog=catalog, filename_prefix=filename_prefix)


def inpaint(
    *,
    image: str,
    mask: str,
    prompt: str,
    model: str,
    mask_channel: str = "red",
    filename_prefix: str = "comfykit/inpaint",
    catalog: NodeCatalog | None = None,
    **options: Unpack[SamplingOptions],
) -> Workflow:
    """Repaint the masked part of ``image``: the mask image's ``mask_channel`` (white = repaint)
    becomes a latent noise mask, so this works with any checkpoint."""
    request = _request(prompt, model, options)
    return from_request(
        request, image=image, mask=mask, mask_channel=mask_channel, catalog=catalog,
        filename_prefix=filename_prefix,
    )  # fmt: skip


def check_mask_channel(mask_channel: str) -> None:
    """Refuse a mask channel LoadImageMask does not have."""
    if mask_channel not in ("alpha", "red", "green", "blue"):
        raise InputError(f"mask_channel must be alpha, red, green or blue, not {mask_channel!r}")


def upscale(
    *,
    image: str,
    scale_by: float | None = None,
    width: int | None = None,
    height: int | None = None,
    method: str = "lanczos",
    upscale_model: str | None = None,
    filename_prefix: str = "comfykit/upscale",
    catalog: NodeCatalog | None = None,
) -> Workflow:
    """Upscale an image, with no model (``method`` resampling) or a named upscale model.

    Without a model the image is scaled by ``scale_by`` (default 2) or to ``width``×``height``.
    With ``upscale_model`` (a file in ``models/upscale_models``) the model's own factor applies,
    then ``scale_by`` or ``width``/``height`` when given.
    """
    scale_by = upscale_size(scale_by, width, height, upscale_model)
    wf = Workflow(catalog)
    pixels = wf.add("LoadImage", image=image, title="Image").out(0)
    if upscale_model is not None:
        loader = wf.add("UpscaleModelLoader", model_name=upscale_model, title="Upscale model")
        pixels = wf.add(
            "ImageUpscaleWithModel", upscale_model=loader.out(0), image=pixels, title="Model"
        ).out(0)
    if scale_by is not None:
        pixels = wf.add(
            "ImageScaleBy", image=pixels, upscale_method=method, scale_by=scale_by,
            title="Upscale",
        ).out(0)  # fmt: skip
    elif width is not None:
        pixels = wf.add(
            "ImageScale", image=pixels, upscale_method=method, width=width, height=height,
            crop="disabled", title="Upscale",
        ).out(0)  # fmt: skip
    wf.add("SaveImage", images=pixels, filename_prefix=filename_prefix, title="Save")
    return wf


def upscale_size(
    scale_by: float | None, width: int | None, height: int | None, upscale_model: str | None
) -> float | None:
    """Check an upscale's size arguments; return the factor to apply (``None``: to a size, or
    the model's own factor only)."""
    if width is not None or height is not None:
        if not width or not height or width < 1 or height < 1:
            raise InputError("upscale: give both width and height (positive), or scale_by")
        if scale_by is not None:
            raise InputError("upscale: give scale_by or width/height, not both")
        return None
    if scale_by is None and upscale_model is None:
        scale_by = 2.0
    if scale_by is not None and not 0.01 <= scale_by <= 8.0:
        raise InputError(f"upscale: scale_by must be between 0.01 and 8, got {scale_by!r}")
    return scale_by


def from_request(
    request: GenerationRequest,
    *,
    image: str | None = None,
    mask: str | None = None,
    mask_channel: str = "red",
    catalog: NodeCatalog | None = None,
    filename_prefix: str | None = None,
) -> Workflow:
    """The graph for a resolved request: txt2img, img2img with ``image``, inpaint with both."""
    if request.model is None or request.seed is None:
        raise InputError("from_request needs a resolved request (model and seed set)")
    if image is None and mask is not None:
        raise InputError("a mask needs an image to inpaint")
    kind = "txt2img" if image is None else "img2img" if mask is None else "inpaint"
    wf = Workflow(catalog)
    pixels = wf.add("LoadImage", image=image, title="Image").out(0) if image else None
    mask_out = None
    if mask is not None:
        check_mask_channel(mask_channel)
        mask_out = wf.add("LoadImageMask", image=mask, channel=mask_channel, title="Mask").out(0)
    _sampling(
        wf, request, filename_prefix=filename_prefix or f"comfykit/{kind}", pixels=pixels,
        mask=mask_out,
    )  # fmt: skip
    return wf
