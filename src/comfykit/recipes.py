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

from typing import TYPE_CHECKING, Any

from comfykit._exceptions import InputError
from comfykit.graph import NodeOutput, Workflow

if TYPE_CHECKING:
    from comfykit.generation import GenerationRequest
    from comfykit.graph import NodeCatalog

__all__ = ["from_request", "img2img", "inpaint", "txt2img", "upscale", "upscale_size"]


def _sampling(
    wf: Workflow,
    *,
    prompt: str,
    negative_prompt: str,
    model: str,
    latent: NodeOutput | None,
    width: int,
    height: int,
    batch_size: int,
    steps: int,
    cfg_scale: float,
    sampler: str,
    scheduler: str,
    seed: int,
    denoise: float,
    filename_prefix: str,
    pixels: NodeOutput | None = None,
    mask: NodeOutput | None = None,
) -> None:
    ckpt = wf.add("CheckpointLoaderSimple", ckpt_name=model, title="Checkpoint")
    pos = wf.add("CLIPTextEncode", text=prompt, clip=ckpt.out(1), title="Positive")
    neg = wf.add("CLIPTextEncode", text=negative_prompt, clip=ckpt.out(1), title="Negative")
    if pixels is not None:
        encoded = wf.add("VAEEncode", pixels=pixels, vae=ckpt.out(2), title="Encode").out(0)
        if mask is not None:
            encoded = wf.add(
                "SetLatentNoiseMask", samples=encoded, mask=mask, title="Noise mask"
            ).out(0)
        if batch_size > 1:
            encoded = wf.add(
                "RepeatLatentBatch", samples=encoded, amount=batch_size, title="Batch"
            ).out(0)
        latent = encoded
    elif latent is None:
        latent = wf.add(
            "EmptyLatentImage", width=width, height=height, batch_size=batch_size, title="Latent"
        ).out(0)
    sampled = wf.add(
        "KSampler",
        model=ckpt.out(0),
        positive=pos.out(0),
        negative=neg.out(0),
        latent_image=latent,
        seed=seed,
        steps=steps,
        cfg=cfg_scale,
        sampler_name=sampler,
        scheduler=scheduler,
        denoise=denoise,
        title="Sampler",
    )
    decoded = wf.add("VAEDecode", samples=sampled.out(0), vae=ckpt.out(2), title="Decode")
    wf.add("SaveImage", images=decoded.out(0), filename_prefix=filename_prefix, title="Save")


def txt2img(
    *,
    prompt: str,
    model: str,
    negative_prompt: str = "",
    width: int = 512,
    height: int = 512,
    steps: int = 20,
    cfg_scale: float = 7.0,
    sampler: str = "euler",
    scheduler: str = "normal",
    seed: int = 0,
    batch_size: int = 1,
    filename_prefix: str = "comfykit/txt2img",
    catalog: NodeCatalog | None = None,
) -> Workflow:
    """Checkpoint → CLIP text encode (positive, negative) → empty latent → KSampler → VAE decode
    → SaveImage."""
    wf = Workflow(catalog)
    _sampling(
        wf, prompt=prompt, negative_prompt=negative_prompt, model=model, latent=None,
        width=width, height=height, batch_size=batch_size, steps=steps, cfg_scale=cfg_scale,
        sampler=sampler, scheduler=scheduler, seed=seed, denoise=1.0,
        filename_prefix=filename_prefix,
    )  # fmt: skip
    return wf


def img2img(
    *,
    image: str,
    prompt: str,
    model: str,
    denoise: float = 0.75,
    negative_prompt: str = "",
    steps: int = 20,
    cfg_scale: float = 7.0,
    sampler: str = "euler",
    scheduler: str = "normal",
    seed: int = 0,
    batch_size: int = 1,
    filename_prefix: str = "comfykit/img2img",
    catalog: NodeCatalog | None = None,
) -> Workflow:
    """LoadImage (``image``: an uploaded file's ``ref``) → VAE encode → KSampler with ``denoise``
    → VAE decode → SaveImage. The output has the input image's size."""
    wf = Workflow(catalog)
    loaded = wf.add("LoadImage", image=image, title="Image")
    _sampling(
        wf, prompt=prompt, negative_prompt=negative_prompt, model=model, latent=None,
        width=0, height=0, batch_size=batch_size, steps=steps, cfg_scale=cfg_scale,
        sampler=sampler, scheduler=scheduler, seed=seed, denoise=denoise,
        filename_prefix=filename_prefix, pixels=loaded.out(0),
    )  # fmt: skip
    return wf


def inpaint(
    *,
    image: str,
    mask: str,
    prompt: str,
    model: str,
    denoise: float = 1.0,
    mask_channel: str = "red",
    negative_prompt: str = "",
    steps: int = 20,
    cfg_scale: float = 7.0,
    sampler: str = "euler",
    scheduler: str = "normal",
    seed: int = 0,
    batch_size: int = 1,
    filename_prefix: str = "comfykit/inpaint",
    catalog: NodeCatalog | None = None,
) -> Workflow:
    """Repaint the masked part of ``image``: the mask image's ``mask_channel`` (white = repaint)
    becomes a latent noise mask, so this works with any checkpoint."""
    wf = Workflow(catalog)
    loaded = wf.add("LoadImage", image=image, title="Image")
    mask_node = wf.add("LoadImageMask", image=mask, channel=mask_channel, title="Mask")
    _sampling(
        wf, prompt=prompt, negative_prompt=negative_prompt, model=model, latent=None,
        width=0, height=0, batch_size=batch_size, steps=steps, cfg_scale=cfg_scale,
        sampler=sampler, scheduler=scheduler, seed=seed, denoise=denoise,
        filename_prefix=filename_prefix, pixels=loaded.out(0), mask=mask_node.out(0),
    )  # fmt: skip
    return wf


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
) -> Workflow:
    """The graph for a resolved request: txt2img, img2img with ``image``, inpaint with both."""
    if request.model is None or request.seed is None:
        raise InputError("from_request needs a resolved request (model and seed set)")
    common: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "model": request.model,
        "steps": request.steps,
        "cfg_scale": request.cfg_scale,
        "sampler": request.sampler,
        "scheduler": request.scheduler,
        "seed": request.seed,
        "batch_size": request.batch_size,
        "catalog": catalog,
    }
    if image is None:
        if mask is not None:
            raise InputError("a mask needs an image to inpaint")
        return txt2img(width=request.width, height=request.height, **common)
    if mask is None:
        return img2img(image=image, denoise=request.denoise, **common)
    return inpaint(
        image=image, mask=mask, mask_channel=mask_channel, denoise=request.denoise, **common
    )
