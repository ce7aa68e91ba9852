"""The package's public surface: every exported name resolves, imports stay light."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import comfykit


def test_all_is_sorted_unique_and_resolves() -> None:
    names = [n for n in comfykit.__all__ if n != "__version__"]
    constants = [n for n in names if n.isupper()]
    assert names == constants + sorted(n for n in names if not n.isupper())
    assert len(set(comfykit.__all__)) == len(comfykit.__all__)
    for name in comfykit.__all__:
        assert getattr(comfykit, name) is not None, name
    assert set(comfykit.__all__) <= set(dir(comfykit))


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        comfykit.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def _modules_after(code: str) -> list[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_import_is_light() -> None:
    heavy = {"fastapi", "PIL", "torch", "numpy"}
    bare = set(_modules_after("import comfykit"))
    assert not bare & heavy
    assert "httpx" not in bare and "pydantic" not in bare  # public names load on first use
    clients = set(_modules_after("from comfykit import AsyncComfyClient, ComfyClient, Workflow"))
    assert not clients & heavy
    assert "httpx" in clients and "comfykit._sync.client" in clients
    pools = set(_modules_after("from comfykit import AsyncComfyPool, ComfyPool"))
    assert not pools & heavy
    assert "comfykit._sync.pool" in pools and "comfykit._async.pool" in pools


def test_workflow_is_public() -> None:
    from comfykit import Workflow
    from comfykit.graph import Workflow as GraphWorkflow

    assert Workflow is GraphWorkflow


def test_public_classes_show_their_public_path() -> None:
    for name in comfykit.__all__:
        value = getattr(comfykit, name)
        if isinstance(value, type):
            assert value.__module__ == "comfykit", name
            assert getattr(comfykit, value.__qualname__) is value, name
    assert repr(comfykit.ComfyClient) == "<class 'comfykit.ComfyClient'>"


def test_a_class_loaded_with_another_name_shows_its_public_path_too() -> None:
    code = (
        "from comfykit import ComfyClient\n"
        "from comfykit._exceptions import JobLost\n"
        "assert JobLost.__module__ == 'comfykit', JobLost.__module__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_paths_keep_pickles_and_pydantic_working() -> None:
    problem = comfykit.WorkflowProblem("1", "EmptyImage", "too small", input_name="width")
    assert pickle.loads(pickle.dumps(problem)) == problem
    error = comfykit.ComfyError("gone")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    status = comfykit.Status.model_validate({"status": {"exec_info": {"queue_remaining": 2}}})
    assert pickle.loads(pickle.dumps(status)) == status
