"""The local validator and a real ComfyUI 0.3.75 agree on what is wrong, and where.

Talks to the server with plain httpx (``POST /prompt``) so the check does not depend on the
comfykit client. Every corpus graph has exactly one defect; the local problem must name the
node (and input) the server names. Where the server's report has no usable input name (it files
a broken link under the *downstream* input, and reports cycles with empty ``node_errors``), the
node id, or just the rejection, is compared; each case says which.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfykit.graph import NodeCatalog

# how much of the server's report is compared: node and input, node only, or the error type
FULL, NODE, REJECTED = "node+input", "node", "rejected"


@dataclass(frozen=True)
class Case:
    name: str
    prompt: dict[str, Any]
    node_id: str | None
    input_name: str | None
    code: str
    compare: str = FULL


def _chain(**edits: Any) -> dict[str, Any]:
    """EmptyImage(1) -> ImageBlur(2) -> PreviewImage(3), with ``node__input=value`` edits."""
    prompt: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": 255},
        },
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0},
        },
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    for key, value in edits.items():
        nid, name = key.lstrip("n").split("__")
        if value is _DELETE:
            del prompt[nid]["inputs"][name]
        else:
            prompt[nid]["inputs"][name] = value
    return prompt


_DELETE = object()


def _with(prompt: dict[str, Any], **nodes: dict[str, Any]) -> dict[str, Any]:
    prompt = copy.deepcopy(prompt)
    prompt.update({k.lstrip("n"): v for k, v in nodes.items()})
    return prompt


def _node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def corpus() -> Iterator[Case]:
    yield Case(
        "unknown class",
        _with(_chain(n3__images=["9", 0]), n9=_node("ImageInvrt", image=["2", 0])),
        "9",
        None,
        "unknown_class_type",
        NODE,
    )
    yield Case(
        "required input missing",
        _chain(n2__sigma=_DELETE),
        "2",
        "sigma",
        "required_input_missing",
    )
    yield Case(
        "required STRING missing",
        {
            "1": _node("StringConcatenate", string_a="a", delimiter="-"),
            "2": _node("PreviewAny", source=["1", 0]),
        },
        "1",
        "string_b",
        "required_input_missing",
    )
    yield Case(
        "literal list read as a link",
        _chain(n2__sigma=[1.0, 2.0, 3.0]),
        "2",
        "sigma",
        "bad_linked_input",
    )
    yield Case(
        "INT output into a FLOAT input",
        _with(_chain(n2__sigma=["4", 0]), n4=_node("StubInt", value=1)),
        "2",
        "sigma",
        "return_type_mismatch",
    )
    yield Case(
        "MASK output into an IMAGE input",
        _with(
            _chain(n2__image=["4", 0]),
            n4=_node("StubMask", value=0.5, height=8, width=8, batch_size=1),
        ),
        "2",
        "image",
        "return_type_mismatch",
    )
    yield Case(
        "INT into an IMAGE,FLOAT input",
        _with(
            _chain(n3__images=["5", 0]),
            n4=_node("StubInt", value=1),
            n5=_node("TestCustomValidation1", input1=["4", 0], input2=["2", 0]),
        ),
        "5",
        "input1",
        "return_type_mismatch",
    )
    yield Case(
        "INT literal that is not a number",
        _chain(n1__width="abc"),
        "1",
        "width",
        "invalid_input_type",
    )
    yield Case(
        "FLOAT literal that is not a number",
        _chain(n2__sigma="soft"),
        "2",
        "sigma",
        "invalid_input_type",
    )
    yield Case(
        "smaller than min",
        _chain(n2__blur_radius=0),
        "2",
        "blur_radius",
        "value_smaller_than_min",
    )
    yield Case(
        "smaller than min after coercion",
        _chain(n1__height="0"),
        "1",
        "height",
        "value_smaller_than_min",
    )
    yield Case(
        "bigger than max",
        _chain(n1__width=16385),
        "1",
        "width",
        "value_bigger_than_max",
    )
    yield Case(
        "bigger than max in an upstream primitive",
        _with(_chain(n1__width=["4", 0]), n4=_node("PrimitiveInt", value=2**63)),
        "4",
        "value",
        "value_bigger_than_max",
    )
    yield Case(
        "combo miss",
        _with(
            _chain(n3__images=["4", 0]),
            n4=_node(
                "ImageScale",
                image=["2", 0],
                upscale_method="bilinar",
                width=8,
                height=8,
                crop="disabled",
            ),
        ),
        "4",
        "upscale_method",
        "value_not_in_list",
    )
    yield Case(
        "combo miss in a source node",
        _with(
            _chain(n2__image=["4", 0]),
            n4=_node("StubImage", content="GRAY", height=8, width=8, batch_size=1),
        ),
        "4",
        "content",
        "value_not_in_list",
    )
    yield Case(
        "no output node",
        {"1": _chain()["1"], "2": _chain()["2"]},
        None,
        None,
        "prompt_no_outputs",
        REJECTED,
    )
    yield Case(
        "link to a missing node",
        _chain(n2__image=["99", 0]),
        "2",
        "image",
        "link_to_missing_node",
        NODE,
    )
    yield Case(
        "link to a missing output",
        _chain(n2__image=["1", 3]),
        "2",
        "image",
        "link_output_out_of_range",
        NODE,
    )
    yield Case(
        "numeric link source",
        _chain(n3__images=[2, 0]),
        "3",
        "images",
        "bad_linked_input",
        NODE,
    )
    yield Case(
        "dependency cycle",
        _with(
            _chain(n3__images=["5", 0]),
            n4=_node("ImageInvert", image=["5", 0]),
            n5=_node("ImageInvert", image=["4", 0]),
        ),
        "4",
        None,
        "dependency_cycle",
        REJECTED,
    )


CASES = list(corpus())


@pytest.fixture(scope="module")
def http(comfyui_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=comfyui_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def catalog(http: httpx.Client) -> NodeCatalog:
    response = http.get("/object_info")
    response.raise_for_status()
    return NodeCatalog.from_object_info(response.json())


def _post(http: httpx.Client, prompt: dict[str, Any]) -> httpx.Response:
    """POST /prompt; encoded by hand because httpx refuses NaN/Infinity, which ComfyUI reads."""
    body = json.dumps({"prompt": prompt})
    return http.post("/prompt", content=body, headers={"Content-Type": "application/json"})


def _server_findings(body: dict[str, Any]) -> tuple[str, set[tuple[str, str | None]]]:
    """The error type and ``(node_id, input_name)`` pairs of a 400 answer."""
    error = body.get("error", {})
    found: set[tuple[str, str | None]] = set()
    for nid, entry in (body.get("node_errors") or {}).items():
        for item in entry.get("errors", []):
            found.add((nid, (item.get("extra_info") or {}).get("input_name")))
    if error.get("type") == "invalid_prompt":
        match = re.search(r"Node ID '#(.+)'", str(error.get("details", "")))
        if match:
            found.add((match.group(1), None))
    return str(error.get("type")), found


def test_corpus_has_one_defect_per_graph() -> None:
    assert len(CASES) >= 12
    assert len({c.name for c in CASES}) == len(CASES)


def test_the_server_accepts_the_undamaged_chain(http: httpx.Client, catalog: NodeCatalog) -> None:
    assert catalog.problems(_chain()) == []
    response = _post(http, _chain())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_local_and_server_agree(case: Case, http: httpx.Client, catalog: NodeCatalog) -> None:
    problems = catalog.problems(case.prompt)
    assert [(p.node_id, p.input_name, p.code) for p in problems] == [
        (case.node_id, case.input_name, case.code)
    ]
    response = _post(http, case.prompt)
    assert response.status_code == 400, response.text
    error_type, found = _server_findings(response.json())
    if case.compare == FULL:
        assert found == {(case.node_id, case.input_name)}
    elif case.compare == NODE:
        assert {nid for nid, _ in found} == {case.node_id}
    elif case.code == "prompt_no_outputs":
        assert error_type == "prompt_no_outputs"
    else:
        assert error_type == "prompt_outputs_failed_validation"


def test_known_gap_custom_validators_run_only_on_the_server(
    http: httpx.Client, catalog: NodeCatalog
) -> None:
    """A node's own ``VALIDATE_INPUTS`` can reject what the catalog cannot know is wrong."""
    prompt = _with(
        _chain(n3__images=["4", 0]),
        n4=_node("TestCustomValidation5", input1=0.5, input2=7.0),
    )
    assert catalog.problems(prompt) == []
    response = _post(http, prompt)
    assert response.status_code == 400
    _, found = _server_findings(response.json())
    assert ("4", "input1") in found


def test_known_gap_plain_star_is_not_a_wildcard_on_the_server(
    http: httpx.Client, catalog: NodeCatalog
) -> None:
    """``"*"`` matches only when the node's type object says so (``AnyType``/``IO.ANY``).

    ``TestToBoolNode`` declares a plain ``"*"`` string, which the server compares literally;
    ``/object_info`` shows both the same way, so the catalog treats every ``"*"`` as a wildcard
    (true for all of ComfyUI's own nodes, e.g. ``PreviewAny``).
    """
    accepted = {
        "1": _chain()["1"],
        "2": _node("PreviewAny", source=["1", 0]),
    }
    assert catalog.problems(accepted) == []
    assert _post(http, accepted).status_code == 200
    rejected = {
        "1": _chain()["1"],
        "2": _node("TestToBoolNode", value=["1", 0]),
        "3": _node("PreviewAny", source=["2", 0]),
    }
    assert catalog.problems(rejected) == []
    response = _post(http, rejected)
    assert response.status_code == 400
    assert _server_findings(response.json())[1] == {("2", "value")}


# ------------------------------------------------------------------ property: local ok => server ok

_INT_BAD = st.sampled_from([0, -3, 20000, "abc", "", None, "1.5", [1, 2, 3], float("inf")])
_FLOAT_BAD = st.sampled_from([0.0, 99.0, "x", None, float("inf"), [1.0, 2.0, 3.0]])


def _maybe(draw: st.DrawFn, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    return draw(bad) if draw(st.integers(0, 7)) == 0 else draw(good)


@st.composite
def random_graphs(draw: st.DrawFn) -> dict[str, Any]:
    """Chains of model-free nodes with mostly valid, sometimes broken, literals and links."""
    small = st.integers(1, 12) | st.sampled_from(["4", 3.9, True])
    prompt: dict[str, Any] = {}
    if draw(st.booleans()):
        prompt["1"] = _node(
            "EmptyImage",
            width=_maybe(draw, small, _INT_BAD),
            height=_maybe(draw, small, _INT_BAD),
            batch_size=_maybe(draw, st.integers(1, 2), _INT_BAD),
            color=_maybe(draw, st.integers(0, 16777215), _INT_BAD),
        )
    else:
        prompt["1"] = _node(
            "StubImage",
            content=_maybe(draw, st.sampled_from(["WHITE", "BLACK", "NOISE"]), st.just("RED")),
            height=_maybe(draw, small, _INT_BAD),
            width=_maybe(draw, small, _INT_BAD),
            batch_size=1,
        )
    last = "1"
    for i in range(2, 2 + draw(st.integers(0, 4))):
        nid = str(i)
        op = draw(st.sampled_from(["ImageInvert", "ImageBlur", "ImageScale", "ImageSharpen"]))
        link: Any = [last, 0]
        if draw(st.integers(0, 9)) == 0:
            link = draw(st.sampled_from([[last, 1], ["77", 0], [last, 0, 0], "literal"]))
        if op == "ImageInvert":
            prompt[nid] = _node(op, image=link)
        elif op == "ImageBlur":
            prompt[nid] = _node(
                op,
                image=link,
                blur_radius=_maybe(draw, st.integers(1, 31), _INT_BAD),
                sigma=_maybe(draw, st.floats(0.1, 10.0), _FLOAT_BAD),
            )
        elif op == "ImageScale":
            prompt[nid] = _node(
                op,
                image=link,
                upscale_method=_maybe(
                    draw,
                    st.sampled_from(["nearest-exact", "bilinear", "area", "bicubic"]),
                    st.just("cubic"),
                ),
                width=_maybe(draw, small, _INT_BAD),
                height=_maybe(draw, small, _INT_BAD),
                crop=_maybe(draw, st.sampled_from(["disabled", "center"]), st.just("middle")),
            )
        else:
            prompt[nid] = _node(
                op,
                image=link,
                sharpen_radius=_maybe(draw, st.integers(1, 31), _INT_BAD),
                sigma=_maybe(draw, st.floats(0.1, 10.0), _FLOAT_BAD),
                alpha=_maybe(draw, st.floats(0.0, 5.0), _FLOAT_BAD),
            )
        last = nid
    if draw(st.integers(0, 9)) == 0:
        del prompt[last]["inputs"][draw(st.sampled_from(sorted(prompt[last]["inputs"])))]
    prompt["99"] = _node("PreviewImage", images=[last, 0])
    return prompt


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(prompt=random_graphs())
def test_local_verdict_matches_the_server(
    prompt: dict[str, Any], http: httpx.Client, catalog: NodeCatalog
) -> None:
    """Whatever the local validator accepts, the server accepts (and the reverse, here)."""
    problems = catalog.problems(prompt)
    response = _post(http, prompt)
    if not problems:
        assert response.status_code == 200, response.text
        assert response.json().get("node_errors") == {}
    else:
        assert response.status_code == 400, (problems, response.text)
        _, found = _server_findings(response.json())
        assert {p.node_id for p in problems} >= {nid for nid, _ in found}
