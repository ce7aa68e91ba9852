"""The workflow templates ComfyUI ships (UI format): the corpus of the UI-conversion tests."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfykit.graph._spec import NodeSpec, parse_node_spec

FIXTURES = Path(__file__).parent / "fixtures"


def template_dirs() -> list[Path]:
    """Where the ``comfyui_workflow_templates_media_*`` packages are installed.

    ``$COMFYKIT_TEMPLATES_DIR`` (a site-packages folder or a templates folder), the comfykit
    test environment's virtualenv, or this interpreter's site-packages.
    """
    roots: list[Path] = []
    explicit = os.environ.get("COMFYKIT_TEMPLATES_DIR")
    if explicit:
        roots.append(Path(explicit))
    else:
        from comfykit.testing import COMFYUI_VERSION, default_cache_dir

        venv = default_cache_dir() / f"comfyui-{COMFYUI_VERSION}" / "venv"
        roots += [Path(p) for p in glob.glob(str(venv / "lib" / "python*" / "site-packages"))]
        for media in ("image", "video", "api", "other"):
            spec = importlib.util.find_spec(f"comfyui_workflow_templates_media_{media}")
            if spec is not None and spec.origin is not None:
                roots.append(Path(spec.origin).parent.parent)
    dirs: list[Path] = []
    for root in roots:
        if root.name == "templates" and root.is_dir():
            dirs.append(root)
        dirs += sorted(root.glob("comfyui_workflow_templates_media_*/templates"))
    return list(dict.fromkeys(dirs))


def templates() -> list[Path]:
    files: dict[str, Path] = {}
    for folder in template_dirs():
        for path in sorted(folder.glob("*.json")):
            if not path.name.startswith("index"):
                files.setdefault(path.name, path)
    return sorted(files.values(), key=lambda p: p.name)


def unknown_types(ui: Mapping[str, Any], catalog: Mapping[str, NodeSpec]) -> set[str]:
    """Classes of active nodes that the catalog lacks (virtual and subgraph types excluded)."""
    defs = ui.get("definitions") or {}
    graphs = [ui, *(defs.get("subgraphs") or [])]
    known = {str(g.get("id")) for g in graphs[1:]} | {
        "Note",
        "MarkdownNote",
        "Reroute",
        "PrimitiveNode",
    }
    return {
        str(n["type"])
        for g in graphs
        for n in g.get("nodes") or []
        if n.get("mode") not in (2, 4) and n["type"] not in known and n["type"] not in catalog
    }


def snapshot_catalog() -> dict[str, NodeSpec]:
    """The node catalog of the 0.3.75 test server (``tests/fixtures/object_info_0.3.75.json``)."""
    data = json.loads((FIXTURES / "object_info_0.3.75.json").read_text())
    return {k: parse_node_spec(k, v) for k, v in data.items()}


TEMPLATES = templates()
