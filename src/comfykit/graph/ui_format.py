"""Convert editor-saved (UI-format, litegraph) workflows to the API prompt format, offline.

The ComfyUI editor saves a litegraph document (docs/comfyui-api.md §5.3); ``POST /prompt`` only
takes the API format. The editor converts with ``graphToPrompt`` (ComfyUI_frontend
``src/utils/executionUtil.ts`` and ``ExecutableNodeDTO``), and this module follows that code:

* widget values come from ``widgets_values`` in the node class's widget order (``input_order``
  required, then optional), skipping the extra values the editor stores that are not inputs (the
  ``control_after_generate`` combo after seed-like inputs, the combo filter, the upload button);
  a linked input overrides its widget value; list values are wrapped as ``{"__value__": [...]}``;
* links resolve through ``Reroute`` nodes, bypassed nodes (mode 4: the first input of a matching
  type) and subgraphs; ``PrimitiveNode`` values become literals on their targets; notes, muted
  nodes (mode 2) and inputs linked to muted nodes are dropped;
* subgraph instances are flattened into ids ``"<instance>:<inner>"`` with their promoted widget
  values applied.

Everything is decided from the document and a node catalog (``/object_info``); nothing is sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comfykit._exceptions import WorkflowError, WorkflowProblem
from comfykit.graph._spec import WIDGET_TYPES, InputSpec, NodeSpec

__all__ = ["is_api_prompt", "is_ui_workflow", "ui_to_api"]

_MODE_NEVER = 2
_MODE_BYPASS = 4

_CODE = "ui_conversion"
_NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
_REROUTE = "Reroute"
_PRIMITIVE = "PrimitiveNode"
_SUBGRAPH_INPUT_ID = "-10"
_SEED_NAMES = frozenset({"seed", "noise_seed"})
#: Upload flags for which the editor appends an ``upload`` button widget (``uploadImage.ts``).
_UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
#: Widget types whose value the browser produces at queue time (scene capture, camera frame).
_BROWSER_ONLY = {
    "LOAD_3D": "its 3D scene is rendered and uploaded by the editor when the prompt is queued",
    "WEBCAM": "its camera frame is captured and uploaded by the editor when the prompt is queued",
}
_MISSING: Any = object()


# --------------------------------------------------------------------------------------------
# public API


def is_ui_workflow(data: object) -> bool:
    """True when ``data`` looks like an editor-saved (litegraph) workflow."""
    if not isinstance(data, Mapping):
        return False
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        return False
    links = data.get("links", [])
    if not isinstance(links, (list, Mapping)):
        return False
    return all(isinstance(n, Mapping) and "id" in n and "type" in n for n in nodes)


def is_api_prompt(data: object) -> bool:
    """True when ``data`` looks like an API-format prompt (``{"<id>": {"class_type", ...}}``)."""
    if not isinstance(data, Mapping) or not data:
        return False
    for key, node in data.items():
        if not isinstance(key, str) or not isinstance(node, Mapping):
            return False
        if not isinstance(node.get("class_type"), str):
            return False
        if not isinstance(node.get("inputs", {}), Mapping):
            return False
    return True


def ui_to_api(ui: Mapping[str, Any], catalog: Mapping[str, NodeSpec]) -> dict[str, dict[str, Any]]:
    """Convert a UI-format workflow to the API prompt ``POST /prompt`` takes.

    Args:
        ui: the workflow as the editor saves it (``nodes``, ``links``, ``definitions``...).
        catalog: the server's node classes (``/object_info`` parsed into :class:`NodeSpec`).

    Returns:
        ``{"<id>": {"inputs": {...}, "class_type": "...", "_meta": {"title": "..."}}}``; ids of
        nodes inside subgraphs are colon paths (``"<instance id>:<inner id>"``).

    Raises:
        WorkflowError: listing every node that cannot be converted (code ``"ui_conversion"``):
            unknown node classes, dangling links, cycles, nodes whose values only the browser
            can produce.
    """
    if not is_ui_workflow(ui):
        raise WorkflowError(
            [WorkflowProblem(None, None, "not a UI-format workflow (no 'nodes' list)", code=_CODE)]
        )
    return _Converter(ui, catalog).run()


# --------------------------------------------------------------------------------------------
# document model


class _Fail(Exception):
    """A defect found while resolving one input; becomes a :class:`WorkflowProblem`."""


@dataclass(frozen=True)
class _Link:
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int


@dataclass(frozen=True)
class _Slot:
    """One input slot of a node as the editor holds it at run time."""

    name: str
    type: str
    link: str | None


@dataclass
class _Graph:
    """The root graph or one subgraph definition."""

    id: str | None
    name: str
    nodes: dict[str, Mapping[str, Any]]
    links: dict[str, _Link]
    malformed: set[str] = field(default_factory=set)
    inputs: list[Mapping[str, Any]] = field(default_factory=list)
    outputs: list[Mapping[str, Any]] = field(default_factory=list)
    input_node: str = _SUBGRAPH_INPUT_ID


@dataclass
class _Scope:
    """One graph instance: the root, or a subgraph definition seen through one instance node."""

    graph: _Graph
    path: tuple[str, ...]
    instance: Mapping[str, Any] | None = None
    parent: _Scope | None = None
    #: Values written by PrimitiveNodes: node id -> widget name -> value.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Values of the instance's promoted widgets, by subgraph input name.
    promoted: dict[str, Any] = field(default_factory=dict)

    def exec_id(self, node_id: str) -> str:
        return ":".join((*self.path, node_id))

    def definition_chain(self) -> list[str]:
        chain: list[str] = []
        scope: _Scope | None = self
        while scope is not None:
            if scope.graph.id is not None:
                chain.append(scope.graph.id)
            scope = scope.parent
        return chain


@dataclass(frozen=True)
class _Ref:
    node: str
    slot: int


@dataclass(frozen=True)
class _Value:
    value: Any


_Resolved = _Ref | _Value | None


def _key(value: Any) -> str:
    return str(value)


def _parse_link(raw: Any) -> tuple[str | None, _Link | None]:
    """A link in either encoding; ``(id, None)`` when it is malformed."""
    fields: list[Any]
    if isinstance(raw, Mapping):
        keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot")
        fields = [raw.get(k) for k in keys]
    elif isinstance(raw, (list, tuple)) and len(raw) >= 5:
        fields = list(raw[:5])
    elif isinstance(raw, (list, tuple)) and raw:
        return _key(raw[0]), None
    else:
        return None, None
    link_id, origin_id, origin_slot, target_id, target_slot = fields
    key = None if link_id is None else _key(link_id)
    if origin_id is None or target_id is None:
        return key, None
    try:
        return key, _Link(_key(origin_id), int(origin_slot), _key(target_id), int(target_slot))
    except (TypeError, ValueError):
        return key, None


def _parse_graph(raw: Mapping[str, Any], graph_id: str | None) -> _Graph:
    nodes: dict[str, Mapping[str, Any]] = {}
    for node in raw.get("nodes") or []:
        if isinstance(node, Mapping) and "id" in node:
            nodes[_key(node["id"])] = node
    raw_links = raw.get("links") or []
    items = raw_links.values() if isinstance(raw_links, Mapping) else raw_links
    links: dict[str, _Link] = {}
    malformed: set[str] = set()
    for item in items:
        link_id, link = _parse_link(item)
        if link_id is not None and link is not None:
            links[link_id] = link
        elif link_id is not None:
            malformed.add(link_id)
    input_node = raw.get("inputNode")
    return _Graph(
        id=graph_id,
        name=str(raw.get("name") or graph_id or ""),
        nodes=nodes,
        links=links,
        malformed=malformed,
        inputs=[s for s in raw.get("inputs") or [] if isinstance(s, Mapping)],
        outputs=[s for s in raw.get("outputs") or [] if isinstance(s, Mapping)],
        input_node=(
            _key(input_node.get("id", _SUBGRAPH_INPUT_ID))
            if isinstance(input_node, Mapping)
            else _SUBGRAPH_INPUT_ID
        ),
    )


def _collect_definitions(raw: Mapping[str, Any], into: dict[str, Mapping[str, Any]]) -> None:
    definitions = raw.get("definitions")
    if not isinstance(definitions, Mapping):
        return
    for sub in definitions.get("subgraphs") or []:
        if isinstance(sub, Mapping) and "id" in sub and _key(sub["id"]) not in into:
            into[_key(sub["id"])] = sub
            _collect_definitions(sub, into)


# --------------------------------------------------------------------------------------------
# widgets


def _control_widgets(spec: InputSpec) -> int:
    """How many non-input widgets the editor adds after this input's widget."""
    flag = spec.options.get("control_after_generate")
    if spec.is_combo:
        return 2 if flag else 0  # control_after_generate + control_filter_list
    if spec.type == "INT":
        if flag is None:
            flag = spec.name in _SEED_NAMES  # legacy convention, useIntWidget.ts
        return 1 if flag else 0
    return 0


def _widget_layout(spec: NodeSpec, *, legacy_force_input: bool = False) -> list[InputSpec | None]:
    """The editor's widgets of a node class in ``widgets_values`` order; ``None`` = not an input.

    ``legacy_force_input`` also counts ``forceInput`` inputs, which editors before 1.16 stored a
    value for (``migrateWidgetsValues``); their slots come back as ``None``.
    """
    layout: list[InputSpec | None] = []
    upload = False
    for inp in spec.inputs:
        forced = bool(inp.options.get("forceInput"))
        if forced and legacy_force_input and (inp.is_combo or inp.type in WIDGET_TYPES):
            layout.append(None)
        elif inp.is_widget:
            layout.append(inp)
        else:
            continue
        layout.extend([None] * _control_widgets(inp))
        if inp.required and inp.is_combo and any(inp.options.get(k) is True for k in _UPLOAD_FLAGS):
            upload = True
    if upload:
        layout.append(None)  # the upload button, placed after every declared input
    return layout


def _widget_default(spec: InputSpec) -> Any:
    """The value a freshly created widget holds (the editor's widget constructors)."""
    if spec.is_combo:
        if spec.default:
            return spec.default
        return spec.choices[0] if spec.choices else _MISSING
    if spec.type in ("INT", "FLOAT"):
        return 0 if spec.default is None else spec.default
    if spec.type == "STRING":
        return "" if spec.default is None else spec.default
    if spec.type == "BOOLEAN":
        return False if spec.default is None else spec.default
    return _MISSING


def _widget_values(node: Mapping[str, Any], spec: NodeSpec) -> dict[str, Any]:
    """Map a node's ``widgets_values`` to its widget inputs (absent values take the default)."""
    raw = node.get("widgets_values")
    layout = _widget_layout(spec)
    values: dict[str, Any] = {}
    if isinstance(raw, Mapping):
        for inp in layout:
            if inp is not None and inp.name in raw:
                values[inp.name] = raw[inp.name]
    elif raw is None or isinstance(raw, list):
        raw = raw or []
        if len(raw) != len(layout):
            legacy = _widget_layout(spec, legacy_force_input=True)
            if len(legacy) == len(raw):
                layout = legacy
        for i, slot in enumerate(layout):
            if slot is not None and i < len(raw):
                values[slot.name] = raw[i]
    else:
        raise _Fail(f"widgets_values is a {type(raw).__name__}, expected a list or an object")
    for inp in spec.inputs:
        if inp.is_widget and inp.name not in values:
            default = _widget_default(inp)
            if default is not _MISSING:
                values[inp.name] = default
    return values


def _parse_proxy_widgets(raw: Any) -> list[tuple[str, str]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    if not isinstance(raw, list):
        return []
    entries: list[tuple[str, str]] = []
    for item in raw:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            entries.append((str(item[0]), str(item[1])))
        else:
            return []
    return entries


def _wrap(value: Any) -> Any:
    """Lists are links in the API format; the editor boxes list values (``__value__``)."""
    return {"__value__": value} if isinstance(value, list) else value


def _valid_connection(a: Any, b: Any) -> bool:
    """``LiteGraph.isValidConnection``: wildcards, case-insensitive, comma-joined type lists."""
    a = "" if a in (None, "*") else a
    b = "" if b in (None, "*") else b
    if not a or not b or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    if "," not in a and "," not in b:
        return bool(a == b)
    return any(_valid_connection(x, y) for x in a.split(",") for y in b.split(","))


# --------------------------------------------------------------------------------------------
# the converter


class _Converter:
    def __init__(self, ui: Mapping[str, Any], catalog: Mapping[str, NodeSpec]) -> None:
        self.catalog = catalog
        self.problems: list[WorkflowProblem] = []
        raw_defs: dict[str, Mapping[str, Any]] = {}
        _collect_definitions(ui, raw_defs)
        self.definitions = {k: _parse_graph(v, k) for k, v in raw_defs.items()}
        self.root = _Scope(_parse_graph(ui, None), ())
        extra = ui.get("extra")
        group_nodes = extra.get("groupNodes") if isinstance(extra, Mapping) else None
        self.group_nodes = set(group_nodes) if isinstance(group_nodes, Mapping) else set()
        self.children: dict[tuple[str, ...], _Scope] = {}
        self.slot_cache: dict[tuple[tuple[str, ...], str], list[_Slot]] = {}
        self.promoted_names: dict[str, list[tuple[str, str, str]]] = {}
        self.output: dict[str, dict[str, Any]] = {}

    # -- entry point ---------------------------------------------------------------------------

    def run(self) -> dict[str, dict[str, Any]]:
        self._apply_primitives(self.root)
        self._emit(self.root)
        for entry in self.output.values():
            inputs = entry["inputs"]
            for name, value in list(inputs.items()):
                if isinstance(value, list) and len(value) == 2 and value[0] not in self.output:
                    del inputs[name]  # linked to a muted node, as graphToPrompt does
        if self.problems:
            raise WorkflowError(self.problems)
        return self.output

    # -- node helpers --------------------------------------------------------------------------

    def _kind(self, node: Mapping[str, Any]) -> str:
        type_ = _key(node.get("type"))
        if type_ in _NOTE_TYPES:
            return "note"
        if type_ == _REROUTE:
            return "reroute"
        if type_ == _PRIMITIVE:
            return "primitive"
        if type_ in self.definitions:
            return "subgraph"
        if type_ in self.catalog:
            return "node"
        return "unknown"

    def _title(self, node: Mapping[str, Any]) -> str:
        title = node.get("title")
        if title:
            return str(title)
        type_ = _key(node.get("type"))
        if type_ in self.definitions:
            return self.definitions[type_].name
        spec = self.catalog.get(type_)
        return spec.display_name if spec is not None else type_

    def _problem(
        self, scope: _Scope, node: Mapping[str, Any], reason: str, input_name: str | None = None
    ) -> None:
        self.problems.append(
            WorkflowProblem(
                node_id=scope.exec_id(_key(node.get("id"))),
                class_type=_key(node.get("type")),
                reason=reason,
                input_name=input_name,
                title=self._title(node),
                code=_CODE,
            )
        )

    def _slots(self, scope: _Scope, node: Mapping[str, Any]) -> list[_Slot]:
        """The node's input slots in the editor's run-time order, with their links."""
        node_id = _key(node.get("id"))
        cached = self.slot_cache.get((scope.path, node_id))
        if cached is not None:
            return cached
        saved: dict[str, Mapping[str, Any]] = {}
        ordered: list[Mapping[str, Any]] = []
        for inp in node.get("inputs") or []:
            if isinstance(inp, Mapping) and "name" in inp:
                saved.setdefault(str(inp["name"]), inp)
                ordered.append(inp)

        def link_of(inp: Mapping[str, Any] | None) -> str | None:
            link = inp.get("link") if inp is not None else None
            return None if link is None else _key(link)

        type_ = _key(node.get("type"))
        slots: list[_Slot] = []
        declared: set[str] = set()
        spec = self.catalog.get(type_)
        definition = self.definitions.get(type_)
        if definition is not None:
            for sin in definition.inputs:
                name = str(sin.get("name"))
                declared.add(name)
                slots.append(_Slot(name, str(sin.get("type", "*")), link_of(saved.get(name))))
        elif spec is not None and type_ not in (_REROUTE, _PRIMITIVE):
            sockets = [s for s in spec.inputs if not s.is_widget]
            widgets = [s for s in spec.inputs if s.is_widget and not s.options.get("socketless")]
            for s in (*sockets, *widgets):
                declared.add(s.name)
                slots.append(_Slot(s.name, s.type, link_of(saved.get(s.name))))
        for inp in ordered:
            name = str(inp["name"])
            if name not in declared:
                declared.add(name)
                slots.append(_Slot(name, str(inp.get("type", "*")), link_of(inp)))
        self.slot_cache[(scope.path, node_id)] = slots
        return slots

    def _output_type(self, node: Mapping[str, Any], slot: int) -> str:
        type_ = _key(node.get("type"))
        definition = self.definitions.get(type_)
        if definition is not None:
            if 0 <= slot < len(definition.outputs):
                return str(definition.outputs[slot].get("type", "*"))
        else:
            spec = self.catalog.get(type_)
            if spec is not None and 0 <= slot < len(spec.outputs):
                return spec.outputs[slot].type
        outputs = node.get("outputs") or []
        if 0 <= slot < len(outputs) and isinstance(outputs[slot], Mapping):
            return str(outputs[slot].get("type", "*"))
        return "*"

    def _input_by_link(self, node: Mapping[str, Any], link_id: str) -> Mapping[str, Any] | None:
        for inp in node.get("inputs") or []:
            if isinstance(inp, Mapping) and inp.get("link") is not None:
                if _key(inp["link"]) == link_id:
                    return inp
        return None

    def _widget_name(self, node: Mapping[str, Any], inp: Mapping[str, Any]) -> str | None:
        """The widget an input slot stands for, if any (``getWidgetFromSlot``)."""
        name = str(inp.get("name"))
        widget = inp.get("widget")
        if isinstance(widget, Mapping) and widget.get("name") is not None:
            name = str(widget["name"])
        kind = self._kind(node)
        if kind == "node":
            spec = self.catalog[_key(node.get("type"))].input(name)
            return name if spec is not None and spec.is_widget else None
        if kind == "subgraph":
            names = {p for p, _, _ in self._promoted(self.definitions[_key(node.get("type"))])}
            return name if name in names else None
        if kind == "unknown" and isinstance(widget, Mapping):
            return name
        return None

    # -- PrimitiveNode and subgraph instances ----------------------------------------------------

    def _apply_primitives(self, scope: _Scope) -> None:
        """``PrimitiveNode.applyToGraph``: copy each primitive's value onto its target widgets."""
        for node in scope.graph.nodes.values():
            if _key(node.get("type")) != _PRIMITIVE:
                continue
            values = node.get("widgets_values")
            if not isinstance(values, list) or not values:
                continue
            outputs = node.get("outputs") or []
            first = outputs[0] if outputs and isinstance(outputs[0], Mapping) else {}
            for link_id in first.get("links") or []:
                link = scope.graph.links.get(_key(link_id))
                if link is None:
                    continue
                target = scope.graph.nodes.get(link.target_id)
                if target is None:
                    continue
                inp = self._input_by_link(target, _key(link_id))
                name = self._widget_name(target, inp) if inp is not None else None
                if name is not None:
                    scope.overrides.setdefault(link.target_id, {})[name] = values[0]

    def _promoted(
        self, definition: _Graph, stack: tuple[str, ...] = ()
    ) -> list[tuple[str, str, str]]:
        """Subgraph inputs that drive an inner widget: (input name, inner node id, widget name)."""
        assert definition.id is not None
        cached = self.promoted_names.get(definition.id)
        if cached is not None:
            return cached
        if definition.id in stack:
            return []
        found: list[tuple[str, str, str]] = []
        for sin in definition.inputs:
            for link_id in sin.get("linkIds") or []:
                link = definition.links.get(_key(link_id))
                target = definition.nodes.get(link.target_id) if link is not None else None
                if link is None or target is None:
                    continue
                inp = self._input_by_link(target, _key(link_id))
                if inp is None:
                    continue
                if self._kind(target) == "subgraph":
                    inner = self.definitions[_key(target.get("type"))]
                    names = {p for p, _, _ in self._promoted(inner, (*stack, definition.id))}
                    widget = str(inp.get("name")) if str(inp.get("name")) in names else None
                else:
                    widget = self._widget_name(target, inp)
                if widget is not None:
                    found.append((str(sin.get("name")), link.target_id, widget))
                    break
        self.promoted_names[definition.id] = found
        return found

    def _child(self, scope: _Scope, instance: Mapping[str, Any]) -> _Scope:
        """The scope of a subgraph instance, with its promoted widget values."""
        path = (*scope.path, _key(instance.get("id")))
        child = self.children.get(path)
        if child is not None:
            return child
        definition = self.definitions[_key(instance.get("type"))]
        if definition.id in scope.definition_chain():
            raise _Fail(f"subgraph {definition.name!r} contains an instance of itself")
        child = _Scope(definition, path, instance, scope)
        self._apply_primitives(child)
        promoted = self._promoted(definition)
        values: dict[str, Any] = {}
        for name, target_id, widget in promoted:
            target = definition.nodes[target_id]
            current = self._current_value(child, target, widget)
            if current is not _MISSING:
                values[name] = current
        saved = instance.get("widgets_values")
        if isinstance(saved, list):
            for (name, _, _), value in zip(promoted, saved, strict=False):
                values[name] = value
            proxies = _parse_proxy_widgets((instance.get("properties") or {}).get("proxyWidgets"))
            names = {name for name, _, _ in promoted}
            for (node_id, widget), value in zip(proxies, saved, strict=False):
                if node_id == "-1" and value is not None and widget in names:
                    values[widget] = value
        elif isinstance(saved, Mapping):
            values.update({name: saved[name] for name, _, _ in promoted if name in saved})
        values.update(scope.overrides.get(_key(instance.get("id")), {}))
        child.promoted = values
        self.children[path] = child
        return child

    def _current_value(self, scope: _Scope, node: Mapping[str, Any], widget: str) -> Any:
        node_id = _key(node.get("id"))
        if widget in scope.overrides.get(node_id, {}):
            return scope.overrides[node_id][widget]
        kind = self._kind(node)
        if kind == "node":
            try:
                values = _widget_values(node, self.catalog[_key(node.get("type"))])
            except _Fail:
                return _MISSING
            return values.get(widget, _MISSING)
        if kind == "subgraph":
            return self._child(scope, node).promoted.get(widget, _MISSING)
        return _MISSING

    # -- link resolution (ExecutableNodeDTO.resolveInput / resolveOutput) -------------------------

    def _resolve_input(
        self,
        scope: _Scope,
        node: Mapping[str, Any],
        index: int,
        visited: set[tuple[tuple[str, ...], str, str, int]],
        type_: str | None = None,
    ) -> _Resolved:
        node_id = _key(node.get("id"))
        key = (scope.path, node_id, "I", index)
        if key in visited:
            raise _Fail("circular link (through reroutes, bypassed nodes or subgraphs)")
        visited.add(key)
        slot = self._slots(scope, node)[index]
        if slot.link is None:
            return None
        link = scope.graph.links.get(slot.link)
        if link is None:
            problem = "is malformed" if slot.link in scope.graph.malformed else "does not exist"
            raise _Fail(f"input {slot.name!r} uses link {slot.link}, which {problem}")
        if link.origin_id == scope.graph.input_node and scope.graph.id is not None:
            return self._resolve_subgraph_input(scope, link.origin_slot, visited)
        origin = scope.graph.nodes.get(link.origin_id)
        if origin is None:
            raise _Fail(f"link {slot.link} comes from node {link.origin_id}, which does not exist")
        return self._resolve_output(scope, origin, link.origin_slot, type_ or slot.type, visited)

    def _resolve_subgraph_input(
        self, scope: _Scope, index: int, visited: set[tuple[tuple[str, ...], str, str, int]]
    ) -> _Resolved:
        """A link from the subgraph's input node: follow the instance's input, else its widget."""
        if scope.parent is None or scope.instance is None:
            raise _Fail("link from a subgraph input outside of a subgraph")
        if not 0 <= index < len(scope.graph.inputs):
            raise _Fail(f"subgraph {scope.graph.name!r} has no input {index}")
        name = str(scope.graph.inputs[index].get("name"))
        slots = self._slots(scope.parent, scope.instance)
        outer = next((i for i, s in enumerate(slots) if s.name == name), None)
        resolved: _Resolved = None
        if outer is not None and slots[outer].link is not None:
            resolved = self._resolve_input(scope.parent, scope.instance, outer, visited)
        if resolved is None and name in scope.promoted:
            return _Value(scope.promoted[name])
        return resolved

    def _resolve_output(
        self,
        scope: _Scope,
        node: Mapping[str, Any],
        slot: int,
        type_: str,
        visited: set[tuple[tuple[str, ...], str, str, int]],
    ) -> _Resolved:
        node_id = _key(node.get("id"))
        key = (scope.path, node_id, "O", slot)
        if key in visited:
            raise _Fail("circular link (through reroutes, bypassed nodes or subgraphs)")
        visited.add(key)
        kind = self._kind(node)
        if node.get("mode") == _MODE_BYPASS:
            index = self._bypass_index(scope, node, slot, type_)
            return None if index < 0 else self._resolve_input(scope, node, index, visited)
        if kind == "subgraph":
            child = self._child(scope, node)
            outputs = child.graph.outputs
            if not 0 <= slot < len(outputs):
                raise _Fail(f"subgraph {child.graph.name!r} has no output {slot}")
            link_ids = outputs[slot].get("linkIds") or []
            link = child.graph.links.get(_key(link_ids[0])) if link_ids else None
            if link is None:
                return None
            if link.origin_id == child.graph.input_node:
                return self._resolve_subgraph_input(child, link.origin_slot, visited)
            inner = child.graph.nodes.get(link.origin_id)
            if inner is None:
                raise _Fail(f"subgraph {child.graph.name!r} output {slot} has no source node")
            return self._resolve_output(child, inner, link.origin_slot, type_, visited)
        if kind in ("reroute", "primitive", "note"):
            slots = self._slots(scope, node)
            if slot < len(slots) and slots[slot].link is not None:
                return self._resolve_input(scope, node, slot, visited, type_)
            return None
        return _Ref(scope.exec_id(node_id), slot)

    def _bypass_index(self, scope: _Scope, node: Mapping[str, Any], slot: int, type_: str) -> int:
        """``ExecutableNodeDTO.#getBypassSlotIndex``: which input a bypassed output passes on."""
        slots = self._slots(scope, node)
        if type_ in ("*", ""):
            if len(slots) > slot:
                return slot
            return 0 if slots else -1
        out_type = self._output_type(node, slot)
        if slot < len(slots):
            opposite = slots[slot].type
            if _valid_connection(opposite, out_type) and _valid_connection(opposite, type_):
                return slot
        for i, s in enumerate(slots):
            if s.type == type_:
                return i
        for i, s in enumerate(slots):
            if _valid_connection(s.type, out_type) and _valid_connection(s.type, type_):
                return i
        return -1

    # -- emission --------------------------------------------------------------------------------

    def _emit(self, scope: _Scope) -> None:
        for node_id, node in scope.graph.nodes.items():
            kind = self._kind(node)
            if kind in ("note", "reroute", "primitive"):
                continue
            if kind == "subgraph":
                try:
                    child = self._child(scope, node)
                except _Fail as err:
                    self._problem(scope, node, str(err))
                    continue
                self._emit(child)
                continue
            if node.get("mode") in (_MODE_NEVER, _MODE_BYPASS):
                continue
            if kind == "unknown":
                self._problem(scope, node, self._unknown_reason(node))
                continue
            self._emit_node(scope, node_id, node)

    def _unknown_reason(self, node: Mapping[str, Any]) -> str:
        type_ = _key(node.get("type"))
        group = type_.split(">", 1)[-1] if ">" in type_ else type_.removeprefix("workflow/")
        if group in self.group_nodes and (">" in type_ or type_.startswith("workflow/")):
            return (
                "legacy group node: open the workflow in a current editor and convert the group "
                "node to a subgraph"
            )
        return f"node class {type_!r} is not in the server's catalog (missing custom node?)"

    def _emit_node(self, scope: _Scope, node_id: str, node: Mapping[str, Any]) -> None:
        spec = self.catalog[_key(node.get("type"))]
        browser_only = [s for s in spec.inputs if s.type in _BROWSER_ONLY]
        if browser_only:
            first = browser_only[0]
            self._problem(
                scope, node, f"cannot be converted offline: {_BROWSER_ONLY[first.type]}", first.name
            )
            return
        try:
            values = _widget_values(node, spec)
        except _Fail as err:
            self._problem(scope, node, str(err))
            return
        values.update(scope.overrides.get(node_id, {}))
        inputs: dict[str, Any] = {name: _wrap(value) for name, value in values.items()}
        failed = False
        for index, slot in enumerate(self._slots(scope, node)):
            if slot.link is None:
                continue
            try:
                resolved = self._resolve_input(scope, node, index, set())
            except _Fail as err:
                self._problem(scope, node, str(err), slot.name)
                failed = True
                continue
            if isinstance(resolved, _Value):
                inputs[slot.name] = _wrap(resolved.value)
            elif isinstance(resolved, _Ref):
                inputs[slot.name] = [resolved.node, resolved.slot]
        if failed:
            return
        self.output[scope.exec_id(node_id)] = {
            "inputs": inputs,
            "class_type": spec.class_type,
            "_meta": {"title": self._title(node)},
        }
