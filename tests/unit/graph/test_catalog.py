"""NodeCatalog: mapping behaviour, snapshots, fingerprint and drift diffs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from comfykit._exceptions import InputError
from comfykit.graph import (
    KNOWN_CUSTOM_VALIDATION,
    CatalogDiff,
    CustomValidation,
    NodeCatalog,
    NodeSpec,
)

FIXTURE = Path(__file__).parents[2] / "fixtures" / "object_info_0.3.75.json"
RAW: dict[str, Any] = json.loads(FIXTURE.read_text())
CATALOG = NodeCatalog.from_object_info(RAW)


def test_is_a_mapping_of_specs() -> None:
    assert isinstance(CATALOG, Mapping)
    assert len(CATALOG) == 567
    assert "KSampler" in CATALOG
    assert "KSamplerX" not in CATALOG
    number: object = 42
    assert number not in CATALOG
    spec = CATALOG["KSampler"]
    assert isinstance(spec, NodeSpec)
    assert spec.output(0) is not None and spec.output(0).type == "LATENT"  # type: ignore[union-attr]
    assert set(CATALOG) == set(RAW)
    assert CATALOG.get("nope") is None
    assert CATALOG.get("KSampler") is spec


def test_missing_class_error_suggests_names() -> None:
    with pytest.raises(KeyError, match="did you mean 'KSampler'"):
        CATALOG["KSamplr"]
    assert CATALOG.suggest("emptyimage")[0] == "EmptyImage"


def test_output_nodes() -> None:
    outputs = CATALOG.output_nodes
    assert {"SaveImage", "PreviewImage", "PreviewAny"} <= set(outputs)
    assert "ImageInvert" not in outputs


def test_catalog_is_immutable_and_copies_its_input() -> None:
    raw = json.loads(FIXTURE.read_text())
    catalog = NodeCatalog.from_object_info(raw)
    before = catalog.fingerprint
    raw["EmptyImage"]["input"]["required"]["width"][1]["max"] = 1
    del raw["KSampler"]
    assert "KSampler" in catalog
    catalog.object_info["EmptyImage"]["output"] = []
    assert catalog.fingerprint == before
    assert catalog.object_info == RAW
    assert catalog == CATALOG
    with pytest.raises(TypeError):
        hash(catalog)


def test_rejects_non_mapping_input() -> None:
    with pytest.raises(InputError):
        NodeCatalog.from_object_info([])  # type: ignore[arg-type]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    CATALOG.save(path)
    loaded = NodeCatalog.load(path)
    assert loaded == CATALOG
    assert loaded.object_info == RAW
    assert loaded.fingerprint == CATALOG.fingerprint
    assert loaded.custom_validation == dict(KNOWN_CUSTOM_VALIDATION)
    saved = json.loads(path.read_text())
    assert saved["format"] == "comfykit.catalog/1"
    assert saved["fingerprint"] == CATALOG.fingerprint
    assert "custom_validation" not in saved
    path2 = tmp_path / "again.json"
    loaded.save(path2)
    assert path2.read_text() == path.read_text()


def test_custom_validation_survives_a_snapshot(tmp_path: Path) -> None:
    custom = {
        **KNOWN_CUSTOM_VALIDATION,
        "MyNode": CustomValidation(frozenset({"a", "b"}), input_types=True),
    }
    catalog = NodeCatalog.from_object_info(RAW, custom_validation=custom)
    assert catalog != CATALOG
    catalog.save(tmp_path / "c.json")
    loaded = NodeCatalog.load(tmp_path / "c.json")
    assert loaded == catalog
    assert loaded.custom_validation["MyNode"] == custom["MyNode"]


def test_load_accepts_a_plain_object_info_dump() -> None:
    assert NodeCatalog.load(FIXTURE) == CATALOG


def test_load_errors_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        NodeCatalog.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="not an object"):
        NodeCatalog.load(bad)
    bad.write_text("{nope")
    with pytest.raises(InputError, match="cannot read"):
        NodeCatalog.load(bad)


def _edited(edit: Any) -> NodeCatalog:
    raw = json.loads(FIXTURE.read_text())
    edit(raw)
    return NodeCatalog.from_object_info(raw)


def test_fingerprint_is_stable_and_order_independent() -> None:
    shuffled = dict(reversed(list(RAW.items())))
    assert NodeCatalog.from_object_info(shuffled).fingerprint == CATALOG.fingerprint
    assert len(CATALOG.fingerprint) == 64
    assert CATALOG.fingerprint == NodeCatalog.from_object_info(RAW).fingerprint


def test_fingerprint_follows_inputs_and_outputs_only() -> None:
    def cosmetic(raw: dict[str, Any]) -> None:
        raw["EmptyImage"]["display_name"] = "Blank"
        raw["EmptyImage"]["description"] = "changed"

    def bound(raw: dict[str, Any]) -> None:
        raw["EmptyImage"]["input"]["required"]["width"][1]["max"] = 8

    def models(raw: dict[str, Any]) -> None:
        raw["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0].append("a.ckpt")

    assert _edited(cosmetic).fingerprint == CATALOG.fingerprint
    assert _edited(bound).fingerprint != CATALOG.fingerprint
    assert _edited(models).fingerprint != CATALOG.fingerprint


def test_diff_of_equal_catalogs_is_empty() -> None:
    diff = CATALOG.diff(NodeCatalog.load(FIXTURE))
    assert diff == CatalogDiff()
    assert not diff
    assert str(diff) == "no differences"


def test_diff_reports_added_removed_and_changed() -> None:
    def drift(raw: dict[str, Any]) -> None:
        del raw["ImageInvert"]
        raw["MyNewNode"] = {"input": {"required": {}}, "output": [], "output_node": True}
        width = raw["EmptyImage"]["input"]["required"]["width"][1]
        width["max"] = 4096
        raw["EmptyImage"]["input"]["required"]["alpha"] = ["FLOAT", {"default": 1.0}]
        del raw["EmptyImage"]["input"]["required"]["color"]
        raw["ImageScale"]["input"]["required"]["upscale_method"][0].remove("lanczos")
        raw["ImageScale"]["input"]["required"]["upscale_method"][0].append("nearest")
        raw["ImageBlur"]["output"] = ["IMAGE", "MASK"]
        raw["PreviewAny"]["output_node"] = False

    new = _edited(drift)
    diff = CATALOG.diff(new)
    assert diff
    assert diff.added == ("MyNewNode",)
    assert diff.removed == ("ImageInvert",)
    assert set(diff.changed) == {"EmptyImage", "ImageScale", "ImageBlur", "PreviewAny"}
    empty = diff.changed["EmptyImage"]
    assert empty.added_inputs == ("alpha",)
    assert empty.removed_inputs == ("color",)
    old_width, new_width = empty.changed_inputs["width"]
    assert (old_width.max, new_width.max) == (16384, 4096)
    assert diff.changed["ImageBlur"].new_outputs == ("IMAGE", "MASK")
    assert diff.changed["PreviewAny"].output_node == (True, False)
    text = str(diff)
    assert text.splitlines()[0] == "1 added, 1 removed, 4 changed node classes"
    assert "+ MyNewNode" in text
    assert "- ImageInvert" in text
    assert "~ input 'width': max 16384 -> 4096" in text
    assert "+ input 'alpha'" in text
    assert "- input 'color'" in text
    assert "~ input 'upscale_method': choices +1 ('nearest') -1 ('lanczos')" in text
    assert "~ outputs: ['IMAGE'] -> ['IMAGE', 'MASK']" in text
    assert "~ output node: True -> False" in text
    reverse = new.diff(CATALOG)
    assert reverse.added == diff.removed
    assert reverse.removed == diff.added


def test_diff_notices_type_and_requiredness_changes() -> None:
    def change(raw: dict[str, Any]) -> None:
        spec = raw["ImageBlur"]["input"]["required"].pop("sigma")
        raw["ImageBlur"]["input"]["optional"] = {"sigma": ["INT", spec[1]]}

    (line,) = CATALOG.diff(_edited(change)).changed["ImageBlur"].lines()
    assert line == "~ input 'sigma': type FLOAT -> INT; now optional"


def test_repr() -> None:
    assert repr(CATALOG).startswith("<NodeCatalog 567 classes, fingerprint ")
