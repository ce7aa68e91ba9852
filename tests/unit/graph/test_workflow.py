"""The Workflow builder: building, loading, editing, exporting, parameters."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit._exceptions import InputError, WorkflowError
from comfykit.graph import MISSING, Node, NodeCatalog, NodeOutput, Param, Workflow

ROOT = Path(__file__).parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "object_info_0.3.75.json"
CATALOG = NodeCatalog.load(FIXTURE)


def chain(catalog: NodeCatalog | None = CATALOG) -> tuple[Workflow, Node, Node, Node]:
    wf = Workflow(catalog)
    empty = wf.add("EmptyImage", width=64, height=48, batch_size=1, color=0, title="Empty")
    blur = wf.add("ImageBlur", image=empty.out(0), blur_radius=3, sigma=1.5)
    save = wf.add("SaveImage", images=blur["IMAGE"], filename_prefix="test/run", title="Save")
    return wf, empty, blur, save


def codes(err: pytest.ExceptionInfo[WorkflowError]) -> list[tuple[str | None, str | None, str]]:
    return [(p.node_id, p.input_name, p.code) for p in err.value.problems]


# ---------------------------------------------------------------- building and export


def test_to_api_shape() -> None:
    wf, *_ = chain()
    assert wf.to_api() == {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0},
            "_meta": {"title": "Empty"},
        },
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.5},
        },
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "test/run"},
            "_meta": {"title": "Save"},
        },
    }
    json.dumps(wf.to_api())
    CATALOG.validate(wf.to_api())
    wf.validate()


def test_to_api_shares_nothing_with_the_workflow() -> None:
    wf = Workflow()
    node = wf.add("X", data={"__value__": [1, 2]})
    api = wf.to_api()
    api["1"]["inputs"]["data"]["__value__"].append(3)
    assert node.inputs["data"] == {"__value__": [1, 2]}


def test_outputs_by_index_and_name() -> None:
    wf = Workflow(CATALOG)
    loader = wf.add("StubImage", content="NOISE", height=8, width=8, batch_size=1)
    assert loader.out(0) == loader[0] == loader["IMAGE"] == loader.out("image")
    assert loader.out(0) == NodeOutput(loader.id, 0)
    with pytest.raises(WorkflowError, match=r"has no output 'LATENT' \(outputs: 0 IMAGE\)") as err:
        loader.out("LATENT")
    assert codes(err) == [(loader.id, None, "unknown_output")]
    with pytest.raises(WorkflowError, match="has no output 3"):
        loader.out(3)


def test_checkpoint_outputs_by_name_need_a_catalog() -> None:
    wf = Workflow(CATALOG)
    info = CATALOG.object_info
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"] = [["sd15.safetensors"]]
    wf.catalog = NodeCatalog.from_object_info(info)
    ckpt = wf.add("CheckpointLoaderSimple", ckpt_name="sd15.safetensors", title="Load")
    assert ckpt.out("CLIP") == ckpt[1] == NodeOutput("1", 1)
    bare = Workflow()
    node = bare.add("CheckpointLoaderSimple", ckpt_name="sd15.safetensors")
    assert node.out(2) == NodeOutput("1", 2)
    with pytest.raises(WorkflowError, match="output names need a catalog") as err:
        node.out("CLIP")
    assert codes(err) == [("1", None, "unknown_output")]
    with pytest.raises(WorkflowError, match="negative"):
        node.out(-1)
    with pytest.raises(InputError):
        node.out(1.0)  # type: ignore[arg-type]


def test_add_with_catalog_reports_everything_at_once() -> None:
    wf, empty, *_ = chain()
    before = wf.to_api()
    with pytest.raises(WorkflowError) as err:
        wf.add("ImageBlur", image=empty.out(0), blur_radius=0, sigma="x", radius=2)
    assert codes(err) == [
        ("4", "blur_radius", "value_smaller_than_min"),
        ("4", "sigma", "invalid_input_type"),
        ("4", "radius", "unknown_input"),
    ]
    assert wf.to_api() == before
    assert wf.add("ImageInvert", image=empty.out(0)).id == "4"


def test_add_unknown_class_suggests() -> None:
    wf = Workflow(CATALOG)
    with pytest.raises(WorkflowError, match="did you mean 'ImageInvert'") as err:
        wf.add("ImageInvrt")
    assert codes(err) == [("1", None, "unknown_class_type")]
    assert len(wf) == 0


def test_add_checks_link_types_immediately() -> None:
    wf, empty, *_ = chain()
    number = wf.add("StubInt", value=3)
    with pytest.raises(WorkflowError) as err:
        wf.add("ImageInvert", image=number.out(0))
    assert codes(err) == [("5", "image", "return_type_mismatch")]
    with pytest.raises(WorkflowError) as err:
        wf.add("ImageInvert", image=NodeOutput("77", 0))
    assert codes(err) == [("5", "image", "link_to_missing_node")]
    assert wf.add("ImageInvert", image=["1", 0]).inputs["image"] == empty.out(0)


@pytest.mark.parametrize("catalog", [CATALOG, None])
def test_a_link_into_another_workflow_is_named_as_such(catalog: NodeCatalog | None) -> None:
    wf = Workflow(catalog)
    empty = wf.add("EmptyImage", width=64, height=48, batch_size=1, color=0)
    other = Workflow(catalog)
    with pytest.raises(WorkflowError, match="links to node '1' of another Workflow") as err:
        other.add("ImageInvert", image=empty.out(0))
    assert codes(err) == [("1", "image", "link_to_other_workflow")]
    assert "which is not in the workflow" not in str(err.value) and len(other) == 0
    copied = copy.deepcopy(empty.out(0))  # a copied link belongs to no workflow in particular
    assert copied == empty.out(0) and copied.workflow is None
    twin = wf.copy()
    assert twin.add("ImageInvert", image=twin.node("1").out(0)).inputs["image"] == empty.out(0)


def test_missing_required_inputs_wait_for_validate() -> None:
    wf = Workflow(CATALOG)
    node = wf.add("ImageInvert")
    wf.add("PreviewImage", images=node.out(0))
    with pytest.raises(WorkflowError) as err:
        wf.validate()
    assert codes(err) == [("1", "image", "required_input_missing")]


def test_without_catalog_only_structure_is_checked() -> None:
    wf = Workflow()
    a = wf.add("Whatever", anything=[1, 2, 3])
    wf.add("Other", src=a.out(7))
    with pytest.raises(WorkflowError) as err:
        wf.add("Other", src=NodeOutput("9", 0))
    assert codes(err) == [("3", "src", "link_to_missing_node")]
    with pytest.raises(InputError, match="no catalog"):
        wf.validate()
    assert [p.code for p in wf.problems(catalog=CATALOG)] == [
        "unknown_class_type",
        "unknown_class_type",
    ]


def test_literal_lists_are_kept_and_flagged() -> None:
    wf = Workflow(CATALOG)
    with pytest.raises(WorkflowError, match=r"__value__") as err:
        wf.add("StringConcatenate", string_a=["a", "b", "c"], string_b="x", delimiter="")
    assert codes(err) == [("1", "string_a", "bad_linked_input")]
    node = wf.add("StringConcatenate", string_a={"__value__": ["a"]}, string_b="x", delimiter="")
    wf.add("PreviewAny", source=node.out(0))
    assert wf.to_api()["1"]["inputs"]["string_a"] == {"__value__": ["a"]}
    wf.validate()


def test_title_kwarg_and_mapping_inputs() -> None:
    wf = Workflow()
    node = wf.add("Custom", {"title": "an input called title", "x-y": 1}, title="Shown")
    assert node.title == "Shown"
    assert node.inputs == {"title": "an input called title", "x-y": 1}
    node.title = None
    assert wf.to_api()["1"] == {
        "class_type": "Custom",
        "inputs": {"title": "an input called title", "x-y": 1},
        "_meta": {},
    }


# ---------------------------------------------------------------- loading


SUBGRAPH_PROMPT: dict[str, Any] = {
    "54:73": {
        "class_type": "EmptyImage",
        "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        "_meta": {"title": "Inner", "note": "kept"},
    },
    "54:62:174": {
        "class_type": "ImageInvert",
        "inputs": {"image": ["54:73", 0]},
        "is_changed": ["x"],
    },
    "9": {
        "class_type": "PreviewImage",
        "inputs": {"images": ["54:62:174", 0], "odd": [1, 2, 3], "lit": {"__value__": [1]}},
        "_meta": None,
    },
}


def test_from_api_round_trip_keeps_ids_and_extras() -> None:
    wf = Workflow.from_api(SUBGRAPH_PROMPT)
    assert wf.to_api() == SUBGRAPH_PROMPT
    assert [n.id for n in wf] == ["54:73", "54:62:174", "9"]
    assert wf.node("Inner").id == "54:73"
    assert wf.node("54:62:174").inputs["image"] == NodeOutput("54:73", 0)
    assert wf.node(9).extra == {"_meta": None}
    assert wf.add("ImageInvert").id == "10"


def test_from_api_does_not_alias_its_input() -> None:
    data = copy.deepcopy(SUBGRAPH_PROMPT)
    wf = Workflow.from_api(data)
    data["9"]["inputs"]["odd"].append(4)
    data["54:73"]["_meta"]["title"] = "changed"
    assert wf.to_api() == SUBGRAPH_PROMPT


def test_from_api_rejects_structural_garbage() -> None:
    with pytest.raises(WorkflowError) as err:
        Workflow.from_api({"1": {"inputs": {}}, "2": 5, "3": {"class_type": "X"}})
    assert codes(err) == [
        ("1", None, "invalid_prompt"),
        ("2", None, "invalid_prompt"),
        ("3", None, "invalid_prompt"),
    ]
    with pytest.raises(WorkflowError):
        Workflow.from_api([])  # type: ignore[arg-type]


def test_from_api_with_catalog_enables_names() -> None:
    wf = Workflow.from_api(SUBGRAPH_PROMPT, catalog=CATALOG)
    assert wf.node("54:73")["IMAGE"] == NodeOutput("54:73", 0)
    assert wf.node("54:73").spec is CATALOG["EmptyImage"]


# ---------------------------------------------------------------- lookup and editing


def test_node_lookup() -> None:
    wf, empty, blur, save = chain()
    assert wf.node("1") is wf.node(1) is wf.node("Empty") is wf.node(empty) is empty
    assert wf.find(class_type="ImageBlur") == [blur]
    assert wf.find(title="Save") == [save]
    assert wf.find(class_type="SaveImage", title="Empty") == []
    assert wf.find() == wf.nodes == list(wf)
    assert len(wf) == 3
    assert "1" in wf and 2 in wf and save in wf
    assert "Empty" not in wf and "7" not in wf and None not in wf
    with pytest.raises(WorkflowError, match="did you mean 'Save'") as err:
        wf.node("Sav")
    assert codes(err) == [(None, None, "unknown_node")]
    wf.add("ImageInvert", image=empty.out(0), title="Save")
    with pytest.raises(WorkflowError, match="used by nodes 3, 4") as err:
        wf.node("Save")
    assert codes(err) == [(None, None, "ambiguous_node")]
    other = Workflow().add("X")
    with pytest.raises(WorkflowError, match="not part of the workflow"):
        wf.node(other)
    with pytest.raises(InputError):
        wf.node(1.5)  # type: ignore[arg-type]
    assert repr(wf) == "<Workflow 4 nodes>"
    assert repr(empty) == "Node('1', 'EmptyImage', title='Empty')"


def test_edit_a_loaded_graph_by_title() -> None:
    wf2 = Workflow.from_api(chain()[0].to_api(), catalog=CATALOG)
    wf2.node("Empty").inputs["width"] = 128
    assert wf2.to_api()["1"]["inputs"]["width"] == 128
    wf2.set("Empty", height=16).set(color=255)
    assert wf2.node(1).inputs["height"] == 16
    assert wf2.node(1).inputs["color"] == 255
    assert wf2.replace_input("2", "sigma", 2.5) == 1.5
    assert wf2.replace_input("2", "blur_radius", 4) == 3
    with pytest.raises(WorkflowError) as err:
        wf2.set("Empty", width=0, batch_size=99999)
    assert codes(err) == [
        ("1", "width", "value_smaller_than_min"),
        ("1", "batch_size", "value_bigger_than_max"),
    ]
    assert wf2.node(1).inputs["width"] == 128


def test_links_property() -> None:
    wf, empty, blur, _ = chain()
    assert blur.links == {"image": empty.out(0)}
    assert empty.links == {}


def test_remove_returns_dangling_inputs() -> None:
    wf, empty, blur, save = chain()
    invert = wf.add("ImageInvert", image=empty.out(0))
    dangling = wf.remove("Empty")
    assert dangling == [(blur, "image"), (invert, "image")]
    assert "image" not in blur.inputs
    assert empty not in wf
    assert wf.add("EmptyImage", width=8, height=8, batch_size=1, color=0).id == "5"
    with pytest.raises(WorkflowError):
        wf.remove("Empty")


def test_rewire_moves_every_consumer() -> None:
    wf, empty, blur, save = chain()
    invert = wf.add("ImageInvert", image=empty.out(0))
    second = wf.add("StubImage", content="BLACK", height=8, width=8, batch_size=1)
    changed = wf.rewire(empty.out(0), second.out(0))
    assert changed == [(blur, "image"), (invert, "image")]
    assert blur.inputs["image"] == second.out(0)
    number = wf.add("StubInt", value=1)
    with pytest.raises(WorkflowError) as err:
        wf.rewire(second.out(0), number.out(0))
    assert [c[2] for c in codes(err)] == ["return_type_mismatch", "return_type_mismatch"]
    assert blur.inputs["image"] == second.out(0)


def test_rewire_accepts_api_links_only() -> None:
    wf, empty, blur, _ = chain()
    invert = wf.add("ImageInvert", image=empty.out(0))
    assert wf.rewire(["2", 0], invert.out(0)) == [(wf.node("Save"), "images")]
    with pytest.raises(InputError, match="needs a link"):
        wf.rewire("2", invert.out(0))  # type: ignore[arg-type]


def test_loaded_nodes_of_unknown_classes_stay_editable() -> None:
    data = {
        "1": {"class_type": "MyCustomNode", "inputs": {"strength": 1}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    wf = Workflow.from_api(data, catalog=CATALOG)
    wf.set("1", strength=2)
    with pytest.raises(WorkflowError) as err:
        wf.set("1", source=NodeOutput("42", 0))
    assert codes(err) == [("1", "source", "link_to_missing_node")]
    with pytest.raises(WorkflowError) as err:
        wf.add("MyCustomNode")
    assert codes(err) == [("3", None, "unknown_class_type")]
    assert [p.code for p in wf.problems()] == ["unknown_class_type"]


def test_bypass_a_node_with_rewire_and_remove() -> None:
    wf, empty, blur, save = chain()
    wf.rewire(blur.out(0), blur.inputs["image"])
    assert wf.remove(blur) == []
    assert save.inputs["images"] == empty.out(0)
    wf.validate()


def test_copy_is_independent() -> None:
    wf, empty, *_ = chain()
    clone = wf.copy()
    assert clone.to_api() == wf.to_api()
    assert clone.catalog is wf.catalog
    clone.node("Empty").inputs["width"] = 1
    clone.node("Empty").title = "Changed"
    clone.add("ImageInvert", image=clone.node(1).out(0))
    assert empty.inputs["width"] == 64
    assert empty.title == "Empty"
    assert len(wf) == 3 and len(clone) == 4
    assert clone.node(1).workflow is clone


def test_merge_renumbers_and_relinks() -> None:
    wf, *_ = chain()
    mapping = wf.merge(SUBGRAPH_PROMPT)
    assert mapping == {"54:73": "4", "54:62:174": "5", "9": "6"}
    api = wf.to_api()
    assert api["5"]["inputs"]["image"] == ["4", 0]
    assert api["6"]["inputs"]["images"] == ["5", 0]
    assert api["6"]["inputs"]["odd"] == [1, 2, 3]
    assert api["4"]["_meta"] == {"title": "Inner", "note": "kept"}
    again = wf.merge(wf)
    assert len(wf) == 12
    assert again["2"] == "8"
    assert wf.to_api()["8"]["inputs"]["image"] == ["7", 0]


def test_merge_refuses_conflicting_params() -> None:
    wf, _, blur, _ = chain()
    blur.set(blur_radius=Param("r", default=2))
    other, _, oblur, _ = chain()
    oblur.set(blur_radius=Param("r", default=3))
    with pytest.raises(WorkflowError, match="already defined") as err:
        wf.merge(other)
    assert codes(err) == [(None, None, "param_conflict")]
    assert len(wf) == 3


# ---------------------------------------------------------------- parameters


def test_params_bind_at_export() -> None:
    wf, empty, blur, _ = chain()
    blur.set(blur_radius=Param("radius", default=2, description="blur size"))
    empty.set(width=Param("size"), height=Param("size"))
    assert list(wf.params) == ["size", "radius"]
    assert wf.params["radius"].has_default
    assert not wf.params["size"].has_default
    assert wf.params["size"].default is MISSING
    with pytest.raises(WorkflowError) as err:
        wf.to_api()
    assert codes(err) == [("1", "width", "unbound_param"), ("1", "height", "unbound_param")]
    assert str(err.value).splitlines()[1] == (
        "  - node 1 (EmptyImage 'Empty') input 'width': parameter 'size' has no value and no "
        "default"
    )
    api = wf.to_api(params={"size": 32})
    assert api["1"]["inputs"]["width"] == api["1"]["inputs"]["height"] == 32
    assert api["2"]["inputs"]["blur_radius"] == 2
    assert wf.to_api(params={"size": 8, "radius": 5})["2"]["inputs"]["blur_radius"] == 5
    with pytest.raises(WorkflowError, match="did you mean 'radius'") as err:
        wf.to_api(params={"size": 8, "radious": 5})
    assert codes(err) == [(None, None, "unknown_param")]
    wf.validate(params={"size": 16})
    with pytest.raises(WorkflowError) as err:
        wf.validate(params={"size": 0})
    assert codes(err) == [
        ("1", "width", "value_smaller_than_min"),
        ("1", "height", "value_smaller_than_min"),
    ]


def test_param_defaults_are_checked_when_added() -> None:
    wf, empty, blur, _ = chain()
    with pytest.raises(WorkflowError) as err:
        blur.set(blur_radius=Param("radius", default=99))
    assert codes(err) == [("2", "blur_radius", "value_bigger_than_max")]
    blur.set(blur_radius=Param("radius"))
    with pytest.raises(WorkflowError, match="already defined as Param") as err:
        empty.set(width=Param("radius", default=3))
    assert codes(err) == [(None, None, "param_conflict")]
    blur.set(blur_radius=Param("radius", default=5))  # redefining where it is replaced is fine
    assert wf.params["radius"] == Param("radius", default=5)


def test_param_repr_and_identity() -> None:
    assert repr(Param("seed")) == "Param('seed')"
    assert repr(Param("seed", default=0, description="d")) == (
        "Param('seed', default=0, description='d')"
    )
    assert Param("seed", default=0) == Param("seed", default=0)
    param: object = Param("s")
    link: object = NodeOutput("1", 0)
    assert param != ["s"]
    assert link != ["1", 0]
    assert repr(NodeOutput("1", 0)) == "NodeOutput('1', 0)"
    assert repr(MISSING) == "MISSING"


def test_param_bound_to_an_output() -> None:
    wf, empty, blur, save = chain()
    save.set(images=Param("source", default=blur.out(0)))
    assert wf.to_api()["3"]["inputs"]["images"] == ["2", 0]
    assert wf.to_api(params={"source": empty.out(0)})["3"]["inputs"]["images"] == ["1", 0]


# ---------------------------------------------------------------- properties

_LITERALS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_IDS = st.one_of(
    st.integers(1, 60).map(str),
    st.tuples(st.integers(1, 9), st.integers(1, 99)).map(lambda t: f"{t[0]}:{t[1]}"),
)


@st.composite
def api_prompts(draw: st.DrawFn) -> dict[str, Any]:
    """Arbitrary API-format prompts: literal, link and malformed-link inputs, meta and extras."""
    ids = draw(st.lists(_IDS, min_size=0, max_size=8, unique=True))
    prompt: dict[str, Any] = {}
    for nid in ids:
        inputs: dict[str, Any] = {}
        for name in draw(st.lists(st.text("abcxyz_", min_size=1, max_size=5), max_size=4)):
            kind = draw(st.integers(0, 2))
            if kind == 0 and ids:
                inputs[name] = [draw(st.sampled_from(ids + ["404"])), draw(st.integers(0, 4))]
            else:
                inputs[name] = draw(_LITERALS)
        node: dict[str, Any] = {"class_type": draw(st.sampled_from(["A", "B", "ImageBlur"]))}
        node["inputs"] = inputs
        if draw(st.booleans()):
            node["_meta"] = {"title": draw(st.text(max_size=5))}
        if draw(st.integers(0, 5)) == 0:
            node["is_changed"] = draw(_LITERALS)
        prompt[nid] = node
    return prompt


@settings(max_examples=150, deadline=None)
@given(api_prompts())
def test_from_api_to_api_round_trip(prompt: dict[str, Any]) -> None:
    snapshot = copy.deepcopy(prompt)
    wf = Workflow.from_api(prompt)
    assert wf.to_api() == snapshot
    assert wf.copy().to_api() == snapshot
    assert Workflow.from_api(json.loads(json.dumps(wf.to_api()))).to_api() == snapshot
    assert prompt == snapshot


@settings(max_examples=100, deadline=None)
@given(api_prompts())
def test_merge_into_empty_is_an_isomorphic_renumbering(prompt: dict[str, Any]) -> None:
    wf = Workflow()
    mapping = wf.merge(prompt)
    assert list(mapping) == list(prompt)
    assert list(mapping.values()) == [str(i) for i in range(1, len(prompt) + 1)]
    api = wf.to_api()
    for old, new in mapping.items():
        original = prompt[old]
        renamed = api[new]
        assert renamed["class_type"] == original["class_type"]
        for name, value in original["inputs"].items():
            got = renamed["inputs"][name]
            is_link = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            if is_link and isinstance(value[1], int) and value[0] in mapping:
                assert got == [mapping[value[0]], value[1]]
            else:
                assert got == value


_SIZES = st.integers(1, 64)


@st.composite
def built_workflows(draw: st.DrawFn) -> Workflow:
    """Valid image chains built through the checked builder."""
    wf = Workflow(CATALOG)
    current = wf.add(
        "EmptyImage",
        width=draw(_SIZES),
        height=draw(_SIZES),
        batch_size=1,
        color=draw(st.integers(0, 16777215)),
        title=draw(st.none() | st.text(min_size=1, max_size=6)),
    )
    for _ in range(draw(st.integers(0, 5))):
        op = draw(st.sampled_from(["ImageInvert", "ImageBlur", "ImageScale", "ImageSharpen"]))
        if op == "ImageInvert":
            current = wf.add(op, image=current.out(0))
        elif op == "ImageBlur":
            radius = draw(st.integers(1, 31) | st.just(Param("radius", default=2)))
            current = wf.add(op, image=current["IMAGE"], blur_radius=radius, sigma=0.5)
        elif op == "ImageScale":
            current = wf.add(
                op,
                image=current.out(0),
                upscale_method=draw(st.sampled_from(CATALOG[op].input("upscale_method").choices)),  # type: ignore[union-attr,arg-type]
                width=draw(_SIZES),
                height=draw(_SIZES),
                crop="disabled",
            )
        else:
            current = wf.add(op, image=current.out(0), sharpen_radius=1, sigma=1.0, alpha=0.5)
    wf.add("PreviewImage", images=current.out(0))
    return wf


@settings(max_examples=100, deadline=None)
@given(built_workflows())
def test_built_workflows_validate_and_round_trip(wf: Workflow) -> None:
    assert wf.problems() == []
    api = wf.to_api()
    assert Workflow.from_api(api).to_api() == api
    assert list(api) == [str(i) for i in range(1, len(wf) + 1)]
    assert CATALOG.problems(api) == []


# ---------------------------------------------------------------- the docs page


def _doc_blocks() -> list[str]:
    text = (ROOT / "docs" / "workflows.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_docs_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every python block of docs/workflows.md runs, in order, in one namespace.

    Blocks that start with ``# needs a running ComfyUI`` are skipped; the catalog they would
    fetch is the fixture.
    """
    blocks = _doc_blocks()
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"catalog": NodeCatalog.load(FIXTURE)}
    for block in blocks:
        if block.startswith("# needs a running ComfyUI"):
            continue
        exec(compile(block, "docs/workflows.md", "exec"), namespace)


def test_the_catalog_checks_a_mapping_and_points_a_workflow_to_its_own_methods() -> None:
    wf = Workflow(CATALOG)
    wf.add("EmptyImage", width=8, height=8, batch_size=1, color=0)
    with pytest.raises(InputError, match=r"workflow\.problems\(catalog=\.\.\.\)"):
        CATALOG.problems(wf)  # type: ignore[arg-type]
    assert wf.problems(catalog=CATALOG) == CATALOG.problems(wf.to_api())
