"""Every example runs against the session's server (small sizes); the notebook runs headless."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMALL = ["--width", "64", "--height", "64", "--steps", "2"]


def _run_example(name: str, args: list[str], url: str, out: Path) -> str:
    env = {**os.environ, "COMFYUI_URL": url, "COMFYKIT_OUT": str(out)}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=env,
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def test_every_example_is_tested() -> None:
    tested = {"quickstart.py", "async_batch.py", "img2img.py", "notebook.ipynb"}
    present = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".ipynb")}
    assert present == tested


def test_quickstart(comfyui_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout = _run_example("quickstart.py", [*SMALL, "--prompt", "a red fox"], comfyui_url, out)
    assert stdout.startswith("ComfyUI 0.3.75 at ")
    (line,) = [x for x in stdout.splitlines() if x.startswith("wrote ")]
    path = Path(line.split()[1])
    assert path.parent == out
    with Image.open(path) as img:
        assert img.size == (64, 64)


def test_async_batch(comfyui_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout = _run_example("async_batch.py", SMALL, comfyui_url, out)
    lines = stdout.splitlines()
    assert [x.split(":")[0] for x in lines[:4]] == ["item 0", "item 1", "item 2 failed", "item 3"]
    upscaled = sorted(out.glob("upscaled*.png"))
    assert len(upscaled) == 3
    with Image.open(upscaled[0]) as img:
        assert img.size == (128, 128)


def test_img2img(comfyui_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout = _run_example("img2img.py", SMALL, comfyui_url, out)
    assert "img2img: wrote" in stdout and "inpaint: wrote" in stdout
    assert "upscale: wrote" in stdout and "(128, 128)" in stdout
    source = tmp_path / "photo.png"
    Image.new("RGB", (96, 64), (90, 140, 200)).save(source)
    stdout = _run_example("img2img.py", ["--image", str(source), "--steps", "2"], comfyui_url, out)
    assert "(96, 64)" in stdout and "(192, 128)" in stdout


def test_notebook(comfyui_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbclient  # dev dependencies: missing ones fail the test, they do not skip it
    import nbformat

    monkeypatch.setenv("COMFYUI_URL", comfyui_url)
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",  # jupyter_client starts it with this interpreter (sys.executable)
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # the result, the preview, the grid, the batch
    assert any("text/html" in o.get("data", {}) for o in outputs)  # GenerationResult's HTML
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "seed 42, 64x64" in streams
    assert "['1/3', '2/3', '3/3']" in streams
    assert "item 2: seed 3" in streams
