"""The graphs behind the high-level calls validate against ComfyUI 0.3.75's node catalog."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from comfykit import InputError, WorkflowError, recipes
from comfykit.graph import NodeCatalog, NodeOutput, Workflow

FIXTURE = Path(__file__).parents[1] / "fixtures" / "object_info_0.3.75.json"
MODEL = "sd15.safetensors"
UPSCALER = "4x-UltraSharp.pth"


def _catalog() -> NodeCatalog:
    """The fixture catalog of a server that has one checkpoint and one upscale model."""
    info: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    info = copy.deepcopy(info)
    ckpt = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    ckpt[0] = [MODEL]
    upscaler = info["UpscaleModelLoader"]["input"]["required"]["model_name"]
    upscaler[1]["options"] = [UPSCALER]
    return NodeCatalog.from_object_info(info)


CATALOG = _catalog()

SAMPLING_TITLES = {"Checkpoint", "Positive", "Negative", "Sampler", "Decode", "Save"}


def _titles(wf: Workflow) -> set[str]:
    return {n.title for n in wf.nodes if n.title is not None}


def _build(name: str, catalog: NodeCatalog | None = None) -> Workflow:
    if name == "txt2img":
        return recipes.txt2img(prompt="a fox", model=MODEL, catalog=catalog)
    if name == "img2img":
        return recipes.img2img(
            image="comfykit/in.png", prompt="a fox", model=MODEL, catalog=catalog
        )
    if name == "img2img-batch":
        return recipes.img2img(
            image="in.png", prompt="a fox", model=MODEL, batch_size=3, catalog=catalog
        )
    if name == "inpaint":
        return recipes.inpaint(
            image="in.png", mask="mask.png", prompt="a fox", model=MODEL, catalog=catalog
        )
    if name == "upscale":
        return recipes.upscale(image="in.png", catalog=catalog)
    if name == "upscale-size":
        return recipes.upscale(image="in.png", width=640, height=480, catalog=catalog)
    if name == "upscale-model":
        return recipes.upscale(image="in.png", upscale_model=UPSCALER, catalog=catalog)
    if name == "upscale-model-scaled":
        return recipes.upscale(
            image="in.png", upscale_model=UPSCALER, scale_by=0.5, catalog=catalog
        )
    raise AssertionError(name)


EXPECTED_TITLES: dict[str, set[str]] = {
    "txt2img": SAMPLING_TITLES | {"Latent"},
    "img2img": SAMPLING_TITLES | {"Image", "Encode"},
    "img2img-batch": SAMPLING_TITLES | {"Image", "Encode", "Batch"},
    "inpaint": SAMPLING_TITLES | {"Image", "Mask", "Encode", "Noise mask"},
    "upscale": {"Image", "Upscale", "Save"},
    "upscale-size": {"Image", "Upscale", "Save"},
    "upscale-model": {"Image", "Upscale model", "Model", "Save"},
    "upscale-model-scaled": {"Image", "Upscale model", "Model", "Upscale", "Save"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_TITLES))
def test_recipes_validate_and_carry_titles(name: str) -> None:
    wf = _build(name)
    wf.validate(catalog=CATALOG)
    wf.validate(catalog=CATALOG, strict=True)
    CATALOG.validate(wf.to_api(), strict=True)
    assert _titles(wf) == EXPECTED_TITLES[name]
    assert len(_titles(wf)) == len(wf.nodes)  # every node has a distinct title
    assert Workflow.from_api(wf.to_api()).to_api() == wf.to_api()


@pytest.mark.parametrize("name", sorted(EXPECTED_TITLES))
def test_recipes_build_with_a_catalog(name: str) -> None:
    wf = _build(name, CATALOG)
    assert wf.catalog is CATALOG
    wf.validate()
    assert wf.to_api() == _build(name).to_api()


def test_txt2img_values_and_links() -> None:
    wf = recipes.txt2img(
        prompt="a lighthouse", negative_prompt="blurry", model=MODEL, width=768, height=512,
        steps=12, cfg_scale=5.5, sampler="dpmpp_2m", scheduler="karras", seed=42, batch_size=2,
        filename_prefix="mine/x",
    )  # fmt: skip
    ckpt = wf.node("Checkpoint")
    sampler = wf.node("Sampler")
    assert ckpt.inputs == {"ckpt_name": MODEL}
    assert wf.node("Positive").inputs == {"text": "a lighthouse", "clip": ckpt.out(1)}
    assert wf.node("Negative").inputs == {"text": "blurry", "clip": ckpt.out(1)}
    assert wf.node("Latent").inputs == {"width": 768, "height": 512, "batch_size": 2}
    assert sampler.inputs == {
        "model": ckpt.out(0),
        "positive": wf.node("Positive").out(0),
        "negative": wf.node("Negative").out(0),
        "latent_image": wf.node("Latent").out(0),
        "seed": 42,
        "steps": 12,
        "cfg": 5.5,
        "sampler_name": "dpmpp_2m",
        "scheduler": "karras",
        "denoise": 1.0,
    }
    assert wf.node("Decode").inputs == {"samples": sampler.out(0), "vae": ckpt.out(2)}
    assert wf.node("Save").inputs == {
        "images": wf.node("Decode").out(0),
        "filename_prefix": "mine/x",
    }
    wf.validate(catalog=CATALOG, strict=True)


def test_default_filename_prefixes() -> None:
    assert _build("txt2img").node("Save").inputs["filename_prefix"] == "comfykit/txt2img"
    assert _build("img2img").node("Save").inputs["filename_prefix"] == "comfykit/img2img"
    assert _build("inpaint").node("Save").inputs["filename_prefix"] == "comfykit/inpaint"
    assert _build("upscale").node("Save").inputs["filename_prefix"] == "comfykit/upscale"


def test_img2img_encodes_the_image_instead_of_an_empty_latent() -> None:
    wf = recipes.img2img(image="comfykit/in.png", prompt="x", model=MODEL, denoise=0.4)
    assert not wf.find(class_type="EmptyLatentImage")
    assert wf.node("Image").inputs == {"image": "comfykit/in.png"}
    encode = wf.node("Encode")
    assert encode.inputs["pixels"] == wf.node("Image").out(0)
    assert wf.node("Sampler").inputs["latent_image"] == encode.out(0)
    assert wf.node("Sampler").inputs["denoise"] == 0.4
    batch = _build("img2img-batch")
    assert batch.node("Batch").class_type == "RepeatLatentBatch"
    assert batch.node("Batch").inputs["amount"] == 3
    assert batch.node("Sampler").inputs["latent_image"] == batch.node("Batch").out(0)


def test_inpaint_masks_the_latent() -> None:
    wf = recipes.inpaint(
        image="in.png", mask="m.png", prompt="x", model=MODEL, mask_channel="alpha"
    )
    assert wf.node("Mask").inputs == {"image": "m.png", "channel": "alpha"}
    noise = wf.node("Noise mask")
    assert noise.class_type == "SetLatentNoiseMask"
    assert noise.inputs == {"samples": wf.node("Encode").out(0), "mask": wf.node("Mask").out(0)}
    assert wf.node("Sampler").inputs["latent_image"] == noise.out(0)
    assert wf.node("Sampler").inputs["denoise"] == 1.0


def test_upscale_variants() -> None:
    default = _build("upscale")
    assert default.node("Upscale").class_type == "ImageScaleBy"
    assert default.node("Upscale").inputs["scale_by"] == 2.0
    assert default.node("Upscale").inputs["upscale_method"] == "lanczos"
    sized = _build("upscale-size")
    assert sized.node("Upscale").class_type == "ImageScale"
    assert {k: sized.node("Upscale").inputs[k] for k in ("width", "height", "crop")} == {
        "width": 640,
        "height": 480,
        "crop": "disabled",
    }
    model = _build("upscale-model")
    assert model.node("Upscale model").inputs == {"model_name": UPSCALER}
    assert model.node("Save").inputs["images"] == model.node("Model").out(0)
    assert not model.find(title="Upscale")  # the model's own factor only
    scaled = _build("upscale-model-scaled")
    assert scaled.node("Upscale").inputs["image"] == scaled.node("Model").out(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 100}, "give both width and height"),
        ({"height": 100}, "give both width and height"),
        ({"width": 0, "height": 100}, "give both width and height"),
        ({"width": 100, "height": 100, "scale_by": 2.0}, "not both"),
        ({"scale_by": 0.0}, "scale_by must be between 0.01 and 8"),
        ({"scale_by": 9.0}, "scale_by must be between 0.01 and 8"),
    ],
)
def test_upscale_rejects_bad_sizes(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        recipes.upscale(image="in.png", **kwargs)


def test_a_catalog_rejects_bad_values_at_once_naming_the_node() -> None:
    with pytest.raises(WorkflowError) as err:
        recipes.txt2img(prompt="x", model=MODEL, sampler="nope", catalog=CATALOG)
    (problem,) = err.value.problems
    assert problem.title == "Sampler" and problem.input_name == "sampler_name"
    with pytest.raises(WorkflowError, match="ckpt_name"):
        recipes.txt2img(prompt="x", model="other.safetensors", catalog=CATALOG)
    with pytest.raises(InputError, match="steps: Input should be greater than or equal to 1"):
        recipes.txt2img(prompt="x", model=MODEL, steps=0)  # options are checked without a catalog


def test_recipes_can_be_edited_by_title() -> None:
    wf = recipes.txt2img(prompt="x", model=MODEL, catalog=CATALOG)
    wf.set("Sampler", cfg=4.0, steps=8)
    wf.node("Positive").inputs["text"] = "a lighthouse"
    api = wf.to_api()
    sampler_id = wf.node("Sampler").id
    assert api[sampler_id]["inputs"]["cfg"] == 4.0 and api[sampler_id]["inputs"]["steps"] == 8
    assert api[sampler_id]["_meta"] == {"title": "Sampler"}
    assert isinstance(wf.node("Sampler").inputs["model"], NodeOutput)
    wf.validate(catalog=CATALOG, strict=True)
