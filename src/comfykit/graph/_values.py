"""The two kinds of input value that are not plain literals: links and run-time parameters.

Both are small frozen objects, so they can never be confused with a literal list (a literal list
in the API format is itself read as a link by the server; see docs/comfyui-api.md §5.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["MISSING", "NodeOutput", "Param", "as_link", "link_to_api"]


class _Missing(enum.Enum):
    MISSING = enum.auto()

    def __repr__(self) -> str:
        return "MISSING"


#: Marks a :class:`Param` without a default value.
MISSING: Final = _Missing.MISSING


@dataclass(frozen=True)
class NodeOutput:
    """A link: output ``index`` of node ``node_id``.

    Pass it as an input value to connect two nodes; ``to_api`` writes it as
    ``["<node_id>", <index>]``.
    """

    node_id: str
    index: int
    #: The workflow the node belongs to (set by ``Node.out``), so that a link into another
    #: workflow is named as such; not part of equality.
    workflow: Any = field(default=None, compare=False, repr=False)

    def __deepcopy__(self, memo: dict[int, Any]) -> NodeOutput:
        # A copied link belongs to the copy's workflow, not to this one's: drop the reference
        # (and never deep-copy a whole workflow along with one link).
        return NodeOutput(self.node_id, self.index)

    def to_api(self) -> list[Any]:
        """The API-format link ``[node_id, index]``."""
        return [self.node_id, self.index]

    def __repr__(self) -> str:
        return f"NodeOutput({self.node_id!r}, {self.index})"


@dataclass(frozen=True)
class Param:
    """A named value bound when the workflow is turned into a prompt.

    ``wf.add("KSampler", seed=Param("seed", default=0), ...)`` leaves the seed open;
    ``wf.to_api(params={"seed": 3})`` fills it in. A parameter without a default must be bound,
    otherwise ``to_api`` raises a :class:`~comfykit.WorkflowError` with code ``unbound_param``.
    The same parameter may feed several inputs.

    Attributes:
        name: the name used in ``params={...}``.
        default: the value used when the parameter is not bound (:data:`MISSING` for none).
        description: free text for people and generated docs.
    """

    name: str
    default: Any = MISSING
    description: str = ""

    @property
    def has_default(self) -> bool:
        """True when the parameter has a default value."""
        return self.default is not MISSING

    def __repr__(self) -> str:
        parts = [repr(self.name)]
        if self.has_default:
            parts.append(f"default={self.default!r}")
        if self.description:
            parts.append(f"description={self.description!r}")
        return f"Param({', '.join(parts)})"


def as_link(value: Any) -> NodeOutput | None:
    """``value`` as a :class:`NodeOutput` when it is one or a well-formed API link, else ``None``.

    A well-formed API link is a two-item list or tuple of a string node id and an int index.
    """
    if isinstance(value, NodeOutput):
        return value
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    ):
        return NodeOutput(value[0], value[1])
    return None


def link_to_api(value: Any) -> Any:
    """``value`` with a :class:`NodeOutput` replaced by its API-format list."""
    if isinstance(value, NodeOutput):
        return value.to_api()
    return value
