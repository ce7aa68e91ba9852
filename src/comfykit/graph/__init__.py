"""Build, load, edit and validate ComfyUI workflows (API format) against a node catalog."""

from comfykit.graph._spec import InputSpec, NodeSpec, OutputSpec
from comfykit.graph._validate import KNOWN_CUSTOM_VALIDATION, CustomValidation
from comfykit.graph._values import MISSING, NodeOutput, Param
from comfykit.graph.catalog import CatalogDiff, ClassChange, NodeCatalog
from comfykit.graph.workflow import Node, NodeRef, Workflow

__all__ = [
    "KNOWN_CUSTOM_VALIDATION",
    "MISSING",
    "CatalogDiff",
    "ClassChange",
    "CustomValidation",
    "InputSpec",
    "Node",
    "NodeCatalog",
    "NodeOutput",
    "NodeRef",
    "NodeSpec",
    "OutputSpec",
    "Param",
    "Workflow",
]
