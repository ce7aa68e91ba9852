"""What a pool of servers decides without a socket: which servers can run a graph, which of
them takes it, and what a lost job's output files would be called.

Pure: it reads a :class:`~comfykit.graph.NodeCatalog` and API-format graphs, no I/O.
``AsyncComfyPool`` / ``ComfyPool`` (``_async/pool.py``) do the I/O around it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comfykit.graph import NodeCatalog

__all__ = [
    "MODEL_EXTENSIONS",
    "SAVE_NODES",
    "ServerState",
    "ServerStatus",
    "choose",
    "file_literals",
    "lacks",
    "output_prefixes",
]

#: Extensions of model files: a combo input given such a value names a model the server must
#: list among that input's choices (``ckpt_name``, ``lora_name``, ``vae_name``, ...).
MODEL_EXTENSIONS = (
    ".safetensors", ".ckpt", ".pt", ".pt2", ".pth", ".bin", ".gguf", ".sft", ".pkl", ".onnx",
)  # fmt: skip

#: Save nodes whose file names can be predicted: ``{prefix}_{counter:05}_.{extension}`` in the
#: output folder (ComfyUI's ``get_save_image_path`` numbering).
SAVE_NODES: Mapping[str, str] = {
    "SaveImage": "png",
    "SaveAnimatedPNG": "png",
    "SaveAnimatedWEBP": "webp",
}


class ServerState(str, enum.Enum):
    """Whether a pool sends new jobs to a server."""

    UP = "up"
    """It answers: it takes new jobs."""
    DOWN = "down"
    """It failed (connection errors, 5xx, a socket that will not reopen): no new jobs until a
    probe gets an answer again."""


@dataclass(frozen=True)
class ServerStatus:
    """One server of a pool, as ``pool.servers`` shows it.

    Attributes:
        url: the server's base URL.
        state: :class:`ServerState` (``up`` or ``down``).
        in_flight: the pool's jobs on it that have not finished.
        queue: prompts running or pending there, the pool's own and anybody else's: live
            from the server's ``status`` frames while its WebSocket is open, else from the last
            probe (``None`` before the first).
        last_error: what made it fail last (``None`` if it never did).
        since: when it entered its state (``time.time()``).
    """

    url: str
    state: ServerState
    in_flight: int
    queue: int | None
    last_error: str | None
    since: float

    @property
    def up(self) -> bool:
        """True when the server takes new jobs."""
        return self.state is ServerState.UP


def _literals(prompt: Mapping[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    """``(node id, class type, input name, value)`` of every literal input."""
    for node_id, node in prompt.items():
        if not isinstance(node, Mapping):
            continue
        class_type = node.get("class_type")
        inputs = node.get("inputs")
        if not isinstance(class_type, str) or not isinstance(inputs, Mapping):
            continue
        for name, value in inputs.items():
            if not isinstance(value, (list, tuple)):
                yield str(node_id), class_type, str(name), value


def lacks(catalog: NodeCatalog, prompt: Mapping[str, Any]) -> list[str]:
    """What a server with ``catalog`` lacks to run ``prompt``: the node classes it does not
    have, and the model files the graph names (a combo input given a value with a model file
    extension) that the input's choices do not list. Empty when it can run it; the graph's
    other defects are left to validation."""
    missing: list[str] = []
    classes: set[str] = set()
    for node in prompt.values():
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        if isinstance(class_type, str) and class_type not in catalog and class_type not in classes:
            classes.add(class_type)
            missing.append(f"node class {class_type!r}")
    for node_id, class_type, name, value in _literals(prompt):
        if not isinstance(value, str) or not value.lower().endswith(MODEL_EXTENSIONS):
            continue
        spec = catalog.get(class_type)
        choices = None
        if spec is not None:
            ispec = spec.input(name)
            choices = ispec.choices if ispec is not None else None
        if choices is not None and value not in choices:
            missing.append(f"model {value!r} (node {node_id} {class_type} input {name!r})")
    return missing


def file_literals(prompt: Mapping[str, Any], known: Container[str]) -> list[str]:
    """The string literals of ``prompt`` that are in ``known`` (files a pool uploaded), in
    order of appearance, each once."""
    found: dict[str, None] = {}
    for _, _, _, value in _literals(prompt):
        if isinstance(value, str) and value in known:
            found[value] = None
    return list(found)


_FORMATTED = re.compile(r"%[^%]*%")


def output_prefixes(prompt: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(filename_prefix, extension)`` of the save nodes whose file names can be predicted
    (:data:`SAVE_NODES`, with a literal prefix and no ``%date%``-style fields), each once."""
    found: dict[tuple[str, str], None] = {}
    for _, class_type, name, value in _literals(prompt):
        ext = SAVE_NODES.get(class_type)
        if ext is None or name != "filename_prefix" or not isinstance(value, str):
            continue
        if value and not _FORMATTED.search(value):
            found[(value.strip("/"), ext)] = None
    return list(found)


def choose(loads: Sequence[int | None], start: int, prefer: Container[int] = ()) -> int | None:
    """The index of the least loaded candidate (``None`` loads are not candidates); among
    equal loads the ones in ``prefer`` first, then the first at or after ``start`` (round
    robin: the caller moves ``start`` on after each choice). ``None`` when there is none."""
    best: int | None = None
    best_key: tuple[int, int, int] | None = None
    n = len(loads)
    for offset in range(n):
        index = (start + offset) % n
        load = loads[index]
        if load is None:
            continue
        key = (load, 0 if index in prefer else 1, offset)
        if best_key is None or key < best_key:
            best, best_key = index, key
    return best
