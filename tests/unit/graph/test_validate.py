"""Client-side validation rules, one violation per graph, against the 0.3.75 fixture catalog."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit._exceptions import WorkflowError, WorkflowProblem
from comfykit.graph import (
    KNOWN_CUSTOM_VALIDATION,
    CustomValidation,
    NodeCatalog,
    NodeOutput,
    Param,
    Workflow,
)
from comfykit.graph._validate import types_compatible

FIXTURE = Path(__file__).parents[2] / "fixtures" / "object_info_0.3.75.json"
CATALOG = NodeCatalog.load(FIXTURE)


def base() -> dict[str, Any]:
    """A valid graph: EmptyImage -> ImageBlur -> PreviewImage."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0},
            "_meta": {"title": "Empty"},
        },
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.5},
        },
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


def only(prompt: Any, **kwargs: Any) -> WorkflowProblem:
    """The single problem of ``prompt`` (fails when there are none or several)."""
    if isinstance(prompt, Workflow):
        found = prompt.problems(catalog=CATALOG, **kwargs)
    else:
        found = CATALOG.problems(prompt, **kwargs)
    assert len(found) == 1, found
    return found[0]


def where(problem: WorkflowProblem) -> tuple[str | None, str | None, str]:
    return problem.node_id, problem.input_name, problem.code


def test_base_graph_is_valid() -> None:
    assert CATALOG.problems(base()) == []
    CATALOG.validate(base())
    CATALOG.validate(base(), strict=True)


def test_validation_does_not_mutate_the_prompt() -> None:
    prompt = base()
    prompt["1"]["inputs"]["width"] = "64"
    before = copy.deepcopy(prompt)
    CATALOG.problems(prompt, strict=True)
    assert prompt == before


# ---------------------------------------------------------------- structure and classes


def test_unknown_class_type_with_suggestion() -> None:
    prompt = base()
    prompt["2"]["class_type"] = "ImageBlurr"
    problem = only(prompt)
    assert where(problem) == ("2", None, "unknown_class_type")
    assert "did you mean 'ImageBlur'" in problem.reason


def test_unknown_class_is_reported_even_when_disconnected() -> None:
    prompt = base()
    prompt["9"] = {"class_type": "NoSuchNode", "inputs": {}}
    assert where(only(prompt)) == ("9", None, "unknown_class_type")


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"inputs": {}}, None),
        ("not a node", None),
        ({"class_type": "ImageInvert"}, "ImageInvert"),
    ],
)
def test_structural_problems_are_invalid_prompt(node: Any, expected: str | None) -> None:
    prompt = base()
    prompt["7"] = node
    problem = only(prompt)
    assert where(problem) == ("7", None, "invalid_prompt")
    assert problem.class_type == expected


def test_prompt_must_be_a_mapping() -> None:
    assert where(only(["not", "a", "prompt"])) == (None, None, "invalid_prompt")


def test_prompt_no_outputs() -> None:
    prompt = base()
    del prompt["3"]
    assert where(only(prompt)) == (None, None, "prompt_no_outputs")


def test_no_outputs_is_not_reported_when_a_class_is_unknown() -> None:
    prompt = base()
    prompt["3"]["class_type"] = "PreviewImag"
    assert where(only(prompt)) == ("3", None, "unknown_class_type")


# ---------------------------------------------------------------- inputs present / absent


def test_required_input_missing() -> None:
    prompt = base()
    del prompt["2"]["inputs"]["sigma"]
    problem = only(prompt)
    assert where(problem) == ("2", "sigma", "required_input_missing")
    assert "FLOAT" in problem.reason


def test_optional_input_may_be_missing() -> None:
    prompt = base()
    prompt["4"] = {"class_type": "TestToBoolNode", "inputs": {"value": ["1", 0]}}
    prompt["5"] = {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}}
    assert CATALOG.problems(prompt) == []


def test_unknown_input_holding_a_link() -> None:
    prompt = base()
    prompt["3"]["inputs"]["imagez"] = ["1", 0]
    problem = only(prompt)
    assert where(problem) == ("3", "imagez", "unknown_input")
    assert "did you mean 'images'" in problem.reason


def test_unknown_literal_input_is_ignored_unless_strict() -> None:
    prompt = base()
    prompt["2"]["inputs"]["radius"] = 3
    assert CATALOG.problems(prompt) == []
    assert where(only(prompt, strict=True)) == ("2", "radius", "unknown_input")


def test_hidden_input_is_reported_in_strict_mode() -> None:
    prompt = base()
    prompt["3"]["inputs"]["prompt"] = "x"
    assert CATALOG.problems(prompt) == []
    problem = only(prompt, strict=True)
    assert where(problem) == ("3", "prompt", "unknown_input")
    assert "hidden" in problem.reason


# ---------------------------------------------------------------- links


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (["1", 0, 0], "has 3 items"),
        ([], "has 0 items"),
        ([1, 0], "use '1'"),
        (["1", 0.0], "must be an int"),
        (["1", "0"], "must be an int"),
        (("1", 0, 1), "has 3 items"),
    ],
)
def test_bad_linked_input(value: Any, fragment: str) -> None:
    prompt = base()
    prompt["2"]["inputs"]["image"] = value
    problem = only(prompt)
    assert where(problem) == ("2", "image", "bad_linked_input")
    assert fragment in problem.reason


def test_link_to_missing_node() -> None:
    prompt = base()
    prompt["2"]["inputs"]["image"] = ["99", 0]
    problem = only(prompt)
    assert where(problem) == ("2", "image", "link_to_missing_node")
    assert "'99'" in problem.reason


@pytest.mark.parametrize("index", [1, 5, -1])
def test_link_output_out_of_range(index: int) -> None:
    prompt = base()
    prompt["2"]["inputs"]["image"] = ["1", index]
    problem = only(prompt)
    assert where(problem) == ("2", "image", "link_output_out_of_range")
    assert "which has 1 output" in problem.reason


def test_return_type_mismatch() -> None:
    prompt = base()
    prompt["4"] = {"class_type": "StubInt", "inputs": {"value": 1}}
    prompt["2"]["inputs"]["sigma"] = ["4", 0]
    problem = only(prompt)
    assert where(problem) == ("2", "sigma", "return_type_mismatch")
    assert problem.reason == "output 0 of node 4 (StubInt) is INT, but this input takes FLOAT"


def test_links_into_wildcard_and_comma_types() -> None:
    prompt = base()
    prompt["4"] = {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}
    prompt["5"] = {"class_type": "StubFloat", "inputs": {"value": 0.5}}
    prompt["6"] = {
        "class_type": "TestCustomValidation1",
        "inputs": {"input1": ["5", 0], "input2": ["1", 0]},
    }
    prompt["7"] = {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}}
    assert CATALOG.problems(prompt) == []
    prompt["8"] = {"class_type": "StubInt", "inputs": {"value": 1}}
    prompt["6"]["inputs"]["input2"] = ["8", 0]
    assert where(only(prompt)) == ("6", "input2", "return_type_mismatch")


def test_input_types_validator_skips_link_type_checks() -> None:
    prompt = base()
    prompt["4"] = {"class_type": "StubInt", "inputs": {"value": 1}}
    prompt["5"] = {
        "class_type": "TestCustomValidation2",
        "inputs": {"input1": ["4", 0], "input2": ["1", 0]},
    }
    prompt["6"] = {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}}
    assert CATALOG.problems(prompt) == []


@pytest.mark.parametrize(
    ("received", "expected", "ok"),
    [
        ("IMAGE", "IMAGE", True),
        ("IMAGE", "*", True),
        ("*", "LATENT", True),
        ("INT", "INT,FLOAT", True),
        ("STRING,BOOLEAN", "STRING,INT", True),
        ("INT", "FLOAT", False),
        ("LATENT", "IMAGE,*", False),
        (["a", "b"], ["a", "b"], True),
        (["a", "b"], "*", False),
        (["a", "b"], ["a"], False),
    ],
)
def test_types_compatible(received: Any, expected: Any, ok: bool) -> None:
    assert types_compatible(received, expected) is ok


# ---------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("node", "name", "value"),
    [
        ("1", "width", "abc"),
        ("1", "width", None),
        ("1", "width", "3.5"),
        ("1", "width", float("inf")),
        ("1", "width", {"a": 1}),
        ("2", "sigma", "x"),
        ("2", "sigma", {"__value__": [1.0]}),
    ],
)
def test_invalid_input_type(node: str, name: str, value: Any) -> None:
    prompt = base()
    prompt[node]["inputs"][name] = value
    problem = only(prompt)
    assert where(problem) == (node, name, "invalid_input_type")
    assert problem.reason.startswith("cannot convert")


@pytest.mark.parametrize(
    ("name", "value"),
    [("width", "12"), ("width", 8.7), ("width", True), ("width", " 7 "), ("height", 1_000)],
)
def test_literals_coerced_like_the_server(name: str, value: Any) -> None:
    prompt = base()
    prompt["1"]["inputs"][name] = value
    assert CATALOG.problems(prompt) == []


def test_float_accepts_nan_like_the_server() -> None:
    prompt = base()
    prompt["2"]["inputs"]["sigma"] = "nan"
    assert CATALOG.problems(prompt) == []


def test_string_input_accepts_anything_str_can_render() -> None:
    prompt = {
        "1": {
            "class_type": "StringConcatenate",
            "inputs": {"string_a": 5, "string_b": {"__value__": ["x"]}, "delimiter": None},
        },
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    assert CATALOG.problems(prompt) == []


def test_value_that_is_not_json() -> None:
    prompt = base()
    prompt["1"]["inputs"]["width"] = Path("x")
    problem = only(prompt)
    assert where(problem) == ("1", "width", "invalid_input_type")
    assert "JSON" in problem.reason


def test_value_smaller_than_min() -> None:
    prompt = base()
    prompt["2"]["inputs"]["blur_radius"] = 0
    problem = only(prompt)
    assert where(problem) == ("2", "blur_radius", "value_smaller_than_min")
    assert problem.reason == "value 0 smaller than min of 1"


def test_bounds_are_checked_after_coercion() -> None:
    prompt = base()
    prompt["1"]["inputs"]["height"] = "0"
    assert where(only(prompt)) == ("1", "height", "value_smaller_than_min")
    prompt["1"]["inputs"]["height"] = 0.9  # int(0.9) == 0
    assert where(only(prompt)) == ("1", "height", "value_smaller_than_min")


def test_value_bigger_than_max() -> None:
    prompt = base()
    prompt["1"]["inputs"]["width"] = 16385
    problem = only(prompt)
    assert where(problem) == ("1", "width", "value_bigger_than_max")
    assert problem.reason == "value 16385 bigger than max of 16384"


def test_error_message_reads_like_the_brief() -> None:
    prompt = {
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": 0,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
            "_meta": {"title": "Sampler"},
        }
    }
    found = [p for p in CATALOG.problems(prompt, strict=True) if p.input_name == "steps"]
    assert [str(p) for p in found] == [
        "node 5 (KSampler 'Sampler') input 'steps': value 0 smaller than min of 1"
    ]


def test_value_not_in_list() -> None:
    prompt = base()
    prompt["4"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["2", 0],
            "upscale_method": "bilinar",
            "width": 32,
            "height": 32,
            "crop": "disabled",
        },
    }
    prompt["3"]["inputs"]["images"] = ["4", 0]
    problem = only(prompt)
    assert where(problem) == ("4", "upscale_method", "value_not_in_list")
    assert "did you mean 'bilinear'" in problem.reason


def test_empty_combo_explains_itself() -> None:
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    problem = only(prompt)
    assert where(problem) == ("1", "ckpt_name", "value_not_in_list")
    assert "no values" in problem.reason


def test_long_combo_lists_are_abbreviated() -> None:
    info = CATALOG.object_info
    info["ImageScale"]["input"]["required"]["upscale_method"] = [[f"m{i}" for i in range(30)]]
    catalog = NodeCatalog.from_object_info(info)
    prompt = base()
    prompt["4"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["2", 0],
            "upscale_method": "zzz",
            "width": 8,
            "height": 8,
            "crop": "center",
        },
    }
    prompt["3"]["inputs"]["images"] = ["4", 0]
    (problem,) = catalog.problems(prompt)
    assert "(list of 30 values)" in problem.reason


def test_upload_combos_are_left_to_the_node() -> None:
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "uploaded-later.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    assert CATALOG.problems(prompt, strict=True) == []
    catalog = NodeCatalog.from_object_info(CATALOG.object_info, custom_validation={})
    assert catalog.problems(prompt) == []  # image_upload alone is enough


def test_combo_typed_inputs_are_checked_only_in_strict_mode() -> None:
    prompt = base()
    prompt["4"] = {
        "class_type": "SaveVideo",
        "inputs": {
            "video": ["9", 0],
            "filename_prefix": "x",
            "format": "avi",
            "codec": "auto",
        },
    }
    prompt["9"] = {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": 8.0}}
    assert CATALOG.problems(prompt) == []
    assert where(only(prompt, strict=True)) == ("4", "format", "value_not_in_list")


def test_custom_validation_skips_bounds() -> None:
    prompt = base()
    prompt["4"] = {"class_type": "TestCustomValidation5", "inputs": {"input1": 5.0, "input2": 9.0}}
    prompt["5"] = {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}
    assert CATALOG.problems(prompt) == []
    plain = NodeCatalog.from_object_info(CATALOG.object_info, custom_validation={})
    codes = {p.code for p in plain.problems(prompt)}
    assert codes == {"value_bigger_than_max"}
    prompt["4"]["inputs"]["input1"] = "abc"  # coercion still happens
    assert where(only(prompt)) == ("4", "input1", "invalid_input_type")


def test_known_custom_validation_table() -> None:
    assert KNOWN_CUSTOM_VALIDATION["LoadImage"] == CustomValidation(frozenset({"image"}))
    assert KNOWN_CUSTOM_VALIDATION["TestCustomValidation5"].skips_literal_checks("anything")
    assert KNOWN_CUSTOM_VALIDATION["TestCustomValidation2"].input_types
    for name in KNOWN_CUSTOM_VALIDATION:
        if name != "LoadAudio":  # needs torchaudio, absent from the fixture server
            assert name in CATALOG


def test_value_wrapper_is_unwrapped() -> None:
    prompt = base()
    prompt["1"]["inputs"]["width"] = {"__value__": 32}
    assert CATALOG.problems(prompt) == []
    prompt["1"]["inputs"]["width"] = {"__value__": 0}
    assert where(only(prompt)) == ("1", "width", "value_smaller_than_min")


def test_strict_flags_literals_in_link_only_inputs_and_boolean_strings() -> None:
    prompt = base()
    prompt["2"]["inputs"]["image"] = "not a link"
    assert CATALOG.problems(prompt) == []
    assert where(only(prompt, strict=True)) == ("2", "image", "invalid_input_type")
    prompt = base()
    prompt["4"] = {"class_type": "PrimitiveBoolean", "inputs": {"value": "false"}}
    prompt["5"] = {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}}
    assert CATALOG.problems(prompt) == []
    problem = only(prompt, strict=True)
    assert where(problem) == ("4", "value", "invalid_input_type")
    assert "read as True" in problem.reason


# ---------------------------------------------------------------- graph-level rules


def test_disconnected_nodes_are_ignored_unless_strict() -> None:
    prompt = base()
    prompt["8"] = {"class_type": "ImageInvert", "inputs": {}}
    assert CATALOG.problems(prompt) == []
    assert where(only(prompt, strict=True)) == ("8", "image", "required_input_missing")


def test_dependency_cycle() -> None:
    prompt = base()
    prompt["4"] = {"class_type": "ImageInvert", "inputs": {"image": ["5", 0]}}
    prompt["5"] = {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}}
    prompt["3"]["inputs"]["images"] = ["5", 0]
    problem = only(prompt)
    assert where(problem) == ("4", None, "dependency_cycle")
    assert problem.reason == (
        "dependency cycle: 4 (ImageInvert) -> 5 (ImageInvert) -> 4 (ImageInvert)"
    )


def test_self_loop_is_a_cycle() -> None:
    prompt = base()
    prompt["2"]["inputs"]["image"] = ["2", 0]
    assert where(only(prompt)) == ("2", None, "dependency_cycle")


def test_cycle_through_an_undeclared_link_still_counts() -> None:
    prompt = base()
    prompt["1"]["inputs"]["extra"] = ["2", 0]
    codes = sorted(p.code for p in CATALOG.problems(prompt))
    assert codes == ["dependency_cycle", "unknown_input"]


def test_every_problem_is_reported_at_once() -> None:
    prompt = base()
    prompt["1"]["inputs"]["width"] = 0
    prompt["1"]["inputs"]["height"] = "tall"
    del prompt["2"]["inputs"]["sigma"]
    prompt["3"]["inputs"]["extra"] = ["42", 0]
    with pytest.raises(WorkflowError) as info:
        CATALOG.validate(prompt)
    assert [where(p) for p in info.value.problems] == [
        ("1", "width", "value_smaller_than_min"),
        ("1", "height", "invalid_input_type"),
        ("2", "sigma", "required_input_missing"),
        ("3", "extra", "unknown_input"),
    ]
    assert str(info.value).startswith("4 problems in workflow:\n  - node 1 (EmptyImage 'Empty')")


def test_int_node_ids_are_read_as_strings() -> None:
    prompt: dict[Any, Any] = {1: base()["1"], 2: {"class_type": "PreviewImage", "inputs": {}}}
    prompt[2]["inputs"]["images"] = ["1", 0]
    assert CATALOG.problems(prompt) == []


# ---------------------------------------------------------------- params


def test_params_are_bound_before_validation() -> None:
    wf = Workflow.from_api(base())
    wf.node("2").inputs["blur_radius"] = Param("radius")
    assert where(only(wf)) == ("2", "blur_radius", "unbound_param")
    assert wf.problems(catalog=CATALOG, params={"radius": 4}) == []
    assert where(only(wf, params={"radius": 40})) == ("2", "blur_radius", "value_bigger_than_max")
    assert where(only(wf, params={"radius": 4, "radious": 1})) == (None, None, "unknown_param")


def test_param_defaults_are_validated() -> None:
    prompt = base()
    prompt["2"]["inputs"]["blur_radius"] = Param("radius", default=0)
    assert where(only(prompt)) == ("2", "blur_radius", "value_smaller_than_min")


def test_param_bound_to_a_link() -> None:
    prompt = base()
    prompt["3"]["inputs"]["images"] = Param("source")
    assert CATALOG.problems(prompt, params={"source": NodeOutput("1", 0)}) == []
    assert where(only(prompt, params={"source": NodeOutput("1", 2)}))[2] == (
        "link_output_out_of_range"
    )


# ---------------------------------------------------------------- properties


_NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
)


@settings(max_examples=200, deadline=None)
@given(width=_NUMBERS, sigma=_NUMBERS)
def test_numeric_literals_match_python_semantics(width: Any, sigma: Any) -> None:
    """The verdict on a literal is exactly what ``int()``/``float()`` and the bounds say."""
    prompt = base()
    prompt["1"]["inputs"]["width"] = width
    prompt["2"]["inputs"]["sigma"] = sigma

    def expected(value: Any, convert: type, low: float, high: float) -> str | None:
        try:
            number = convert(value)
        except Exception:
            return "invalid_input_type"
        if number < low:
            return "value_smaller_than_min"
        if number > high:
            return "value_bigger_than_max"
        return None

    want = {
        ("1", "width", expected(width, int, 1, 16384)),
        ("2", "sigma", expected(sigma, float, 0.1, 10.0)),
    }
    got = {where(p) for p in CATALOG.problems(prompt)}
    assert got == {w for w in want if w[2] is not None}


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["1", "2", "3", "4"]), st.sampled_from(list(CATALOG))))
def test_validation_never_raises_on_arbitrary_class_mixes(classes: dict[str, str]) -> None:
    prompt = {nid: {"class_type": ct, "inputs": {"x": [nid, 0]}} for nid, ct in classes.items()}
    for problem in CATALOG.problems(prompt, strict=True):
        assert problem.code
        assert str(problem)
