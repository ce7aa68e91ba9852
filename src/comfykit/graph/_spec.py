"""Typed view of ``/object_info``: what a node class takes and returns.

Parsing is defensive (docs/comfyui-api.md §6): an input spec is ``[TYPE]`` or ``[TYPE, options]``;
``TYPE`` is a type string, a comma-joined list of types, ``"*"``, ``"COMBO"`` with ``options``, or
a list of values (the legacy combo form). The raw per-class dict is kept so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WIDGET_TYPES", "InputSpec", "NodeSpec", "OutputSpec", "parse_node_spec"]

#: Input types the editor shows as widgets (literal values) rather than sockets.
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


@dataclass(frozen=True)
class InputSpec:
    """One declared input of a node class.

    Attributes:
        name: the input name (key in the API prompt's ``inputs``).
        type: the type string (``"INT"``, ``"IMAGE"``, ``"INT,FLOAT"``, ``"*"``); ``"COMBO"`` for
            both combo forms.
        required: declared under ``required`` (else ``optional``).
        options: the options dict (``default``, ``min``, ``max``, ``tooltip``, ...), possibly empty.
        choices: allowed values of a combo (list form, or ``options`` of a ``"COMBO"`` input);
            ``None`` for other types.
        legacy_combo: True for the list form, which ComfyUI 0.3.75 validates server-side; the
            ``"COMBO"`` form is not checked by that server (docs/comfyui-api.md §6.2).
    """

    name: str
    type: str
    required: bool
    options: Mapping[str, Any] = field(default_factory=dict)
    choices: tuple[Any, ...] | None = None
    legacy_combo: bool = False

    @property
    def is_combo(self) -> bool:
        """True for a combo (either form)."""
        return self.choices is not None

    @property
    def is_widget(self) -> bool:
        """True when the editor keeps this input in ``widgets_values`` (not socket-only)."""
        if self.options.get("forceInput"):
            return False
        return self.is_combo or self.type in WIDGET_TYPES

    @property
    def types(self) -> frozenset[str]:
        """The comma-split set of accepted types."""
        return frozenset(t.strip() for t in self.type.split(",") if t.strip())

    @property
    def default(self) -> Any:
        """The declared default (``None`` if there is none)."""
        return self.options.get("default")

    @property
    def min(self) -> Any:
        """The declared minimum (``None`` if there is none)."""
        return self.options.get("min")

    @property
    def max(self) -> Any:
        """The declared maximum (``None`` if there is none)."""
        return self.options.get("max")

    @property
    def control_after_generate(self) -> bool:
        """True when the editor stores an extra control value after this widget (seed inputs)."""
        return bool(self.options.get("control_after_generate"))

    @property
    def upload(self) -> str | None:
        """``"image"``, ``"audio"``, ``"video"`` or ``"file"`` for upload widgets, else ``None``."""
        for kind in ("image", "audio", "video", "file"):
            if self.options.get(f"{kind}_upload"):
                return kind
        return None


@dataclass(frozen=True)
class OutputSpec:
    """One output slot of a node class."""

    index: int
    name: str
    type: str
    is_list: bool = False


@dataclass(frozen=True)
class NodeSpec:
    """Everything ``/object_info`` says about one node class."""

    class_type: str
    display_name: str
    category: str
    description: str
    output_node: bool
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    hidden: tuple[str, ...] = ()
    deprecated: bool = False
    experimental: bool = False
    api_node: bool = False
    python_module: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def input(self, name: str) -> InputSpec | None:
        """The declared input called ``name``, or ``None``."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    @property
    def input_names(self) -> tuple[str, ...]:
        """Declared input names in the editor's widget order (required, then optional)."""
        return tuple(spec.name for spec in self.inputs)

    @property
    def required_inputs(self) -> tuple[InputSpec, ...]:
        """The required inputs."""
        return tuple(spec for spec in self.inputs if spec.required)

    def output(self, key: str | int) -> OutputSpec | None:
        """The output with this index or name (names compared case-insensitively), or ``None``."""
        if isinstance(key, int):
            return self.outputs[key] if 0 <= key < len(self.outputs) else None
        for out in self.outputs:
            if out.name == key:
                return out
        lowered = key.lower()
        matches = [o for o in self.outputs if o.name.lower() == lowered]
        if len(matches) == 1:
            return matches[0]
        typed = [o for o in self.outputs if o.type == key]
        return typed[0] if len(typed) == 1 else None

    def __iter__(self) -> Iterator[InputSpec]:
        return iter(self.inputs)


def _parse_input(name: str, raw: Any, required: bool) -> InputSpec:
    seq: Sequence[Any]
    if isinstance(raw, (list, tuple)):
        seq = raw
    else:  # a bare type string, seen from a few custom nodes
        seq = [raw]
    head: Any = seq[0] if seq else "*"
    opts: Any = seq[1] if len(seq) > 1 else {}
    options: dict[str, Any] = dict(opts) if isinstance(opts, Mapping) else {}
    if isinstance(head, (list, tuple)):
        return InputSpec(name, "COMBO", required, options, tuple(head), legacy_combo=True)
    type_ = str(head)
    choices: tuple[Any, ...] | None = None
    if type_ == "COMBO":
        raw_choices = options.get("options", [])
        choices = tuple(raw_choices) if isinstance(raw_choices, (list, tuple)) else ()
    return InputSpec(name, type_, required, options, choices)


def parse_node_spec(class_type: str, info: Mapping[str, Any]) -> NodeSpec:
    """Build a :class:`NodeSpec` from one entry of ``/object_info``."""
    declared = info.get("input") or {}
    order = info.get("input_order") or {}
    inputs: list[InputSpec] = []
    for category, required in (("required", True), ("optional", False)):
        specs = declared.get(category) or {}
        names = list(order.get(category) or [])
        names += [n for n in specs if n not in names]
        for name in names:
            if name in specs:
                inputs.append(_parse_input(name, specs[name], required))
    hidden = tuple((declared.get("hidden") or {}).keys())
    out_types = list(info.get("output") or [])
    out_names = list(info.get("output_name") or [])
    out_lists = list(info.get("output_is_list") or [])
    outputs = []
    for i, t in enumerate(out_types):
        type_ = "COMBO" if isinstance(t, (list, tuple)) else str(t)
        name = str(out_names[i]) if i < len(out_names) and out_names[i] else type_
        outputs.append(
            OutputSpec(i, name, type_, bool(out_lists[i]) if i < len(out_lists) else False)
        )
    return NodeSpec(
        class_type=class_type,
        display_name=str(info.get("display_name") or info.get("name") or class_type),
        category=str(info.get("category") or ""),
        description=str(info.get("description") or ""),
        output_node=bool(info.get("output_node")),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        hidden=hidden,
        deprecated=bool(info.get("deprecated")),
        experimental=bool(info.get("experimental")),
        api_node=bool(info.get("api_node")),
        python_module=str(info.get("python_module") or ""),
        raw=dict(info),
    )
