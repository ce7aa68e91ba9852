"""Reading ComfyUI's ``prompt`` / ``workflow`` PNG text chunks."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from comfykit._exceptions import WorkflowError
from comfykit.graph._spec import NodeSpec, parse_node_spec
from comfykit.graph.png_metadata import PngWorkflows, read_png_workflows
from comfykit.graph.ui_format import is_api_prompt, is_ui_workflow, ui_to_api

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}, "_meta": {"title": "é"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}
WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage", "title": "été ✓"}], "links": []}


def png(info: PngInfo | None = None) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def test_text_chunks_as_saveimage_writes_them(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("prompt", json.dumps(PROMPT))
    info.add_text("workflow", json.dumps(WORKFLOW))
    data = png(info)
    expected = PngWorkflows(prompt=PROMPT, workflow=WORKFLOW)
    assert read_png_workflows(data) == expected
    path = tmp_path / "image.png"
    path.write_bytes(data)
    assert read_png_workflows(path) == expected
    assert read_png_workflows(str(path)) == expected
    assert read_png_workflows(io.BytesIO(data)) == expected
    assert read_png_workflows(memoryview(data)) == expected


@pytest.mark.parametrize("zip_", [False, True])
def test_itxt_chunks_plain_and_compressed(zip_: bool) -> None:
    info = PngInfo()
    info.add_itxt("workflow", json.dumps(WORKFLOW, ensure_ascii=False), lang="en", zip=zip_)
    assert read_png_workflows(png(info)) == PngWorkflows(prompt=None, workflow=WORKFLOW)


def test_ztxt_chunk() -> None:
    info = PngInfo()
    info.add_text("prompt", json.dumps(PROMPT), zip=True)
    assert read_png_workflows(png(info)) == PngWorkflows(prompt=PROMPT, workflow=None)


def test_first_chunk_wins_and_other_keys_are_ignored() -> None:
    info = PngInfo()
    info.add_text("parameters", "not json at all")
    info.add_text("prompt", json.dumps(PROMPT))
    info.add_text("prompt", json.dumps({"later": {"class_type": "X"}}))
    assert read_png_workflows(png(info)).prompt == PROMPT


def _codes(err: pytest.ExceptionInfo[WorkflowError]) -> list[str]:
    return [p.code for p in err.value.problems]


def test_not_a_png() -> None:
    with pytest.raises(WorkflowError, match="not a PNG") as info:
        read_png_workflows(b"GIF89a....")
    assert _codes(info) == ["png_metadata"]


def test_png_without_workflow_chunks() -> None:
    with pytest.raises(WorkflowError, match="no ComfyUI") as info:
        read_png_workflows(png())
    assert _codes(info) == ["png_metadata"]


def test_truncated_png() -> None:
    info = PngInfo()
    info.add_text("prompt", json.dumps(PROMPT))
    data = png(info)
    with pytest.raises(WorkflowError, match="truncated"):
        read_png_workflows(data[:-20])


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON list, not an object")],
)
def test_chunk_that_is_not_a_json_object(text: str, message: str) -> None:
    info = PngInfo()
    info.add_text("prompt", text)
    with pytest.raises(WorkflowError, match=message):
        read_png_workflows(png(info))


def _with_chunk(kind: bytes, body: bytes, *, crc: int | None = None) -> bytes:
    data = png()
    iend = data.rindex(b"IEND") - 4
    checksum = zlib.crc32(kind + body) if crc is None else crc
    chunk = struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", checksum)
    return data[:iend] + chunk + data[iend:]


def test_corrupt_chunks() -> None:
    body = b"prompt\0" + json.dumps(PROMPT).encode()
    with pytest.raises(WorkflowError, match="CRC mismatch"):
        read_png_workflows(_with_chunk(b"tEXt", body, crc=0))
    with pytest.raises(WorkflowError, match="cannot decode"):
        read_png_workflows(_with_chunk(b"zTXt", b"prompt\0\0" + b"not zlib data"))
    with pytest.raises(WorkflowError, match="cannot decode"):
        read_png_workflows(_with_chunk(b"iTXt", b"workflow\0\1\0\0\0" + b"not zlib data"))


def test_real_comfyui_saveimage_output() -> None:
    """A PNG saved by ComfyUI 0.3.75's SaveImage, queued with the UI workflow in extra_pnginfo."""
    found = read_png_workflows(FIXTURES / "ui" / "saveimage_0.3.75.png")
    assert found.prompt is not None and is_api_prompt(found.prompt)
    assert found.workflow is not None and is_ui_workflow(found.workflow)
    assert found.workflow == json.loads((FIXTURES / "ui" / "saveimage_workflow.json").read_text())
    data: dict[str, Any] = json.loads((FIXTURES / "object_info_0.3.75.json").read_text())
    catalog: dict[str, NodeSpec] = {k: parse_node_spec(k, v) for k, v in data.items()}
    assert ui_to_api(found.workflow, catalog) == found.prompt
