"""UI-format conversion of every workflow template ComfyUI ships, offline (no server).

The templates come from the ComfyUI installation of the shared cache (``make comfyui``), so
this lives with the integration tests; ``test_ui_corpus.py`` submits the same corpus to the
server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from comfykit._exceptions import WorkflowError
from comfykit.graph._spec import NodeSpec
from comfykit.graph.ui_format import is_api_prompt, is_ui_workflow, ui_to_api
from tests.templates import TEMPLATES, snapshot_catalog, unknown_types


@pytest.fixture(scope="module")
def catalog() -> dict[str, NodeSpec]:
    return snapshot_catalog()


@pytest.mark.skipif(not TEMPLATES, reason="workflow template packages not found")
@pytest.mark.parametrize("path", TEMPLATES, ids=[p.name for p in TEMPLATES])
def test_template_converts(path: Path, catalog: dict[str, NodeSpec]) -> None:
    ui = json.loads(path.read_text())
    assert is_ui_workflow(ui)
    unknown = unknown_types(ui, catalog)
    if unknown:
        with pytest.raises(WorkflowError) as info:
            ui_to_api(ui, catalog)
        assert all("not in the server's catalog" in p.reason for p in info.value.problems)
        assert {p.class_type for p in info.value.problems} == unknown
        return  # refusing it, naming every missing class, is the expected behaviour
    api = ui_to_api(ui, catalog)
    assert is_api_prompt(api)
    assert any(catalog[n["class_type"]].output_node for n in api.values())
    for node_id, entry in api.items():
        spec = catalog[entry["class_type"]]
        for name, value in entry["inputs"].items():
            if isinstance(value, list):
                assert value[0] in api, (node_id, name, value)
                source = catalog[api[value[0]]["class_type"]]
                assert 0 <= value[1] < len(source.outputs), (node_id, name, value)
            declared = spec.input(name)
            if declared is not None and not declared.is_widget:
                assert isinstance(value, list), (node_id, name, value)


@pytest.mark.skipif(
    not TEMPLATES and os.environ.get("CI", "").lower() != "true",
    reason="workflow template packages not found",
)  # under CI the corpus must be there: an empty one fails below
def test_template_corpus_counts(catalog: dict[str, NodeSpec]) -> None:
    converted = skipped = 0
    failed: list[str] = []
    for path in TEMPLATES:
        ui = json.loads(path.read_text())
        if unknown_types(ui, catalog):
            skipped += 1
            continue
        try:
            ui_to_api(ui, catalog)
        except WorkflowError as err:
            failed.append(f"{path.name}: {err}")
        else:
            converted += 1
    assert not failed, "\n".join(failed)
    assert (converted, skipped) == (175, 13)  # the pinned templates (docs/ui-workflows.md)
