"""codegen: typed node stubs, checked with mypy --strict and ruff, and run for real."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import mypy.api
import pytest

from comfykit.graph import Node, NodeCatalog, NodeOutput, NodeSpec, Param, Workflow
from comfykit.graph.codegen import render_stubs, write_stubs

ROOT = Path(__file__).parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "object_info_0.3.75.json"
CKPT = "sd15.safetensors"


def _fixture_catalog() -> NodeCatalog:
    raw = json.loads(FIXTURE.read_text(encoding="utf-8"))
    for info in raw.values():  # a server with one checkpoint lists it in every loader
        ckpt_name = info["input"].get("required", {}).get("ckpt_name")
        if ckpt_name and isinstance(ckpt_name[0], list):
            ckpt_name[0].append(CKPT)
    return NodeCatalog.from_object_info(raw)


CATALOG = _fixture_catalog()

#: A catalog of awkward names: keywords, clashes with generated names, non-identifiers.
ODD_INFO: dict[str, Any] = {
    "class": {
        "input": {
            "required": {
                "title": ["STRING", {"default": 'say "hi"\\n\n' + "long words " * 12}],
                "self": ["INT", {"default": 3, "min": 0, "max": 9}],
                "l": ["BOOLEAN", {"default": True}],
                "in put": ["FLOAT", {"default": 0.5}],
                "in_put": ["FLOAT", {"default": 1}],
                "MODEL": ["MODEL"],
                "node": [["a", "b"], {"default": "z", "tooltip": 'has """ and \\ and \x00'}],
            },
            "optional": {
                "floats": [[0.5, 1.5]],
                "mixed": [["x", 1, True]],
                "many": [["m1", "m2", "m3", "m4", "m5"]],
                "multi": ["COMBO", {"options": ["p", "q"], "multiselect": True}],
                "anything": ["*"],
            },
        },
        "output": ["A,B", "*", "my-type", "INT", "INT"],
        "output_name": ["index", "_private", "3d out", "count", "count"],
        "output_node": False,
    },
    "2x Upscale!": {
        "input": {"required": {"a": ["A"], "b": ["B"], "any": ["my-type,IMAGE"]}},
        "output": ["IMAGE"],
        "output_name": ["IMAGE"],
        "output_node": False,
    },
    "IMAGE": {
        "input": {"required": {"images": ["IMAGE"], "int": ["int"]}},
        "output": ["int"],
        "output_node": True,
        "display_name": "Clashes with a type",
    },
    "Nodes": {"input": {}, "output": [], "output_node": True},
    "Loader": {"input": {}, "output": ["MODEL"], "output_node": False},
}
ODD = NodeCatalog.from_object_info(ODD_INFO)
#: A hand-made spec: no raw ``/object_info``, so no fingerprint.
BARE = {"Bare": NodeSpec("Bare", "Bare", "", "", True, (), ())}

TXT2IMG = """
    from comfykit.graph import Param, Workflow
    from typed_nodes import LATENT, Nodes


    def build(wf: Workflow) -> Workflow:
        n = Nodes(wf)
        ckpt = n.CheckpointLoaderSimple(ckpt_name="sd15.safetensors")
        positive = n.CLIPTextEncode(clip=ckpt.CLIP, text="a lighthouse at dusk")
        negative = n.CLIPTextEncode(clip=ckpt.CLIP, text="blurry")
        latent = n.EmptyLatentImage(width=768)
        samples: LATENT = n.KSampler(
            model=ckpt.MODEL,
            positive=positive,
            negative=negative,
            latent_image=latent,
            seed=Param("seed", default=1),
            sampler_name="euler",
            scheduler="normal",
        )
        image = n.VAEDecode(samples=samples, vae=ckpt.VAE)
        n.SaveImage(images=image, filename_prefix="txt2img", title="Save")
        return wf
"""

REVEAL = """
    from typed_nodes import MODEL, Nodes

    n = Nodes()
    ckpt = n.CheckpointLoaderSimple(ckpt_name="sd15.safetensors")
    reveal_type(ckpt.MODEL)
    reveal_type(MODEL.of(n.workflow.add("UNETLoader").out(0)))
    reveal_type(n.SaveImage(images=n.VAEDecode(samples=n.EmptyLatentImage(), vae=ckpt.VAE)))
"""

#: Each ``# E: text`` line must get exactly one mypy error containing ``text``.
MISTAKES = """
    from typed_nodes import Nodes

    n = Nodes()
    ckpt = n.CheckpointLoaderSimple(ckpt_name="sd15.safetensors")
    text = n.CLIPTextEncode(clip=ckpt.CLIP, text="x")
    latent = n.EmptyLatentImage()
    n.KSampler(
        model=ckpt.CLIP,  # E: "KSampler" of "Nodes" has incompatible type "CLIP"; expected "MODEL"
        positive=text,
        negative=text,
        latent_image=latent,
        sampler_name="euler",
        scheduler="normal",
    )
    n.KSampler(
        model=ckpt.MODEL,
        positive=text,
        negative=text,
        latent_image=latent,
        sampler_name="eulr",  # E: Argument "sampler_name" to "KSampler" of "Nodes"
        scheduler="normal",
    )
    n.CheckpointLoaderSimple(ckpt_name="sd14.safetensors")  # E: "Literal['sd14.safetensors']"
    n.EmptyLatentImage(width="512")  # E: Argument "width" to "EmptyLatentImage" of "Nodes"
    n.VAEDecode(samples=latent, vae=ckpt.VAE, strength=1)  # E: Unexpected keyword argument
    n.VAEDecode(samples=latent)  # E: Missing named argument "vae"
    n.VAEDecode(samples=text, vae=ckpt.VAE)  # E: type "CONDITIONING"; expected "LATENT"
"""


ODD_USE = """
    from comfykit.graph import Node, NodeOutput, Workflow
    from odd_nodes import ANY, Nodes, class_Outputs


    def build(wf: Workflow, model: NodeOutput) -> tuple[class_Outputs, Node]:
        n = Nodes(wf)
        out = n.class_(MODEL_=ANY(model.node_id, model.index), node_="a", title="odd")
        up = n.N_2x_Upscale_(a=out.index_, b=out.index_, any=out.out_3d_out, title="up")
        first = n.IMAGE_(images=up, int=out.private)
        n.IMAGE_(images=out.private, int=first)
        return out, n.Nodes_()
"""


@dataclass
class MypyRun:
    """One mypy --strict run over the generated modules and the user files."""

    errors: dict[tuple[str, int], list[str]]
    notes: dict[tuple[str, int], list[str]]
    report: str


def _write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    text = "from __future__ import annotations\n" + textwrap.dedent(source)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("codegen")
    write_stubs(CATALOG, directory / "typed_nodes.py", module_doc="The 0.3.75 test fixture.")
    write_stubs(ODD, directory / "odd_nodes.py")
    write_stubs(BARE, directory / "bare_nodes.py")
    _write(directory, "txt2img.py", TXT2IMG)
    _write(directory, "reveal.py", REVEAL)
    _write(directory, "mistakes.py", MISTAKES)
    _write(directory, "odd_use.py", ODD_USE)
    return directory


@pytest.fixture(scope="module")
def mypy_run(workdir: Path) -> MypyRun:
    files = sorted(str(p) for p in workdir.glob("*.py"))
    args = [
        *files,
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--strict",
        "--cache-dir",
        str(workdir / ".mypy_cache"),
        "--no-explicit-package-bases",
        "--show-error-codes",
        "--no-pretty",
    ]
    out, err, _ = mypy.api.run(args)
    errors: dict[tuple[str, int], list[str]] = {}
    notes: dict[tuple[str, int], list[str]] = {}
    for line in out.splitlines():
        match = re.match(r"(.+?):(\d+): (error|note): (.*)", line)
        if match:
            key = (Path(match[1]).name, int(match[2]))
            (errors if match[3] == "error" else notes).setdefault(key, []).append(match[4])
    return MypyRun(errors, notes, out + err)


@pytest.fixture
def imported(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, ModuleType]]:
    monkeypatch.syspath_prepend(str(workdir))
    names = ("typed_nodes", "odd_nodes", "bare_nodes", "txt2img", "odd_use")
    try:
        yield {name: importlib.import_module(name) for name in names}
    finally:
        for name in names:
            sys.modules.pop(name, None)


# -------------------------------------------------------------------------------- mypy


def test_generated_module_and_a_correct_chain_pass_mypy_strict(mypy_run: MypyRun) -> None:
    clean = {"typed_nodes.py", "odd_nodes.py", "bare_nodes.py", "txt2img.py", "odd_use.py"}
    clean.add("reveal.py")
    found = {key: msgs for key, msgs in mypy_run.errors.items() if key[0] in clean}
    assert found == {}, mypy_run.report
    notes = sorted(mypy_run.notes.items())
    revealed = [m for (name, _), msgs in notes if name == "reveal.py" for m in msgs]
    assert revealed == [
        'Revealed type is "typed_nodes.MODEL"',
        'Revealed type is "typed_nodes.MODEL"',
        'Revealed type is "comfykit.graph.workflow.Node"',
    ], mypy_run.report


def _expected_mistakes(workdir: Path) -> dict[int, str]:
    lines = (workdir / "mistakes.py").read_text(encoding="utf-8").splitlines()
    return {i: line.split("# E: ")[1] for i, line in enumerate(lines, 1) if "# E: " in line}


def test_mistakes_are_reported_on_their_lines(mypy_run: MypyRun, workdir: Path) -> None:
    expected = _expected_mistakes(workdir)
    got = {line: msgs for (name, line), msgs in mypy_run.errors.items() if name == "mistakes.py"}
    assert set(got) == set(expected), mypy_run.report
    for line, text in expected.items():
        assert len(got[line]) == 1 and text in got[line][0], (line, got[line])


def test_clip_into_model_is_rejected(mypy_run: MypyRun, workdir: Path) -> None:
    line = next(n for n, text in _expected_mistakes(workdir).items() if '"CLIP"' in text)
    (message,) = mypy_run.errors[("mistakes.py", line)]
    assert 'incompatible type "CLIP"; expected "MODEL"' in message
    assert message.endswith("[arg-type]")


def test_combo_typo_is_rejected(mypy_run: MypyRun, workdir: Path) -> None:
    line = next(n for n, text in _expected_mistakes(workdir).items() if "sampler_name" in text)
    (message,) = mypy_run.errors[("mistakes.py", line)]
    assert "Literal['eulr']" in message and "'euler'" in message and "[arg-type]" in message


# -------------------------------------------------------------------------------- ruff


@pytest.mark.parametrize("name", ["typed_nodes.py", "odd_nodes.py", "bare_nodes.py"])
def test_generated_module_passes_ruff(workdir: Path, name: str) -> None:
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        found = shutil.which("ruff")
        assert found is not None, "ruff (a dev dependency) is not installed"
        ruff = Path(found)
    import subprocess

    config = str(ROOT / "pyproject.toml")
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [str(ruff), *command, "--config", config, "--no-cache", str(workdir / name)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


# -------------------------------------------------------------------------------- runtime


def _hand_built() -> Workflow:
    wf = Workflow(CATALOG)
    ckpt = wf.add("CheckpointLoaderSimple", ckpt_name=CKPT)
    positive = wf.add("CLIPTextEncode", text="a lighthouse at dusk", clip=ckpt.out("CLIP"))
    negative = wf.add("CLIPTextEncode", text="blurry", clip=ckpt.out("CLIP"))
    latent = wf.add("EmptyLatentImage", width=768, height=512, batch_size=1)
    samples = wf.add(
        "KSampler",
        model=ckpt.out("MODEL"),
        seed=Param("seed", default=1),
        steps=20,
        cfg=8.0,
        sampler_name="euler",
        scheduler="normal",
        positive=positive.out(0),
        negative=negative.out(0),
        latent_image=latent.out(0),
        denoise=1.0,
    )
    image = wf.add("VAEDecode", samples=samples.out(0), vae=ckpt.out("VAE"))
    wf.add("SaveImage", images=image.out(0), filename_prefix="txt2img", title="Save")
    return wf


def test_typed_graph_equals_the_hand_built_one(imported: dict[str, ModuleType]) -> None:
    wf = imported["txt2img"].build(Workflow(CATALOG))
    assert isinstance(wf, Workflow)
    wf.validate(catalog=CATALOG, params={"seed": 7}, strict=True)
    prompt = wf.to_api(params={"seed": 7})
    CATALOG.validate(prompt, strict=True)
    assert prompt == _hand_built().to_api(params={"seed": 7})
    assert json.loads(json.dumps(prompt)) == prompt
    assert prompt["7"]["_meta"] == {"title": "Save"}
    assert prompt["5"]["inputs"]["model"] == ["1", 0]


def test_typed_links_behave_like_node_outputs(imported: dict[str, ModuleType]) -> None:
    mod = imported["typed_nodes"]
    assert mod.FINGERPRINT == CATALOG.fingerprint
    nodes = mod.Nodes()
    ckpt = nodes.CheckpointLoaderSimple(ckpt_name=CKPT)
    assert ckpt._fields == ("MODEL", "CLIP", "VAE")
    model, clip, _ = ckpt
    assert isinstance(model, mod.MODEL) and isinstance(model, NodeOutput)
    assert mod.MODEL.comfy_type == "MODEL" and mod.LINK_TYPES["MODEL"] is mod.MODEL
    assert model == NodeOutput("1", 0) and NodeOutput("1", 0) == model
    assert hash(model) == hash(NodeOutput("1", 0)) and model != clip
    assert repr(clip) == "CLIP('1', 1)"
    assert all(issubclass(mod.ANY, cls) for cls in mod.LINK_TYPES.values())
    assert mod.VAE.of(NodeOutput("1", 2)) == ckpt.VAE and type(mod.VAE.of(clip)) is mod.VAE
    text = nodes.CLIPTextEncode(clip=clip, text="x")
    nodes.CLIPTextEncode(clip=NodeOutput("1", 1), text="y")
    assert text == NodeOutput("2", 0) and isinstance(text, mod.CONDITIONING)
    wf = nodes.workflow
    targets = wf.rewire(NodeOutput("1", 1), mod.CLIP("1", 1))
    assert targets == [(wf.node("2"), "clip"), (wf.node("3"), "clip")]
    copied = wf.copy()
    assert copied.to_api() == wf.to_api() and copied.node("2").inputs["clip"] == clip
    # optional inputs left at None are not sent
    patched = nodes.ModelSamplingLTXV(model=model)
    assert wf.node(patched.node_id).inputs == {
        "model": model,
        "max_shift": 2.05,
        "base_shift": 0.95,
    }
    nodes.DifferentialDiffusion(model=patched, strength=0.5)
    assert wf.to_api()["5"]["inputs"] == {"model": ["4", 0], "strength": 0.5}
    # an output node without outputs gives the Node
    preview = nodes.Preview3D(model_file="mesh.glb", title="3D")
    assert preview.class_type == "Preview3D" and preview.title == "3D"
    assert preview.workflow is wf


def test_output_is_deterministic() -> None:
    first = render_stubs(CATALOG)
    assert render_stubs(CATALOG) == first
    shuffled = NodeCatalog.from_object_info(dict(reversed(list(CATALOG.object_info.items()))))
    assert render_stubs(shuffled) == first
    plain = {name: CATALOG[name] for name in reversed(list(CATALOG))}
    assert render_stubs(plain) == first
    assert f'FINGERPRINT: str | None = "{CATALOG.fingerprint}"' in first
    assert render_stubs(CATALOG, module_doc="extra words") != first


def test_header_and_names(workdir: Path) -> None:
    text = (workdir / "typed_nodes.py").read_text(encoding="utf-8")
    assert text.startswith('"""Typed node constructors for a ComfyUI node catalog.')
    assert f"Catalog fingerprint: {CATALOG.fingerprint}" in text[:1000]
    assert "The 0.3.75 test fixture." in text[:1000]
    assert "    def Epsilon_Scaling(\n" in text
    assert '_CLASS_NAMES: dict[str, str] = {\n    "Epsilon_Scaling": "Epsilon Scaling",\n}' in text
    assert "        time_embed_: float | FLOAT | Param = 1.0,\n" in text
    assert '"time_embed.": time_embed_,' in text
    assert "        ckpt_name: CkptName | COMBO | Param,\n" in text
    assert 'CkptName: TypeAlias = Literal["sd15.safetensors"]' in text
    assert "        image: str | COMBO | Param,\n" in text  # LoadImage validates itself
    assert "class ANY(\n    ACCUMULATION,\n" in text
    unknown = render_stubs({name: ODD[name] for name in ODD} | {})
    assert "Catalog fingerprint: " + ODD.fingerprint in unknown


def test_awkward_names_are_mapped_back(imported: dict[str, ModuleType]) -> None:
    odd = imported["odd_nodes"]
    assert odd._CLASS_NAMES == {
        "IMAGE_": "IMAGE",
        "N_2x_Upscale_": "2x Upscale!",
        "Nodes_": "Nodes",
        "class_": "class",
    }
    assert odd.LINK_TYPES["int"] is odd.int_ and odd.LINK_TYPES["my-type"] is odd.my_type
    assert issubclass(odd.A_B, odd.A) and issubclass(odd.A_B, odd.B)
    wf = Workflow(ODD)
    wf.add("Loader")
    out, last = imported["odd_use"].build(wf, NodeOutput("1", 0))
    assert out._fields == ("index_", "private", "out_3d_out", "count_", "count_2")
    prompt = wf.to_api()
    assert prompt["2"] == {
        "class_type": "class",
        "inputs": {
            "title": ODD_INFO["class"]["input"]["required"]["title"][1]["default"],
            "self": 3,
            "l": True,
            "in put": 0.5,
            "in_put": 1,
            "MODEL": ["1", 0],
            "node": "a",
        },
        "_meta": {"title": "odd"},
    }
    assert prompt["3"] == {
        "class_type": "2x Upscale!",
        "inputs": {"a": ["2", 0], "b": ["2", 0], "any": ["2", 2]},
        "_meta": {"title": "up"},
    }
    assert prompt["4"]["inputs"] == {"images": ["3", 0], "int": ["2", 1]}
    assert prompt["5"]["inputs"] == {"images": ["2", 1], "int": ["4", 0]}
    assert last.class_type == "Nodes" and last.id == "6"
    wf.validate(catalog=ODD)


def test_catalogs_without_fingerprint_or_classes(imported: dict[str, ModuleType]) -> None:
    bare = imported["bare_nodes"]
    assert bare.FINGERPRINT is None and bare.LINK_TYPES == {"*": bare.ANY}
    node = bare.Nodes().Bare(title="b")
    assert isinstance(node, Node) and node.workflow.to_api() == {
        "1": {"class_type": "Bare", "inputs": {}, "_meta": {"title": "b"}}
    }
    namespace: dict[str, Any] = {}
    exec(compile(render_stubs({}), "empty.py", "exec"), namespace)
    assert namespace["FINGERPRINT"] is None and namespace["_CLASS_NAMES"] == {}


def test_awkward_values_are_typed_and_quoted(workdir: Path) -> None:
    text = (workdir / "odd_nodes.py").read_text(encoding="utf-8")
    compile(text, "odd_nodes.py", "exec")
    assert "        floats: float | COMBO | Param | None = None,\n" in text
    assert "        mixed: ClassMixed | COMBO | Param | None = None,\n" in text
    assert 'ClassMixed: TypeAlias = Literal["x", 1, True]' in text
    assert "        multi: ClassMulti | list[ClassMulti] | COMBO | Param | None = None,\n" in text
    assert (
        "        anything: NodeOutput | str | int | float | bool | Param | None = None,\n" in text
    )
    assert "        in_put: float | FLOAT | Param = 1,\n" in text  # the identifier keeps its name
    assert "        in_put_: float | FLOAT | Param = 0.5,\n" in text
    assert '"in put": in_put_,' in text
    # "z" is not one of the choices, so ``node`` stays required (the doc says why)
    assert "        node_: ClassNode | COMBO | Param,\n" in text
    assert "not usable here" in text
    assert '\\"\\"\\" and \\\\ and' in text
    small = render_stubs(ODD, max_literal=4)
    assert "        many: str | COMBO | Param | None = None,\n" in small


# -------------------------------------------------------------------------------- the docs page


def test_docs_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every python block of docs/codegen.md runs, in order, in one namespace.

    Blocks that start with ``# needs a running ComfyUI`` are skipped; ``catalog`` is the fixture
    with one checkpoint file.
    """
    text = (ROOT / "docs" / "codegen.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, Any] = {"catalog": CATALOG}
    try:
        for block in blocks:
            if not block.startswith("# needs a running ComfyUI"):
                exec(compile(block, "docs/codegen.md", "exec"), namespace)
    finally:
        sys.modules.pop("nodes", None)
