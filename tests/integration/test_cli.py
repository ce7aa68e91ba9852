"""The ``comfykit`` command against the real server: every subcommand and every exit code."""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfykit import (
    APIStatusError,
    ComfyClient,
    ComfyConnectionError,
    ComfyTimeoutError,
    ExecutionError,
    InputError,
    JobInterrupted,
    JobLost,
    NotFoundError,
    PromptValidationError,
    ServerError,
    WorkflowError,
)
from comfykit.cli import (
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_SERVER_ERROR,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    exit_code,
    main,
)
from comfykit.graph import NodeCatalog
from comfykit.graph.png_metadata import read_png_workflows
from comfykit.graph.ui_format import ui_to_api
from comfykit.testing import CHECKPOINT_NAME, free_port
from tests import graphs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = Path(__file__).resolve().parents[2]

Capture = pytest.CaptureFixture[str]


def _run(argv: list[str], capsys: Capture) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _write(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def _assert_clean_error(err: str, *needles: str) -> None:
    assert err.startswith("comfykit: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


# -------------------------------------------------------------------------------- generate


def test_generate_writes_images_and_prints_the_seed(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    argv = ["generate", "a lighthouse", "--url", comfyui_url, "-W", "64", "-H", "96"]
    argv += ["--steps", "2", "--seed", "1234", "-o", str(tmp_path / "out")]
    code, out, err = _run(argv, capsys)
    assert code == EXIT_OK, err
    *paths, seed_line = out.splitlines()
    assert seed_line == "seed 1234"
    (path,) = paths
    assert Path(path).parent == tmp_path / "out"
    with Image.open(path) as img:
        assert img.size == (64, 96)


def test_generate_json_batch_alias_and_default_model(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    argv = ["generate", "a fox", "--url", comfyui_url, "-W", "64", "-H", "64", "--steps", "2"]
    argv += ["--batch-size", "2", "--sampler", "euler_a", "--json", "-o", str(tmp_path)]
    code, out, err = _run(argv, capsys)
    assert code == EXIT_OK, err
    summary = json.loads(out)
    assert summary["model"] == CHECKPOINT_NAME
    assert summary["sampler"] == "euler_ancestral"
    assert isinstance(summary["seed"], int)
    assert len(summary["files"]) == 2 and all(Path(p).is_file() for p in summary["files"])


def test_generate_bad_width_exits_2_before_contacting_the_server(
    tmp_path: Path, capsys: Capture
) -> None:
    # The URL is dead: exit 2 (not 3) proves the input was rejected before any request.
    argv = ["generate", "x", "--url", _dead_url(), "-W", "65", "-o", str(tmp_path)]
    code, out, err = _run(argv, capsys)
    assert code == EXIT_USAGE and out == ""
    _assert_clean_error(err, "width", "multiple of 8")
    assert not any(tmp_path.iterdir())


def test_generate_unknown_sampler_lists_valid_ones(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    argv = ["generate", "x", "--url", comfyui_url, "--sampler", "eulr", "-o", str(tmp_path)]
    code, _, err = _run(argv, capsys)
    assert code == EXIT_USAGE
    _assert_clean_error(err, "unknown sampler 'eulr'", "euler_ancestral", "dpmpp_2m")


def test_generate_unknown_model_gets_a_did_you_mean_on_the_stem(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    argv = ["generate", "x", "--url", comfyui_url, "--model", "sd15", "-o", str(tmp_path)]
    code, out, err = _run(argv, capsys)
    assert code == EXIT_USAGE and out == ""
    _assert_clean_error(err, "unknown model 'sd15'", f"Did you mean {CHECKPOINT_NAME}?")
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_exits_3(tmp_path: Path, capsys: Capture) -> None:
    code, _, err = _run(["info", "--url", _dead_url()], capsys)
    assert code == EXIT_UNREACHABLE
    _assert_clean_error(err, "cannot reach", "COMFYUI_URL")
    argv = ["generate", "x", "--url", _dead_url(), "-W", "64", "-H", "64", "-o", str(tmp_path)]
    assert _run(argv, capsys)[0] == EXIT_UNREACHABLE


def test_other_server_errors_exit_4(comfyui_url: str, capsys: Capture) -> None:
    code, _, err = _run(["info", "--url", f"{comfyui_url}/not-comfyui"], capsys)
    assert code == EXIT_SERVER_ERROR
    _assert_clean_error(err, "GET /system_stats returned 404")


def test_exit_code_mapping() -> None:
    job = {"prompt_id": "p"}
    cases: list[tuple[BaseException, int]] = [
        (ExecutionError(node_id="1", node_type="X", exception_type="E", exception_message="m",
                        **job), EXIT_JOB_FAILED),
        (JobInterrupted("stopped", **job), EXIT_JOB_FAILED),
        (JobLost("gone", **job), EXIT_JOB_FAILED),
        (InputError("bad"), EXIT_USAGE),
        (WorkflowError("bad graph"), EXIT_USAGE),
        (PromptValidationError(error_type="invalid_prompt", error_message="bad"), EXIT_USAGE),
        (ComfyConnectionError("down"), EXIT_UNREACHABLE),
        (ComfyTimeoutError("slow"), EXIT_UNREACHABLE),
        (APIStatusError("teapot", status_code=418), EXIT_SERVER_ERROR),
        (ServerError("boom", status_code=500), EXIT_SERVER_ERROR),
        (NotFoundError("no", status_code=404), EXIT_SERVER_ERROR),
        (FileNotFoundError("x"), EXIT_USAGE),
    ]  # fmt: skip
    assert [exit_code(exc) for exc, _ in cases] == [code for _, code in cases]


def test_url_defaults_to_the_environment(
    comfyui_url: str, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMFYUI_URL", comfyui_url)
    code, out, _ = _run(["info"], capsys)
    assert code == EXIT_OK and comfyui_url in out
    monkeypatch.setenv("COMFYUI_URL", _dead_url())
    assert _run(["info"], capsys)[0] == EXIT_UNREACHABLE


def test_usage_errors_exit_2(capsys: Capture) -> None:
    code, out, err = _run([], capsys)  # bare `comfykit` lists what it can do
    assert code == EXIT_USAGE and out == ""
    assert all(c in err for c in ("generate", "run", "convert", "codegen", "catalog", "info"))
    assert _run(["generate"], capsys)[0] == EXIT_USAGE
    code, _, err = _run(["generate", "x", "-W", "wide"], capsys)
    assert code == EXIT_USAGE and "invalid int value" in err
    assert _run(["frobnicate"], capsys)[0] == EXIT_USAGE
    code, out, _ = _run(["--help"], capsys)
    assert code == EXIT_OK and "exit codes" in out
    code, out, _ = _run(["--version"], capsys)
    assert code == EXIT_OK and out.startswith("comfykit ")


# -------------------------------------------------------------------------------- run


def test_run_api_workflow_with_set_by_id_and_title(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    graph = graphs.txt2img(seed=1)
    graph["5"]["_meta"] = {"title": "My.Sampler"}  # a dot in the title: NODE.INPUT splits last
    seed = random.randrange(2**31)
    argv = ["run", _write(tmp_path / "wf.json", graph), "--url", comfyui_url]
    argv += ["--set", f"My.Sampler.seed={seed}", "--set", "2.text=a red fox, 4k"]
    argv += ["--set", '3.text="42"', "-o", str(tmp_path / "out")]
    code, out, err = _run(argv, capsys)
    assert code == EXIT_OK, err
    (path,) = out.splitlines()
    ran = read_png_workflows(path).prompt
    assert ran is not None
    assert ran["5"]["inputs"]["seed"] == seed  # JSON value: an int
    assert ran["2"]["inputs"]["text"] == "a red fox, 4k"  # not JSON: the string
    assert ran["3"]["inputs"]["text"] == "42"  # a JSON string stays a string
    assert "finished in" in err


def test_run_ui_workflow_embeds_it_in_the_png(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    argv = ["run", str(FIXTURES / "ui" / "basic.json"), "--url", comfyui_url]
    argv += ["--set", f"Load Checkpoint.ckpt_name={CHECKPOINT_NAME}"]
    argv += ["--set", "Empty Latent Image.width=64", "--set", "5.height=64"]
    argv += ["--set", "KSampler.steps=2", "--set", f"KSampler.seed={random.randrange(2**31)}"]
    argv += ["--set", f"Save Image.filename_prefix={graphs.unique('cli-ui')}"]
    argv += ["-o", str(tmp_path)]
    code, out, err = _run(argv, capsys)
    assert code == EXIT_OK, err
    (path,) = out.splitlines()
    with Image.open(path) as img:
        assert img.size == (64, 64)
    embedded = read_png_workflows(path)
    assert embedded.workflow is not None and embedded.workflow["nodes"]


def test_run_png_reruns_its_prompt(comfyui_url: str, tmp_path: Path, capsys: Capture) -> None:
    argv = ["run", str(FIXTURES / "ui" / "saveimage_0.3.75.png"), "--url", comfyui_url]
    argv += ["--set", f"3.filename_prefix={graphs.unique('cli-png')}", "-o", str(tmp_path)]
    code, out, err = _run(argv, capsys)
    assert code == EXIT_OK, err
    (path,) = out.splitlines()
    with Image.open(path) as img:
        assert img.size == (8, 8)
        graphs.assert_rgb_close(img.convert("RGB").getpixel((1, 1)), (0, 255, 255))


def test_run_downloads_every_file_and_never_overwrites(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    graph = graphs.invert(random.randrange(0xFFFFFF))
    graph["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    wf = _write(tmp_path / "wf.json", graph)
    out_dir = tmp_path / "out"
    code, out, err = _run(["run", wf, "--url", comfyui_url, "-o", str(out_dir)], capsys)
    assert code == EXIT_OK, err
    first = out.splitlines()
    assert len(first) == 2  # the saved image and the temp preview
    # Served from the cache: the same server files, already here byte for byte: no duplicates.
    code, out, err = _run(["run", wf, "--url", comfyui_url, "-o", str(out_dir)], capsys)
    assert code == EXIT_OK, err
    assert sorted(out.splitlines()) == sorted(first)
    assert len(list(out_dir.iterdir())) == 2
    # A different file under the same name is kept, and the download takes the next name.
    mine, other = (Path(p) for p in sorted(first))
    mine.write_bytes(b"mine")
    code, out, err = _run(["run", wf, "--url", comfyui_url, "-o", str(out_dir)], capsys)
    assert code == EXIT_OK, err
    third = sorted(out.splitlines())
    assert third == sorted([str(mine.with_name(f"{mine.stem}-1{mine.suffix}")), str(other)])
    assert mine.read_bytes() == b"mine" and len(list(out_dir.iterdir())) == 3


def test_an_unwritable_output_dir_fails_before_the_job_is_sent(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    blocked = tmp_path / "a-file" / "out"
    wf = _write(tmp_path / "wf.json", graphs.invert(random.randrange(0xFFFFFF)))
    with ComfyClient(comfyui_url) as comfy:
        before = len(comfy.history())
        for argv in (
            ["run", wf, "--url", comfyui_url, "-o", str(blocked)],
            ["generate", "a fox", "--url", comfyui_url, "-W", "64", "-H", "64", "--steps", "1",
             "-o", str(blocked)],
        ):  # fmt: skip
            code, out, err = _run(argv, capsys)
            assert code == EXIT_USAGE and out == ""
            _assert_clean_error(err, f"cannot save to {str(blocked)!r}", "Not a directory")
        assert len(comfy.history()) == before and comfy.queue().pending == []


def test_run_text_outputs_json_and_stdin(
    comfyui_url: str, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"t{random.randrange(10**9)}"
    wf = _write(tmp_path / "wf.json", graphs.text("hello", token))
    code, out, err = _run(["run", wf, "--url", comfyui_url, "-o", str(tmp_path)], capsys)
    assert code == EXIT_OK, err
    assert out.splitlines() == [f"node 2: hello-{token}"]
    data = Path(wf).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, err = _run(["run", "-", "--url", comfyui_url, "--json"], capsys)
    assert code == EXIT_OK, err
    summary = json.loads(out)
    assert summary["text"] == {"2": [f"hello-{token}"]} and summary["files"] == []
    assert re.fullmatch(r"[0-9a-f-]{36}", summary["prompt_id"])


def test_run_failing_workflow_exits_1(comfyui_url: str, tmp_path: Path, capsys: Capture) -> None:
    wf = _write(tmp_path / "wf.json", graphs.sync_error())
    code, out, err = _run(["run", wf, "--url", comfyui_url, "-o", str(tmp_path)], capsys)
    assert code == EXIT_JOB_FAILED and out == ""
    _assert_clean_error(err, "TestSyncError", "Intentional sync execution error", "(prompt ")


def test_run_set_on_unknown_node_or_input_exits_2(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    wf = _write(tmp_path / "wf.json", graphs.txt2img())
    base = ["run", wf, "--url", comfyui_url, "-o", str(tmp_path / "out")]
    code, _, err = _run([*base, "--set", "99.seed=1"], capsys)
    assert code == EXIT_USAGE
    _assert_clean_error(err, "no node with id or title '99'")
    code, _, err = _run([*base, "--set", "5.sede=1"], capsys)
    assert code == EXIT_USAGE
    _assert_clean_error(err, "'sede'", "did you mean 'seed'")
    code, _, err = _run([*base, "--set", "5.seed=many"], capsys)
    assert code == EXIT_USAGE
    _assert_clean_error(err, "seed", "'many'")
    code, _, err = _run([*base, "--set", "seed=1"], capsys)
    assert code == EXIT_USAGE
    _assert_clean_error(err, "NODE.INPUT=VALUE")
    assert not (tmp_path / "out").exists()


def test_run_bad_files_exit_2(comfyui_url: str, tmp_path: Path, capsys: Capture) -> None:
    base = ["--url", comfyui_url]
    code, _, err = _run(["run", str(tmp_path / "missing.json"), *base], capsys)
    assert code == EXIT_USAGE
    _assert_clean_error(err, "cannot read", "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    code, _, err = _run(["run", str(bad), *base], capsys)
    assert code == EXIT_USAGE
    _assert_clean_error(err, "not valid JSON", "line 1")
    code, _, err = _run(["run", _write(tmp_path / "list.json", [1, 2]), *base], capsys)
    assert code == EXIT_USAGE
    _assert_clean_error(err, "is neither an API-format prompt")


def test_run_validation_errors_exit_2_client_and_server_side(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    graph = graphs.txt2img()
    graph["1"]["inputs"]["ckpt_name"] = "missing.safetensors"
    wf = _write(tmp_path / "wf.json", graph)
    code, _, err = _run(["run", wf, "--url", comfyui_url], capsys)
    assert code == EXIT_USAGE  # WorkflowError, before sending
    _assert_clean_error(err, "ckpt_name", "missing.safetensors", CHECKPOINT_NAME)
    code, _, err = _run(["run", wf, "--url", comfyui_url, "--no-validate"], capsys)
    assert code == EXIT_USAGE  # PromptValidationError, from the server
    _assert_clean_error(err, "ckpt_name", "missing.safetensors")


def test_run_timeout_exits_3(comfyui_url: str, tmp_path: Path, capsys: Capture) -> None:
    wf = _write(tmp_path / "wf.json", graphs.sleep(0.8, value=random.randrange(10**9)))
    code, _, err = _run(["run", wf, "--url", comfyui_url, "--timeout", "0.2"], capsys)
    assert code == EXIT_UNREACHABLE
    _assert_clean_error(err, "did not finish within 0.2 s")


def test_run_ctrl_c_cancels_the_job_and_exits_130(comfyui_url: str, tmp_path: Path) -> None:
    value = random.randrange(10**9)
    wf = _write(tmp_path / "wf.json", graphs.sleep(60, value=value))
    argv = [sys.executable, "-m", "comfykit.cli", "run", wf, "--url", comfyui_url]
    with (
        ComfyClient(comfyui_url) as comfy,
        subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) as proc,
    ):
        try:
            deadline = time.monotonic() + 60
            prompt_id = None
            while prompt_id is None:  # wait until the job runs on the server
                assert time.monotonic() < deadline, "the job never started"
                assert proc.poll() is None
                for item in comfy.queue().running:
                    if item.prompt["1"]["inputs"]["value"] == value:
                        prompt_id = item.prompt_id
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == EXIT_INTERRUPTED
            assert proc.stderr is not None
            _assert_clean_error(proc.stderr.read(), "interrupted")
        finally:
            if proc.poll() is None:
                proc.kill()
        # Cancelled, not left running for its 60 s: it leaves the queue at once (the interrupt
        # lands at TestSleep's next progress step) and is recorded as interrupted.
        deadline = time.monotonic() + 15
        while prompt_id in comfy.queue():
            assert time.monotonic() < deadline, "the job was not interrupted"
            time.sleep(0.05)
        entry = comfy.history(prompt_id)[prompt_id]
        assert entry.status is not None
        assert any(name == "execution_interrupted" for name, _ in entry.status.messages)


def test_run_progress_bar(comfyui_url: str, tmp_path: Path, capsys: Capture) -> None:
    wf = _write(tmp_path / "wf.json", graphs.txt2img(seed=random.randrange(2**31), steps=3))
    argv = ["run", wf, "--url", comfyui_url, "--progress", "-o", str(tmp_path)]
    code, _, err = _run(argv, capsys)
    assert code == EXIT_OK, err
    assert "run:" in err and "/3" in err


# -------------------------------------------------------------------------------- convert


def test_convert_with_the_live_catalog_and_a_snapshot(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    source = FIXTURES / "ui" / "basic.json"
    with ComfyClient(comfyui_url) as comfy:
        catalog = comfy.catalog()
    expected = ui_to_api(json.loads(source.read_text(encoding="utf-8")), catalog)

    live = tmp_path / "live" / "api.json"
    code, _, err = _run(["convert", str(source), "-o", str(live), "--url", comfyui_url], capsys)
    assert code == EXIT_OK, err
    assert json.loads(live.read_text(encoding="utf-8")) == expected

    snapshot = tmp_path / "catalog.json"
    catalog.save(snapshot)
    code, out, err = _run(["convert", str(source), "--catalog", str(snapshot)], capsys)
    assert code == EXIT_OK, err
    assert json.loads(out) == expected
    assert NodeCatalog.load(snapshot) == catalog

    argv = ["convert", str(source), "--url", comfyui_url, "--catalog", str(snapshot)]
    assert _run(argv, capsys)[0] == EXIT_USAGE
    code, _, err = _run(["convert", str(source), "--catalog", str(tmp_path / "no.json")], capsys)
    assert code == EXIT_USAGE
    _assert_clean_error(err, "cannot read a node catalog")


def test_convert_reports_unconvertible_nodes(
    comfyui_url: str, tmp_path: Path, capsys: Capture
) -> None:
    ui = json.loads((FIXTURES / "ui" / "basic.json").read_text(encoding="utf-8"))
    ui["nodes"][0]["type"] = "NoSuchNodeClass"
    code, out, err = _run(
        ["convert", _write(tmp_path / "ui.json", ui), "--url", comfyui_url], capsys
    )
    assert code == EXIT_USAGE and out == ""
    _assert_clean_error(err, "NoSuchNodeClass")


def test_convert_api_and_png_inputs(tmp_path: Path, capsys: Capture) -> None:
    graph = graphs.invert()
    code, out, err = _run(["convert", _write(tmp_path / "api.json", graph)], capsys)
    assert code == EXIT_OK and json.loads(out) == graph and "already in the API format" in err
    png = FIXTURES / "ui" / "saveimage_0.3.75.png"
    code, out, _ = _run(["convert", str(png)], capsys)
    assert code == EXIT_OK and json.loads(out) == read_png_workflows(png).prompt


# -------------------------------------------------------------------------------- codegen


def test_codegen_writes_stubs(comfyui_url: str, tmp_path: Path, capsys: Capture) -> None:
    target = tmp_path / "stubs" / "nodes.py"
    code, _, err = _run(["codegen", "-o", str(target), "--url", comfyui_url], capsys)
    assert code == EXIT_OK, err
    text = target.read_text(encoding="utf-8")
    compile(text, str(target), "exec")
    assert f"Source: {comfyui_url}." in text
    assert "def KSampler(" in text and "SamplerName" in text
    with ComfyClient(comfyui_url) as comfy:
        comfy.catalog().save(tmp_path / "catalog.json")
    code, out, err = _run(["codegen", "--catalog", str(tmp_path / "catalog.json")], capsys)
    assert code == EXIT_OK, err
    assert "Source: the snapshot catalog.json." in out
    assert out.replace("the snapshot catalog.json", comfyui_url) == text
    argv = ["codegen", "--catalog", str(tmp_path / "catalog.json"), "--max-literal", "0"]
    code, out, err = _run(argv, capsys)
    assert code == EXIT_OK, err
    assert "sampler_name: str" in out


# -------------------------------------------------------------------------------- info


def test_catalog_snapshot_and_drift(comfyui_url: str, tmp_path: Path, capsys: Capture) -> None:
    snapshot = tmp_path / "catalog.json"
    code, _, err = _run(["catalog", "--url", comfyui_url, "-o", str(snapshot)], capsys)
    assert code == 0 and "node classes" in err
    code, out, _ = _run(["drift", str(snapshot), "--url", comfyui_url], capsys)
    assert (code, out.strip()) == (0, "no drift: the server's nodes match the snapshot")

    data = json.loads(snapshot.read_text())
    info = data["object_info"]
    del info["ImageInvert"]
    info["OnlyInTheSnapshot"] = dict(info["EmptyImage"], name="OnlyInTheSnapshot")
    info["EmptyImage"]["input"]["required"]["width"][1]["max"] = 64
    drifted = tmp_path / "drifted.json"
    drifted.write_text(json.dumps(info))  # a plain /object_info dump loads too
    code, out, _ = _run(["drift", str(drifted), "--url", comfyui_url, "--json"], capsys)
    assert code == 1
    report = json.loads(out)
    assert report["added"] == ["ImageInvert"]
    assert report["removed"] == ["OnlyInTheSnapshot"]
    assert report["changed"] == ["EmptyImage"]
    code, out, _ = _run(["drift", str(drifted), "--url", comfyui_url], capsys)
    assert code == 1 and "ImageInvert" in out and "EmptyImage" in out

    info = json.loads(snapshot.read_text())["object_info"]
    info["ImageScale"]["input"]["required"]["upscale_method"][0].append("a-new-method")
    choices_only = tmp_path / "choices.json"
    choices_only.write_text(json.dumps(info))
    code, _, _ = _run(["drift", str(choices_only), "--url", comfyui_url], capsys)
    assert code == 0
    code, out, _ = _run(["drift", str(choices_only), "--url", comfyui_url, "--choices"], capsys)
    assert code == 1 and "ImageScale" in out


def test_info_text_and_json(comfyui_url: str, capsys: Capture) -> None:
    code, out, err = _run(["info", "--url", comfyui_url], capsys)
    assert code == EXIT_OK, err
    assert out.startswith("ComfyUI 0.3.75 at " + comfyui_url)
    assert "RAM:" in out and "VRAM" in out and "cpu" in out
    assert re.search(r"^queue: \d+ running, \d+ pending$", out, re.MULTILINE)
    assert "  checkpoints: 1\n    " + CHECKPOINT_NAME in out
    code, out, err = _run(["info", "--url", comfyui_url, "--json"], capsys)
    assert code == EXIT_OK, err
    data = json.loads(out)
    assert data["system"]["comfyui_version"] == "0.3.75"
    assert data["models"]["checkpoints"] == [CHECKPOINT_NAME]
    assert data["devices"] and data["devices"][0]["type"] == "cpu"
    assert set(data["queue"]) == {"running", "pending"}


# -------------------------------------------------------------------------------- entry point


def test_entry_point_in_a_subprocess(comfyui_url: str, tmp_path: Path) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^comfykit = "comfykit\.cli:main"$', pyproject, re.MULTILINE)
    env = {**os.environ, "COMFYUI_URL": comfyui_url}
    commands = [[sys.executable, "-m", "comfykit.cli"]]
    script = shutil.which("comfykit", path=str(Path(sys.executable).parent))
    if script is not None:  # installed after the [project.scripts] entry was added
        commands.append([script])
    wf = _write(tmp_path / "wf.json", graphs.sync_error())
    for command in commands:
        ok = subprocess.run([*command, "info"], env=env, capture_output=True, text=True, timeout=60)
        assert ok.returncode == EXIT_OK, ok.stderr
        assert CHECKPOINT_NAME in ok.stdout
        failed = subprocess.run(
            [*command, "run", wf], env=env, capture_output=True, text=True, timeout=60
        )
        assert failed.returncode == EXIT_JOB_FAILED
        assert "Traceback" not in failed.stderr and "TestSyncError" in failed.stderr
