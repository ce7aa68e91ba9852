"""The fluent workflow builder: make, load, edit and export API-format graphs.

```python
wf = Workflow(catalog)
img = wf.add("EmptyImage", width=64, height=64, batch_size=1, color=0)
wf.add("PreviewImage", images=img.out(0))
prompt = wf.to_api()
```

Node ids are strings (``"1"``, ``"2"``, ... for added nodes; ids of loaded graphs, such as the
subgraph ids ``"54:73"``, are kept). Input values are literals, :class:`NodeOutput` links or
:class:`Param` placeholders. With a catalog, mistakes are reported when they are made.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, Union

from comfykit._exceptions import InputError, WorkflowError, WorkflowProblem
from comfykit.graph._spec import NodeSpec
from comfykit.graph._validate import UNBOUND, api_node_shape, bind_params, suggest
from comfykit.graph._values import NodeOutput, Param, as_link, link_to_api

if TYPE_CHECKING:
    from comfykit.graph.catalog import NodeCatalog

__all__ = ["Node", "NodeRef", "Workflow"]

#: How a node is named in :class:`Workflow` methods: the node, its id (``"3"`` or ``3``) or its
#: title.
NodeRef = Union["Node", str, int]

_NODE_KEYS = ("class_type", "inputs", "_meta")


class Node:
    """One node of a :class:`Workflow`.

    Attributes:
        id: the node id (a string).
        class_type: the node class (a key of ``/object_info``).
        inputs: the input values by name: literals, :class:`NodeOutput` links and
            :class:`Param` placeholders. A plain dict: editing it directly skips the immediate
            checks that :meth:`set` makes, ``del node.inputs[name]`` removes an input.
        meta: the ``_meta`` object (holds ``title``), or ``None`` when the node has none.
        extra: any other keys of the API-format node, kept for round trips.
    """

    __slots__ = ("_workflow", "class_type", "extra", "id", "inputs", "meta")

    def __init__(
        self,
        workflow: Workflow,
        node_id: str,
        class_type: str,
        inputs: dict[str, Any],
        meta: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._workflow = workflow
        self.id = node_id
        self.class_type = class_type
        self.inputs = inputs
        self.meta = meta
        self.extra = extra if extra is not None else {}

    @property
    def workflow(self) -> Workflow:
        """The workflow this node belongs to."""
        return self._workflow

    @property
    def title(self) -> str | None:
        """``_meta.title``: the name shown in the editor and in error messages."""
        title = self.meta.get("title") if self.meta is not None else None
        return title if isinstance(title, str) else None

    @title.setter
    def title(self, value: str | None) -> None:
        if value is None:
            if self.meta is not None:
                self.meta.pop("title", None)
            return
        if self.meta is None:
            self.meta = {}
        self.meta["title"] = value

    @property
    def spec(self) -> NodeSpec | None:
        """The class's :class:`NodeSpec` from the workflow's catalog (``None`` without one)."""
        catalog = self._workflow.catalog
        return catalog.get(self.class_type) if catalog is not None else None

    @property
    def links(self) -> dict[str, NodeOutput]:
        """The inputs that are links, by input name."""
        out: dict[str, NodeOutput] = {}
        for name, value in self.inputs.items():
            link = as_link(value)
            if link is not None:
                out[name] = link
        return out

    def out(self, key: str | int) -> NodeOutput:
        """A link to one of this node's outputs, by index or (with a catalog) by name.

        Names are matched exactly, then case-insensitively, then by type
        (``ckpt.out("CLIP")``). Raises :class:`~comfykit.WorkflowError` (code
        ``unknown_output``) for an output the class does not have.
        """
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise InputError(f"an output is named by int index or str name, not {key!r}")
        catalog = self._workflow.catalog
        spec = catalog.get(self.class_type) if catalog is not None else None
        if spec is None:
            if isinstance(key, int) and key >= 0:
                return NodeOutput(self.id, key, self._workflow)
            why = (
                "output names need a catalog (Workflow(catalog=...)); use an index"
                if catalog is None
                else f"unknown node class {self.class_type!r}: cannot look up output names"
            )
            if isinstance(key, int):
                why = f"output index {key} is negative"
            raise WorkflowError([self._problem(why, "unknown_output")])
        found = spec.output(key)
        if found is None:
            listing = ", ".join(f"{o.index} {o.name}" for o in spec.outputs) or "none"
            raise WorkflowError(
                [
                    self._problem(
                        f"{self.class_type} has no output {key!r} (outputs: {listing})",
                        "unknown_output",
                    )
                ]
            )
        return NodeOutput(self.id, found.index, self._workflow)

    def __getitem__(self, key: str | int) -> NodeOutput:
        """Same as :meth:`out`: ``ckpt["CLIP"]``, ``ckpt[1]``."""
        return self.out(key)

    def set(self, inputs: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Node:
        """Set input values (checked at once with a catalog); returns the node for chaining."""
        self._workflow.set(self, inputs, **kwargs)
        return self

    def _problem(self, reason: str, code: str, input_name: str | None = None) -> WorkflowProblem:
        return WorkflowProblem(self.id, self.class_type, reason, input_name, self.title, code)

    def __repr__(self) -> str:
        title = f", title={self.title!r}" if self.title is not None else ""
        return f"Node({self.id!r}, {self.class_type!r}{title})"


class Workflow:
    """A ComfyUI graph being built or edited; :meth:`to_api` gives the prompt to send.

    Args:
        catalog: the server's :class:`~comfykit.graph.NodeCatalog`. With one, :meth:`add` and
            :meth:`set` reject unknown classes, unknown input names, bad links and bad literals
            immediately, output names work in :meth:`Node.out`, and :meth:`validate` needs no
            argument. Without one, only the structure is checked.
    """

    def __init__(self, catalog: NodeCatalog | None = None) -> None:
        self.catalog = catalog
        self._nodes: dict[str, Node] = {}
        self._counter = 0

    # ------------------------------------------------------------------ building

    def add(
        self,
        class_type: str,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        title: str | None = None,
        **kwargs: Any,
    ) -> Node:
        """Add a node and return it.

        Inputs are keyword arguments (or a mapping, for names that are not identifiers or
        clash with ``title``). A ``["<id>", <index>]`` list is taken as a link. Raises
        :class:`~comfykit.WorkflowError` listing every problem; the workflow is then unchanged.
        """
        values = {**dict(inputs or {}), **kwargs}
        values = {str(k): _normalise(v) for k, v in values.items()}
        node_id = self._peek_id()
        problems = self._check(node_id, class_type, title, values, new_node=True)
        if problems:
            raise WorkflowError(problems)
        self._counter = int(node_id)
        meta = {"title": title} if title is not None else None
        node = Node(self, node_id, class_type, values, meta)
        self._nodes[node_id] = node
        return node

    def set(self, ref: NodeRef, inputs: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Node:
        """Set inputs of a node (by node, id or title); checked at once with a catalog."""
        node = self.node(ref)
        values = {str(k): _normalise(v) for k, v in {**dict(inputs or {}), **kwargs}.items()}
        problems = self._check(node.id, node.class_type, node.title, values, new_node=False)
        if problems:
            raise WorkflowError(problems)
        node.inputs.update(values)
        return node

    def replace_input(self, ref: NodeRef, name: str, value: Any) -> Any:
        """Set one input and return its previous value (``None`` if it had none)."""
        node = self.node(ref)
        previous = node.inputs.get(name)
        self.set(node, {name: value})
        return previous

    def rewire(self, old: NodeOutput | list[Any], new: Any) -> list[tuple[Node, str]]:
        """Make every input linked to ``old`` hold ``new`` (usually another output) instead.

        Returns the ``(node, input_name)`` pairs that changed. All changes are checked first
        (with a catalog): on a problem nothing changes.
        """
        link = as_link(old)
        if link is None:
            raise InputError(
                f"rewire() needs a link (NodeOutput or ['<id>', <index>]), not {old!r}"
            )
        targets = [
            (node, name)
            for node in self._nodes.values()
            for name, value in node.inputs.items()
            if as_link(value) == link
        ]
        value = _normalise(new)
        problems: list[WorkflowProblem] = []
        for node, name in targets:
            problems += self._check(
                node.id, node.class_type, node.title, {name: value}, new_node=False
            )
        if problems:
            raise WorkflowError(problems)
        for node, name in targets:
            node.inputs[name] = value
        return targets

    def remove(self, ref: NodeRef) -> list[tuple[Node, str]]:
        """Remove a node and every input linked to it.

        Returns the ``(node, input_name)`` pairs whose link was dropped, so they can be
        reconnected (required ones must be, before the workflow is valid again).
        """
        node = self.node(ref)
        del self._nodes[node.id]
        dangling = []
        for other in self._nodes.values():
            for name, value in list(other.inputs.items()):
                link = as_link(value)
                if link is not None and link.node_id == node.id:
                    del other.inputs[name]
                    dangling.append((other, name))
        return dangling

    def copy(self) -> Workflow:
        """An independent deep copy (sharing the immutable catalog)."""
        clone = Workflow(self.catalog)
        clone._counter = self._counter
        for nid, node in self._nodes.items():
            clone._nodes[nid] = Node(
                clone,
                nid,
                node.class_type,
                copy.deepcopy(node.inputs),
                copy.deepcopy(node.meta),
                copy.deepcopy(node.extra),
            )
        return clone

    def merge(self, other: Workflow | Mapping[str, Any]) -> dict[str, str]:
        """Add copies of all nodes of ``other`` (a workflow or an API dict) under fresh ids.

        Links between the merged nodes are renumbered with them. Returns ``{old_id: new_id}``.
        Raises :class:`~comfykit.WorkflowError` (code ``param_conflict``) when both sides use
        the same parameter name with different definitions; nothing is merged then.
        """
        source = other if isinstance(other, Workflow) else Workflow.from_api(other)
        problems = self._param_conflicts(
            [v for n in source for v in n.inputs.values() if isinstance(v, Param)], skip=None
        )
        if problems:
            raise WorkflowError(problems)
        mapping: dict[str, str] = {}
        counter = self._counter
        for node in source:
            counter += 1
            while str(counter) in self._nodes:
                counter += 1
            mapping[node.id] = str(counter)
        for node in source:
            inputs = {}
            for name, value in node.inputs.items():
                link = as_link(value)
                if link is not None and link.node_id in mapping:
                    value = NodeOutput(mapping[link.node_id], link.index)
                inputs[name] = copy.deepcopy(value)
            new_id = mapping[node.id]
            self._nodes[new_id] = Node(
                self,
                new_id,
                node.class_type,
                inputs,
                copy.deepcopy(node.meta),
                copy.deepcopy(node.extra),
            )
        self._counter = counter
        return mapping

    # ------------------------------------------------------------------ lookup

    def node(self, ref: NodeRef) -> Node:
        """The node with this id or title (ids win); raises :class:`~comfykit.WorkflowError`."""
        if isinstance(ref, Node):
            if ref._workflow is self and self._nodes.get(ref.id) is ref:
                return ref
            raise WorkflowError(
                [ref._problem("this node is not part of the workflow", "unknown_node")]
            )
        if isinstance(ref, bool) or not isinstance(ref, (str, int)):
            raise InputError(f"a node is named by Node, id or title, not {ref!r}")
        key = str(ref)
        if key in self._nodes:
            return self._nodes[key]
        matches = self.find(title=key)
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(n.id for n in matches)
            reason = f"the title {key!r} is used by nodes {ids}; name one by id"
            code = "ambiguous_node"
        else:
            names = list(self._nodes) + [n.title for n in self._nodes.values() if n.title]
            hint = suggest(key, names)
            more = f" (did you mean {' or '.join(map(repr, hint))}?)" if hint else ""
            reason = f"no node with id or title {key!r}{more}"
            code = "unknown_node"
        raise WorkflowError([WorkflowProblem(None, None, reason, code=code)])

    def find(self, class_type: str | None = None, title: str | None = None) -> list[Node]:
        """Nodes matching every given criterion, in workflow order."""
        return [
            n
            for n in self._nodes.values()
            if (class_type is None or n.class_type == class_type)
            and (title is None or n.title == title)
        ]

    @property
    def nodes(self) -> list[Node]:
        """All nodes in workflow order."""
        return list(self._nodes.values())

    @property
    def params(self) -> dict[str, Param]:
        """The parameters used by any input, by name, in order of first use."""
        found: dict[str, Param] = {}
        for node in self._nodes.values():
            for value in node.inputs.values():
                if isinstance(value, Param):
                    found.setdefault(value.name, value)
        return found

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self._nodes.values()))

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, ref: object) -> bool:
        """True for a node of this workflow or an id (``"3"`` or ``3``) in it."""
        if isinstance(ref, Node):
            return self._nodes.get(ref.id) is ref
        if isinstance(ref, (str, int)) and not isinstance(ref, bool):
            return str(ref) in self._nodes
        return False

    def __repr__(self) -> str:
        return f"<Workflow {len(self)} node{'s' if len(self) != 1 else ''}>"

    # ------------------------------------------------------------------ export / import

    def to_api(self, *, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The API-format prompt (what ``POST /prompt`` takes), with parameters bound.

        Raises :class:`~comfykit.WorkflowError` for a parameter without value or default
        (``unbound_param``) and for names in ``params`` no input uses (``unknown_param``).
        The result shares nothing with the workflow.
        """
        prompt = self._prompt_view()
        problems = bind_params(
            [
                (nid, entry["class_type"], self._nodes[nid].title, entry["inputs"])
                for nid, entry in prompt.items()
            ],
            params or {},
        )
        if problems:
            raise WorkflowError(problems)
        return prompt

    def _prompt_view(self) -> dict[str, Any]:
        """The API dict with :class:`Param` values left in place (for validation)."""
        prompt: dict[str, Any] = {}
        for nid, node in self._nodes.items():
            entry: dict[str, Any] = {
                "class_type": node.class_type,
                "inputs": {
                    name: value if isinstance(value, Param) else copy.deepcopy(link_to_api(value))
                    for name, value in node.inputs.items()
                },
            }
            if node.meta is not None:
                entry["_meta"] = copy.deepcopy(node.meta)
            entry.update(copy.deepcopy(node.extra))
            prompt[nid] = entry
        return prompt

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, catalog: NodeCatalog | None = None) -> Workflow:
        """Load an API-format prompt (``to_api(from_api(x)) == x``).

        Ids are kept as given (numbers become strings, as JSON would make them). Links become
        :class:`NodeOutput`; anything else is kept verbatim (malformed links included, so
        :meth:`validate` can report them). Raises :class:`~comfykit.WorkflowError` (code
        ``invalid_prompt``) when a node lacks ``class_type`` or ``inputs``.
        """
        if not isinstance(data, Mapping):
            raise WorkflowError(
                [
                    WorkflowProblem(
                        None,
                        None,
                        f"a prompt is a mapping of node id to node, not {type(data).__name__}",
                        code="invalid_prompt",
                    )
                ]
            )
        wf = cls(catalog)
        problems = []
        for raw_id, raw in data.items():
            nid = str(raw_id)
            shape = api_node_shape(nid, raw)
            if shape.problem is not None:
                problems.append(shape.problem)
                continue
            assert isinstance(raw, Mapping) and shape.class_type is not None
            class_type, inputs = shape.class_type, shape.inputs
            assert inputs is not None
            meta = raw.get("_meta")
            extra = {k: copy.deepcopy(v) for k, v in raw.items() if k not in _NODE_KEYS}
            if "_meta" in raw and not isinstance(meta, Mapping):
                extra["_meta"] = copy.deepcopy(meta)
                meta = None
            wf._nodes[nid] = Node(
                wf,
                nid,
                class_type,
                {str(k): _normalise(copy.deepcopy(v)) for k, v in inputs.items()},
                dict(copy.deepcopy(meta)) if isinstance(meta, Mapping) else None,
                extra,
            )
            if nid.isdigit():
                wf._counter = max(wf._counter, int(nid))
        if problems:
            raise WorkflowError(problems)
        return wf

    @classmethod
    def from_ui(cls, data: Mapping[str, Any], catalog: NodeCatalog) -> Workflow:
        """Load an editor-saved (UI-format) workflow, converted with the server's catalog.

        See :func:`comfykit.graph.ui_format.ui_to_api` for the conversion rules; raises
        :class:`~comfykit.WorkflowError` listing every node that cannot be converted.
        """
        from comfykit.graph.ui_format import ui_to_api

        return cls.from_api(ui_to_api(data, catalog), catalog=catalog)

    @classmethod
    def from_png(
        cls, source: str | os.PathLike[str] | bytes | IO[bytes], catalog: NodeCatalog | None = None
    ) -> Workflow:
        """Load the graph that ComfyUI's SaveImage embedded in a PNG.

        The ``prompt`` chunk (API format) is used when present; otherwise the ``workflow`` chunk
        (UI format) is converted, which needs ``catalog``. Raises
        :class:`~comfykit.WorkflowError` when the file holds neither.
        """
        from comfykit.graph.png_metadata import read_png_workflows

        found = read_png_workflows(source)
        if found.prompt is not None:
            return cls.from_api(found.prompt, catalog=catalog)
        assert found.workflow is not None
        if catalog is None:
            raise WorkflowError(
                [
                    WorkflowProblem(
                        None, None,
                        "the PNG holds only an editor (UI-format) workflow; pass the server's "
                        "catalog to convert it",
                        code="png_metadata",
                    )
                ]
            )  # fmt: skip
        return cls.from_ui(found.workflow, catalog)

    # ------------------------------------------------------------------ validation

    def problems(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        strict: bool = False,
        catalog: NodeCatalog | None = None,
    ) -> list[WorkflowProblem]:
        """Every problem found by ``catalog`` (default: the workflow's own)."""
        return self._catalog_for(catalog).problems(
            self._prompt_view(), params=params, strict=strict
        )

    def validate(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        strict: bool = False,
        catalog: NodeCatalog | None = None,
    ) -> None:
        """Raise one :class:`~comfykit.WorkflowError` listing every problem, if any."""
        self._catalog_for(catalog).validate(self._prompt_view(), params=params, strict=strict)

    def _catalog_for(self, catalog: NodeCatalog | None) -> NodeCatalog:
        found = catalog if catalog is not None else self.catalog
        if found is None:
            raise InputError("no catalog to validate against: pass catalog= or Workflow(catalog)")
        return found

    # ------------------------------------------------------------------ internals

    def _peek_id(self) -> str:
        counter = self._counter + 1
        while str(counter) in self._nodes:
            counter += 1
        return str(counter)

    def _check(
        self,
        node_id: str,
        class_type: str,
        title: str | None,
        values: Mapping[str, Any],
        *,
        new_node: bool,
    ) -> list[WorkflowProblem]:
        foreign = [
            WorkflowProblem(
                node_id,
                class_type,
                f"links to node {value.node_id!r} of another Workflow; a link connects nodes "
                "of one workflow: add both nodes to the same Workflow",
                name,
                title,
                "link_to_other_workflow",
            )
            for name, value in values.items()
            if isinstance(value, NodeOutput)
            and value.workflow is not None
            and value.workflow is not self
        ]
        if foreign:
            return foreign
        node = self._nodes.get(node_id)
        problems = self._param_conflicts(
            [v for v in values.values() if isinstance(v, Param)],
            skip=(node, frozenset(values)) if node is not None and not new_node else None,
        )
        catalog = self.catalog
        if catalog is not None and class_type not in catalog and new_node:
            hint = catalog.suggest(class_type)
            more = f" (did you mean {' or '.join(map(repr, hint))}?)" if hint else ""
            problems.append(
                WorkflowProblem(
                    node_id,
                    class_type,
                    f"unknown node class {class_type!r}{more}",
                    title=title,
                    code="unknown_class_type",
                )
            )
            return problems
        if catalog is None or class_type not in catalog:  # loaded nodes of unknown classes
            for name, value in values.items():
                link = as_link(value)
                if link is not None and link.node_id not in self._nodes:
                    problems.append(
                        WorkflowProblem(
                            node_id,
                            class_type,
                            f"links to node {link.node_id!r}, which is not in the workflow",
                            name,
                            title,
                            "link_to_missing_node",
                        )
                    )
            return problems
        classes = {nid: n.class_type for nid, n in self._nodes.items()}
        classes[node_id] = class_type
        checked = {name: _check_value(value) for name, value in values.items()}
        problems += catalog.validator.check_node(
            node_id,
            class_type,
            title,
            checked,
            classes,
            require=False,
            unknown_literals=True,
            strict=False,
        )
        return problems

    def _param_conflicts(
        self, new: list[Param], skip: tuple[Node, frozenset[str]] | None
    ) -> list[WorkflowProblem]:
        if not new:
            return []
        existing: dict[str, Param] = {}
        for node in self._nodes.values():
            for name, value in node.inputs.items():
                if skip is not None and node is skip[0] and name in skip[1]:
                    continue
                if isinstance(value, Param):
                    existing.setdefault(value.name, value)
        problems = []
        for param in new:
            known = existing.setdefault(param.name, param)
            if known != param:
                problems.append(
                    WorkflowProblem(
                        None,
                        None,
                        f"parameter {param.name!r} is already defined as {known!r}, not {param!r}",
                        code="param_conflict",
                    )
                )
        return problems


def _normalise(value: Any) -> Any:
    """A ``[str, int]`` list becomes a :class:`NodeOutput`; anything else stays as it is."""
    if isinstance(value, (list, tuple)):
        link = as_link(value)
        if link is not None:
            return link
    return value


def _check_value(value: Any) -> Any:
    """The value as the validator should see it when the node is added."""
    if isinstance(value, Param):
        return link_to_api(value.default) if value.has_default else UNBOUND
    return link_to_api(value)
