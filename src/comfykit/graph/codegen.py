"""Typed node stubs: a Python module with one typed constructor per node class of a catalog.

``render_stubs(catalog)`` returns the source of a module (``comfykit codegen`` writes it) that
holds:

* one *link class* per socket type (``class MODEL(NodeOutput)``, ``class CLIP(NodeOutput)``, ...),
  so a type checker tells a ``CLIP`` output from a ``MODEL`` output. Outputs of type ``*`` are
  ``ANY``, a subclass of every link class, because the server lets ``*`` connect anywhere;
* ``Literal`` aliases for combo inputs (sampler names, model files, ...);
* a ``Nodes`` class whose methods add nodes to a :class:`~comfykit.graph.Workflow`: keyword-only,
  typed and documented parameters (bounds, defaults and tooltips in the docstring), returning the
  typed output, a ``NamedTuple`` of typed outputs, or the :class:`~comfykit.graph.Node` for
  output nodes without outputs.

The module imports only public names of :mod:`comfykit.graph`, is deterministic for a given
catalog, and passes ``ruff check`` and ``mypy --strict``.
"""

from __future__ import annotations

import keyword
import math
import re
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from comfykit._version import __version__
from comfykit.graph._spec import InputSpec, NodeSpec, OutputSpec
from comfykit.graph._validate import KNOWN_CUSTOM_VALIDATION, CustomValidation
from comfykit.graph.catalog import NodeCatalog

__all__ = ["render_stubs", "write_stubs"]

_WIDTH = 100
_WILDCARD = "*"
_PY_TYPES = {"INT": "int", "FLOAT": "float", "STRING": "str", "BOOLEAN": "bool"}
_IMPORTED = (
    "ClassVar",
    "Literal",
    "NamedTuple",
    "TypeAlias",
    "TypeVar",
    "Node",
    "NodeOutput",
    "Param",
)
_MODULE_NAMES = (
    "annotations",
    "Workflow",
    "Nodes",
    "LINK_TYPES",
    "FINGERPRINT",
    "_Link",
    "_L",
    "_CLASS_NAMES",
)
#: Names the annotations inside ``Nodes`` use besides generated ones (methods must not hide them).
_CLASS_SCOPE = ("workflow", "_add", "int", "float", "str", "bool", "object", "list", "dict")
#: Names ruff flags (E741-E743).
_AMBIGUOUS = ("l", "O", "I")
#: Parameter names that would hide something a method body uses. (Annotations are resolved
#: outside the function, so parameters cannot hide their names.)
_PARAM_RESERVED = ("self", "title", "node", *_AMBIGUOUS)
_TUPLE_ATTRS = frozenset(dir(tuple)) | {"_make", "_asdict", "_replace", "_fields"}
#: Builtins a module-level name must not hide: those the generated code uses, and a few more
#: (a fixed list, so the output does not depend on the Python version).
_BUILTINS = (
    *("bool", "bytes", "classmethod", "dict", "float", "hash", "id", "int", "isinstance"),
    *("len", "list", "NotImplemented", "object", "print", "set", "str", "super", "tuple"),
    "type",
)


def render_stubs(
    catalog: Mapping[str, NodeSpec],
    *,
    module_doc: str | None = None,
    max_literal: int = 256,
) -> str:
    """The source of a typed module for the node classes of ``catalog``.

    Args:
        catalog: a :class:`~comfykit.graph.NodeCatalog` (or any mapping of class name to
            :class:`~comfykit.graph.NodeSpec`).
        module_doc: extra text for the module docstring (e.g. which server it came from).
        max_literal: combos with more choices than this are typed ``str`` instead of a
            ``Literal`` (big literal unions slow type checkers down).
    """
    return _Renderer(catalog, module_doc, max_literal).render()


def write_stubs(
    catalog: Mapping[str, NodeSpec],
    path: str | PathLike[str],
    *,
    module_doc: str | None = None,
    max_literal: int = 256,
) -> Path:
    """Write :func:`render_stubs` output to ``path`` (parents created); returns the path."""
    text = render_stubs(catalog, module_doc=module_doc, max_literal=max_literal)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


# ------------------------------------------------------------------------------ names


class _Names:
    """Hands out unique identifiers, suffixing ``_``, ``_2``, ... on a clash."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self.taken = set(taken)

    def claim(self, base: str) -> str:
        if base.startswith("__") or not base.strip("_"):  # Python mangles __x inside classes
            base = "X" + base
        name = base
        if self._bad(name):
            name = f"{base}_"
            n = 2
            while self._bad(name):
                name = f"{base}_{n}"
                n += 1
        self.taken.add(name)
        return name

    def _bad(self, name: str) -> bool:
        return name in self.taken or keyword.iskeyword(name)


def _identifier(text: str, prefix: str) -> str:
    """``text`` as an ASCII identifier (other characters become ``_``).

    ``prefix`` goes in front of names that start with a digit or with ``__`` (which Python
    would mangle inside the ``Nodes`` class).
    """
    name = re.sub(r"[^0-9A-Za-z_]", "_", text)
    if not name or name[0].isdigit() or name.startswith("__"):
        name = prefix + name
    return name


def _claim_all(names: _Names, texts: list[str], prefix: str) -> list[str]:
    """Identifiers for ``texts``; names that are identifiers already are served first."""
    wanted = [_identifier(text, prefix) for text in texts]
    out: dict[int, str] = {}
    for exact in (True, False):
        for i, (text, name) in enumerate(zip(texts, wanted, strict=True)):
            if (text == name) is exact:
                out[i] = names.claim(name)
    return [out[i] for i in range(len(texts))]


def _camel(text: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", text)
    name = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return _identifier(name, "C")


# ------------------------------------------------------------------------------ literals


def _pystr(text: str) -> str:
    """A Python string literal for ``text``, quoted as ruff-format would quote it."""
    quote = '"' if text.count('"') <= text.count("'") else "'"
    out = []
    for char in text:
        if char in ("\\", quote):
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return quote + "".join(out) + quote


def _pyvalue(value: Any) -> str:
    if isinstance(value, str):
        return _pystr(value)
    return repr(value)


def _split_str(text: str, width: int) -> list[str]:
    """``text`` as string literals of at most ``width`` characters (implicitly concatenated)."""
    whole = _pystr(text)
    if len(whole) <= width:
        return [whole]
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = start + 1
        while end < len(text) and len(_pystr(text[start : end + 1])) <= width:
            end += 1
        cut = text.rfind(" ", start + 1, end)
        if end < len(text) and cut > start + width // 2:
            end = cut + 1
        pieces.append(_pystr(text[start:end]))
        start = end
    return pieces


def _clean(text: str) -> str:
    """Free text made safe for a docstring: printable, no backslashes or triple quotes."""
    text = "".join(c if c.isprintable() else " " for c in text)
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _wrap(text: str, indent: int, hang: int = 0) -> list[str]:
    first = " " * indent
    rest = " " * (indent + hang)
    return textwrap.wrap(
        text,
        width=_WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
    ) or [first.rstrip()]


def _short(value: Any, limit: int = 40) -> str:
    text = _pyvalue(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(value: Any) -> str:
    return repr(value) if isinstance(value, (int, float)) else _short(value)


# ------------------------------------------------------------------------------ model


@dataclass
class _Param:
    name: str
    spec: InputSpec
    annotation: str
    default: str | None  # Python source, or None for a required parameter
    doc: str


@dataclass
class _Method:
    name: str
    spec: NodeSpec
    params: list[_Param]
    outputs: list[tuple[OutputSpec, str]]  # (spec, link class)
    tuple_name: str | None
    fields: list[str]


_LiteralKey = tuple[tuple[str, Any], ...]


def _literal_key(choices: tuple[Any, ...]) -> _LiteralKey | None:
    """A hashable key for a combo that fits in a ``Literal`` (``None`` if it does not)."""
    key = []
    for value in choices:
        if value is not None and not isinstance(value, (str, int, bool)):
            return None
        key.append((type(value).__name__, value))
    return tuple(dict.fromkeys(key))


def _custom_validation(catalog: Mapping[str, NodeSpec]) -> Mapping[str, CustomValidation]:
    if isinstance(catalog, NodeCatalog):
        return catalog.custom_validation
    return KNOWN_CUSTOM_VALIDATION


def _fingerprint(catalog: Mapping[str, NodeSpec]) -> str | None:
    if isinstance(catalog, NodeCatalog):
        return catalog.fingerprint
    if catalog and all(spec.raw for spec in catalog.values()):
        return NodeCatalog({name: spec.raw for name, spec in catalog.items()}).fingerprint
    return None


def _unique_inputs(spec: NodeSpec) -> list[InputSpec]:
    """Declared inputs, one per name (a name declared twice is one key in the prompt)."""
    seen: dict[str, InputSpec] = {}
    for ispec in spec.inputs:
        seen.setdefault(ispec.name, ispec)
    return list(seen.values())


def _members(type_: str) -> list[str]:
    return sorted({t.strip() for t in type_.split(",") if t.strip()}) or [_WILDCARD]


class _Renderer:
    def __init__(
        self, catalog: Mapping[str, NodeSpec], module_doc: str | None, max_literal: int
    ) -> None:
        self.catalog = catalog
        self.specs = [catalog[name] for name in sorted(catalog)]
        self.module_doc = module_doc
        self.max_literal = max_literal
        self.custom = _custom_validation(catalog)
        # module-level names must not be hidden by a method's parameters and local, nor hide
        # what ``Nodes`` defines or the code uses
        self.module = _Names(
            set(_BUILTINS)
            | set(_IMPORTED)
            | set(_MODULE_NAMES)
            | set(_PARAM_RESERVED)
            | set(_CLASS_SCOPE)
            | {"__init__"}
        )
        self.links: dict[str, str] = {}  # ComfyUI type -> link class
        self.composites: dict[str, list[str]] = {}  # comma-joined output type -> members
        self.literals: dict[_LiteralKey, str] = {}  # combo -> alias name
        self.imports: set[str] = {"Node", "NodeOutput", "ClassVar"}

    # -------------------------------------------------------------- analysis

    def _literal_combo(self, name: str, ispec: InputSpec) -> _LiteralKey | None:
        choices = ispec.choices or ()
        if not choices or len(choices) > self.max_literal or ispec.upload is not None:
            return None
        if ispec.options.get("remote") or self._skips_literal(name, ispec):
            return None
        return _literal_key(choices)

    def _skips_literal(self, class_type: str, ispec: InputSpec) -> bool:
        custom = self.custom.get(class_type)
        return custom is not None and custom.skips_literal_checks(ispec.name)

    def _collect(self) -> None:
        singles: set[str] = set()
        composites: set[str] = set()
        combos = False
        uses: dict[_LiteralKey, list[tuple[str, str]]] = {}
        for spec in self.specs:
            for ispec in _unique_inputs(spec):
                if ispec.is_combo:
                    combos = True
                    key = self._literal_combo(spec.class_type, ispec)
                    if key is not None:
                        uses.setdefault(key, []).append((spec.class_type, ispec.name))
                    continue
                singles.update(t for t in _members(ispec.type) if t != _WILDCARD)
            for out in spec.outputs:
                members = [t for t in _members(out.type) if t != _WILDCARD]
                singles.update(members)
                if len(members) > 1:
                    composites.add(out.type)
        if combos:
            singles.add("COMBO")
        for type_ in sorted(singles):
            self.links[type_] = self.module.claim(_identifier(type_, "T_"))
        for type_ in sorted(composites):
            self.composites[type_] = _members(type_)
            self.links[type_] = self.module.claim(_identifier(type_, "T_"))
        self.any = self.module.claim("ANY")
        self.uses = uses

    def _name_methods(self) -> dict[str, str]:
        generated = set(self.links.values()) | {self.any}
        reserved = set(_IMPORTED) | set(_MODULE_NAMES) | set(_CLASS_SCOPE) | set(_AMBIGUOUS)
        scope = _Names(generated | reserved)
        classes = [spec.class_type for spec in self.specs]
        names = dict(zip(classes, _claim_all(scope, classes, "N_"), strict=True))
        self.module.taken |= set(names.values())
        return names

    def _name_literals(self, methods: Mapping[str, str]) -> None:
        for key, users in sorted(self.uses.items(), key=lambda kv: kv[1][0]):
            class_type, input_name = users[0]
            base = _camel(input_name)
            if len(users) == 1 or base in self.module.taken:
                base = _camel(methods[class_type]) + base
            self.literals[key] = self.module.claim(base)
        if self.literals:
            self.imports |= {"Literal", "TypeAlias"}

    # -------------------------------------------------------------- per node

    def _link(self, type_: str) -> str:
        return self.links.get(type_, "NodeOutput")

    def _annotation(self, class_type: str, ispec: InputSpec) -> str:
        custom = self.custom.get(class_type)
        any_link = custom is not None and custom.input_types
        if ispec.is_combo:
            key = self._literal_combo(class_type, ispec)
            if key is not None:
                base = self.literals[key]
            else:
                kinds = {type(v) for v in ispec.choices or ()} or {str}
                known = [t.__name__ for t in (str, int, float, bool) if t in kinds]
                base = " | ".join(known) if len(known) == len(kinds) else "object"
            if ispec.options.get("multiselect"):
                base = f"{base} | list[{base}]"
            link = "NodeOutput" if any_link else self.links["COMBO"]
            self.imports.add("Param")
            return f"{base} | {link} | Param"
        members = _members(ispec.type)
        if _WILDCARD in members or any_link:
            parts = ["NodeOutput"]
        else:
            parts = [self.links[t] for t in members]
        literal = [_PY_TYPES[t] for t in members if t in _PY_TYPES]
        if _WILDCARD in members:
            literal = ["str", "int", "float", "bool"]
        if len(members) == 1 and members[0] in _PY_TYPES:
            parts = literal + parts
        else:
            parts += literal
        if literal:
            self.imports.add("Param")
            parts.append("Param")
        return " | ".join(parts)

    def _default(self, class_type: str, ispec: InputSpec) -> str | None:
        """The declared default as Python source, when it fits the parameter's type."""
        value = ispec.default
        if not isinstance(value, (str, int, float)):  # bool is an int
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if ispec.is_combo:
            key = self._literal_combo(class_type, ispec)
            if key is not None:
                fits = (type(value).__name__, value) in key
            else:
                fits = isinstance(value, tuple({type(v) for v in ispec.choices or ()} or {str}))
            return _pyvalue(value) if fits else None
        if ispec.type == "INT" and isinstance(value, float) and value.is_integer():
            value = int(value)
        checks: dict[str, tuple[type, ...]] = {
            "INT": (int,),
            "FLOAT": (int, float),
            "STRING": (str,),
            "BOOLEAN": (bool,),
        }
        allowed = checks.get(ispec.type)
        if allowed is None or not isinstance(value, allowed):
            return None
        if isinstance(value, bool) and ispec.type != "BOOLEAN":
            return None
        return _pyvalue(value)

    def _param_doc(self, name: str, ispec: InputSpec, default: str | None) -> str:
        facts: list[str] = []
        if name != ispec.name:
            facts.append(f"input {ispec.name!r}")
        if ispec.is_combo:
            count = len(ispec.choices or ())
            if not count:
                facts.append("a combo the server lists no values for")
            else:
                facts.append(f"one of {count} choice{'s' if count != 1 else ''}")
        else:
            facts.append(ispec.type)
        if not ispec.required:
            facts.append("optional")
        if ispec.default is not None:
            facts.append(f"default {_short(ispec.default)}")
            if default is None and ispec.required:
                facts[-1] += " (not usable here: pass a value)"
        if ispec.min is not None:
            facts.append(f"min {_num(ispec.min)}")
        if ispec.max is not None:
            facts.append(f"max {_num(ispec.max)}")
        if ispec.upload is not None:
            facts.append(f"{ispec.upload} upload: a file name on the server")
        tooltip = ispec.options.get("tooltip")
        text = ", ".join(facts) + "."
        if isinstance(tooltip, str) and tooltip.strip():
            text += " " + tooltip.strip()
        return text

    def _method(self, spec: NodeSpec, name: str) -> _Method:
        outputs = [(out, self._out_link(out)) for out in spec.outputs]
        tuple_name = self.module.claim(f"{name}Outputs") if len(outputs) > 1 else None
        reserved = set(self.links.values()) | {self.any, tuple_name or "", *_PARAM_RESERVED}
        inputs = _unique_inputs(spec)
        pnames = _claim_all(_Names(reserved), [i.name for i in inputs], "in_")
        params: list[_Param] = []
        for ispec, pname in zip(inputs, pnames, strict=True):
            annotation = self._annotation(spec.class_type, ispec)
            default: str | None
            if ispec.required:
                default = self._default(spec.class_type, ispec)
            else:
                annotation += " | None"
                default = "None"
            doc = self._param_doc(pname, ispec, default if ispec.required else None)
            params.append(_Param(pname, ispec, annotation, default, doc))
        fields: list[str] = []
        if tuple_name is not None:
            fnames = _Names(_TUPLE_ATTRS | set(_AMBIGUOUS))
            for out, _ in outputs:
                base = _identifier(out.name, "out_").lstrip("_")
                if not base or base[0].isdigit():
                    base = f"output{out.index}"
                fields.append(fnames.claim(base))
        return _Method(name, spec, params, outputs, tuple_name, fields)

    def _out_link(self, out: OutputSpec) -> str:
        members = [t for t in _members(out.type) if t != _WILDCARD]
        if not members:
            return self.any
        return self._link(out.type if len(members) > 1 else members[0])

    # -------------------------------------------------------------- rendering

    def render(self) -> str:
        self._collect()
        methods = self._name_methods()
        self._name_literals(methods)
        built = [self._method(spec, methods[spec.class_type]) for spec in self.specs]
        body: list[str] = []
        body += self._render_links()
        body += self._render_literals()
        body += self._render_tuples(built)
        body += self._render_nodes(built)
        renamed = {m.name: m.spec.class_type for m in built if m.name != m.spec.class_type}
        body += self._render_class_names(renamed)
        head = self._render_header(len(built))
        return "\n".join(head + body).rstrip("\n") + "\n"

    def _render_header(self, count: int) -> list[str]:
        fingerprint = _fingerprint(self.catalog)
        lines = ['"""Typed node constructors for a ComfyUI node catalog.', ""]
        lines += _wrap(
            f"Generated by ``comfykit codegen`` (comfykit {__version__}) from a catalog of "
            f"{count} node classes. Do not edit: regenerate it when the server's nodes change.",
            0,
        )
        lines.append("")
        lines.append(f"Catalog fingerprint: {fingerprint or 'unknown'}")
        if self.module_doc:
            lines.append("")
            for para in self.module_doc.strip().split("\n\n"):
                lines += _wrap(_clean(para), 0)
                lines.append("")
            lines.pop()
        lines += ["", "Usage::", "", "    nodes = Nodes(Workflow(catalog))"]
        if {"CheckpointLoaderSimple", "CLIPTextEncode"} <= set(self.catalog):
            lines += [
                '    ckpt = nodes.CheckpointLoaderSimple(ckpt_name="model.safetensors")',
                '    positive = nodes.CLIPTextEncode(clip=ckpt.CLIP, text="a lighthouse")',
            ]
        lines += [
            "    prompt = nodes.workflow.to_api()",
            '"""',
            "",
            "from __future__ import annotations",
            "",
        ]
        # ruff's isort order: case-sensitive, so TypeAlias/TypeVar after NamedTuple
        typing = [n for n in _IMPORTED[:5] if n in self.imports or n == "TypeVar"]
        graph = [n for n in _IMPORTED[5:] if n in self.imports] + ["Workflow"]
        lines += [f"from typing import {', '.join(typing)}", ""]
        lines += [f"from comfykit.graph import {', '.join(graph)}", ""]
        value = _pystr(fingerprint) if fingerprint else "None"
        lines += [
            "#: ``NodeCatalog.fingerprint`` of the catalog this module was generated from.",
            f"FINGERPRINT: str | None = {value}",
            "",
            '_L = TypeVar("_L", bound="_Link")',
            "",
            "",
        ]
        return lines

    def _render_links(self) -> list[str]:
        lines = [
            "class _Link(NodeOutput):",
            '    """A typed link, equal to a :class:`NodeOutput` with the same node and index."""',
            "",
            "    #: The ComfyUI type of the output.",
            '    comfy_type: ClassVar[str] = "*"',
            "",
            "    def __eq__(self, other: object) -> bool:",
            "        if isinstance(other, NodeOutput):",
            "            return (self.node_id, self.index) == (other.node_id, other.index)",
            "        return NotImplemented",
            "",
            "    def __hash__(self) -> int:",
            "        return hash((self.node_id, self.index))",
            "",
            "    def __repr__(self) -> str:",
            '        return f"{type(self).__name__}({self.node_id!r}, {self.index})"',
            "",
            "    @classmethod",
            "    def of(cls: type[_L], link: NodeOutput) -> _L:",
            '        """``link`` (e.g. ``node.out(0)`` of an untyped node) as this link type."""',
            "        return cls(link.node_id, link.index)",
            "",
            "",
        ]
        singles = [t for t in sorted(self.links) if t not in self.composites]
        for type_ in singles:
            what = f"``{_clean(type_)}``"
            lines += self._link_class(self.links[type_], ["_Link"], type_, what)
        for type_, members in sorted(self.composites.items()):
            bases = [self.links[m] for m in members]
            what = " or ".join(f"``{_clean(m)}``" for m in members)
            lines += self._link_class(self.links[type_], bases, type_, what)
        bases = [self.links[t] for t in singles] or ["_Link"]
        lines += self._link_class(
            self.any, bases, _WILDCARD, "``*`` (connects to any input)", exploded=True
        )
        lines.append("#: Link class of each ComfyUI type.")
        lines.append("LINK_TYPES: dict[str, type[_Link]] = {")
        for type_ in sorted(self.links):
            lines.append(f"    {_pystr(type_)}: {self.links[type_]},")
        lines += [f'    "*": {self.any},', "}", "", ""]
        return lines

    def _link_class(
        self, name: str, bases: list[str], type_: str, what: str, *, exploded: bool = False
    ) -> list[str]:
        head = f"class {name}({', '.join(bases)}):"
        if exploded or len(head) > _WIDTH:
            lines = [f"class {name}("] + [f"    {b}," for b in bases] + ["):"]
        else:
            lines = [head]
        lines += _wrap(f'"""A link to an output of type {what}."""', 4, 0)
        lines += ["", f"    comfy_type = {_pystr(type_)}", "", ""]
        return lines

    def _render_literals(self) -> list[str]:
        lines: list[str] = []
        for key, name in sorted(self.literals.items(), key=lambda kv: kv[1]):
            values = [_pyvalue(v) for _, v in key]
            one = f"{name}: TypeAlias = Literal[{', '.join(values)}]"
            if len(one) <= _WIDTH:
                lines.append(one)
            else:
                lines.append(f"{name}: TypeAlias = Literal[")
                for (_, value), text in zip(key, values, strict=True):
                    if isinstance(value, str):
                        pieces = _split_str(value, _WIDTH - 5)
                        lines += [f"    {p}" for p in pieces[:-1]]
                        text = pieces[-1]
                    lines.append(f"    {text},")
                lines.append("]")
        return lines + ["", ""] if lines else []

    def _render_tuples(self, methods: list[_Method]) -> list[str]:
        lines: list[str] = []
        hidden: dict[str, str] = {}  # link class -> alias, for fields that hide a link class
        for method in methods:
            if method.tuple_name is None:
                continue
            self.imports.add("NamedTuple")
            lines.append(f"class {method.tuple_name}(NamedTuple):")
            lines += _wrap(f'"""The outputs of ``{_clean(method.spec.class_type)}``."""', 4)
            lines.append("")
            fields: set[str] = set()
            for field_name, (_, link) in zip(method.fields, method.outputs, strict=True):
                if link in fields:  # an earlier field of that name would shadow the class
                    if link not in hidden:
                        hidden[link] = self.module.claim(f"_{link}")
                    link = hidden[link]
                lines.append(f"    {field_name}: {link}")
                fields.add(field_name)
            lines += ["", ""]
        if hidden:
            self.imports.add("TypeAlias")
            aliases = [f"{alias}: TypeAlias = {link}" for link, alias in sorted(hidden.items())]
            lines = [*aliases, "", "", *lines]
        return lines

    def _render_nodes(self, methods: list[_Method]) -> list[str]:
        lines = [
            "class Nodes:",
            '    """Typed constructors for the node classes; each adds a node to ``workflow``.',
            "",
            "    Optional inputs left at ``None`` are not sent; the server uses their defaults.",
            '    """',
            "",
            "    def __init__(self, workflow: Workflow | None = None) -> None:",
            "        self.workflow = workflow if workflow is not None else Workflow()",
            "",
            "    def _add(self, class_type: str, title: str | None, inputs: dict[str, object])"
            " -> Node:",
            "        values = {k: v for k, v in inputs.items() if v is not None}",
            "        return self.workflow.add(class_type, values, title=title)",
        ]
        for method in methods:
            lines.append("")
            lines += self._render_method(method)
        return lines + ["", ""]

    def _render_method(self, m: _Method) -> list[str]:
        spec = m.spec
        if m.tuple_name is not None:
            returns = m.tuple_name
        elif m.outputs:
            returns = m.outputs[0][1]
        else:
            returns = "Node"
        lines = [f"    def {m.name}(", "        self,", "        *,"]
        for p in m.params:
            lines += self._render_param(p)
        lines += ["        title: str | None = None,", f"    ) -> {returns}:"]
        lines += self._render_doc(m)
        call = [_pystr(spec.class_type), "title"]
        entries = [f"{_pystr(p.spec.name)}: {p.name}" for p in m.params]
        one = f"        node = self._add({', '.join(call)}, {{{', '.join(entries)}}})"
        if len(one) <= _WIDTH:
            lines.append(one)
        else:
            lines += ["        node = self._add(", f"            {call[0]},", "            title,"]
            lines.append("            {")
            lines += [f"                {e}," for e in entries]
            lines += ["            },", "        )"]
        if m.tuple_name is not None:
            links = [f"{link}(node.id, {out.index})" for out, link in m.outputs]
            one = f"        return {m.tuple_name}({', '.join(links)})"
            if len(one) <= _WIDTH:
                lines.append(one)
            else:
                lines.append(f"        return {m.tuple_name}(")
                lines += [f"            {link}," for link in links]
                lines.append("        )")
        elif m.outputs:
            out, link = m.outputs[0]
            lines.append(f"        return {link}(node.id, {out.index})")
        else:
            lines.append("        return node")
        return lines

    def _render_param(self, p: _Param) -> list[str]:
        head = [f"        {p.name}: {p.annotation}"]
        tail = "," if p.default is None else f" = {p.default},"
        if len(head[0]) + len(tail) <= _WIDTH:
            return [head[0] + tail]
        if len(head[0]) + 4 > _WIDTH or len(tail) <= 16:  # parenthesise the annotation
            inner = f"            {p.annotation}"
            if len(inner) <= _WIDTH:
                head = [f"        {p.name}: (", inner, "        )"]
            else:
                first, *rest = p.annotation.split(" | ")
                head = [f"        {p.name}: (", f"            {first}"]
                head += [f"            | {member}" for member in rest] + ["        )"]
        if len(head[-1]) + len(tail) <= _WIDTH:
            return [*head[:-1], head[-1] + tail]
        if isinstance(p.spec.default, str):
            pieces = [f"            {s}" for s in _split_str(p.spec.default, _WIDTH - 12)]
        else:
            pieces = [f"            {p.default}"]
        return [*head[:-1], head[-1] + " = (", *pieces, "        ),"]

    def _render_doc(self, m: _Method) -> list[str]:
        spec = m.spec
        flags = [
            label
            for label, on in (
                ("output node", spec.output_node),
                ("deprecated", spec.deprecated),
                ("experimental", spec.experimental),
                ("API node", spec.api_node),
            )
            if on
        ]
        where = f"``{spec.class_type}``"
        if spec.category:
            where += f", {spec.category}"
        if flags:
            where += f"; {', '.join(flags)}"
        summary = _clean(f"{spec.display_name} ({where}).")
        if summary.startswith('"'):  # """" would end the docstring's opening quotes
            summary = " " + summary
        lines = _wrap(f'"""{summary}', 8)
        if spec.description.strip():
            lines.append("")
            for para in spec.description.strip().split("\n\n"):
                lines += _wrap(_clean(para), 8)
        lines += ["", "        Args:"]
        for p in m.params:
            lines += _wrap(f"{p.name}: {_clean(p.doc)}", 12, 4)
        lines += _wrap("title: the node title (``_meta.title``), shown in errors.", 12, 4)
        lines += ["", "        Returns:"]
        if not m.outputs:
            lines += _wrap("The added node (it has no outputs).", 12, 4)
        elif m.tuple_name is not None:
            lines += _wrap(f"``{m.tuple_name}``, a named tuple of:", 12, 4)
        tips = spec.raw.get("output_tooltips")
        tooltips = list(tips) if isinstance(tips, list) else []
        for i, (out, link) in enumerate(m.outputs):
            label = m.fields[i] if m.fields else link
            facts = [out.type]
            if out.name not in (out.type, label):
                facts.append(f"output {out.name!r}")
            if out.is_list:
                facts.append("a list")
            tip = tooltips[out.index] if out.index < len(tooltips) else None
            text = ", ".join(facts) + "."
            if isinstance(tip, str) and tip.strip():
                text += f" {tip.strip()}"
            if m.fields:
                lines += _wrap(_clean(f"{label}: {text}"), 16, 4)
            else:
                lines += _wrap(_clean(text), 12, 4)
        lines.append('        """')
        return lines

    def _render_class_names(self, renamed: Mapping[str, str]) -> list[str]:
        lines = ["#: Method names of ``Nodes`` that differ from the node class they add."]
        if not renamed:
            return [*lines, "_CLASS_NAMES: dict[str, str] = {}"]
        lines.append("_CLASS_NAMES: dict[str, str] = {")
        lines += [f"    {_pystr(k)}: {_pystr(v)}," for k, v in sorted(renamed.items())]
        lines.append("}")
        return lines
