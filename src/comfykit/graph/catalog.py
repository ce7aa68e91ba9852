"""``NodeCatalog``: the server's node set (``/object_info``) as typed, immutable data.

A catalog answers "which node classes exist and what do they take", validates workflows the way
the server will (:meth:`NodeCatalog.validate`), can be saved as a JSON snapshot and compared with
another catalog (:meth:`NodeCatalog.diff`) to notice when a server's node set drifted.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any

from comfykit._exceptions import InputError, WorkflowError, WorkflowProblem
from comfykit.graph._spec import InputSpec, NodeSpec, parse_node_spec
from comfykit.graph._validate import (
    KNOWN_CUSTOM_VALIDATION,
    CustomValidation,
    Validator,
    fmt_value,
    suggest,
)

__all__ = ["CatalogDiff", "ClassChange", "NodeCatalog"]

_SNAPSHOT_FORMAT = "comfykit.catalog/1"
_FINGERPRINT_KEYS = ("input", "input_order", "output", "output_node")


@dataclass(frozen=True)
class ClassChange:
    """How one node class differs between two catalogs (``old`` → ``new``).

    Attributes:
        class_type: the class.
        added_inputs / removed_inputs: input names only one side declares.
        changed_inputs: ``name -> (old, new)`` for inputs both declare differently.
        old_outputs / new_outputs: the output types on each side (equal when unchanged).
        output_node: ``(old, new)`` when the output-node flag changed, else ``None``.
    """

    class_type: str
    added_inputs: tuple[str, ...] = ()
    removed_inputs: tuple[str, ...] = ()
    changed_inputs: Mapping[str, tuple[InputSpec, InputSpec]] = field(default_factory=dict)
    old_outputs: tuple[str, ...] = ()
    new_outputs: tuple[str, ...] = ()
    output_node: tuple[bool, bool] | None = None

    def __bool__(self) -> bool:
        return bool(
            self.added_inputs
            or self.removed_inputs
            or self.changed_inputs
            or self.old_outputs != self.new_outputs
            or self.output_node
        )

    def lines(self) -> list[str]:
        """One human-readable line per difference."""
        out = [f"+ input {name!r}" for name in self.added_inputs]
        out += [f"- input {name!r}" for name in self.removed_inputs]
        for name, (old, new) in self.changed_inputs.items():
            out.append(f"~ input {name!r}: " + "; ".join(_input_changes(old, new)))
        if self.old_outputs != self.new_outputs:
            out.append(f"~ outputs: {list(self.old_outputs)} -> {list(self.new_outputs)}")
        if self.output_node:
            out.append(f"~ output node: {self.output_node[0]} -> {self.output_node[1]}")
        return out


def _input_changes(old: InputSpec, new: InputSpec) -> list[str]:
    changes = []
    if old.type != new.type:
        changes.append(f"type {old.type} -> {new.type}")
    if old.required != new.required:
        changes.append("now required" if new.required else "now optional")
    if old.choices != new.choices:
        before = set(map(repr, old.choices or ()))
        after = set(map(repr, new.choices or ()))
        added, removed = sorted(after - before), sorted(before - after)
        parts = []
        if added:
            parts.append(f"+{len(added)} ({_few(added)})")
        if removed:
            parts.append(f"-{len(removed)} ({_few(removed)})")
        changes.append("choices " + " ".join(parts) if parts else "choices reordered")
    keys = sorted(set(old.options) | set(new.options), key=str)
    for key in keys:
        if key == "options" and (old.choices != new.choices):
            continue
        a, b = old.options.get(key, None), new.options.get(key, None)
        if a != b:
            if key in ("tooltip", "description"):
                changes.append(f"{key} changed")
            else:
                changes.append(f"{key} {fmt_value(a, 30)} -> {fmt_value(b, 30)}")
    return changes or ["spec changed"]


def _few(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... {len(items) - n} more" if len(items) > n else "")


@dataclass(frozen=True)
class CatalogDiff:
    """What changed from one catalog (``old``) to another (``new``).

    Attributes:
        added: classes only ``new`` has.
        removed: classes only ``old`` has.
        changed: per class present in both, its :class:`ClassChange`.
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: Mapping[str, ClassChange] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def __str__(self) -> str:
        if not self:
            return "no differences"
        lines = [
            f"{len(self.added)} added, {len(self.removed)} removed, "
            f"{len(self.changed)} changed node classes"
        ]
        lines += [f"+ {name}" for name in self.added]
        lines += [f"- {name}" for name in self.removed]
        for name, change in self.changed.items():
            lines.append(f"~ {name}")
            lines += [f"    {line}" for line in change.lines()]
        return "\n".join(lines)


class NodeCatalog(Mapping[str, NodeSpec]):
    """An immutable mapping ``class_type -> NodeSpec`` built from ``/object_info``.

    ``catalog["KSampler"]`` is the spec, ``"KSampler" in catalog`` tests for a class, and
    :meth:`validate` checks a workflow with the server's rules before it is sent.

    Args:
        object_info: the ``GET /object_info`` answer (copied; the catalog never changes).
        custom_validation: which classes validate some inputs themselves
            (defaults to :data:`KNOWN_CUSTOM_VALIDATION`, ComfyUI's own nodes).
    """

    __slots__ = ("_custom", "_fingerprint", "_info", "_specs", "_validator")

    def __init__(
        self,
        object_info: Mapping[str, Any],
        *,
        custom_validation: Mapping[str, CustomValidation] | None = None,
    ) -> None:
        if not isinstance(object_info, Mapping):
            raise InputError(
                f"object_info must be a mapping of class name to spec, "
                f"not {type(object_info).__name__}"
            )
        self._info: dict[str, Any] = copy.deepcopy(dict(object_info))
        self._specs: dict[str, NodeSpec] = {
            str(name): parse_node_spec(str(name), info)
            for name, info in self._info.items()
            if isinstance(info, Mapping)
        }
        self._custom: dict[str, CustomValidation] = dict(
            KNOWN_CUSTOM_VALIDATION if custom_validation is None else custom_validation
        )
        self._validator = Validator(self._specs, self._custom)
        self._fingerprint: str | None = None

    @classmethod
    def from_object_info(
        cls,
        data: Mapping[str, Any],
        *,
        custom_validation: Mapping[str, CustomValidation] | None = None,
    ) -> NodeCatalog:
        """Build a catalog from a ``GET /object_info`` answer."""
        return cls(data, custom_validation=custom_validation)

    # ------------------------------------------------------------------ Mapping

    def __getitem__(self, class_type: str) -> NodeSpec:
        try:
            return self._specs[class_type]
        except KeyError:
            hint = suggest(class_type, self._specs)
            more = f"; did you mean {' or '.join(map(repr, hint))}?" if hint else ""
            raise KeyError(f"unknown node class {class_type!r}{more}") from None

    def get(self, class_type: str, default: Any = None) -> Any:
        """The spec of ``class_type``, or ``default`` (no suggestion lookup on a miss)."""
        return self._specs.get(class_type, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, class_type: object) -> bool:
        return class_type in self._specs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeCatalog):
            return NotImplemented
        return self._info == other._info and self._custom == other._custom

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<NodeCatalog {len(self)} classes, fingerprint {self.fingerprint[:12]}>"

    # ------------------------------------------------------------------ data

    @property
    def object_info(self) -> dict[str, Any]:
        """A copy of the raw ``/object_info`` the catalog was built from."""
        return copy.deepcopy(self._info)

    @property
    def custom_validation(self) -> Mapping[str, CustomValidation]:
        """Which classes validate inputs themselves (see :class:`CustomValidation`)."""
        return dict(self._custom)

    @property
    def output_nodes(self) -> tuple[str, ...]:
        """Classes marked ``output_node`` (a prompt needs at least one)."""
        return tuple(name for name, spec in self._specs.items() if spec.output_node)

    @property
    def fingerprint(self) -> str:
        """A stable SHA-256 of the class names and their inputs and outputs.

        Two catalogs with the same fingerprint validate workflows identically. Display names,
        categories and descriptions are left out; combo choices (model file lists) are in.
        """
        if self._fingerprint is None:
            essence = {
                name: {k: info.get(k) for k in _FINGERPRINT_KEYS}
                for name, info in sorted(self._info.items())
                if isinstance(info, Mapping)
            }
            text = json.dumps(essence, sort_keys=True, separators=(",", ":"), default=repr)
            self._fingerprint = hashlib.sha256(text.encode()).hexdigest()
        return self._fingerprint

    def suggest(self, class_type: str, n: int = 3) -> list[str]:
        """Class names close to ``class_type`` (for "did you mean" messages)."""
        return suggest(class_type, self._specs, n)

    # ------------------------------------------------------------------ snapshots

    def to_json(self) -> dict[str, Any]:
        """The snapshot written by :meth:`save`: format tag, fingerprint, raw object_info."""
        snapshot: dict[str, Any] = {
            "format": _SNAPSHOT_FORMAT,
            "fingerprint": self.fingerprint,
            "object_info": self.object_info,
        }
        if self._custom != dict(KNOWN_CUSTOM_VALIDATION):
            snapshot["custom_validation"] = {
                name: cv.to_json() for name, cv in sorted(self._custom.items())
            }
        return snapshot

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeCatalog:
        """A catalog from :meth:`to_json` output, or from a plain ``/object_info`` dump."""
        if data.get("format") != _SNAPSHOT_FORMAT:
            return cls(data)
        custom = data.get("custom_validation")
        validation = (
            None
            if custom is None
            else {name: CustomValidation.from_json(cv) for name, cv in custom.items()}
        )
        return cls(data["object_info"], custom_validation=validation)

    def save(self, path: str | PathLike[str]) -> None:
        """Write a JSON snapshot; :meth:`load` gives back an equal catalog."""
        text = json.dumps(self.to_json(), indent=1, sort_keys=True, ensure_ascii=False)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | PathLike[str]) -> NodeCatalog:
        """Read a snapshot written by :meth:`save` (or a saved ``/object_info`` answer)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read a node catalog from {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError(f"{path} does not hold a node catalog (top level is not an object)")
        return cls.from_json(data)

    # ------------------------------------------------------------------ drift

    def diff(self, other: NodeCatalog, *, choices: bool = True) -> CatalogDiff:
        """What changed from this catalog to ``other`` (e.g. a saved snapshot → the live server).

        ``choices=False`` ignores changes to combo choices alone: many combos list files
        (checkpoints, input images) and change whenever a file is added.
        """
        added = tuple(sorted(set(other) - set(self)))
        removed = tuple(sorted(set(self) - set(other)))
        changed: dict[str, ClassChange] = {}
        for name in sorted(set(self) & set(other)):
            change = _class_change(self._specs[name], other._specs[name], choices=choices)
            if change:
                changed[name] = change
        return CatalogDiff(added, removed, changed)

    # ------------------------------------------------------------------ validation

    def problems(
        self,
        prompt: Mapping[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        strict: bool = False,
    ) -> list[WorkflowProblem]:
        """Every problem the server would find in ``prompt``, without raising.

        Args:
            prompt: an API-format prompt (what ``POST /prompt`` takes; its inputs may hold
                :class:`~comfykit.graph.Param` values). For a :class:`~comfykit.graph.Workflow`,
                call its :meth:`~comfykit.graph.Workflow.problems` with ``catalog=``.
            params: values for the prompt's :class:`~comfykit.graph.Param` inputs.
            strict: also check what the 0.3.75 server lets through: every node (not only the
                outputs and their ancestors), unknown literal input names, hidden inputs,
                ``"COMBO"`` membership, literals in link-only inputs and strings in BOOLEAN
                inputs.
        """
        given: object = prompt  # callers without types pass anything; a Workflow gets a hint
        if not isinstance(given, Mapping) and hasattr(given, "to_api"):
            raise InputError(
                f"NodeCatalog checks an API-format mapping, got {type(given).__name__}; for a "
                "Workflow call workflow.problems(catalog=...) or workflow.validate(catalog=...)"
            )
        return self._validator.check_prompt(prompt, params=params, strict=strict)

    def validate(
        self,
        prompt: Mapping[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        strict: bool = False,
    ) -> None:
        """Raise one :class:`~comfykit.WorkflowError` listing every :meth:`problems` entry."""
        found = self.problems(prompt, params=params, strict=strict)
        if found:
            raise WorkflowError(found)

    @property
    def validator(self) -> Validator:
        """The rule engine (used by the workflow builder for immediate checks)."""
        return self._validator


def _comparable(spec: InputSpec, choices: bool) -> InputSpec:
    if choices or spec.choices is None:
        return spec
    options = {k: v for k, v in spec.options.items() if k not in ("options", "default")}
    return replace(spec, choices=(), options=options)


def _class_change(old: NodeSpec, new: NodeSpec, *, choices: bool = True) -> ClassChange:
    old_inputs = {spec.name: spec for spec in old.inputs}
    new_inputs = {spec.name: spec for spec in new.inputs}
    changed = {
        name: (old_inputs[name], new_inputs[name])
        for name in old_inputs
        if name in new_inputs
        and _comparable(old_inputs[name], choices) != _comparable(new_inputs[name], choices)
    }
    return ClassChange(
        old.class_type,
        added_inputs=tuple(n for n in new_inputs if n not in old_inputs),
        removed_inputs=tuple(n for n in old_inputs if n not in new_inputs),
        changed_inputs=changed,
        old_outputs=tuple(o.type for o in old.outputs),
        new_outputs=tuple(o.type for o in new.outputs),
        output_node=(old.output_node, new.output_node)
        if old.output_node != new.output_node
        else None,
    )
