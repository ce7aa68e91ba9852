"""Client-side validation of API-format prompts, mirroring ComfyUI 0.3.75.

The rules follow ``execution.py: validate_prompt`` / ``validate_inputs`` and
``comfy_execution/validation.py: validate_node_input`` (docs/comfyui-api.md §5-§7). Every
finding is a :class:`~comfykit.WorkflowProblem` whose ``code`` is the server's error type where
one exists.

Differences from the server, all on purpose:

* every problem is reported, not only those of the first failing output, and the problem sits on
  the node and input that hold the defect (the server files a bad link under the *linked* node
  and the *downstream* input name, and reports cycles with an empty ``node_errors``);
* a link with a negative output index is rejected (the server indexes from the end);
* links under undeclared input names are reported (the server follows them at run time);
* inputs a node validates itself (``VALIDATE_INPUTS``) and upload combos are not checked for
  bounds / membership, so the snapshot never rejects a file uploaded after it was taken;
* every ``"*"`` is a wildcard: ComfyUI's own are ``str`` subclasses that say so, but a custom
  node declaring a plain ``"*"`` string is compared literally by the server, and
  ``/object_info`` cannot tell the two apart.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from comfykit._exceptions import WorkflowProblem
from comfykit.graph._spec import InputSpec, NodeSpec
from comfykit.graph._values import Param, link_to_api

__all__ = [
    "KNOWN_CUSTOM_VALIDATION",
    "UNBOUND",
    "CustomValidation",
    "Validator",
    "bind_params",
    "fmt_value",
    "suggest",
    "types_compatible",
]

_NUMERIC_COERCION = ("INT", "FLOAT", "STRING", "BOOLEAN")
_LITERAL_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "*"})


class _Unbound(enum.Enum):
    UNBOUND = enum.auto()

    def __repr__(self) -> str:
        return "UNBOUND"


#: Stands for the value of a parameter that is not bound yet; such inputs are not checked.
UNBOUND: Final = _Unbound.UNBOUND


@dataclass(frozen=True)
class CustomValidation:
    """What a node's own ``VALIDATE_INPUTS`` / V3 ``validate_inputs`` takes over from the server.

    ``/object_info`` does not say which nodes validate themselves, so the catalog keeps this
    table (:data:`KNOWN_CUSTOM_VALIDATION` for ComfyUI's own nodes; extend it for custom nodes).

    Attributes:
        inputs: the validator's named arguments: the server skips min/max and combo checks for
            these inputs.
        all_inputs: the validator takes ``**kwargs``: those checks are skipped for every input.
        input_types: the validator takes ``input_types``: link type checks are skipped.
    """

    inputs: frozenset[str] = frozenset()
    all_inputs: bool = False
    input_types: bool = False

    def skips_literal_checks(self, name: str) -> bool:
        """True when the server leaves bounds and membership of input ``name`` to the node."""
        return self.all_inputs or name in self.inputs

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (used in catalog snapshots)."""
        return {
            "inputs": sorted(self.inputs),
            "all_inputs": self.all_inputs,
            "input_types": self.input_types,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CustomValidation:
        """Inverse of :meth:`to_json`."""
        return cls(
            frozenset(str(n) for n in data.get("inputs", ())),
            bool(data.get("all_inputs", False)),
            bool(data.get("input_types", False)),
        )


def _cv(*inputs: str, input_types: bool = False, all_inputs: bool = False) -> CustomValidation:
    return CustomValidation(frozenset(inputs), all_inputs, input_types)


_TYPES_ONLY = _cv(input_types=True)

#: Node classes of ComfyUI 0.3.75 (core, API nodes, and the ``testing-pack``) with their own
#: input validation, found by inspecting ``VALIDATE_INPUTS`` / ``validate_inputs`` signatures.
KNOWN_CUSTOM_VALIDATION: Mapping[str, CustomValidation] = MappingProxyType(
    {
        "FluxProUltraImageNode": _cv("aspect_ratio"),
        "KlingCameraControls": _cv(
            "horizontal_movement", "vertical_movement", "pan", "tilt", "roll", "zoom"
        ),
        "LoadAudio": _cv("audio"),
        "LoadImage": _cv("image"),
        "LoadImageMask": _cv("image"),
        "LoadImageOutput": _cv("image"),
        "LoadLatent": _cv("latent"),
        "LoadVideo": _cv("file"),
        "TestAccumulateNode": _TYPES_ONLY,
        "TestAccumulationGetItemNode": _TYPES_ONLY,
        "TestAccumulationGetLengthNode": _TYPES_ONLY,
        "TestAccumulationHeadNode": _TYPES_ONLY,
        "TestAccumulationSetItemNode": _TYPES_ONLY,
        "TestAccumulationToListNode": _TYPES_ONLY,
        "TestAsyncValidation": _cv("value", "threshold"),
        "TestAsyncValidationError": _cv("value", "max_value"),
        "TestCustomValidation1": _cv("input1", "input2"),
        "TestCustomValidation2": _cv("input1", "input2", input_types=True),
        "TestCustomValidation3": _TYPES_ONLY,
        "TestCustomValidation4": _cv("input1", "input2"),
        "TestCustomValidation5": _cv(all_inputs=True),
        "TestExecutionBlocker": _TYPES_ONLY,
        "TestForLoopClose": _TYPES_ONLY,
        "TestForLoopOpen": _TYPES_ONLY,
        "TestListToAccumulationNode": _TYPES_ONLY,
        "TestMakeListNode": _TYPES_ONLY,
        "TestWhileLoopClose": _TYPES_ONLY,
        "TestWhileLoopOpen": _TYPES_ONLY,
        "TripoConversionNode": _TYPES_ONLY,
        "WebcamCapture": _cv("image"),
    }
)


def fmt_value(value: Any, limit: int = 60) -> str:
    """A short, readable rendering of a literal for error messages."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    text = str(value) if is_number else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_json(value: Any, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


def types_compatible(received: Any, expected: Any) -> bool:
    """``validate_node_input(received, expected)`` as the 0.3.75 server evaluates it.

    Types are the raw ``/object_info`` values (a string, or a list for combo outputs/inputs).
    ``"*"`` on either side matches (ComfyUI's own ``*`` types are ``str`` subclasses whose
    ``__ne__`` says so); otherwise comma-joined types match when they share a member.
    """
    if received == expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    if received.strip() == "*" or expected.strip() == "*":
        return True
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return bool(got & want)


def suggest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches for ``word`` (a case-insensitive exact match first)."""
    pool = list(candidates)
    exact = [c for c in pool if c.lower() == word.lower() and c != word]
    close = difflib.get_close_matches(word, pool, n=n, cutoff=0.6)
    out = exact + [c for c in close if c not in exact and c != word]
    return out[:n]


def _did_you_mean(options: list[str]) -> str:
    if not options:
        return ""
    return " (did you mean " + " or ".join(repr(o) for o in options) + "?)"


def _choices_text(choices: tuple[Any, ...]) -> str:
    if len(choices) > 20:
        return f"(list of {len(choices)} values)"
    return str(list(choices))


_INVALID: Final = "invalid_prompt"


@dataclass(frozen=True)
class ApiNodeShape:
    """One API-format node taken apart: what is usable of it, and what is wrong with it."""

    class_type: str | None  # None: not a node at all (no mapping, or no class_type)
    title: str | None
    inputs: Mapping[Any, Any] | None  # None: no usable ``inputs`` mapping
    problem: WorkflowProblem | None


def api_node_shape(nid: str, raw: object) -> ApiNodeShape:
    """Check that ``raw`` is a node: a mapping with a ``class_type`` string and an ``inputs``
    mapping. The one place both the validator and ``Workflow.from_api`` check node shapes."""
    if not isinstance(raw, Mapping):
        problem = f"a node is a mapping, not {type(raw).__name__}"
        return ApiNodeShape(None, None, None, WorkflowProblem(nid, None, problem, code=_INVALID))
    meta = raw.get("_meta")
    title = meta.get("title") if isinstance(meta, Mapping) else None
    title = title if isinstance(title, str) else None
    class_type = raw.get("class_type")
    if not isinstance(class_type, str):
        problem = "the node has no class_type"
        return ApiNodeShape(
            None, title, None, WorkflowProblem(nid, None, problem, title=title, code=_INVALID)
        )
    inputs = raw.get("inputs")
    if not isinstance(inputs, Mapping):
        problem = "the node has no 'inputs' mapping (use {} for a node without inputs)"
        return ApiNodeShape(
            class_type,
            title,
            None,
            WorkflowProblem(nid, class_type, problem, title=title, code=_INVALID),
        )
    return ApiNodeShape(class_type, title, inputs, None)


@dataclass
class _Node:
    class_type: str
    title: str | None
    inputs: dict[str, Any] | None  # None: the node has no usable inputs object


class Validator:
    """Checks prompts against node specs; shared by ``NodeCatalog`` and the ``Workflow`` builder."""

    def __init__(
        self, specs: Mapping[str, NodeSpec], custom: Mapping[str, CustomValidation]
    ) -> None:
        self.specs = specs
        self.custom = custom

    # ------------------------------------------------------------------ whole prompts

    def check_prompt(
        self, prompt: Any, *, params: Mapping[str, Any] | None = None, strict: bool = False
    ) -> list[WorkflowProblem]:
        """Every problem of an API-format prompt (values may hold ``Param``/``NodeOutput``)."""
        if not isinstance(prompt, Mapping):
            return [
                WorkflowProblem(
                    None,
                    None,
                    f"a prompt is a mapping of node id to node, not {type(prompt).__name__}",
                    code="invalid_prompt",
                )
            ]
        problems: list[WorkflowProblem] = []
        nodes = self._parse_nodes(prompt, problems)
        problems += bind_params(
            [
                (nid, n.class_type, n.title, n.inputs)
                for nid, n in nodes.items()
                if n.inputs is not None
            ],
            params or {},
        )

        unresolved = len(nodes) != len(prompt)
        for nid, node in nodes.items():
            if node.class_type not in self.specs:
                unresolved = True
                problems.append(
                    WorkflowProblem(
                        nid,
                        node.class_type,
                        f"unknown node class {node.class_type!r}"
                        + _did_you_mean(suggest(node.class_type, self.specs)),
                        title=node.title,
                        code="unknown_class_type",
                    )
                )
        outputs = [
            nid
            for nid, node in nodes.items()
            if (spec := self.specs.get(node.class_type)) is not None and spec.output_node
        ]
        if not outputs and not unresolved:
            problems.append(
                WorkflowProblem(
                    None,
                    None,
                    "the workflow has no output node (SaveImage, PreviewImage, ...), "
                    "so the server would run nothing",
                    code="prompt_no_outputs",
                )
            )
        classes = {nid: node.class_type for nid, node in nodes.items()}
        checked = set(nodes) if strict else self._reach(nodes, outputs, declared_only=True)
        for nid, node in nodes.items():
            if nid in checked and node.inputs is not None:
                problems += self.check_node(
                    nid,
                    node.class_type,
                    node.title,
                    node.inputs,
                    classes,
                    require=True,
                    unknown_literals=strict,
                    strict=strict,
                )
        executed = set(nodes) if strict else self._reach(nodes, outputs, declared_only=False)
        problems += self._cycles(nodes, executed)
        return problems

    def _parse_nodes(
        self, prompt: Mapping[Any, Any], problems: list[WorkflowProblem]
    ) -> dict[str, _Node]:
        nodes: dict[str, _Node] = {}
        for raw_id, raw in prompt.items():
            nid = str(raw_id)
            shape = api_node_shape(nid, raw)
            if shape.problem is not None:
                problems.append(shape.problem)
            if shape.class_type is None:
                continue
            inputs = None if shape.inputs is None else {str(k): v for k, v in shape.inputs.items()}
            nodes[nid] = _Node(shape.class_type, shape.title, inputs)
        return nodes

    def _reach(
        self, nodes: Mapping[str, _Node], outputs: list[str], *, declared_only: bool
    ) -> set[str]:
        """Nodes the server runs: the outputs and everything they link to."""
        seen: set[str] = set()
        stack = list(outputs)
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            for src in self._sources(nodes[nid], declared_only=declared_only):
                if src in nodes and src not in seen:
                    stack.append(src)
        return seen

    def _sources(self, node: _Node, *, declared_only: bool) -> Iterator[str]:
        if node.inputs is None:
            return
        spec = self.specs.get(node.class_type)
        for name, value in node.inputs.items():
            if declared_only and (spec is None or spec.input(name) is None):
                continue
            if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str):
                yield value[0]

    def _cycles(self, nodes: Mapping[str, _Node], members: set[str]) -> list[WorkflowProblem]:
        order = {nid: i for i, nid in enumerate(nodes)}
        edges = {
            nid: sorted(
                {s for s in self._sources(nodes[nid], declared_only=False) if s in members},
                key=order.__getitem__,
            )
            for nid in sorted(members, key=order.__getitem__)
        }
        problems = []
        for component in _strongly_connected(edges):
            start = min(component, key=order.__getitem__)
            if len(component) == 1 and start not in edges[start]:
                continue
            path = _cycle_through(start, edges, component)
            steps = " -> ".join(f"{nid} ({nodes[nid].class_type})" for nid in reversed(path))
            node = nodes[start]
            problems.append(
                WorkflowProblem(
                    start,
                    node.class_type,
                    f"dependency cycle: {steps}",
                    title=node.title,
                    code="dependency_cycle",
                )
            )
        return problems

    # ------------------------------------------------------------------ single nodes

    def check_node(
        self,
        node_id: str,
        class_type: str,
        title: str | None,
        inputs: Mapping[str, Any],
        classes: Mapping[str, str],
        *,
        require: bool,
        unknown_literals: bool,
        strict: bool,
    ) -> list[WorkflowProblem]:
        """Problems of one node's inputs; ``classes`` maps every node id to its class."""
        spec = self.specs.get(class_type)
        if spec is None:
            return []
        custom = self.custom.get(class_type, CustomValidation())
        problems: list[WorkflowProblem] = []

        def add(code: str, reason: str, name: str | None) -> None:
            problems.append(
                WorkflowProblem(node_id, class_type, reason, name, title=title, code=code)
            )

        for ispec in spec.inputs:
            if ispec.name not in inputs:
                if require and ispec.required:
                    add("required_input_missing", _missing_reason(ispec), ispec.name)
                continue
            value = inputs[ispec.name]
            if value is UNBOUND:
                continue
            if isinstance(value, (list, tuple)):
                found = self._check_link(ispec, value, classes, custom)
            else:
                found = _check_literal(ispec, value, custom, strict)
            if found is not None:
                add(found[0], found[1], ispec.name)

        declared = set(spec.input_names)
        for name, value in inputs.items():
            if name in declared or value is UNBOUND:
                continue
            hint = _did_you_mean(suggest(name, declared, 1))
            is_link = (
                isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)
            )
            if name in spec.hidden:
                if unknown_literals or is_link:
                    add(
                        "unknown_input",
                        "hidden input filled in by the server; do not send it",
                        name,
                    )
            elif is_link:
                add(
                    "unknown_input",
                    f"not an input of {class_type}, but the server would still follow this "
                    f"link at run time{hint}",
                    name,
                )
            elif unknown_literals:
                add(
                    "unknown_input",
                    f"not an input of {class_type}; the server ignores it{hint}",
                    name,
                )
        return problems

    def _check_link(
        self,
        ispec: InputSpec,
        value: list[Any] | tuple[Any, ...],
        classes: Mapping[str, str],
        custom: CustomValidation,
    ) -> tuple[str, str] | None:
        wrap = "wrap a literal list as {'__value__': [...]}"
        if len(value) != 2:
            return (
                "bad_linked_input",
                f"a list is read as a link [node_id, output_index], but this one has "
                f"{len(value)} items ({wrap})",
            )
        src, index = value
        if not isinstance(src, str):
            hint = f"; use {str(src)!r}" if str(src) in classes else ""
            return (
                "bad_linked_input",
                f"link source must be a node id string, got {fmt_value(src)} "
                f"({type(src).__name__}){hint} (or {wrap})",
            )
        if not isinstance(index, int) or isinstance(index, bool):
            return (
                "bad_linked_input",
                f"link output index must be an int, got {fmt_value(index)} "
                f"({type(index).__name__})",
            )
        if src not in classes:
            return ("link_to_missing_node", f"links to node {src!r}, which is not in the workflow")
        source = self.specs.get(classes[src])
        if source is None:
            return None  # the unknown class is reported on its own node
        outputs = source.raw.get("output") or []
        if not 0 <= index < len(outputs):
            count = len(outputs)
            return (
                "link_output_out_of_range",
                f"links to output {index} of node {src} ({source.class_type}), which has "
                f"{count} output{'s' if count != 1 else ''}",
            )
        if custom.input_types:
            return None
        received = outputs[index]
        expected = _raw_type(ispec)
        if not types_compatible(received, expected):
            got = "COMBO" if isinstance(received, (list, tuple)) else received
            want = "COMBO" if isinstance(expected, (list, tuple)) else expected
            return (
                "return_type_mismatch",
                f"output {index} of node {src} ({source.class_type}) is {got}, "
                f"but this input takes {want}",
            )
        return None


def bind_params(
    nodes: Iterable[tuple[str, str, str | None, dict[str, Any]]], params: Mapping[str, Any]
) -> list[WorkflowProblem]:
    """Replace :class:`Param` values in place by their bound value, default or :data:`UNBOUND`.

    ``nodes`` holds ``(node_id, class_type, title, inputs)``; a :class:`NodeOutput` (as a value
    or a bound parameter) becomes its API list. Returns ``unbound_param`` problems and an
    ``unknown_param`` problem for every name in ``params`` that no input uses.
    """
    problems: list[WorkflowProblem] = []
    used: dict[str, Param] = {}
    for nid, class_type, title, inputs in nodes:
        for name, value in inputs.items():
            if not isinstance(value, Param):
                inputs[name] = link_to_api(value)
                continue
            used.setdefault(value.name, value)
            if value.name in params:
                inputs[name] = link_to_api(params[value.name])
            elif value.has_default:
                inputs[name] = link_to_api(value.default)
            else:
                inputs[name] = UNBOUND
                problems.append(
                    WorkflowProblem(
                        nid,
                        class_type,
                        f"parameter {value.name!r} has no value and no default",
                        input_name=name,
                        title=title,
                        code="unbound_param",
                    )
                )
    for name in params:
        if name not in used:
            known = ", ".join(repr(p) for p in sorted(used)) or "none"
            problems.append(
                WorkflowProblem(
                    None,
                    None,
                    f"params has {name!r}, which no input uses (parameters: {known})"
                    + _did_you_mean(suggest(name, used, 1)),
                    code="unknown_param",
                )
            )
    return problems


def _raw_type(ispec: InputSpec) -> Any:
    """The type head as the server sees it (a list for legacy combos)."""
    if ispec.legacy_combo:
        return list(ispec.choices or ())
    return ispec.type


def _missing_reason(ispec: InputSpec) -> str:
    if ispec.is_combo:
        return "required input is missing"
    return f"required input is missing (takes {ispec.type})"


def _check_literal(
    ispec: InputSpec, value: Any, custom: CustomValidation, strict: bool
) -> tuple[str, str] | None:
    if not _is_json(value):
        return (
            "invalid_input_type",
            f"a {type(value).__name__} value cannot be sent as JSON: {fmt_value(value)}",
        )
    if isinstance(value, Mapping) and "__value__" in value:
        value = value["__value__"]
    if strict and not ispec.is_combo and not (ispec.types & _LITERAL_TYPES):
        return (
            "invalid_input_type",
            f"{ispec.type} input holds the literal {fmt_value(value)}; it must be linked",
        )
    if strict and ispec.type == "BOOLEAN" and isinstance(value, str):
        return (
            "invalid_input_type",
            f"the string {value!r} is read as {bool(value)} (bool() of a non-empty string); "
            "send true or false",
        )
    type_ = None if ispec.legacy_combo else ispec.type
    if type_ in _NUMERIC_COERCION:
        try:
            value = _coerce(type_, value)
        except Exception as exc:
            return (
                "invalid_input_type",
                f"cannot convert {fmt_value(value)} to {type_}: {exc}",
            )
    if custom.skips_literal_checks(ispec.name):
        return None
    options = ispec.options
    try:
        if "min" in options and value < options["min"]:
            return (
                "value_smaller_than_min",
                f"value {fmt_value(value)} smaller than min of {options['min']}",
            )
        if "max" in options and value > options["max"]:
            return (
                "value_bigger_than_max",
                f"value {fmt_value(value)} bigger than max of {options['max']}",
            )
    except TypeError as exc:
        return (
            "invalid_input_type",
            f"cannot compare {fmt_value(value)} with the bounds of this input: {exc}",
        )
    if ispec.upload is not None or ispec.choices is None:
        return None
    check_options = ispec.legacy_combo or (strict and "remote" not in options)
    if not check_options:
        return None
    values = value if isinstance(value, list) and options.get("multiselect") else [value]
    for item in values:
        if _in_choices(item, ispec.choices):
            continue
        if not ispec.choices:
            return (
                "value_not_in_list",
                f"{fmt_value(item)} not in [] (the server offers no values for this input, "
                "e.g. no model files of this kind)",
            )
        hint = ""
        if isinstance(item, str):
            hint = _did_you_mean(suggest(item, [c for c in ispec.choices if isinstance(c, str)], 1))
        return (
            "value_not_in_list",
            f"{fmt_value(item)} not in {_choices_text(ispec.choices)}{hint}",
        )
    return None


def _coerce(type_: str, value: Any) -> Any:
    """The server's conversion of a literal: ``int()``, ``float()``, ``str()`` or ``bool()``."""
    if type_ == "INT":
        return int(value)
    if type_ == "FLOAT":
        return float(value)
    if type_ == "STRING":
        return str(value)
    return bool(value)


def _in_choices(value: Any, choices: tuple[Any, ...]) -> bool:
    try:
        return value in choices
    except Exception:
        return False


def _strongly_connected(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion (prompts can be thousands of nodes deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            nid, i = work.pop()
            if i == 0:
                index[nid] = low[nid] = counter
                counter += 1
                stack.append(nid)
                on_stack.add(nid)
            succ = edges[nid]
            if i < len(succ):
                work.append((nid, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[nid] = min(low[nid], index[nxt])
                continue
            if low[nid] == index[nid]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == nid:
                        break
                result.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[nid])
    return result


def _cycle_through(start: str, edges: Mapping[str, list[str]], component: list[str]) -> list[str]:
    """A shortest dependency path ``start -> ... -> start`` inside one component."""
    allowed = set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for nid in frontier:
            for succ in edges[nid]:
                if succ not in allowed:
                    continue
                if succ == start:
                    path = [start]
                    cur = nid
                    while cur != start:
                        path.append(cur)
                        cur = previous[cur]
                    path.append(start)
                    path.reverse()
                    return path
                if succ not in previous:
                    previous[succ] = nid
                    nxt_frontier.append(succ)
        frontier = nxt_frontier
    return [start, start]
