"""UI-format (litegraph) → API-format conversion, checked against hand-made workflows (the
template corpus, which needs the ComfyUI cache, is ``tests/integration/test_ui_templates.py``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from comfykit._exceptions import WorkflowError
from comfykit.graph._spec import NodeSpec, parse_node_spec
from comfykit.graph.ui_format import is_api_prompt, is_ui_workflow, ui_to_api

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
UI = FIXTURES / "ui"


@pytest.fixture(scope="module")
def catalog() -> dict[str, NodeSpec]:
    data = json.loads((FIXTURES / "object_info_0.3.75.json").read_text())
    return {k: parse_node_spec(k, v) for k, v in data.items()}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((UI / name).read_text())
    return data


def node(class_type: str, title: str, **inputs: Any) -> dict[str, Any]:
    return {"inputs": inputs, "class_type": class_type, "_meta": {"title": title}}


# --------------------------------------------------------------------------------------------
# detectors


def test_detects_ui_workflow_and_api_prompt() -> None:
    ui = load("basic.json")
    api = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
    assert is_ui_workflow(ui)
    assert not is_api_prompt(ui)
    assert is_api_prompt(api)
    assert not is_ui_workflow(api)
    not_ui: list[object] = [None, [], {}, "nodes", {"nodes": "x"}, {"nodes": [{"id": 1}]}]
    not_api: list[object] = [
        None,
        [],
        {},
        {"1": {"inputs": {}}},
        {"1": {"class_type": 3}},
        {1: {"class_type": "X"}},
    ]
    assert not any(is_ui_workflow(junk) for junk in not_ui)
    assert not any(is_api_prompt(junk) for junk in not_api)


def test_rejects_non_ui_input(catalog: dict[str, NodeSpec]) -> None:
    with pytest.raises(WorkflowError) as info:
        ui_to_api({"1": {"class_type": "EmptyImage", "inputs": {}}}, catalog)
    assert info.value.problems[0].code == "ui_conversion"


# --------------------------------------------------------------------------------------------
# one fixture per rule


def test_basic_graph_tuple_links_seed_control_notes_and_titles(
    catalog: dict[str, NodeSpec],
) -> None:
    assert ui_to_api(load("basic.json"), catalog) == {
        "4": node("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name="sd15.safetensors"),
        "6": node("CLIPTextEncode", "Positive", text="a lighthouse at dusk", clip=["4", 1]),
        "7": node("CLIPTextEncode", "CLIP Text Encode (Prompt)", text="blurry", clip=["4", 1]),
        "5": node("EmptyLatentImage", "Empty Latent Image", width=512, height=512, batch_size=1),
        "3": node(
            "KSampler",
            "KSampler",
            seed=156680208700286,
            steps=20,
            cfg=8,
            sampler_name="euler",
            scheduler="normal",
            denoise=1,
            model=["4", 0],
            positive=["6", 0],
            negative=["7", 0],
            latent_image=["5", 0],
        ),
        "8": node("VAEDecode", "VAE Decode", samples=["3", 0], vae=["4", 2]),
        "9": node("SaveImage", "Save Image", filename_prefix="ComfyUI", images=["8", 0]),
    }


def test_object_links_of_schema_version_1(catalog: dict[str, NodeSpec]) -> None:
    assert ui_to_api(load("object_links.json"), catalog) == {
        "1": node("EmptyImage", "EmptyImage", width=64, height=48, batch_size=1, color=16711680),
        "2": node("ImageBlur", "ImageBlur", blur_radius=3, sigma=1.5, image=["1", 0]),
        "3": node("PreviewImage", "Preview Image", images=["2", 0]),
    }


def test_upload_value_skipped_and_link_wins_over_widget(catalog: dict[str, NodeSpec]) -> None:
    assert ui_to_api(load("upload_and_linked_widget.json"), catalog) == {
        "1": node("LoadImage", "Load Image", image="example.png"),
        "2": node("PrimitiveInt", "Int", value=320),
        "3": node(
            "ImageScale",
            "Upscale Image",
            upscale_method="bilinear",
            width=["2", 0],
            height=256,
            crop="center",
            image=["1", 0],
        ),
        "4": node("SaveImage", "Save Image", filename_prefix="scaled", images=["3", 0]),
    }


def test_reroute_chains_and_primitive_node_values(catalog: dict[str, NodeSpec]) -> None:
    assert ui_to_api(load("reroute_primitive.json"), catalog) == {
        "1": node("LoadImage", "Load Image", image="photo.png"),
        "5": node(
            "ImageScale",
            "Upscale Image",
            upscale_method="bilinear",
            width=768,
            height=256,
            crop="disabled",
            image=["1", 0],
        ),
        "6": node(
            "ImageScale",
            "Upscale Image",
            upscale_method="area",
            width=100,
            height=768,
            crop="center",
            image=["1", 0],
        ),
        "8": node("ImageBatch", "Batch Images", image1=["5", 0], image2=["6", 0]),
        # a Reroute with nothing plugged in resolves to nothing: the input is dropped
        "9": node("PreviewImage", "Preview Image"),
    }


def test_muted_and_bypassed_nodes(catalog: dict[str, NodeSpec]) -> None:
    assert ui_to_api(load("mute_bypass.json"), catalog) == {
        "1": node("EmptyImage", "EmptyImage", width=64, height=64, batch_size=1, color=0),
        # through two bypassed nodes in a row
        "4": node("SaveImage", "Save Image", filename_prefix="through-bypass", images=["1", 0]),
        # bypassed SolidMask has no MASK input to pass on: the consumer's input is dropped
        "6": node("MaskToImage", "Convert Mask to Image"),
        # link from a muted node: dropped
        "8": node("SaveImage", "Save Image", filename_prefix="after-muted"),
        # a widget linked to a muted node loses its value too (graphToPrompt's final cleanup)
        "10": node("EmptyImage", "EmptyImage", height=16, batch_size=1, color=0),
        # bypassed ImageCompositeMasked passes the input at the output's slot index (destination)
        "12": node("PreviewImage", "Preview Image", images=["1", 0]),
    }


def test_bypass_picks_exact_type_then_compatible_type(catalog: dict[str, NodeSpec]) -> None:
    ui = {
        "nodes": [
            _ui_node(1, "SolidMask", [], [["MASK", [1]]], [1.0, 8, 8]),
            _ui_node(2, "EmptyImage", [], [["IMAGE", [2]]], [8, 8, 1, 0]),
            # JoinImageWithAlpha(image IMAGE, alpha MASK) -> IMAGE; a MASK consumer gets "alpha"
            _ui_node(
                3,
                "JoinImageWithAlpha",
                [["image", "IMAGE", 2], ["alpha", "MASK", 1]],
                [["IMAGE", [3]]],
                None,
                mode=4,
            ),
            _ui_node(4, "MaskToImage", [["mask", "MASK", 3]], [["IMAGE", []]], None),
        ],
        "links": [[1, 1, 0, 3, 1, "MASK"], [2, 2, 0, 3, 0, "IMAGE"], [3, 3, 0, 4, 0, "MASK"]],
    }
    api = ui_to_api(ui, catalog)
    assert api["4"]["inputs"] == {"mask": ["1", 0]}
    assert "3" not in api


def test_subgraphs_flattened_with_promoted_widgets(catalog: dict[str, NodeSpec]) -> None:
    api = ui_to_api(load("subgraphs.json"), catalog)
    assert api == {
        "1": node("EmptyImage", "EmptyImage", width=64, height=48, batch_size=1, color=0),
        "2:10": node("ImageBlur", "ImageBlur", blur_radius=5, sigma=2.5, image=["1", 0]),
        "2:11:20": node("ImageInvert", "Invert Image", image=["2:10", 0]),
        "2:12": node("SaveImage", "Save Image", filename_prefix="first", images=["2:11:20", 0]),
        "3": node("SaveImage", "Save Image", filename_prefix="root", images=["2:11:20", 0]),
        # a second instance without proxyWidgets: values map onto the promoted inputs in order
        "4:10": node("ImageBlur", "ImageBlur", blur_radius=9, sigma=2.5, image=["1", 0]),
        "4:11:20": node("ImageInvert", "Invert Image", image=["4:10", 0]),
        "4:12": node("SaveImage", "Save Image", filename_prefix="second", images=["4:11:20", 0]),
    }
    assert list(api) == ["1", "2:10", "2:11:20", "2:12", "3", "4:10", "4:11:20", "4:12"]


def test_subgraph_promoted_input_linked_from_outside(catalog: dict[str, NodeSpec]) -> None:
    ui = load("subgraphs.json")
    ui["nodes"].append(_ui_node(5, "PrimitiveInt", [], [["INT", [5]]], [7, "fixed"]))
    ui["nodes"][1]["inputs"].append(
        {"name": "blur_radius", "type": "INT", "widget": {"name": "blur_radius"}, "link": 5}
    )
    ui["links"].append([5, 5, 0, 2, 1, "INT"])
    api = ui_to_api(ui, catalog)
    assert api["2:10"]["inputs"]["blur_radius"] == ["5", 0]
    assert api["4:10"]["inputs"]["blur_radius"] == 9


def test_subgraph_promoted_widgets_by_proxy_name_and_defaults(
    catalog: dict[str, NodeSpec],
) -> None:
    ui = load("subgraphs.json")
    first = ui["nodes"][1]
    # proxyWidgets order differs from the subgraph's input order: names win
    first["properties"]["proxyWidgets"] = [["-1", "prefix"], ["-1", "blur_radius"]]
    first["widgets_values"] = ["by-name", 11]
    # an instance that saved no values keeps the inner widgets' values
    ui["nodes"][3]["widgets_values"] = []
    api = ui_to_api(ui, catalog)
    assert api["2:10"]["inputs"]["blur_radius"] == 11
    assert api["2:12"]["inputs"]["filename_prefix"] == "by-name"
    assert api["4:10"]["inputs"]["blur_radius"] == 1
    assert api["4:12"]["inputs"]["filename_prefix"] == "inner"


def test_subgraph_primitive_node_feeds_promoted_widget(catalog: dict[str, NodeSpec]) -> None:
    ui = load("subgraphs.json")
    ui["nodes"].append(
        {
            "id": 6,
            "type": "PrimitiveNode",
            "mode": 0,
            "inputs": [],
            "outputs": [{"name": "STRING", "type": "STRING", "links": [6]}],
            "widgets_values": ["from-primitive"],
        }
    )
    ui["nodes"][1]["inputs"].append(
        {"name": "prefix", "type": "STRING", "widget": {"name": "prefix"}, "link": 6}
    )
    ui["links"].append([6, 6, 0, 2, 1, "STRING"])
    api = ui_to_api(ui, catalog)
    assert api["2:12"]["inputs"]["filename_prefix"] == "from-primitive"


def test_bypassed_subgraph_instance(catalog: dict[str, NodeSpec]) -> None:
    ui = load("subgraphs.json")
    ui["nodes"][1]["mode"] = 4
    for sub in ui["definitions"]["subgraphs"]:  # what the editor writes when bypassing an instance
        for inner in sub["nodes"]:
            inner["mode"] = 4
    api = ui_to_api(ui, catalog)
    assert api["3"]["inputs"]["images"] == ["1", 0]
    assert not any(key.startswith("2:") for key in api)


def test_subgraph_output_wired_straight_from_its_input(catalog: dict[str, NodeSpec]) -> None:
    ui = load("subgraphs.json")
    inner = ui["definitions"]["subgraphs"][1]
    inner["links"][1] = {
        "id": 21,
        "origin_id": -10,
        "origin_slot": 0,
        "target_id": -20,
        "target_slot": 0,
        "type": "IMAGE",
    }
    api = ui_to_api(ui, catalog)
    assert api["3"]["inputs"]["images"] == ["2:10", 0]


def test_subgraph_containing_itself_is_an_error(catalog: dict[str, NodeSpec]) -> None:
    ui = load("subgraphs.json")
    inner = ui["definitions"]["subgraphs"][1]
    inner["nodes"].append(
        {
            "id": 30,
            "type": inner["id"],
            "mode": 0,
            "inputs": [],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}],
        }
    )
    with pytest.raises(WorkflowError) as info:
        ui_to_api(ui, catalog)
    assert {p.node_id for p in info.value.problems} == {"2:11:30", "4:11:30"}
    assert all("contains an instance of itself" in p.reason for p in info.value.problems)


def test_problems_are_collected(catalog: dict[str, NodeSpec]) -> None:
    with pytest.raises(WorkflowError) as info:
        ui_to_api(load("broken.json"), catalog)
    problems = info.value.problems
    assert [(p.node_id, p.class_type, p.title, p.input_name, p.code) for p in problems] == [
        ("1", "FancyCustomLoader", "My loader", None, "ui_conversion"),
        ("3", "SaveImage", "Save Image", "images", "ui_conversion"),
    ]
    assert "not in the server's catalog" in problems[0].reason
    assert "link 99" in problems[1].reason
    assert "2 problems" in str(info.value)


def test_malformed_links_fail_only_when_used(catalog: dict[str, NodeSpec]) -> None:
    ui: dict[str, Any] = {
        "nodes": [
            _ui_node(1, "EmptyImage", [], [["IMAGE", [1]]], [8, 8, 1, 0]),
            _ui_node(2, "PreviewImage", [["images", "IMAGE", 1]], []),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [7, None, 0, 2, 0, "IMAGE"], "junk", None],
    }
    assert ui_to_api(ui, catalog)["2"]["inputs"] == {"images": ["1", 0]}
    ui["nodes"][1]["inputs"][0]["link"] = 7
    with pytest.raises(WorkflowError, match="uses link 7, which is malformed"):
        ui_to_api(ui, catalog)


def test_browser_only_widget_is_an_error(catalog: dict[str, NodeSpec]) -> None:
    ui = {"nodes": [_ui_node(1, "WebcamCapture", [], [["IMAGE", []]], [None, 512, 512, True])]}
    with pytest.raises(WorkflowError) as info:
        ui_to_api(ui, catalog)
    assert info.value.problems[0].input_name == "image"
    assert "captured" in info.value.problems[0].reason


def test_legacy_group_node_is_an_error(catalog: dict[str, NodeSpec]) -> None:
    ui = {
        "nodes": [_ui_node(1, "workflow>MyGroup", [], [], [])],
        "links": [],
        "extra": {"groupNodes": {"MyGroup": {"nodes": [], "links": []}}},
    }
    with pytest.raises(WorkflowError, match="legacy group node"):
        ui_to_api(ui, catalog)


def test_widgets_values_as_dict(catalog: dict[str, NodeSpec]) -> None:
    ui = {
        "nodes": [
            _ui_node(
                1,
                "EmptyImage",
                [],
                [["IMAGE", []]],
                {"height": 20, "width": 10, "color": 5, "preview": {"ignored": True}},
            )
        ]
    }
    assert ui_to_api(ui, catalog)["1"]["inputs"] == {
        "width": 10,
        "height": 20,
        "color": 5,
        "batch_size": 1,  # absent from the dict: the widget's default
    }


def test_socket_inputs_only_come_from_links(catalog: dict[str, NodeSpec]) -> None:
    # a stale value for the IMAGE socket must not leak into the prompt
    ui = {"nodes": [_ui_node(1, "ImageBlur", [["image", "IMAGE", None]], [], [4, 0.5])]}
    assert ui_to_api(ui, catalog)["1"]["inputs"] == {"blur_radius": 4, "sigma": 0.5}


# --------------------------------------------------------------------------------------------
# widget layout rules, on synthetic node classes

SYNTHETIC: dict[str, Any] = {
    "Widgets": {
        "input": {
            "required": {
                "choice": [["a", "b"], {"control_after_generate": True}],
                "seed": ["INT", {"default": 0}],
                "noise_seed": ["INT", {"default": 0, "control_after_generate": False}],
                "image": ["IMAGE"],
                "tags": ["COMBO", {"options": ["x", "y"], "multiselect": True}],
            },
            "optional": {"extra": ["FLOAT", {"default": 0.25}], "flag": ["BOOLEAN"]},
        },
        "input_order": {
            "required": ["choice", "seed", "noise_seed", "image", "tags"],
            "optional": ["extra", "flag"],
        },
        "output": ["IMAGE"],
        "name": "Widgets",
        "display_name": "Widgets!",
    },
    "Forced": {
        "input": {"required": {"a": ["INT", {"forceInput": True}], "b": ["INT", {"default": 3}]}},
        "input_order": {"required": ["a", "b"]},
        "output": ["INT"],
        "name": "Forced",
    },
}


@pytest.fixture
def synthetic(catalog: dict[str, NodeSpec]) -> dict[str, NodeSpec]:
    extra = {k: parse_node_spec(k, v) for k, v in SYNTHETIC.items()}
    return {**catalog, **extra}


def test_combo_control_and_filter_seed_convention_and_list_values(
    synthetic: dict[str, NodeSpec],
) -> None:
    values = ["b", "increment", "", 7, "randomize", 3, ["x", "y"], 0.5, True]
    ui = {"nodes": [_ui_node(1, "Widgets", [], [["IMAGE", []]], values)]}
    assert ui_to_api(ui, synthetic)["1"] == node(
        "Widgets",
        "Widgets!",
        choice="b",
        seed=7,
        noise_seed=3,
        tags={"__value__": ["x", "y"]},
        extra=0.5,
        flag=True,
    )


def test_missing_values_take_widget_defaults(synthetic: dict[str, NodeSpec]) -> None:
    ui = {"nodes": [_ui_node(1, "Widgets", [], [["IMAGE", []]], ["b", "fixed", "", 7, "fixed"])]}
    assert ui_to_api(ui, synthetic)["1"]["inputs"] == {
        "choice": "b",
        "seed": 7,
        "noise_seed": 0,
        "tags": "x",
        "extra": 0.25,
        "flag": False,
    }


def test_legacy_values_for_force_input_widgets(synthetic: dict[str, NodeSpec]) -> None:
    legacy = {"nodes": [_ui_node(1, "Forced", [], [["INT", []]], [5, 6])]}
    modern = {"nodes": [_ui_node(1, "Forced", [], [["INT", []]], [6])]}
    assert ui_to_api(legacy, synthetic)["1"]["inputs"] == {"b": 6}
    assert ui_to_api(modern, synthetic)["1"]["inputs"] == {"b": 6}


def test_undeclared_linked_input_is_kept_like_the_editor(catalog: dict[str, NodeSpec]) -> None:
    ui = {
        "nodes": [
            _ui_node(1, "EmptyImage", [], [["IMAGE", [1]]], [8, 8, 1, 0]),
            _ui_node(2, "PreviewImage", [["images", "IMAGE", None], ["extra_1", "IMAGE", 1]], []),
        ],
        "links": [[1, 1, 0, 2, 1, "IMAGE"]],
    }
    assert ui_to_api(ui, catalog)["2"]["inputs"] == {"extra_1": ["1", 0]}


def test_circular_reroutes_are_an_error(catalog: dict[str, NodeSpec]) -> None:
    ui = {
        "nodes": [
            _ui_node(1, "Reroute", [["", "*", 2]], [["IMAGE", [1, 3]]]),
            _ui_node(2, "Reroute", [["", "*", 1]], [["IMAGE", [2]]]),
            _ui_node(3, "PreviewImage", [["images", "IMAGE", 3]], []),
        ],
        "links": [[1, 1, 0, 2, 0, "*"], [2, 2, 0, 1, 0, "*"], [3, 1, 0, 3, 0, "IMAGE"]],
    }
    with pytest.raises(WorkflowError, match="circular"):
        ui_to_api(ui, catalog)


def test_input_is_not_modified(catalog: dict[str, NodeSpec]) -> None:
    ui = load("subgraphs.json")
    before = copy.deepcopy(ui)
    ui_to_api(ui, catalog)
    assert ui == before


def _ui_node(
    node_id: int,
    type_: str,
    inputs: list[list[Any]],
    outputs: list[list[Any]],
    widgets_values: Any = None,
    *,
    mode: int = 0,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": node_id,
        "type": type_,
        "mode": mode,
        "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
        "outputs": [{"name": t, "type": t, "links": links} for t, links in outputs],
        "properties": {},
    }
    if widgets_values is not None:
        data["widgets_values"] = widgets_values
    return data
