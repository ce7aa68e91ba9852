"""The pool's decisions without a socket: what a server lacks, who takes a job, file names."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from comfykit import AsyncComfyPool, ComfyPool, InputError, NoServerAvailable, ServerState
from comfykit._balance import ServerStatus, choose, file_literals, lacks, output_prefixes
from comfykit.graph import NodeCatalog
from tests import graphs

RAW = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "object_info_0.3.75.json").read_text("utf-8")
)


def _catalog(*, checkpoints: list[str], drop: tuple[str, ...] = ()) -> NodeCatalog:
    raw = copy.deepcopy(RAW)
    raw["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = checkpoints
    for name in drop:
        raw.pop(name, None)
    return NodeCatalog.from_object_info(raw)


def test_a_server_with_everything_lacks_nothing() -> None:
    catalog = _catalog(checkpoints=["model.safetensors"])
    graph = graphs.txt2img()
    graph["1"]["inputs"]["ckpt_name"] = "model.safetensors"
    assert lacks(catalog, graph) == []
    assert lacks(catalog, graphs.sleep(0.1)) == []


def test_missing_classes_and_model_files_are_named() -> None:
    catalog = _catalog(checkpoints=["other.ckpt"], drop=("TestSleep",))
    graph: dict[str, Any] = {**graphs.txt2img(), **{"20": graphs.sleep(0.1)["2"]}}
    graph["1"]["inputs"]["ckpt_name"] = "model.safetensors"
    graph["21"] = {"class_type": "TestSleep", "inputs": {"value": 1, "seconds": 0.1}}
    missing = lacks(catalog, graph)
    assert missing == [
        "node class 'TestSleep'",
        "model 'model.safetensors' (node 1 CheckpointLoaderSimple input 'ckpt_name')",
    ]


def test_only_file_names_are_checked_as_models() -> None:
    # A combo given something that is not a model file is left to validation.
    catalog = _catalog(checkpoints=[])
    graph = graphs.txt2img()
    graph["5"]["inputs"]["sampler_name"] = "no-such-sampler"
    graph["1"]["inputs"]["ckpt_name"] = "absent.safetensors"
    assert lacks(catalog, graph) == [
        "model 'absent.safetensors' (node 1 CheckpointLoaderSimple input 'ckpt_name')"
    ]


def test_file_literals_finds_known_names_once_in_order() -> None:
    graph: dict[str, Any] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "comfykit/b.png"}},
        "2": {"class_type": "LoadImageMask", "inputs": {"image": "a.png", "channel": "alpha"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "comfykit/b.png"}},
        "4": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    }
    assert file_literals(graph, {"a.png", "comfykit/b.png", "c.png"}) == ["comfykit/b.png", "a.png"]
    assert file_literals(graph, set()) == []


def test_output_prefixes_are_those_whose_names_can_be_predicted() -> None:
    graph = graphs.invert(prefix="run/one")
    dated = {"images": ["2", 0], "filename_prefix": "%date:yyyy%/x"}
    graph["4"] = {"class_type": "SaveImage", "inputs": dated}
    graph["5"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    graph["6"] = {"class_type": "SaveAnimatedWEBP", "inputs": {"filename_prefix": "/anim/"}}
    assert output_prefixes(graph) == [("run/one", "png"), ("anim", "webp")]
    assert output_prefixes(graphs.sleep(0.1)) == []


def test_choose_least_loaded_then_preferred_then_round_robin() -> None:
    assert choose([2, 1, 1], 0) == 1
    assert choose([2, 1, 1], 2) == 2  # equal loads: the first at or after start
    assert choose([1, 1, 1], 1, prefer={2}) == 2
    assert choose([0, None, 3], 1) == 0
    assert choose([None, None], 0) is None
    picks = []
    start = 0
    for _ in range(6):
        index = choose([0, 0, 0], start)
        assert index is not None
        picks.append(index)
        start = index + 1
    assert picks == [0, 1, 2, 0, 1, 2]


def test_server_status_and_no_server_available() -> None:
    status = ServerStatus("http://a", ServerState.DOWN, 0, None, "ComfyConnectionError: x", 1.0)
    assert not status.up and status.state.value == "down"
    error = NoServerAvailable("no server", {"http://a": ["down"], "http://b": ["lacks x"]})
    assert "http://a: down" in str(error) and error.reasons["http://b"] == ["lacks x"]
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.reasons == error.reasons


@pytest.mark.parametrize("cls", [AsyncComfyPool, ComfyPool])
def test_pool_arguments_are_checked_before_any_io(cls: Any) -> None:
    with pytest.raises(InputError, match="list of URLs"):
        cls("http://127.0.0.1:1")
    with pytest.raises(InputError, match="either urls"):
        cls()
    with pytest.raises(InputError, match="at least one"):
        cls([])
    with pytest.raises(InputError, match="twice"):
        cls(["http://127.0.0.1:1", "http://127.0.0.1:1/"])
    with pytest.raises(InputError, match="failover_after"):
        cls(["http://127.0.0.1:1"], failover_after=-1)
